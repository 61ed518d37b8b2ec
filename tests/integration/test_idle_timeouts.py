"""limits.idle_session_timeout_ms and limits.idle_in_transaction_timeout_ms on the sessions
pglane authenticates: an idle client is closed with PostgreSQL's own SQLSTATEs (57P05,
25P03), its transaction rolled back and, under transaction pooling, the server connection
it held closed rather than lent on. Busy clients are untouched."""

import time
import unittest

import psycopg2

import pgwire
from cluster import LocalCluster
from pglane import start_module_pglane, stop_module_pglane


class IdleTimeouts(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = LocalCluster.from_env()
        # trust toward clients: the raw-socket tests log in as the trust role
        cls.started_here, cls.p = start_module_pglane(cls.cluster, auto_users={pgwire.TRUST_ROLE: ""}, overrides={
            "auth": {"method": "trust"}, "workers": 1, "pool": {"mode": "transaction", "size": 4},
            "limits": {"idle_session_timeout_ms": 1500, "idle_in_transaction_timeout_ms": 700}})

    @classmethod
    def tearDownClass(cls):
        stop_module_pglane(cls.cluster, cls.started_here, cls.p)

    def connect(self):
        conn = psycopg2.connect(self.p.auto_dsn(), connect_timeout=5)
        conn.autocommit = True
        return conn

    def closing_error(self, sock, within):
        """The FATAL ErrorResponse an idle session gets, then the close."""
        fields = pgwire.expect_error_then_close(sock, within)
        self.assertEqual(fields["S"], "FATAL")
        return fields

    def test_idle_session_is_closed_with_57P05_and_a_busy_one_is_not(self):
        busy = self.connect()
        idle = pgwire.trust_session(self.p.auto_port)
        started = time.monotonic()
        try:
            pgwire.simple_query(idle, "SELECT 1")
            # busy: a statement every 300 ms for longer than the session timeout
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                with busy.cursor() as cur:
                    cur.execute("SELECT 1")
                time.sleep(0.3)
            fields = self.closing_error(idle, 5)
            self.assertEqual(fields["C"], "57P05")
            self.assertIn("idle-session timeout", fields["M"])
            self.assertGreaterEqual(time.monotonic() - started, 1.4)
            with busy.cursor() as cur:
                cur.execute("SELECT 2")
                self.assertEqual(cur.fetchone()[0], 2)
        finally:
            busy.close()
            idle.close()
        self.assertGreaterEqual(self.p.metrics().get('pglane_idle_timeouts_total{listener="auto"}', 0), 1)
        self.assertTrue(pgwire.poll(lambda: "reason=idle_session_timeout" in self.p.log_text(), 5,
                                    "the timeout in pglane's log"))

    def test_idle_transaction_is_rolled_back_and_its_connection_not_lent_on(self):
        self.cluster.sql("n0", "DROP TABLE IF EXISTS idle_t; CREATE TABLE idle_t (v text)")
        self.cluster.sql("n0", f"GRANT ALL ON idle_t TO {pgwire.TRUST_ROLE}")
        sock = pgwire.trust_session(self.p.auto_port)
        try:
            status = pgwire.simple_query(sock, "BEGIN; INSERT INTO idle_t VALUES ('never committed')")
            self.assertEqual(status, b"T")
            fields = self.closing_error(sock, 5)
            self.assertEqual(fields["C"], "25P03")
            self.assertIn("idle-in-transaction timeout", fields["M"])
        finally:
            sock.close()
        self.assertEqual(self.cluster.value("n0", "SELECT count(*) FROM idle_t"), "0")
        pgwire.poll(lambda: self.cluster.value(
            "n0", "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction' "
                  "AND backend_type = 'client backend'") == "0", 10, "no session left idle in transaction")
        after = self.connect()
        try:
            with after.cursor() as cur:
                cur.execute("SELECT count(*) FROM idle_t")
                self.assertEqual(cur.fetchone()[0], 0)
        finally:
            after.close()


if __name__ == "__main__":
    unittest.main()
