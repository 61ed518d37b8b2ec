"""routing.read_balance: "session" keeps each auto-port session on the standby of its first
read while that standby stays routable (monotonic reads, one warm backend), sessions still
spread over both standbys, and a session whose standby goes down moves to the other one and
stays there. The default, "statement", is covered by test_auto_routing (one session's reads
reach both standbys). nodes[].weight: the standbys' shares of reads, and weight 0 as a
stand-in, changed by a reload under an open session."""

import collections
import unittest

import auto_common as ac
import pgwire
from auto_common import STANDBYS, nodes_of
from pglane import AutoPglane, Pglane

CLUSTER = STARTED = PGLANE = None


def setUpModule():
    global CLUSTER, STARTED, PGLANE
    CLUSTER, STARTED = ac.cluster_up()
    ac.settle(CLUSTER)
    PGLANE = ac.start_auto(CLUSTER, overrides={"routing": {"read_balance": "session"}})


def tearDownModule():
    if PGLANE:
        PGLANE.stop()
    ac.cluster_down(CLUSTER, STARTED)


def node_state(status, name):
    return next(n for n in status["nodes"] if n["name"] == name)


class SessionReadBalance(unittest.TestCase):
    def test_a_session_reads_from_one_standby_and_sessions_spread(self):
        firsts = []
        for _ in range(4):
            conn = ac.connect(PGLANE)
            try:
                seen = nodes_of(conn.cursor(), 10)
            finally:
                conn.close()
            self.assertEqual(len(set(seen)), 1, f"one session's reads went to several nodes: {seen}")
            self.assertIn(seen[0], STANDBYS, f"a read reached the primary: {seen}")
            firsts.append(seen[0])
        self.assertEqual(set(firsts), STANDBYS, f"sessions did not spread over both standbys: {firsts}")

    def test_a_session_moves_when_its_standby_goes_down_and_stays(self):
        conn = ac.connect(PGLANE)
        self.addCleanup(conn.close)
        cur = conn.cursor()
        home = nodes_of(cur, 3)
        self.assertEqual(len(set(home)), 1, home)
        other = (STANDBYS - {home[0]}).pop()
        CLUSTER.stop(home[0])
        try:
            PGLANE.wait_until(lambda s: not node_state(s, home[0])["up"], 10, f"{home[0]} down")
            moved = nodes_of(cur, 5)
            self.assertEqual(set(moved), {other}, f"after {home[0]} stopped: {moved}")
        finally:
            CLUSTER.start(home[0])
            PGLANE.wait_until(pgwire.all_routable, 20, "n1 and n2 routable again")
        # Its first standby is back: the session stays where it reads now.
        self.assertEqual(set(nodes_of(cur, 5)), {other})


class StandbyWeights(unittest.TestCase):
    """n1 at weight 3 takes three reads for each of n2's (weight 1, the default)."""

    @classmethod
    def setUpClass(cls):
        cls.p = AutoPglane(CLUSTER)
        cls.p.config["nodes"][1]["weight"] = 3
        cls.p.start()
        try:
            cls.p.wait_until(pgwire.all_routable, 15, "n0 primary and n1, n2 routable standbys")
        except Exception:
            cls.p.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.p.stop()

    def weights(self):
        return {n["name"]: n["weight"] for n in self.p.status()["nodes"]}

    def reload_weights(self, weights):
        for node in self.p.config["nodes"]:
            node["weight"] = weights.get(node["name"], 1)
        self.p.write_config()
        self.p.reload()
        self.p.wait_until(lambda s: {n["name"]: n["weight"] for n in s["nodes"]} == {"n0": 1, "n1": 1, "n2": 1,
                                                                                     **weights},
                          10, f"weights {weights} in /status")

    def test_reads_follow_the_weights_and_weight_0_only_stands_in(self):
        self.assertEqual(self.weights(), {"n0": 1, "n1": 3, "n2": 1})
        conn = ac.connect(self.p)
        self.addCleanup(conn.close)
        cur = conn.cursor()
        # Any 4 consecutive reads give n1 three and n2 one, so 40 give exactly 30 and 10.
        self.assertEqual(collections.Counter(nodes_of(cur, 40)), {"n1": 30, "n2": 10})

        # A reload makes n1 a stand-in; the open session's reads all go to n2 now.
        self.reload_weights({"n1": 0})
        self.assertEqual(set(nodes_of(cur, 10)), {"n2"})
        # With n2 down, the stand-in takes the reads, not the primary.
        CLUSTER.stop("n2")
        try:
            self.p.wait_until(lambda s: not node_state(s, "n2")["up"], 10, "n2 down")
            self.assertEqual(set(nodes_of(cur, 5)), {"n1"})
        finally:
            CLUSTER.start("n2")
            self.p.wait_until(pgwire.all_routable, 20, "n1 and n2 routable again")
        self.assertEqual(set(nodes_of(cur, 5)), {"n2"})
        self.assertEqual(conn.closed, 0)   # the same client connection throughout


class RelayedSessionWeights(unittest.TestCase):
    """The relayed ro port (no `auth`) gives each new session a standby by the same weights."""

    def test_ro_sessions_follow_the_weights(self):
        p = Pglane(CLUSTER)
        p.config["nodes"][1]["weight"] = 3
        p.start()
        self.addCleanup(p.stop)
        p.wait_until(pgwire.all_routable, 15, "n0 primary and n1, n2 routable standbys")
        homes = p.ro_landings(8)   # any 4 sessions in a row: three on n1, one on n2
        self.assertEqual(collections.Counter(homes), {"n1": 6, "n2": 2}, homes)


if __name__ == "__main__":
    unittest.main()
