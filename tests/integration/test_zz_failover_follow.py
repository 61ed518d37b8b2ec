"""pglane follows a promotion (destructive: runs last alphabetically, rebuilds the cluster).

1. Stop the primary n0 and promote n1: within two probe intervals (asserted: 5 s at 200 ms)
   new rw sessions reach n1, the old idle rw session errors on its next query, /status
   shows primary n1 with a higher primary_term, /metrics pglane_node_is_primary n1 = 1.
2. Promote n1 while n0 still runs (two primaries): the higher timeline (n1) wins, n0 is
   fenced, and the rw session still on n0 is closed with pglane's "primary changed" error.

Nothing is written after the promotion: n1's synchronous_standby_names names n2, which still
follows n0, so a commit on n1 would wait forever."""

import os
import re
import time
import unittest

import psycopg2

import pgwire
from cluster import LocalCluster
from pglane import Pglane

CLUSTER = None

INTERVAL_MS = 200
FOLLOW_BOUND_SECONDS = 5.0


def setUpModule():
    global CLUSTER
    CLUSTER = LocalCluster.from_env()
    CLUSTER.ensure_up()


def tearDownModule():
    # Leave what the runner expects: a fresh cluster with n0 primary (or none if asked).
    CLUSTER.down()
    if not os.environ.get("PGLANE_TEST_FAILOVER_LEAVE_DOWN"):
        CLUSTER.up()


def pristine():
    roles = {node: row["role"] for node, row in CLUSTER.status().items()}
    return roles == {"n0": "primary", "n1": "standby", "n2": "standby"}


def rw_landing(pglane):
    """(cluster_name, pg_is_in_recovery) of a new rw session."""
    conn = psycopg2.connect(pglane.rw_dsn(), connect_timeout=2)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_setting('cluster_name'), pg_is_in_recovery()")
            return cur.fetchone()
    finally:
        conn.close()


