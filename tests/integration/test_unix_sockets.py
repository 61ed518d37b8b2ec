"""Unix-domain sockets on both sides of pglane.

Nodes: a node whose host is a directory is reached at "<dir>/.s.PGSQL.<port>", as libpq reaches
it; pglane's sessions, pooled connections and cancel requests go there, without TLS even when
tls.server_sslmode says require (PostgreSQL offers none on a Unix-domain socket, and libpq
ignores sslmode there). Clients: listen.unix_socket_dir gives every port a socket of its own in
that directory; psql, psycopg2 and pgbench connect with host=<dir>. On such a socket an
SSLRequest is answered 'N' and tls.mode require does not apply (like pg_hba.conf's hostssl).
The files take listen.unix_socket_mode, replace a stale file, and go when pglane stops."""

import json
import os
import shutil
import socket
import stat
import struct
import subprocess
import tempfile
import time
import unittest

import psycopg2
import psycopg2.errors

import pgwire
from cluster import LocalCluster
from pglane import BINARY, SUPERUSER_PASSWORD, AutoPglane
from test_tls import make_ca, make_leaf

NODES = ("n0", "n1", "n2")


def unix_dsn(directory, port, **extra):
    parts = [f"host={directory} port={port} user=postgres dbname=postgres password={SUPERUSER_PASSWORD}"]
    parts += [f"{k}={v}" for k, v in extra.items()]
    return " ".join(parts)


def psql_unix(directory, port, sql):
    return subprocess.run([pgwire.PSQL, "-X", "-w", "-At", "-v", "ON_ERROR_STOP=1", "-h", directory, "-p", str(port),
                           "-U", "postgres", "-d", "postgres", "-c", sql],
                          env=pgwire.pg_env(SUPERUSER_PASSWORD), capture_output=True, text=True, timeout=30)


