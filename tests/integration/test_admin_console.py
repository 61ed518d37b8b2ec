"""The admin console (issue 8): one of admin.users connecting to the virtual database
"pglane" gets pglane's own answers, as result sets psql prints: SHOW NODES, CLIENTS,
SERVERS, POOLS, STATS, and PAUSE / RESUME holding new transactions back. Everyone else is
refused. The pglane here has two workers (the console describes both) and transaction
pooling (SHOW SERVERS tells lent connections from idle ones)."""

import subprocess
import threading
import time
import unittest

import psycopg
import psycopg2

import pgwire
from cluster import LocalCluster
from pglane import SUPERUSER_PASSWORD, start_module_pglane, stop_module_pglane

ADMIN = "postgres"
OTHER, OTHER_PASSWORD = "console_other", "other-secret"
PAUSE_LIMIT_MS = 3000


def console(p, sql, user=ADMIN, password=SUPERUSER_PASSWORD):
    """psql -A against the console; the CompletedProcess."""
    return subprocess.run([pgwire.PSQL, "-X", "-w", "-A", "-F", "|", "-h", "127.0.0.1", "-p", str(p.auto_port),
                           "-U", user, "-d", "pglane", "-c", sql],
                          env=pgwire.pg_env(password), capture_output=True, text=True, timeout=60)


def table(p, sql):
    """The rows psql printed, each a {column: value} dict."""
    result = console(p, sql)
    if result.returncode != 0:
        raise AssertionError(f"{sql}: {result.stderr}")
    lines = result.stdout.splitlines()
    header, body = lines[0].split("|"), lines[1:-1]   # the last line is "(N rows)"
    return [dict(zip(header, line.split("|"))) for line in body]