class FailoverFollow(unittest.TestCase):

    def setUp(self):
        if not pristine():
            CLUSTER.down()
            CLUSTER.up()
        pgwire.poll(lambda: pgwire.cluster_streaming(CLUSTER), 30, "n1 and n2 streaming from n0")
        pgwire.ensure_roles(CLUSTER)
        self.pglane = Pglane(CLUSTER, {"health": {"interval_ms": INTERVAL_MS}}).start()
        self.addCleanup(self.pglane.stop)
        self.pglane.wait_until(pgwire.all_routable, 15, "n0 primary and n1, n2 routable standbys")
        self.term_before = self.pglane.status()["primary_term"]
        self.old = psycopg2.connect(self.pglane.rw_dsn(), connect_timeout=5)
        self.addCleanup(self.old.close)
        self.old.autocommit = True
        with self.old.cursor() as cur:
            cur.execute("SELECT current_setting('cluster_name')")
            self.assertEqual(cur.fetchone()[0], "n0")
        # The same, as raw bytes: libpq drops an ErrorResponse that arrives while the
        # connection is idle, so the reason is read here.
        self.old_raw = pgwire.trust_session(self.pglane.rw_port)
        self.addCleanup(self.old_raw.close)
        self.old_raw.sendall(pgwire.query_message("SELECT current_setting('cluster_name')"))
        self.assertEqual(pgwire.data_rows(self.old_raw), [["n0"]])

    def wait_for_rw_on_n1(self, since):
        """Polls new rw sessions until one lands on n1 out of recovery; returns the delay."""
        deadline = since + FOLLOW_BOUND_SECONDS
        last = None
        while time.monotonic() < deadline:
            try:
                last = rw_landing(self.pglane)
                if last == ("n1", False):
                    return time.monotonic() - since
            except psycopg2.OperationalError as e:
                last = str(e).strip()
            time.sleep(0.05)
        self.fail(f"new rw sessions did not reach n1 within {FOLLOW_BOUND_SECONDS}s; last: {last!r}; "
                  f"status: {self.pglane.status()}")

    def assert_follows_n1(self):
        status = self.pglane.status()
        self.assertEqual(status["primary"], "n1", status)
        self.assertGreater(status["primary_term"], self.term_before, status)
        n1 = next(n for n in status["nodes"] if n["name"] == "n1")
        self.assertTrue(n1["elected_primary"] and n1["role"] == "primary", n1)
        code, metrics = self.pglane.http("/metrics")
        self.assertEqual(code, 200)
        self.assertIn('pglane_node_is_primary{node="n1"} 1', metrics)
        self.assertIn(f"pglane_primary_term {status['primary_term']}", metrics)
        # Several new sessions, all on n1.
        for _ in range(3):
            self.assertEqual(rw_landing(self.pglane), ("n1", False))

    def test_stop_primary_and_promote_a_standby(self):
        CLUSTER.stop("n0", "fast")
        # Between the stop and the promotion there is no primary: rw clients are told so.
        self.pglane.wait_until(lambda s: not next(n for n in s["nodes"] if n["name"] == "n0")["up"],
                               5, "n0 down")
        fields = pgwire.startup_error(self.pglane.rw_port, pgwire.TRUST_ROLE)
        self.assertEqual(fields.get("C"), "08006", fields)
        self.assertIn("no primary", fields.get("M", ""))
        self.assertIn("n0 down", fields.get("M", ""))
        CLUSTER.promote("n1")
        promoted = time.monotonic()
        delay = self.wait_for_rw_on_n1(promoted)
        self.assertLess(delay, FOLLOW_BOUND_SECONDS)
        self.assert_follows_n1()
        # The old rw sessions were on n0: they were told why (the dying server's FATAL or
        # pglane's fence, whichever came first) and closed, never silently moved to n1.
        fields = pgwire.expect_error_then_close(self.old_raw)
        self.assertEqual(fields.get("C"), "57P01", fields)
        self.assertRegex(fields.get("M", ""), r"primary changed|terminating connection")
        with self.assertRaises(psycopg2.OperationalError):
            with self.old.cursor() as cur:
                cur.execute("SELECT current_setting('cluster_name')")
        self.assertNotEqual(self.old.closed, 0)

    def test_promote_while_old_primary_runs_fences_its_sessions(self):
        CLUSTER.promote("n1")
        promoted = time.monotonic()
        delay = self.wait_for_rw_on_n1(promoted)
        self.assertLess(delay, FOLLOW_BOUND_SECONDS)
        self.assert_follows_n1()
        status = self.pglane.status()
        n0 = next(n for n in status["nodes"] if n["name"] == "n0")
        self.assertTrue(n0["up"] and n0["role"] == "primary", n0)
        self.assertTrue(n0["fenced"], n0)
        self.assertFalse(n0["elected_primary"], n0)
        self.assertTrue(status["split_brain"], status)
        # n0 still runs, so only pglane can have closed the old sessions.
        fields = pgwire.expect_error_then_close(self.old_raw)
        self.assertEqual(fields.get("C"), "57P01", fields)
        self.assertIn("primary changed", fields.get("M", ""))
        self.assertIn("now: n1", fields.get("M", ""))
        with self.assertRaises(psycopg2.OperationalError):
            with self.old.cursor() as cur:
                cur.execute("SELECT 1")
        self.assertNotEqual(self.old.closed, 0)
        # Both old sessions (checked above), and any rw session a poll of wait_for_rw_on_n1
        # still had open on n0 at the moment the topology changed.
        log = self.pglane.log_text()
        fenced = len(re.findall(r"listener=rw\b.*node=n0\b.*reason=primary_changed", log))
        self.assertGreaterEqual(fenced, 2, log)
        self.assertEqual(self.pglane.status()["listeners"]["rw"]["sessions_fenced_total"], fenced, status)


if __name__ == "__main__":
    unittest.main()
