"""The ro port follows the cluster's health: a standby whose replay is paused and lags past
health.max_lag_bytes is held back and returns after resume; a stopped standby is marked
down and comes back when started; with no standby available, ro sessions fall back to the
primary (ro_fallback_to_primary) or get ErrorResponse 08006 naming why. Every test leaves
the cluster healthy (replay resumed, nodes started and streaming)."""

import os
import unittest

import psycopg2

import pgwire
from cluster import LocalCluster
from pglane import Pglane

CLUSTER = None
STARTED_HERE = False

LAG_SETTINGS = {"health": {"max_lag_bytes": 65536, "max_lag_seconds": 3600}}


def setUpModule():
    global CLUSTER, STARTED_HERE
    CLUSTER = LocalCluster.from_env()
    STARTED_HERE = CLUSTER.ensure_up()
    pgwire.ensure_roles(CLUSTER)


def tearDownModule():
    if STARTED_HERE and not os.environ.get("PGLANE_TEST_KEEP_CLUSTER"):
        CLUSTER.down()


def node_state(status, name):
    return next(n for n in status["nodes"] if n["name"] == name)


def restore_cluster():
    """Resumes replay and starts every node that is not running, then waits until both
    standbys stream from n0 again."""
    for node in ("n1", "n2"):
        try:
            CLUSTER.resume_replay(node)
        except Exception:  # noqa: BLE001 - a stopped node has no replay to resume
            pass
    for node, row in CLUSTER.status().items():
        if not row["running"]:
            CLUSTER.start(node)
    pgwire.poll(lambda: pgwire.cluster_streaming(CLUSTER), 30, "n1 and n2 streaming from n0")


def write_wal(pglane, table, rows=20000):
    """Writes ~2.5 MB of WAL through the rw port."""
    conn = psycopg2.connect(pglane.rw_dsn(), connect_timeout=5)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
            cur.execute(f"CREATE TABLE {table} AS SELECT g, repeat('x', 100) AS pad "
                        f"FROM generate_series(1, {rows}) g")
    finally:
        conn.close()


class HealthRouting(unittest.TestCase):

    def setUp(self):
        restore_cluster()
        self.pglane = Pglane(CLUSTER, LAG_SETTINGS).start()
        self.addCleanup(self.pglane.stop)
        self.addCleanup(restore_cluster)
        self.pglane.wait_until(pgwire.all_routable, 15, "n0 primary and n1, n2 routable standbys")
        self.table = f"pglane_lag_{os.getpid()}"
        self.addCleanup(lambda: CLUSTER.sql("n0", f"DROP TABLE IF EXISTS {self.table}"))

    def test_lagging_standby_is_held_back_and_returns_after_resume(self):
        CLUSTER.pause_replay("n1")
        write_wal(self.pglane, self.table)
        status = self.pglane.wait_until(lambda s: node_state(s, "n1")["held_back"]
                                        and not node_state(s, "n2")["held_back"], 10, "n1 held back, n2 not")
        n1 = node_state(status, "n1")
        self.assertGreater(n1["lag_bytes"], 65536, n1)
        self.assertTrue(n1["up"], n1)
        self.assertFalse(node_state(status, "n2")["held_back"], status)
        self.assertEqual(set(self.pglane.ro_landings(6)), {"n2"})
        _, metrics = self.pglane.http("/metrics")
        self.assertIn('pglane_node_held_back{node="n1"} 1', metrics)

        CLUSTER.resume_replay("n1")
        status = self.pglane.wait_until(lambda s: not node_state(s, "n1")["held_back"]
                                        and not node_state(s, "n2")["held_back"], 10, "n1 back")
        self.assertLessEqual(node_state(status, "n1")["lag_bytes"], 65536)
        self.assertEqual(set(self.pglane.ro_landings(4)), {"n1", "n2"})

    def test_both_standbys_held_back_fall_back_to_the_primary(self):
        CLUSTER.pause_replay("n1")
        CLUSTER.pause_replay("n2")
        write_wal(self.pglane, self.table)
        self.pglane.wait_until(lambda s: node_state(s, "n1")["held_back"] and node_state(s, "n2")["held_back"],
                               10, "n1 and n2 held back")
        self.assertEqual(set(self.pglane.ro_landings(3)), {"n0"})

    def test_stopped_standby_is_marked_down_and_returns_when_started(self):
        CLUSTER.stop("n2")
        self.pglane.wait_until(lambda s: not node_state(s, "n2")["up"], 5, "n2 down")
        self.assertEqual(set(self.pglane.ro_landings(4)), {"n1"})
        CLUSTER.start("n2")
        self.pglane.wait_until(lambda s: node_state(s, "n2")["up"] and node_state(s, "n2")["role"] == "standby"
                               and not node_state(s, "n2")["held_back"], 10, "n2 up again")
        self.assertEqual(set(self.pglane.ro_landings(4)), {"n1", "n2"})


class NoStandbyAvailable(unittest.TestCase):
    """Both standbys stopped: one pglane falls back to the primary, one refuses with 08006.
    (The primary's synchronous commits would wait for a standby, so nothing is written.)"""

    @classmethod
    def setUpClass(cls):
        restore_cluster()
        cls.fallback = Pglane(CLUSTER, {"ro_fallback_to_primary": True}).start()
        cls.strict = Pglane(CLUSTER, {"ro_fallback_to_primary": False}).start()
        try:
            for pglane in (cls.fallback, cls.strict):
                pglane.wait_until(pgwire.all_routable, 15, "n0 primary and n1, n2 routable standbys")
            # Both ports serve standbys while they are up.
            assert set(cls.strict.ro_landings(2)) == {"n1", "n2"}
            CLUSTER.stop("n1")
            CLUSTER.stop("n2")
            for pglane in (cls.fallback, cls.strict):
                pglane.wait_until(lambda s: not node_state(s, "n1")["up"] and not node_state(s, "n2")["up"],
                                  5, "n1 and n2 down")
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.fallback.stop()
        cls.strict.stop()
        restore_cluster()

    def test_ro_falls_back_to_the_primary(self):
        self.assertEqual(set(self.fallback.ro_landings(3)), {"n0"})
        self.assertFalse(self.fallback.ro_value("SELECT pg_is_in_recovery()"))

    def test_without_fallback_ro_gets_08006_naming_the_reason(self):
        fields = pgwire.startup_error(self.strict.ro_port, pgwire.TRUST_ROLE)
        self.assertEqual(fields.get("C"), "08006", fields)
        message = fields.get("M", "")
        self.assertIn("no standby", message)
        self.assertIn("n1 down", message)
        self.assertIn("n2 down", message)
        with self.assertRaisesRegex(psycopg2.OperationalError, "n1 down"):
            psycopg2.connect(self.strict.ro_dsn(), connect_timeout=5)
        # The rw port of the same pglane is unaffected.
        conn = psycopg2.connect(self.strict.rw_dsn(), connect_timeout=5)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT current_setting('cluster_name')")
                self.assertEqual(cur.fetchone()[0], "n0")
        finally:
            conn.close()
        self.assertRegex(self.strict.log_text(), r"listener=ro\b.*reason=no_node")


if __name__ == "__main__":
    unittest.main()
