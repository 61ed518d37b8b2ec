"""TLS (issue 8), both sides of pglane, with a CA made here by the openssl command.

Clients: with tls.cert_file and tls.key_file, an SSLRequest is answered 'S' and a TLS
handshake follows, on every port; psql with sslmode=verify-full against the test CA works,
and fails against another CA. tls.mode require refuses a plaintext StartupMessage with
FATAL 28000. Renewed certificate files are read on SIGHUP without touching open sessions.

Servers: the cluster's three nodes get ssl=on for this module (ALTER SYSTEM, reset at the
end). With tls.server_sslmode verify-full and tls.server_ca_file, pglane's own connections
(sessions, pooled connections and the health probes) are encrypted and verified, which
pg_stat_ssl on the servers shows; with a CA that did not sign the servers, no node is
reachable and /status says why."""

import os
import shutil
import signal
import struct
import subprocess
import tempfile
import unittest

import psycopg

import pgwire
from cluster import LocalCluster
from pglane import AutoPglane, Pglane, SUPERUSER_PASSWORD

NODES = ("n0", "n1", "n2")
SSL_IN_USE = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(directory, name):
    """A self-signed CA: (cert path, key path)."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN=pglane test {name}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=directory)
    return os.path.join(directory, f"{name}.crt"), os.path.join(directory, f"{name}.key")


def make_leaf(directory, name, ca):
    """A server certificate for 127.0.0.1 and localhost signed by `ca`: (cert, key)."""
    with open(os.path.join(directory, f"{name}.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", "/CN=localhost", cwd=directory)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=directory)
    return os.path.join(directory, f"{name}.crt"), os.path.join(directory, f"{name}.key")


class Certificates:
    """Two CAs; pglane's certificate from each, and one for the PostgreSQL nodes."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="pglane-tls-")
        os.chmod(self.dir, 0o755)   # the servers (user postgres) read the node certificate
        self.ca, _ = make_ca(self.dir, "ca")
        self.other_ca, _ = make_ca(self.dir, "other_ca")
        self.pglane_cert, self.pglane_key = make_leaf(self.dir, "pglane", "ca")
        self.pglane_other_cert, self.pglane_other_key = make_leaf(self.dir, "pglane_other", "other_ca")
        self.node_cert, self.node_key = make_leaf(self.dir, "node", "ca")

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def enable_server_ssl(cluster, certs):
    """ssl=on on every node with the test CA's node certificate, copied into each data dir
    (PostgreSQL wants its key owned by the server's user and not readable by others)."""
    for node in NODES:
        data = cluster.data_dir(node)
        owner = os.stat(data)
        for source, target in ((certs.node_cert, "pglane-test-node.crt"), (certs.node_key, "pglane-test-node.key")):
            path = os.path.join(data, target)
            shutil.copyfile(source, path)
            os.chmod(path, 0o600)
            if os.geteuid() == 0:
                os.chown(path, owner.st_uid, owner.st_gid)
        cluster.sql(node, f"ALTER SYSTEM SET ssl_cert_file = '{os.path.join(data, 'pglane-test-node.crt')}'")
        cluster.sql(node, f"ALTER SYSTEM SET ssl_key_file = '{os.path.join(data, 'pglane-test-node.key')}'")
        cluster.sql(node, "ALTER SYSTEM SET ssl = on")
        cluster.sql(node, "SELECT pg_reload_conf()")
    for node in NODES:
        cluster.wait_for(lambda n=node: cluster.value(n, "SHOW ssl") == "on", f"ssl on at {node}", timeout=15)


def disable_server_ssl(cluster):
    for node in NODES:
        for setting in ("ssl", "ssl_cert_file", "ssl_key_file"):
            cluster.sql(node, f"ALTER SYSTEM RESET {setting}")
        cluster.sql(node, "SELECT pg_reload_conf()")
    for node in NODES:
        cluster.wait_for(lambda n=node: cluster.value(n, "SHOW ssl") == "off", f"ssl off at {node}", timeout=15)


