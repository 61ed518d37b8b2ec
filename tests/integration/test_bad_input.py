"""Bad input from one client costs that client its connection and nothing else: garbage
before startup and malformed messages after startup get ErrorResponse 08P01 and a close
on each port, the server-side session goes away, while a psycopg2 session and a pgbench
run through the same port keep working. test_bad_input_battery.py runs the whole battery (also on
the auto port) under load."""

import os
import re
import subprocess
import tempfile
import time
import unittest

import psycopg2

import pgwire
from cluster import LocalCluster
from pglane import start_module_pglane, stop_module_pglane

CLUSTER = None
STARTED_HERE = False
PGLANE = None

# Bytes a client sends instead of a startup packet.
GARBAGE = {
    "http request": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",       # declared length ~1.2 GB
    "length under 8": b"\x00\x00\x00\x02\xde\xad\xbe\xef",
    "all ones": b"\xff" * 64,                                    # negative length
    "length 0": b"\x00\x00\x00\x00",
    "length 2^31-1": b"\x7f\xff\xff\xff\x00\x03\x00\x00",
}

# Messages sent after a successful startup.
BAD_MESSAGES = {
    "oversized length": b"Q\x7f\xff\xff\xff" + b"SELECT 1",
    "length 3": b"Q\x00\x00\x00\x03",
    "length 0": b"P\x00\x00\x00\x00",
    "unknown type '!'": b"!\x00\x00\x00\x04",
    "backend-only type 'T'": b"T\x00\x00\x00\x06\x00\x00",
    "negative length": b"P\xff\xff\xff\xfe\x00\x00",
    "garbage": b"\x00\xfe" + bytes(range(40)),
}


def setUpModule():
    global CLUSTER, STARTED_HERE, PGLANE
    CLUSTER = LocalCluster.from_env()
    STARTED_HERE, PGLANE = start_module_pglane(CLUSTER)


def tearDownModule():
    stop_module_pglane(CLUSTER, STARTED_HERE, PGLANE)


class BadInputOnPort:
    """Mixin: PORT_KIND is 'rw' or 'ro'."""
    PORT_KIND = None

    @classmethod
    def setUpClass(cls):
        cls.port = PGLANE.rw_port if cls.PORT_KIND == "rw" else PGLANE.ro_port
        cls.script = tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False)
        cls.script.write("SELECT 1;\n")
        cls.script.close()

    @classmethod
    def tearDownClass(cls):
        os.unlink(cls.script.name)

    def setUp(self):
        # A well-behaved neighbour on the same port, checked before and after every bad input.
        self.neighbour = psycopg2.connect(PGLANE.dsn(self.port), connect_timeout=5)
        self.neighbour.autocommit = True
        self.neighbour_queries = 0
        self.assert_neighbour_works()

    def tearDown(self):
        self.assert_neighbour_works()
        self.neighbour.close()

    def assert_neighbour_works(self):
        with self.neighbour.cursor() as cur:
            cur.execute("SELECT %s::int + 1", (self.neighbour_queries,))
            self.assertEqual(cur.fetchone()[0], self.neighbour_queries + 1)
        self.neighbour_queries += 1

    def assert_protocol_violation(self, fields, what):
        self.assertEqual(fields.get("C"), "08P01", f"{what}: {fields}")
        self.assertEqual(fields.get("S"), "FATAL", f"{what}: {fields}")
        self.assertTrue(fields.get("M"), f"{what}: no message in {fields}")

    def start_pgbench(self):
        return subprocess.Popen(pgwire.pgbench_args(self.port, "-n", "-f", self.script.name, "-T", "3", "-c", "2"),
                                env=pgwire.pg_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def finish_pgbench(self, proc):
        try:
            stdout, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        output = stdout + stderr
        self.assertEqual(proc.returncode, 0, output)
        self.assertRegex(output, r"number of failed transactions: 0\b", output)
        processed = re.search(r"number of transactions actually processed: (\d+)", output)
        self.assertIsNotNone(processed, output)
        self.assertGreater(int(processed.group(1)), 0, output)

    def test_garbage_before_startup_gets_08P01_and_a_close(self):
        bench = self.start_pgbench()
        time.sleep(0.3)
        for name, garbage in GARBAGE.items():
            with self.subTest(garbage=name):
                with pgwire.connect(self.port) as sock:
                    sock.sendall(garbage)
                    fields = pgwire.expect_error_then_close(sock)
                self.assert_protocol_violation(fields, name)
                self.assert_neighbour_works()
        self.assertIsNone(bench.poll(), "pgbench ended before the bad input was sent")
        self.finish_pgbench(bench)

    def test_malformed_message_after_startup_gets_08P01_and_ends_the_server_session(self):
        bench = self.start_pgbench()
        time.sleep(0.3)
        for name, payload in BAD_MESSAGES.items():
            with self.subTest(message=name):
                app = f"pglane_bad_{os.getpid()}_{time.monotonic_ns()}"
                with pgwire.trust_session(self.port, application_name=app) as sock:
                    # The session works before the bad message.
                    sock.sendall(pgwire.query_message("SELECT current_setting('cluster_name')"))
                    node = pgwire.data_rows(sock)[0][0]
                    self.assertEqual(CLUSTER.value(
                        node, f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}'"), "1")
                    sock.sendall(payload)
                    fields = pgwire.expect_error_then_close(sock)
                self.assert_protocol_violation(fields, name)
                # The server-side session is gone too (pglane closed its backend connection).
                pgwire.poll(lambda: CLUSTER.value(
                    node, f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}'") == "0",
                    5, f"the backend of {app} on {node} to end")
                self.assert_neighbour_works()
        self.assertIsNone(bench.poll(), "pgbench ended before the bad input was sent")
        self.finish_pgbench(bench)

    def test_bad_input_is_counted_and_logged(self):
        before = PGLANE.status()["listeners"][self.PORT_KIND]["client_protocol_errors_total"]
        with pgwire.connect(self.port) as sock:
            sock.sendall(GARBAGE["http request"])
            self.assert_protocol_violation(pgwire.expect_error_then_close(sock), "http request")
        with pgwire.trust_session(self.port) as sock:
            sock.sendall(BAD_MESSAGES["oversized length"])
            self.assert_protocol_violation(pgwire.expect_error_then_close(sock), "oversized length")
        after = PGLANE.status()["listeners"][self.PORT_KIND]["client_protocol_errors_total"]
        self.assertEqual(after - before, 2)
        log = PGLANE.log_text()
        self.assertRegex(log, rf"listener={self.PORT_KIND}\b.*reason=malformed_startup")
        self.assertRegex(log, rf"listener={self.PORT_KIND}\b.*reason=malformed_message")


class BadInputRw(BadInputOnPort, unittest.TestCase):
    PORT_KIND = "rw"


class BadInputRo(BadInputOnPort, unittest.TestCase):
    PORT_KIND = "ro"


if __name__ == "__main__":
    unittest.main()
