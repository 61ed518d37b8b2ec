"""SIGTERM drains pglane: no new clients, sessions outside a transaction are closed at once
with FATAL 57P01, a transaction in progress may finish (then its session is closed), and
one still open after shutdown_timeout_ms is closed (its transaction rolled back). The same
on a relayed port and on the auto port (pglane's own sessions). A statement still running
then is cut off too: the drain's bound holds whatever the servers do."""

import signal
import socket
import time
import unittest

import pgwire
from cluster import LocalCluster
from pglane import AutoPglane, Pglane

TIMEOUT_MS = 2500


class Drain(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = LocalCluster.from_env()
        cls.started_here = cls.cluster.ensure_up()
        pgwire.ensure_roles(cls.cluster)
        cls.cluster.sql("n0", f"DROP TABLE IF EXISTS drain_t; CREATE TABLE drain_t (port text, v text);"
                              f"GRANT ALL ON drain_t TO {pgwire.TRUST_ROLE}")

    @classmethod
    def tearDownClass(cls):
        import os
        if cls.started_here and not os.environ.get("PGLANE_TEST_KEEP_CLUSTER"):
            cls.cluster.down()

    def closed_with_57P01(self, sock, within):
        fields = pgwire.expect_error_then_close(sock, within)
        self.assertEqual((fields["S"], fields["C"]), ("FATAL", "57P01"), fields)

    def drain(self, p, port, label):
        idle = pgwire.trust_session(port)
        busy = pgwire.trust_session(port)
        stuck = pgwire.trust_session(port)
        running = pgwire.trust_session(port)
        try:
            self.assertEqual(pgwire.simple_query(idle, "SELECT 1"), b"I")
            self.assertEqual(pgwire.simple_query(busy, f"BEGIN; INSERT INTO drain_t VALUES ('{label}', 'first')"), b"T")
            self.assertEqual(pgwire.simple_query(stuck, f"BEGIN; INSERT INTO drain_t VALUES ('{label}', 'never')"), b"T")
            running.sendall(pgwire.query_message("SELECT pg_sleep(10)"))
            time.sleep(0.2)
            p.process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            # The idle session goes at once; new clients are turned away.
            self.closed_with_57P01(idle, 2)
            self.assertLess(time.monotonic() - started, 2)

            def refused():
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    return False
                except OSError:
                    return True

            pgwire.poll(refused, 3, "new connections refused while draining")
            # The busy transaction finishes, then its session is closed.
            self.assertEqual(pgwire.simple_query(busy, f"INSERT INTO drain_t VALUES ('{label}', 'second'); COMMIT"), b"I")
            self.closed_with_57P01(busy, 2)
            # The stuck one is closed when shutdown_timeout_ms has passed.
            self.closed_with_57P01(stuck, 10)
            self.assertGreaterEqual(time.monotonic() - started, TIMEOUT_MS / 1000 - 0.3)
            # So is the one waiting on its server, without waiting for the statement's end.
            self.closed_with_57P01(running, 2)
            self.assertLess(time.monotonic() - started, 8)
            self.assertEqual(p.process.wait(timeout=10), 0)
        finally:
            for s in (idle, busy, stuck, running):
                s.close()
        rows = self.cluster.sql("n0", f"SELECT v FROM drain_t WHERE port = '{label}' ORDER BY v")
        self.assertEqual(rows, [["first"], ["second"]])
        self.assertIn("mode=drain", p.log_text())

    def drain_started(self, p, port_of, label):
        p.start()
        try:
            p.wait_until(pgwire.all_routable, 15, "n0 primary and n1, n2 routable standbys")
            self.drain(p, port_of(p), label)
        finally:
            p.stop()

    def pooled_auto(self, **overrides):
        return AutoPglane(self.cluster, users={pgwire.TRUST_ROLE: ""}, log_level="info", overrides={
            "auth": {"method": "trust"}, "shutdown_timeout_ms": TIMEOUT_MS,
            "pool": {"mode": "transaction", "size": 4}, **overrides})

    def test_relayed_port_drains(self):
        self.drain_started(Pglane(self.cluster, {"shutdown_timeout_ms": TIMEOUT_MS}), lambda p: p.rw_port, "rw")

    def test_auto_port_drains(self):
        self.drain_started(self.pooled_auto(), lambda p: p.auto_port, "auto")

    def test_busy_polling_workers_serve_and_drain_alike(self):
        # busy_poll_us changes how a worker waits (poll, then sleep), not what it does: the
        # same drain, and the workers' threads end when their work does.
        self.drain_started(self.pooled_auto(busy_poll_us=50), lambda p: p.auto_port, "busy-poll")


if __name__ == "__main__":
    unittest.main()