def psql_tls(port, sslmode, rootcert, sql=r"\conninfo", channel_binding="prefer"):
    """psql through `port` with sslmode and a root certificate; the CompletedProcess."""
    env = pgwire.pg_env(SUPERUSER_PASSWORD)
    env.update(PGSSLMODE=sslmode, PGSSLROOTCERT=rootcert, PGCHANNELBINDING=channel_binding)
    return subprocess.run([pgwire.PSQL, "-X", "-w", "-At", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                           "-d", "postgres", "-c", sql], env=env, capture_output=True, text=True, timeout=30)


def one_value(dsn, sql):
    with psycopg.connect(dsn, connect_timeout=10, autocommit=True) as conn:
        return conn.execute(sql).fetchone()[0]


class TlsModule(unittest.TestCase):
    """Shared fixture: certificates, and ssl=on on the cluster's nodes."""

    @classmethod
    def setUpClass(cls):
        cls.cluster = LocalCluster.from_env()
        cls.started_here = cls.cluster.ensure_up()
        pgwire.ensure_roles(cls.cluster)
        cls.certs = Certificates()
        enable_server_ssl(cls.cluster, cls.certs)

    @classmethod
    def tearDownClass(cls):
        disable_server_ssl(cls.cluster)
        cls.certs.remove()
        if cls.started_here and not os.environ.get("PGLANE_TEST_KEEP_CLUSTER"):
            cls.cluster.down()

    def tls_config(self, **client):
        section = {"cert_file": self.certs.pglane_cert, "key_file": self.certs.pglane_key,
                   "server_sslmode": "verify-full", "server_ca_file": self.certs.ca}
        section.update(client)
        return {"tls": section}

    def started(self, p):
        p.start()
        self.addCleanup(p.stop)
        p.wait_until(pgwire.all_routable, 20, "n0 primary and n1, n2 routable standbys")
        return p

    def assert_verified_tls_through(self, port, channel_binding="prefer"):
        result = psql_tls(port, "verify-full", self.certs.ca, channel_binding=channel_binding)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("SSL connection (protocol: TLSv1.3", result.stdout)
        wrong = psql_tls(port, "verify-full", self.certs.other_ca, channel_binding=channel_binding)
        self.assertNotEqual(wrong.returncode, 0)
        self.assertIn("certificate verify failed", wrong.stderr)

    def assert_probes_encrypted(self):
        for node in NODES:
            count = self.cluster.value(node, "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) "
                                             "WHERE application_name = 'pglane-health' AND ssl")
            self.assertGreaterEqual(int(count), 1, f"no encrypted health probe connection at {node}")


class RelayedPortsOverTls(TlsModule):
    """rw and ro without an "auth" section: the server authenticates the client through
    pglane. SCRAM's channel binding cannot pass a proxy (the client binds to pglane's
    certificate, the server checks its own), so pglane offers clients SCRAM-SHA-256 alone."""

    def test_psql_verify_full_works_through_rw_and_ro_and_fails_against_another_ca(self):
        p = self.started(Pglane(self.cluster, self.tls_config(server_sslmode="disable")))
        for port in (p.rw_port, p.ro_port):
            with self.subTest(port=port):
                self.assert_verified_tls_through(port)
                self.assertEqual(psql_tls(port, "require", self.certs.ca, SSL_IN_USE).stdout.strip(), "f")

    def test_server_connections_and_probes_are_verified_tls(self):
        p = self.started(Pglane(self.cluster, self.tls_config()))
        for port in (p.rw_port, p.ro_port):
            with self.subTest(port=port):
                # A plaintext client is not offered SCRAM-SHA-256-PLUS, which libpq refuses.
                self.assertIs(one_value(p.dsn(port, sslmode="disable"), SSL_IN_USE), True)
                self.assert_verified_tls_through(port, channel_binding="disable")
                # A TLS client that would bind if it could is refused by the server itself
                # (it sees a downgrade); pglane's own authentication has no such limit.
                refused = psql_tls(port, "require", self.certs.ca)
                self.assertNotEqual(refused.returncode, 0)
                self.assertIn("channel binding", refused.stderr)
        self.assert_probes_encrypted()

    def test_a_plaintext_client_is_still_served_in_allow_mode(self):
        p = self.started(Pglane(self.cluster, self.tls_config()))
        with psycopg.connect(p.rw_dsn(sslmode="disable"), connect_timeout=10) as conn:
            self.assertFalse(conn.pgconn.ssl_in_use)
            self.assertEqual(conn.execute("SELECT 1").fetchone()[0], 1)
        with psycopg.connect(p.rw_dsn(sslmode="require", channel_binding="disable"), connect_timeout=10) as conn:
            self.assertTrue(conn.pgconn.ssl_in_use)
            self.assertEqual(conn.execute("SELECT 1").fetchone()[0], 1)


