"""pglane authenticates clients itself (issue 3, "Authentication by pglane itself"):
users file with plaintext passwords, SCRAM verifiers and md5 hashes; auth.query; wrong
passwords refused with 28P01 before anything reaches a server; the server's own errors
(3D000) still reach the client; rw/ro ports under an auth section; --check-config."""

import asyncio
import json
import os
import subprocess
import tempfile
import unittest

import asyncpg
import psycopg2

import auto_common as ac
import pgwire
from auto_common import NODE_SQL, STANDBYS, nodes_of, value
from pglane import BINARY, AutoPglane, Pglane

CLUSTER = STARTED = None
ROLES = {"ath_plain": "plain-pw", "ath_scram": "scram-pw", "ath_md5": "md5-pw", "ath_unlisted": "unlisted-pw"}


def setUpModule():
    global CLUSTER, STARTED
    CLUSTER, STARTED = ac.cluster_up()
    statements = ["SET password_encryption = 'scram-sha-256'"]
    for role, password in ROLES.items():
        if role == "ath_md5":
            statements.append("SET password_encryption = 'md5'")
        statements.append(f"DROP ROLE IF EXISTS {role}")
        statements.append(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        statements.append(f"GRANT pg_read_all_settings TO {role}")
        statements.append("SET password_encryption = 'scram-sha-256'")
    statements += ["DROP TABLE IF EXISTS ath_t", "CREATE TABLE ath_t (id serial PRIMARY KEY, who text)",
                   "GRANT ALL ON ath_t TO PUBLIC", "GRANT ALL ON SEQUENCE ath_t_id_seq TO PUBLIC"]
    CLUSTER.sql("n0", "; ".join(statements))
    ac.settle(CLUSTER)


def tearDownModule():
    ac.cluster_down(CLUSTER, STARTED)


def stored(role):
    return CLUSTER.value("n0", f"SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'")


def server_connections(p):
    m = p.metrics()
    return sum(v for k, v in m.items() if k.startswith("pglane_sessions_routed_total"))


def asyncpg_error(port, user, password, database="postgres"):
    """The exception asyncpg raises when connecting (None when the login works)."""
    async def attempt():
        conn = await asyncpg.connect(host="127.0.0.1", port=port, user=user, password=password,
                                     database=database, timeout=5)
        await conn.close()
    try:
        asyncio.run(attempt())
    except Exception as e:  # noqa: BLE001 - returned for the assertion
        return e
    return None


class AuthCase(unittest.TestCase):
    def start(self, **kw):
        p = ac.start_auto(CLUSTER, **kw)
        self.addCleanup(p.stop)
        return p

    def assert_works_everywhere(self, p, user, password, port=None):
        """Reads reach both standbys and a write reaches the primary, as `user`."""
        conn = psycopg2.connect(p.dsn(port or p.auto_port, user=user, password=password), connect_timeout=5)
        conn.autocommit = True
        self.addCleanup(conn.close)
        cur = conn.cursor()
        self.assertEqual(value(cur, "SELECT current_user"), user)
        self.assertEqual(set(nodes_of(cur, 6)), STANDBYS, f"{user}: reads did not reach both standbys")
        self.assertEqual(value(cur, "INSERT INTO ath_t (who) VALUES (current_user) "
                                    "RETURNING current_setting('cluster_name')"), "n0")

    def assert_refused_28P01(self, p, user, password, port=None):
        before = server_connections(p)
        error = asyncpg_error(port or p.auto_port, user, password)
        self.assertIsNotNone(error, f"{user} logged in with a wrong password")
        self.assertEqual(getattr(error, "sqlstate", None), "28P01", repr(error))
        self.assertEqual(server_connections(p), before, "a refused login opened server connections")

    def test_scram_with_plaintext_users_file(self):
        p = self.start(users={"ath_plain": ROLES["ath_plain"]})
        self.assertEqual(pgwire.wrong_password_error(p.auto_port, "ath_plain")[0], "scram-sha-256")
        self.assert_works_everywhere(p, "ath_plain", ROLES["ath_plain"])

    def test_scram_with_verifier_in_users_file(self):
        verifier = stored("ath_scram")
        self.assertTrue(verifier.startswith("SCRAM-SHA-256$"), verifier)
        p = self.start(users={"ath_scram": verifier})
        # pglane logs in to every node with the client key recovered from the client's proof
        self.assert_works_everywhere(p, "ath_scram", ROLES["ath_scram"])
        self.assert_refused_28P01(p, "ath_scram", "not-the-password")

    def test_md5_method_with_md5_stored_role(self):
        md5_hash = stored("ath_md5")
        self.assertTrue(md5_hash.startswith("md5"), md5_hash)
        p = self.start(users={"ath_md5": md5_hash}, overrides={"auth": {"method": "md5"}})
        method, fields = pgwire.wrong_password_error(p.auto_port, "ath_md5")
        self.assertEqual((method, fields.get("C")), ("md5", "28P01"))
        self.assert_works_everywhere(p, "ath_md5", ROLES["ath_md5"])

    def test_trust_method(self):
        p = self.start(users={"ath_plain": ROLES["ath_plain"]}, overrides={"auth": {"method": "trust"}})
        conn = psycopg2.connect(p.dsn(p.auto_port, user="ath_plain", password="ignored"), connect_timeout=5)
        self.addCleanup(conn.close)
        self.assertEqual(value(conn.cursor(), "SELECT current_user"), "ath_plain")

    def test_wrong_password_refused_before_any_server(self):
        p = self.start(users={"ath_plain": ROLES["ath_plain"]})
        logs = sorted((CLUSTER.cluster_dir / "logs").glob("*")) if (CLUSTER.cluster_dir / "logs").is_dir() else []
        sizes = {f: f.stat().st_size for f in logs}
        self.assert_refused_28P01(p, "ath_plain", "wrong")
        self.assert_refused_28P01(p, "ath_unlisted", ROLES["ath_unlisted"])  # valid on the server, not in the file
        self.assert_refused_28P01(p, "ath_nobody", "x")
        method, fields = pgwire.wrong_password_error(p.auto_port, "ath_plain")
        self.assertEqual(fields.get("C"), "28P01", fields)
        for f in logs:
            with open(f, errors="replace") as fh:
                fh.seek(sizes[f])
                new = fh.read()
            self.assertNotIn("ath_plain", new, f"{f.name}: a server saw the refused login:\n{new[-2000:]}")
            self.assertNotIn("ath_unlisted", new, f"{f.name}: a server saw the refused login:\n{new[-2000:]}")

    def test_auth_query_without_users_file(self):
        p = self.start(use_users_file=False, overrides={"auth": {
            "query": "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            "query_user": "postgres", "query_password": "postgres"}})
        self.assert_works_everywhere(p, "ath_scram", ROLES["ath_scram"])
        self.assert_works_everywhere(p, "ath_plain", ROLES["ath_plain"])
        self.assert_refused_28P01(p, "ath_scram", "wrong")
        self.assert_refused_28P01(p, "ath_nobody", "x")

    def test_unknown_database_error_from_server(self):
        p = self.start()
        error = asyncpg_error(p.auto_port, "postgres", "postgres", database="ath_no_such_db")
        self.assertIsNotNone(error)
        self.assertEqual(getattr(error, "sqlstate", None), "3D000", repr(error))
        self.assertIn("ath_no_such_db", str(error))

    def test_rw_and_ro_ports_use_pglane_auth(self):
        p = self.start(users={"ath_plain": ROLES["ath_plain"]})
        for port, expected in ((p.rw_port, {"n0"}), (p.ro_port, STANDBYS)):
            conn = psycopg2.connect(p.dsn(port, user="ath_plain", password=ROLES["ath_plain"]), connect_timeout=5)
            self.addCleanup(conn.close)
            self.assertIn(value(conn.cursor(), NODE_SQL), expected)
            # valid on the servers, but not known to pglane: refused by pglane itself
            error = asyncpg_error(port, "ath_unlisted", ROLES["ath_unlisted"])
            self.assertEqual(getattr(error, "sqlstate", None), "28P01",
                             f"port {port} relayed authentication to the server: {error!r}")
            method, fields = pgwire.wrong_password_error(port, "ath_plain")
            self.assertEqual((method, fields.get("C")), ("scram-sha-256", "28P01"))
        # control: without an auth section the same role logs in through rw (relayed auth)
        plain = Pglane(CLUSTER).start()
        self.addCleanup(plain.stop)
        self.assertIsNone(asyncpg_error(plain.rw_port, "ath_unlisted", ROLES["ath_unlisted"]))

    def test_check_config_refuses_auto_without_auth(self):
        p = AutoPglane(CLUSTER)
        del p.config["auth"]
        path = os.path.join(tempfile.mkdtemp(prefix="pglane-auth-"), "pglane.json")
        with open(path, "w") as f:
            json.dump(p.config, f)
        result = subprocess.run([BINARY, "--check-config", "--config", path], capture_output=True, text=True,
                                timeout=30)
        self.assertNotEqual(result.returncode, 0, result.stdout)
        self.assertIn("auth", result.stdout + result.stderr)
        # and it is not started either
        result = subprocess.run([BINARY, "--config", path], capture_output=True, text=True, timeout=30)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("auth", result.stdout + result.stderr)


if __name__ == "__main__":
    unittest.main()
