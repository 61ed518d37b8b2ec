"""routing.read_balance: "session" keeps each auto-port session on the standby of its first
read while that standby stays routable (monotonic reads, one warm backend), sessions still
spread over both standbys, and a session whose standby goes down moves to the other one and
stays there. The default, "statement", is covered by test_auto_routing (one session's reads
reach both standbys)."""

import unittest

import auto_common as ac
import pgwire
from auto_common import STANDBYS, nodes_of

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


if __name__ == "__main__":
    unittest.main()
