"""The rw and ro ports with real clients: rw reaches the primary, ro rotates across both
standbys, writes through rw show up on both standbys, pgbench in all three query modes
through each port, relayed authentication (trust, md5, SCRAM, wrong password), cancel
(psycopg2 and psql Ctrl-C) on each port, and SSLRequest declined with 'N'."""

import os
import re
import signal
import struct
import subprocess
import time
import unittest

import psycopg2
import psycopg2.errors

import pgwire
from cluster import LocalCluster
from pglane import start_module_pglane, stop_module_pglane

CLUSTER = None
STARTED_HERE = False
PGLANE = None


def setUpModule():
    global CLUSTER, STARTED_HERE, PGLANE
    CLUSTER = LocalCluster.from_env()
    STARTED_HERE, PGLANE = start_module_pglane(CLUSTER)


def tearDownModule():
    stop_module_pglane(CLUSTER, STARTED_HERE, PGLANE)


def one_value(dsn, sql):
    conn = psycopg2.connect(dsn, connect_timeout=5)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchone()[0]
    finally:
        conn.close()


def unique(prefix):
    return f"{prefix}_{os.getpid()}_{time.monotonic_ns()}"


class RoutingByPort(unittest.TestCase):

    def test_psql_through_rw_reaches_the_primary_and_ro_a_standby(self):
        for port, expected in ((PGLANE.rw_port, "f"), (PGLANE.ro_port, "t")):
            result = pgwire.psql(port, "SELECT pg_is_in_recovery()")
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertEqual(result.stdout.strip(), expected, f"port {port}")
        self.assertEqual(one_value(PGLANE.rw_dsn(), "SELECT current_setting('cluster_name')"), "n0")

    def test_ro_sessions_rotate_across_both_standbys(self):
        seen = []
        conns = [psycopg2.connect(PGLANE.ro_dsn(), connect_timeout=5) for _ in range(6)]
        try:
            for conn in conns:
                with conn.cursor() as cur:
                    cur.execute("SELECT current_setting('cluster_name'), pg_is_in_recovery()")
                    name, in_recovery = cur.fetchone()
                    self.assertTrue(in_recovery, name)
                    seen.append(name)
        finally:
            for conn in conns:
                conn.close()
        self.assertEqual(set(seen), {"n1", "n2"}, seen)
        # Round-robin: 6 consecutive sessions split evenly (no other client uses this pglane).
        self.assertEqual(seen.count("n1"), 3, seen)

    def test_write_through_rw_is_visible_on_both_standbys(self):
        table, token = unique("pglane_ports_w"), unique("v")
        conn = psycopg2.connect(PGLANE.rw_dsn(), connect_timeout=5)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"CREATE TABLE {table} (v text)")
                cur.execute(f"INSERT INTO {table} VALUES (%s)", (token,))
        finally:
            conn.close()
        try:
            found_via_ro = set()

            def visible_on_both():
                conn = psycopg2.connect(PGLANE.ro_dsn(), connect_timeout=5)
                try:
                    with conn.cursor() as cur:
                        cur.execute(f"SELECT current_setting('cluster_name'), "
                                    f"(SELECT count(*) FROM {table} WHERE v = %s)", (token,))
                        name, count = cur.fetchone()
                        if count == 1:
                            found_via_ro.add(name)
                finally:
                    conn.close()
                return found_via_ro == {"n1", "n2"}

            pgwire.poll(visible_on_both, 10, "the row through ro sessions on n1 and n2")
            for node in ("n1", "n2"):
                self.assertEqual(CLUSTER.value(node, f"SELECT v FROM {table}"), token)
        finally:
            CLUSTER.sql("n0", f"DROP TABLE IF EXISTS {table}")


class Pgbench(unittest.TestCase):
    """pgbench -M simple/extended/prepared: TPC-B through rw, select-only through ro."""

    @classmethod
    def setUpClass(cls):
        result = subprocess.run(pgwire.pgbench_args(PGLANE.rw_port, "-i", "-s", "1", "-q"),
                                env=pgwire.pg_env(), capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise AssertionError(f"pgbench -i through rw failed: {result.stderr}")
        pgwire.wait_replayed(CLUSTER)

    def run_pgbench(self, port, mode, *extra):
        result = subprocess.run(pgwire.pgbench_args(port, "-n", "-M", mode, "-T", "2", "-c", "2", *extra),
                                env=pgwire.pg_env(), capture_output=True, text=True, timeout=60)
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 0, output)
        self.assertRegex(output, r"number of failed transactions: 0\b", output)
        tps = re.search(r"tps = ([0-9.]+)", output)
        self.assertIsNotNone(tps, output)
        self.assertGreater(float(tps.group(1)), 0, output)
        processed = re.search(r"number of transactions actually processed: (\d+)", output)
        self.assertGreater(int(processed.group(1)), 0, output)
        return output