class AdminConsole(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = LocalCluster.from_env()
        cls.started_here, cls.p = start_module_pglane(cls.cluster, with_roles=False, auto_users={
            OTHER: OTHER_PASSWORD}, overrides={
            "workers": 2, "admin": {"users": [ADMIN]}, "shutdown_timeout_ms": PAUSE_LIMIT_MS,
            "pool": {"mode": "transaction", "size": 4}})
        cls.cluster.sql("n0", "DROP TABLE IF EXISTS console_t; CREATE TABLE console_t (v int)")

    @classmethod
    def tearDownClass(cls):
        stop_module_pglane(cls.cluster, cls.started_here, cls.p)

    def client(self, autocommit=False):
        conn = psycopg2.connect(self.p.auto_dsn(), connect_timeout=10)
        conn.autocommit = autocommit
        self.addCleanup(conn.close)
        return conn

    def resume_afterwards(self):
        self.addCleanup(lambda: console(self.p, "RESUME"))

    def test_show_nodes_describes_the_cluster(self):
        nodes = {row["name"]: row for row in table(self.p, "SHOW NODES")}
        self.assertEqual(sorted(nodes), ["n0", "n1", "n2"])
        self.assertEqual((nodes["n0"]["role"], nodes["n0"]["elected_primary"], nodes["n0"]["up"]),
                         ("primary", "true", "true"))
        for standby in ("n1", "n2"):
            self.assertEqual((nodes[standby]["role"], nodes[standby]["elected_primary"], nodes[standby]["up"]),
                             ("standby", "false", "true"))
            self.assertEqual(nodes[standby]["port"], str(self.cluster.port(standby)))

    def test_only_admin_users_get_in(self):
        refused = console(self.p, "SHOW NODES", user=OTHER, password=OTHER_PASSWORD)
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn('user "console_other" may not use the admin console', refused.stderr)
        wrong_password = console(self.p, "SHOW NODES", password="not-the-password")
        self.assertNotEqual(wrong_password.returncode, 0)
        self.assertIn("password authentication failed", wrong_password.stderr)

    def test_unknown_commands_and_the_extended_protocol_get_errors_and_the_session_goes_on(self):
        unknown = console(self.p, "SHOW NOTHING")
        self.assertNotEqual(unknown.returncode, 0)
        self.assertIn("unknown command", unknown.stderr)
        self.assertIn("PAUSE", {row["command"] for row in table(self.p, "SHOW HELP")})
        # psycopg 3 sends every query with the extended protocol.
        with psycopg.connect(host="127.0.0.1", port=self.p.auto_port, user=ADMIN, password=SUPERUSER_PASSWORD,
                             dbname="pglane", connect_timeout=10) as conn:
            for _ in range(2):
                with self.assertRaises(psycopg.errors.FeatureNotSupported) as caught:
                    conn.execute("SHOW NODES")
                self.assertIn("only simple queries", str(caught.exception))
                conn.rollback()

    def test_clients_and_servers_show_who_holds_what(self):
        conn = self.client()
        cur = conn.cursor()
        cur.execute("INSERT INTO console_t VALUES (1)")   # opens a transaction on n0
        cur.execute("SELECT pg_backend_pid()")
        pid = str(cur.fetchone()[0])

        clients = table(self.p, "SHOW CLIENTS")
        mine = [c for c in clients if c["user"] == ADMIN and c["database"] == "postgres" and c["listener"] == "auto"]
        self.assertEqual([(c["state"], c["servers"]) for c in mine], [("idle in transaction", "n0")], clients)
        self.assertIn("admin console", {c["state"] for c in clients})
        self.assertEqual({c["worker"] for c in clients} <= {"0", "1"}, True)
        servers = {s["backend_pid"]: s for s in table(self.p, "SHOW SERVERS")}
        self.assertEqual((servers[pid]["node"], servers[pid]["state"], servers[pid]["session"]),
                         ("n0", "in use", mine[0]["session"]))

        conn.commit()   # the connection goes back to its pool
        servers = {s["backend_pid"]: s for s in table(self.p, "SHOW SERVERS")}
        self.assertEqual((servers[pid]["state"], servers[pid]["session"]), ("idle in pool", ""))
        clients = table(self.p, "SHOW CLIENTS")
        self.assertEqual([c["state"] for c in clients if c["session"] == mine[0]["session"]
                          and c["worker"] == mine[0]["worker"]], ["idle"])
        pools = {(r["node"], r["database"], r["user"]): r for r in table(self.p, "SHOW POOLS")}
        self.assertGreaterEqual(int(pools[("n0", "postgres", ADMIN)]["idle"]), 1)

    def test_stats_count_units_per_port(self):
        conn = self.client(autocommit=True)
        with conn.cursor() as cur:
            cur.execute("INSERT INTO console_t VALUES (2)")
        stats = {row["listener"]: row for row in table(self.p, "SHOW STATS")}
        self.assertEqual(sorted(stats), ["auto", "ro", "rw"])
        self.assertGreaterEqual(int(stats["auto"]["units_to_primary_total"]), 1)
        self.assertEqual(table(self.p, "SHOW VERSION")[0]["version"], self.p.status()["version"])

    def test_pause_waits_for_open_transactions_and_holds_new_ones_until_resume(self):
        self.resume_afterwards()
        busy = self.client()
        busy.cursor().execute("INSERT INTO console_t VALUES (3)")   # inside a transaction
        paused = {}
        pause = threading.Thread(target=lambda: paused.update(result=console(self.p, "PAUSE")))
        pause.start()
        time.sleep(0.5)
        self.assertTrue(pause.is_alive(), "PAUSE returned while a transaction was open")
        busy.commit()   # the transaction finishes: PAUSE is done
        pause.join(10)
        self.assertFalse(pause.is_alive())
        self.assertEqual(paused["result"].returncode, 0, paused["result"].stderr)

        # A new transaction now waits, and runs at RESUME.
        later = self.client(autocommit=True)
        answered = {}

        def run():
            with later.cursor() as cur:
                cur.execute("SELECT 41 + 1")
                answered["value"] = cur.fetchone()[0]

        waiting = threading.Thread(target=run)
        waiting.start()
        pgwire.poll(lambda: "paused" in {c["state"] for c in table(self.p, "SHOW CLIENTS")}, 10,
                    "a session shown as paused")
        self.assertNotIn("value", answered)
        self.assertEqual(console(self.p, "RESUME").returncode, 0)
        waiting.join(10)
        self.assertEqual(answered.get("value"), 42)

    def test_pause_gives_up_after_the_shutdown_timeout_but_stays_paused(self):
        self.resume_afterwards()
        stuck = self.client()
        stuck.cursor().execute("INSERT INTO console_t VALUES (4)")
        started = time.monotonic()
        result = console(self.p, "PAUSE")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("1 session(s) still inside a transaction", result.stderr)
        self.assertGreaterEqual(time.monotonic() - started, PAUSE_LIMIT_MS / 1000 - 0.3)
        # The open transaction itself goes on and ends normally.
        stuck.commit()
        self.assertEqual(console(self.p, "RESUME").returncode, 0)


if __name__ == "__main__":
    unittest.main()