class AuthenticatedPortsOverTls(TlsModule):
    """Every port with pglane's own authentication and transaction pooling."""

    def pooled(self, **client):
        overrides = self.tls_config(**client)
        overrides["pool"] = {"mode": "transaction", "size": 4}
        overrides["admin"] = {"users": ["postgres"]}
        return self.started(AutoPglane(self.cluster, overrides, log_level="info"))

    def test_psql_verify_full_works_through_every_port(self):
        p = self.pooled()
        for port in (p.rw_port, p.ro_port, p.auto_port):
            with self.subTest(port=port):
                self.assert_verified_tls_through(port)
        # One handshake completed per port; the clients that distrusted pglane's certificate
        # broke theirs off.
        metrics = p.metrics()
        self.assertEqual(sum(v for k, v in metrics.items() if k.startswith("pglane_client_tls_connections_total")), 3)
        self.assertEqual(sum(v for k, v in metrics.items()
                             if k.startswith("pglane_client_tls_handshake_errors_total")), 3)

    def test_channel_binding_require_works_through_every_port(self):
        # pglane authenticates these clients itself, and over TLS offers SCRAM-SHA-256-PLUS
        # bound to its own certificate: a client that insists on binding is served.
        p = self.pooled()
        for port in (p.rw_port, p.ro_port, p.auto_port):
            with self.subTest(port=port):
                result = psql_tls(port, "verify-full", self.certs.ca, "SELECT 1", channel_binding="require")
                self.assertEqual((result.returncode, result.stdout.strip()), (0, "1"), result.stderr)

    def test_pooled_server_connections_and_probes_are_verified_tls(self):
        p = self.pooled()
        for port in (p.rw_port, p.ro_port, p.auto_port):
            with self.subTest(port=port):
                self.assertIs(one_value(p.dsn(port, sslmode="require"), SSL_IN_USE), True)
        # pgbench's extended protocol over TLS on both legs, with writes on the primary.
        self.cluster.sql("n0", "DROP TABLE IF EXISTS tls_t; CREATE TABLE tls_t (v int)")
        with psycopg.connect(p.auto_dsn(sslmode="require"), connect_timeout=10, autocommit=True) as conn:
            for i in range(200):
                conn.execute("INSERT INTO tls_t VALUES (%s)", (i,))
            self.assertEqual(conn.execute("SELECT count(*), sum(v) FROM tls_t").fetchone(), (200, 19900))
        self.assert_probes_encrypted()

    def test_the_admin_console_shows_which_connections_use_tls(self):
        p = self.pooled()
        encrypted = psycopg.connect(p.auto_dsn(sslmode="require"), connect_timeout=10)
        plain = psycopg.connect(p.auto_dsn(sslmode="disable"), connect_timeout=10)
        self.addCleanup(encrypted.close)
        self.addCleanup(plain.close)
        with encrypted.transaction():   # holds a pooled server connection while the console looks
            encrypted.execute("SELECT 1")

            env = pgwire.pg_env(SUPERUSER_PASSWORD)
            env.update(PGSSLMODE="require")
            console = subprocess.run([pgwire.PSQL, "-X", "-w", "-A", "-F", "|", "-h", "127.0.0.1", "-p",
                                      str(p.auto_port), "-U", "postgres", "-d", "pglane", "-c", "SHOW CLIENTS",
                                      "-c", "SHOW SERVERS"], env=env, capture_output=True, text=True, timeout=30)
            self.assertEqual(console.returncode, 0, console.stderr)
            tables, current = [], []
            for line in console.stdout.splitlines():
                if line.startswith("("):   # "(N rows)" ends a table
                    tables.append([dict(zip(current[0].split("|"), r.split("|"))) for r in current[1:]])
                    current = []
                else:
                    current.append(line)
            clients, servers = tables
        self.assertEqual(sorted(c["tls"] for c in clients), ["", "TLSv1.3", "TLSv1.3"])   # plain, encrypted, psql
        in_use = [s for s in servers if s["state"] == "in use"]
        self.assertTrue(in_use, servers)
        self.assertEqual({s["tls"] for s in servers}, {"TLSv1.3"})   # verify-full to every node

    def test_require_mode_refuses_plaintext_with_28000_and_serves_tls(self):
        p = self.pooled(mode="require")
        for port in (p.rw_port, p.auto_port):
            with self.subTest(port=port):
                with pgwire.connect(port) as sock:
                    sock.sendall(pgwire.startup_packet("postgres"))
                    fields = pgwire.expect_error_then_close(sock)
                self.assertEqual(fields.get("C"), "28000")
                self.assertIn("must use TLS", fields.get("M", ""))
                self.assertIs(one_value(p.dsn(port, sslmode="require"), SSL_IN_USE), True)
        self.assertGreaterEqual(sum(v for k, v in p.metrics().items()
                                    if k.startswith("pglane_client_tls_refused_total")), 2)

    def test_a_renewed_certificate_is_served_after_sighup_and_open_sessions_stay(self):
        # pglane reads the files it was configured with again: renew them in place.
        cert, key = os.path.join(self.certs.dir, "renewed.crt"), os.path.join(self.certs.dir, "renewed.key")
        shutil.copyfile(self.certs.pglane_cert, cert)
        shutil.copyfile(self.certs.pglane_key, key)
        p = self.pooled(cert_file=cert, key_file=key)
        before = psycopg.connect(p.auto_dsn(sslmode="verify-full", sslrootcert=self.certs.ca), connect_timeout=10,
                                 autocommit=True)
        self.addCleanup(before.close)
        shutil.copyfile(self.certs.pglane_other_cert, cert)
        shutil.copyfile(self.certs.pglane_other_key, key)
        reloads = p.log_text().count("config_reloaded")
        p.process.send_signal(signal.SIGHUP)
        pgwire.poll(lambda: p.log_text().count("config_reloaded") > reloads, 10, "config_reloaded in the log")
        self.assertEqual(psql_tls(p.auto_port, "verify-full", self.certs.other_ca).returncode, 0)
        self.assertIn("certificate verify failed", psql_tls(p.auto_port, "verify-full", self.certs.ca).stderr)
        self.assertEqual(before.execute("SELECT 7").fetchone()[0], 7)
        # A key that does not match is refused, and the renewed pair stays in service.
        shutil.copyfile(self.certs.pglane_key, key)
        refusals = p.log_text().count("config_reload_refused")
        p.process.send_signal(signal.SIGHUP)
        pgwire.poll(lambda: p.log_text().count("config_reload_refused") > refusals, 10, "the refusal in the log")
        self.assertIn('config_reload_refused', p.log_text())
        self.assertIn('\\"tls.key_file\\"', p.log_text().split("config_reload_refused")[-1])
        self.assertEqual(psql_tls(p.auto_port, "verify-full", self.certs.other_ca).returncode, 0)