for _mode in ("simple", "extended", "prepared"):
    def _rw(self, mode=_mode):
        self.run_pgbench(PGLANE.rw_port, mode)

    def _ro(self, mode=_mode):
        self.run_pgbench(PGLANE.ro_port, mode, "-S")

    setattr(Pgbench, f"test_tpcb_through_rw_{_mode}", _rw)
    setattr(Pgbench, f"test_select_only_through_ro_{_mode}", _ro)


class Authentication(unittest.TestCase):
    """pglane relays whatever exchange the server asks for."""

    def login(self, port, user, password=None):
        dsn = f"host=127.0.0.1 port={port} user={user} dbname=postgres"
        if password is not None:
            dsn += f" password={password}"
        return one_value(dsn, "SELECT current_user || ' ' || pg_is_in_recovery()::text")

    def test_scram_md5_and_trust_roles_log_in_through_both_ports(self):
        stored = dict(CLUSTER.sql("n0", "SELECT rolname, left(rolpassword, 13) FROM pg_authid "
                                         "WHERE rolname IN ('pglane_scram', 'pglane_md5')"))
        self.assertEqual(stored["pglane_scram"], "SCRAM-SHA-256")
        self.assertTrue(stored["pglane_md5"].startswith("md5"), stored)
        for port, standby in ((PGLANE.rw_port, "false"), (PGLANE.ro_port, "true")):
            with self.subTest(port=port):
                self.assertEqual(self.login(port, "pglane_scram", "scram-secret"), f"pglane_scram {standby}")
                self.assertEqual(self.login(port, "pglane_md5", "md5-secret"), f"pglane_md5 {standby}")
                self.assertEqual(self.login(port, pgwire.TRUST_ROLE), f"{pgwire.TRUST_ROLE} {standby}")

    def test_wrong_password_gets_28P01_from_the_server(self):
        for port in (PGLANE.rw_port, PGLANE.ro_port):
            for user, method in (("pglane_md5", "md5"), ("pglane_scram", "scram-sha-256")):
                with self.subTest(port=port, user=user):
                    used, fields = pgwire.wrong_password_error(port, user)
                    self.assertEqual(used, method)
                    self.assertEqual(fields.get("C"), "28P01", fields)
                    self.assertIn("password authentication failed", fields.get("M", ""))
                    # A real client sees the server's message too.
                    with self.assertRaisesRegex(psycopg2.OperationalError, "password authentication failed"):
                        self.login(port, user, "wrong")


class Cancel(unittest.TestCase):

    def test_psycopg2_cancel_through_both_ports(self):
        for port in (PGLANE.rw_port, PGLANE.ro_port):
            with self.subTest(port=port):
                conn = psycopg2.connect(PGLANE.dsn(port), connect_timeout=5)
                try:
                    error, took = pgwire.sleep_cancelled(conn)
                    self.assertIsInstance(error, psycopg2.errors.QueryCanceled)
                    self.assertEqual(error.pgcode, "57014")
                    self.assertLess(took, 5)
                    # The session survives the cancel.
                    conn.rollback()
                    with conn.cursor() as cur:
                        cur.execute("SELECT 1")
                        self.assertEqual(cur.fetchone()[0], 1)
                finally:
                    conn.close()

    def test_psql_ctrl_c_cancels_through_both_ports(self):
        for port in (PGLANE.rw_port, PGLANE.ro_port):
            with self.subTest(port=port):
                proc = subprocess.Popen([pgwire.PSQL, "-X", "-w", "-h", "127.0.0.1", "-p", str(port),
                                         "-U", "postgres", "-d", "postgres", "-c", "select pg_sleep(30)"],
                                        env=pgwire.pg_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
                try:
                    time.sleep(1.0)
                    started = time.monotonic()
                    proc.send_signal(signal.SIGINT)
                    _, stderr = proc.communicate(timeout=5)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.communicate()
                self.assertLess(time.monotonic() - started, 5)
                self.assertIn("canceling statement due to user request", stderr)
                self.assertNotEqual(proc.returncode, 0)


class SslRequest(unittest.TestCase):

    def test_ssl_request_is_declined_with_N_then_startup_proceeds(self):
        for port in (PGLANE.rw_port, PGLANE.ro_port):
            with self.subTest(port=port), pgwire.connect(port) as sock:
                sock.sendall(struct.pack("!II", 8, 80877103))
                self.assertEqual(pgwire.recv_exact(sock, 1), b"N")
                sock.sendall(pgwire.startup_packet(pgwire.TRUST_ROLE))
                tag, body = pgwire.read_message(sock)
                self.assertEqual((tag, body[:4]), (b"R", b"\0\0\0\0"))

    def test_sslmode_prefer_works_and_require_fails_clearly(self):
        for port in (PGLANE.rw_port, PGLANE.ro_port):
            with self.subTest(port=port):
                self.assertEqual(one_value(PGLANE.dsn(port, sslmode="prefer"),
                                           "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"), False)
                with self.assertRaisesRegex(psycopg2.OperationalError, "server does not support SSL"):
                    psycopg2.connect(PGLANE.dsn(port, sslmode="require"), connect_timeout=5)


if __name__ == "__main__":
    unittest.main()
