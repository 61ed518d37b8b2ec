"""The demoted primary restarted as primary (issue 6; destructive).

After a built-in failover (n0 SIGKILLed, a standby promoted), n0 is started again: it comes
back claiming to be primary on timeline 1. pglane keeps the new primary elected, shows n0
fenced in /status and /metrics (sticky: still fenced rounds later), and writes through the
auto and rw ports never land on n0. Then `compose/local-cluster rejoin n0 NEW` (pg_rewind)
makes n0 a standby of the new primary and pglane lifts the fence.
"""

import subprocess
import threading
import time
import unittest

import psycopg2

import failover_common as fc
import pgwire
from cluster import LAUNCHER

CLUSTER = None


def setUpModule():
    global CLUSTER
    CLUSTER = fc.cluster()


def tearDownModule():
    fc.restore(CLUSTER)


def bounded(fn, timeout):
    """Runs fn in a thread: ('ok', value) / ('error', text) / ('hung', None)."""
    out = {}

    def run():
        try:
            out["r"] = ("ok", fn())
        except Exception as e:  # noqa: BLE001 - reported to the test
            out["r"] = ("error", fc.error_text(e))
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    return out.get("r", ("hung", None))


def insert(dsn, ident, conn=None):
    def run():
        own = conn is None
        cn = conn or psycopg2.connect(dsn, connect_timeout=10)
        try:
            cn.autocommit = True
            with cn.cursor() as cur:
                cur.execute("INSERT INTO fo_t (id) VALUES (%s)", (ident,))
        finally:
            if own:
                cn.close()
        return ident
    return run


def rejoin_available():
    result = subprocess.run([str(LAUNCHER), "help"], capture_output=True, text=True, timeout=30)
    return "rejoin" in result.stdout


class Fence(unittest.TestCase):
    pglane = None
    new = None

    @classmethod
    def tearDownClass(cls):
        if cls.pglane:
            cls.pglane.stop()

    def test_1_old_primary_back_as_primary_is_fenced(self):
        c = CLUSTER
        fc.rebuild(c)
        c.sql("n0", "DROP TABLE IF EXISTS fo_t; CREATE TABLE fo_t (id text PRIMARY KEY)")
        pgwire.wait_replayed(c)
        p = type(self).pglane = fc.failover_pglane(c)
        fc.kill_node(c, "n0")
        new = type(self).new = fc.wait_new_primary(p, "n0", timeout=30)
        existing = psycopg2.connect(p.auto_dsn(), connect_timeout=10)
        self.addCleanup(existing.close)
        self.assertEqual(bounded(insert(None, "fence-before", existing), 20), ("ok", "fence-before"))
        fc.wait_node_dead(c, "n0")

        c.start("n0")   # crash recovery, then a primary on timeline 1 again
        self.assertEqual(fc.in_recovery(c, "n0"), False)
        status = p.wait_until(lambda s: fc_node(s, "n0")["up"] and fc_node(s, "n0")["role"] == "primary",
                              10, "n0 seen up claiming primary")
        self.assertEqual(status["primary"], new, status)
        self.assertTrue(fc_node(status, "n0")["fenced"], fc_node(status, "n0"))
        self.assertFalse(fc_node(status, "n0")["elected_primary"])

        results = {
            "auto-existing": bounded(insert(None, "fence-auto-existing", existing), 20),
            "auto-new": bounded(insert(p.auto_dsn(), "fence-auto-new"), 20),
            "rw-new": bounded(insert(p.rw_dsn(), "fence-rw-new"), 20),
        }
        time.sleep(2.0)  # ten probe rounds: the fence is sticky
        status = p.status()
        self.assertEqual(status["primary"], new, status)
        self.assertTrue(fc_node(status, "n0")["fenced"], fc_node(status, "n0"))
        self.assertIn('pglane_node_fenced{node="n0"} 1', p.http("/metrics")[1])
        self.assertIn(f'pglane_node_is_primary{{node="{new}"}} 1', p.http("/metrics")[1])
        for _ in range(5):
            self.assertEqual(bounded(insert(p.rw_dsn(), f"fence-rw-{_}"), 20)[0], "ok")
        written = {"fence-before", "fence-auto-existing", "fence-auto-new", "fence-rw-new"}
        on_n0 = {r[0] for r in c.sql("n0", "SELECT id FROM fo_t")}
        on_new = {r[0] for r in c.sql(new, "SELECT id FROM fo_t")}
        print(f"\nfailover-fence new primary {new}: writes {results}; on n0: {sorted(on_n0)}")
        self.assertEqual(on_n0 & (written | {f"fence-rw-{i}" for i in range(5)}), set(),
                         "a write through pglane landed on the fenced old primary")
        self.assertEqual({k: v[0] for k, v in results.items()},
                         {"auto-existing": "ok", "auto-new": "ok", "rw-new": "ok"}, results)
        self.assertTrue(written <= on_new, on_new)

    def test_2_rejoin_makes_it_a_standby(self):
        if not rejoin_available():
            self.skipTest("compose/local-cluster has no rejoin command yet")
        c, p, new = CLUSTER, self.pglane, self.new
        self.assertIsNotNone(p, "test_1 did not leave a failed-over cluster")
        result = subprocess.run([str(LAUNCHER), "rejoin", "n0", new], env=c.launcher_env(),
                                capture_output=True, text=True, timeout=240)
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        pgwire.poll(lambda: fc.in_recovery(c, "n0") is True, 30, "n0 in recovery after rejoin")
        status = p.wait_until(lambda s: fc_node(s, "n0")["up"] and fc_node(s, "n0")["role"] == "standby"
                              and not fc_node(s, "n0")["fenced"], 15, "n0 an unfenced standby")
        self.assertEqual(status["primary"], new)
        # It follows the new primary: a write through pglane shows up on n0.
        self.assertEqual(bounded(insert(p.rw_dsn(), "after-rejoin"), 20)[0], "ok")
        pgwire.poll(lambda: ["after-rejoin"] in c.sql("n0", "SELECT id FROM fo_t WHERE id = 'after-rejoin'"),
                    15, "n0 to replay a write made on the new primary")


def fc_node(status, name):
    return next(n for n in status["nodes"] if n["name"] == name)


if __name__ == "__main__":
    unittest.main()