def first_bytes_after_ssl_request(path):
    """Sends SSLRequest on the Unix-domain socket at `path`; the one-byte answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(struct.pack("!ii", 8, 80877103))
        return s.recv(1)


CLUSTER = None
STARTED_HERE = False


def setUpModule():
    global CLUSTER, STARTED_HERE
    CLUSTER = LocalCluster.from_env()
    STARTED_HERE = CLUSTER.ensure_up()
    pgwire.ensure_roles(CLUSTER)
    # pgbench's tables, whether or not a module before this one made them.
    if CLUSTER.value("n0", "SELECT to_regclass('pgbench_branches') IS NULL") == "t":
        subprocess.run([pgwire.PGBENCH, "-h", "127.0.0.1", "-p", str(CLUSTER.port("n0")), "-U", "postgres",
                        "-i", "-s", "1", "-q", "postgres"], env=pgwire.pg_env(SUPERUSER_PASSWORD),
                       capture_output=True, check=True, timeout=120)
    for node in ("n1", "n2"):
        CLUSTER.wait_for(lambda n=node: CLUSTER.value(n, "SELECT to_regclass('pgbench_branches') IS NOT NULL") == "t",
                         f"pgbench's tables on {node}", timeout=30)


def tearDownModule():
    if STARTED_HERE and not os.environ.get("PGLANE_TEST_KEEP_CLUSTER"):
        CLUSTER.down()


class UnixSockets(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.cluster = CLUSTER
        cls.dir = tempfile.mkdtemp(prefix="pglane-unix-")
        cls.sockets = os.path.join(cls.dir, "sockets")
        os.mkdir(cls.sockets)
        make_ca(cls.dir, "ca")
        cert, key = make_leaf(cls.dir, "pglane", "ca")
        overrides = {
            "nodes": [{"name": n, "host": str(cls.cluster.socket_dir(n)), "port": cls.cluster.port(n)} for n in NODES],
            "listen": {"unix_socket_dir": cls.sockets, "unix_socket_mode": "0770"},
            # Plaintext TCP clients are refused; the nodes, which have no TLS, must be reached
            # over their sockets without it.
            "tls": {"cert_file": cert, "key_file": key, "mode": "require", "server_sslmode": "require"},
            "pool": {"mode": "transaction", "size": 4},
        }
        cls.pglane = AutoPglane(cls.cluster, overrides, log_level="info").start()
        try:
            cls.pglane.wait_until(pgwire.all_routable, 15, "n0 primary and n1, n2 routable standbys")
        except Exception:
            cls.pglane.stop()
            raise
        cls.ports = {"rw": cls.pglane.rw_port, "ro": cls.pglane.ro_port, "auto": cls.pglane.auto_port}

    @classmethod
    def tearDownClass(cls):
        cls.pglane.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def path(self, kind):
        return os.path.join(self.sockets, f".s.PGSQL.{self.ports[kind]}")

    def test_every_port_has_a_socket_with_the_configured_mode(self):
        for kind in self.ports:
            mode = os.stat(self.path(kind)).st_mode
            self.assertTrue(stat.S_ISSOCK(mode), kind)
            self.assertEqual(stat.S_IMODE(mode), 0o770, kind)

    def test_psql_through_each_socket_reaches_the_right_node_over_the_nodes_sockets(self):
        # inet_server_addr() is NULL on a Unix-domain connection: pglane reached the node
        # through its socket. The rw and ro ports relay; the auto port routes by statement.
        sql = "SELECT pg_is_in_recovery(), inet_server_addr() IS NULL"
        for kind, in_recovery in (("rw", "f"), ("ro", "t")):
            result = psql_unix(self.sockets, self.ports[kind], sql)
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertEqual(result.stdout.strip(), f"{in_recovery}|t", kind)
        result = psql_unix(self.sockets, self.ports["auto"], "SELECT count(*) FROM pg_class")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertGreater(int(result.stdout), 0)
        result = psql_unix(self.sockets, self.ports["auto"], "BEGIN; SELECT pg_is_in_recovery(), inet_server_addr() "
                           "IS NULL; COMMIT")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("f|t", result.stdout)

    def test_a_write_through_the_auto_socket_reaches_the_standbys(self):
        table = f"unix_{os.getpid()}_{time.monotonic_ns()}"
        conn = psycopg2.connect(unix_dsn(self.sockets, self.ports["auto"]), connect_timeout=5)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"CREATE TABLE {table} (v int)")
                cur.execute(f"INSERT INTO {table} VALUES (7)")
        finally:
            conn.close()
        try:
            for node in ("n1", "n2"):
                self.cluster.wait_for(lambda n=node: self.cluster.value(n, f"SELECT sum(v) FROM {table}") == "7",
                                      f"the row on {node}", timeout=15)
            conn = psycopg2.connect(unix_dsn(self.sockets, self.ports["ro"]), connect_timeout=5)
            try:
                with conn.cursor() as cur:
                    cur.execute(f"SELECT v FROM {table}")
                    self.assertEqual(cur.fetchall(), [(7,)])
            finally:
                conn.close()
        finally:
            self.cluster.sql("n0", f"DROP TABLE {table}")

    def test_pgbench_extended_through_the_auto_and_ro_sockets(self):
        for kind in ("auto", "ro"):
            result = subprocess.run([pgwire.PGBENCH, "-h", self.sockets, "-p", str(self.ports[kind]), "-U", "postgres",
                                     "-n", "-S", "-M", "extended", "-c", "4", "-t", "200", "postgres"],
                                    env=pgwire.pg_env(SUPERUSER_PASSWORD), capture_output=True, text=True, timeout=120)
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertIn("number of transactions actually processed: 800/800", result.stdout, kind)
            self.assertIn("number of failed transactions: 0", result.stdout, kind)

    def test_cancel_over_sockets_on_both_sides(self):
        # The CancelRequest reaches pglane on its socket; pglane forwards it over the node's.
        for kind in ("rw", "ro"):
            with self.subTest(kind=kind):
                conn = psycopg2.connect(unix_dsn(self.sockets, self.ports[kind]), connect_timeout=5)
                try:
                    error, took = pgwire.sleep_cancelled(conn)
                    self.assertIsInstance(error, psycopg2.errors.QueryCanceled)
                    self.assertLess(took, 5)
                finally:
                    conn.close()
        self.assertIn("cancel_request_forwarded", self.pglane.log_text())

    def test_ssl_request_is_declined_on_a_socket_and_tls_require_applies_to_tcp_only(self):
        self.assertEqual(first_bytes_after_ssl_request(self.path("auto")), b"N")
        over_tcp = socket.create_connection(("127.0.0.1", self.ports["auto"]), timeout=5)
        with over_tcp:
            over_tcp.sendall(struct.pack("!ii", 8, 80877103))
            self.assertEqual(over_tcp.recv(1), b"S")
        plaintext = dict(pgwire.pg_env(SUPERUSER_PASSWORD), PGSSLMODE="disable")
        refused = subprocess.run([pgwire.PSQL, "-X", "-w", "-At", "-h", "127.0.0.1", "-p", str(self.ports["auto"]),
                                  "-U", "postgres", "-d", "postgres", "-c", "SELECT 1"],
                                 env=plaintext, capture_output=True, text=True, timeout=30)
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("must use TLS", refused.stderr)
        self.assertEqual(psql_unix(self.sockets, self.ports["auto"], "SELECT 1").stdout.strip(), "1")

    def test_client_log_lines_name_a_socket_client_local(self):
        result = psql_unix(self.sockets, self.ports["rw"], "SELECT 1")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertRegex(self.pglane.log_text(), r'client="?\[local\]')


class SocketFiles(unittest.TestCase):
    """Lifecycle of the socket files, with a pglane of its own each."""

    def setUp(self):
        self.sockets = tempfile.mkdtemp(prefix="pglane-unix-files-")
        self.addCleanup(shutil.rmtree, self.sockets, True)

    def pglane(self):
        return AutoPglane(CLUSTER, {"listen": {"unix_socket_dir": self.sockets}})

    def test_a_stale_file_is_replaced_and_the_files_go_at_exit(self):
        p = self.pglane()
        stale = os.path.join(self.sockets, f".s.PGSQL.{p.auto_port}")
        left = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        left.bind(stale)   # a socket file nothing accepts on, as a killed process leaves it
        left.close()
        p.start()
        try:
            self.assertEqual(stat.S_IMODE(os.stat(stale).st_mode), 0o777)
            p.wait_until(pgwire.all_routable, 15, "routable nodes")
            result = psql_unix(self.sockets, p.auto_port, "SELECT 1")
            self.assertEqual(result.returncode, 0, result.stderr)
        finally:
            self.assertEqual(p.stop(), 0)
        self.assertEqual(os.listdir(self.sockets), [])

    def test_a_socket_something_accepts_on_is_not_taken(self):
        p = self.pglane()
        taken = os.path.join(self.sockets, f".s.PGSQL.{p.ro_port}")
        holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        holder.bind(taken)
        holder.listen(1)
        try:
            with open(p.config_path, "w") as f:
                json.dump(p.config, f)
            result = subprocess.run([BINARY, "--config", p.config_path], capture_output=True, text=True, timeout=30)
            self.assertNotEqual(result.returncode, 0)
            self.assertIn(f"cannot listen on {taken}: something accepts on it already", result.stdout + result.stderr)
            self.assertTrue(os.path.exists(taken))
        finally:
            holder.close()


if __name__ == "__main__":
    unittest.main()