class BulkOverTls(TlsModule):
    """Results and COPY data far larger than a TLS record (16 KiB) or pglane's buffers, both
    ways, over TLS on both legs: partial writes, records split across reads, decrypted bytes
    waiting in OpenSSL while the socket is empty."""

    def exchange_bulk(self, dsn):
        with psycopg.connect(dsn, connect_timeout=10, autocommit=True) as conn:
            self.assertTrue(conn.pgconn.ssl_in_use)
            rows = conn.execute("SELECT i, repeat(md5(i::text), 1000) FROM generate_series(1, 400) i").fetchall()
            self.assertEqual(len(rows), 400)
            self.assertEqual(sum(len(r[1]) for r in rows), 400 * 32000)
            self.assertEqual(rows[-1][1][:32], conn.execute("SELECT md5('400')").fetchone()[0])
            conn.execute("DROP TABLE IF EXISTS tls_bulk")
            conn.execute("CREATE TABLE tls_bulk (i int, t text)")
            with conn.cursor().copy("COPY tls_bulk FROM STDIN") as copy:
                for i in range(2000):
                    copy.write_row((i, "y" * 5000))
            self.assertEqual(conn.execute("SELECT count(*), sum(i), sum(length(t)) FROM tls_bulk").fetchone(),
                             (2000, 1999000, 10_000_000))

    def test_bulk_results_and_copy_through_the_relayed_rw_port(self):
        p = self.started(Pglane(self.cluster, self.tls_config()))
        self.exchange_bulk(p.rw_dsn(sslmode="require", channel_binding="disable"))

    def test_bulk_results_and_copy_through_the_pooled_auto_port(self):
        overrides = self.tls_config()
        overrides["pool"] = {"mode": "transaction", "size": 4}
        p = self.started(AutoPglane(self.cluster, overrides, log_level="info"))
        self.exchange_bulk(p.auto_dsn(sslmode="require"))


class BadTlsInput(TlsModule):

    def test_gssenc_request_is_declined_and_an_ssl_request_then_accepted(self):
        p = self.started(Pglane(self.cluster, self.tls_config()))
        with pgwire.connect(p.rw_port) as sock:
            sock.sendall(struct.pack("!II", 8, 80877104))
            self.assertEqual(pgwire.recv_exact(sock, 1), b"N")
            sock.sendall(struct.pack("!II", 8, 80877103))
            self.assertEqual(pgwire.recv_exact(sock, 1), b"S")

    def test_plaintext_bytes_after_an_ssl_request_are_refused(self):
        p = self.started(Pglane(self.cluster, self.tls_config()))
        with pgwire.connect(p.rw_port) as sock:
            # The startup packet rides with the SSLRequest, before pglane's answer.
            sock.sendall(struct.pack("!II", 8, 80877103) + pgwire.startup_packet("postgres"))
            tag, body = pgwire.read_message(sock)
            self.assertEqual(tag, b"E")
            fields = pgwire.error_fields(body)
            self.assertEqual(fields.get("C"), "08P01")
            self.assertIn("unencrypted data after SSL request", fields.get("M", ""))

    def test_a_failed_handshake_costs_that_client_only(self):
        p = self.started(Pglane(self.cluster, self.tls_config()))
        with psycopg.connect(p.rw_dsn(sslmode="require", channel_binding="disable"), connect_timeout=10,
                             autocommit=True) as other:
            with pgwire.connect(p.rw_port) as sock:
                sock.sendall(struct.pack("!II", 8, 80877103))
                self.assertEqual(pgwire.recv_exact(sock, 1), b"S")
                sock.sendall(b"this is not a TLS ClientHello\r\n" * 4)
                self.assertTrue(pgwire.is_closed(sock))
            self.assertEqual(other.execute("SELECT 3").fetchone()[0], 3)
        pgwire.poll(lambda: sum(v for k, v in p.metrics().items()
                                if k.startswith("pglane_client_tls_handshake_errors_total")) >= 1,
                    5, "the handshake error counted")
        self.assertIn("tls_handshake_failed", p.log_text())

    def test_servers_signed_by_another_ca_are_unreachable_and_status_says_why(self):
        overrides = self.tls_config()
        overrides["tls"]["server_ca_file"] = self.certs.other_ca
        p = Pglane(self.cluster, overrides).start()
        self.addCleanup(p.stop)
        status = p.wait_until(lambda s: all(not n["up"] for n in s["nodes"]), 20, "every node down")
        self.assertTrue(any("certificate verify failed" in (n.get("last_error") or "") for n in status["nodes"]),
                        status["nodes"])
        with self.assertRaises(psycopg.OperationalError):
            psycopg.connect(p.rw_dsn(sslmode="disable"), connect_timeout=10)


if __name__ == "__main__":
    unittest.main()
