"""Reload (issue 8): SIGHUP, or RELOAD in the admin console, reads the config file again.
The users file's contents, client connection limits, log_level and the lag thresholds
apply at once, and sessions open across the reload are untouched. A file that does not
parse, or that changes anything a running pglane cannot (here limits.startup_timeout_ms),
is refused as a whole with a log line, and the running configuration stays."""

import subprocess
import unittest

import psycopg2

import pgwire
from cluster import LocalCluster
from pglane import AutoPglane, SUPERUSER_PASSWORD, write_users_file

NEWCOMER, NEWCOMER_PASSWORD = "reload_newcomer", "newcomer-secret"
LIMITED, LIMITED_PASSWORD = "reload_limited", "limited-secret"


class Reload(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = LocalCluster.from_env()
        cls.started_here = cls.cluster.ensure_up()
        for user, password in ((NEWCOMER, NEWCOMER_PASSWORD), (LIMITED, LIMITED_PASSWORD)):
            pgwire.ensure_password_role(cls.cluster, user, password)
        pgwire.wait_replayed(cls.cluster)

    @classmethod
    def tearDownClass(cls):
        import os
        if cls.started_here and not os.environ.get("PGLANE_TEST_KEEP_CLUSTER"):
            cls.cluster.down()

    def setUp(self):
        self.users = {"postgres": SUPERUSER_PASSWORD, LIMITED: LIMITED_PASSWORD}
        self.p = AutoPglane(self.cluster, users={LIMITED: LIMITED_PASSWORD}, log_level="info",
                            overrides={"admin": {"users": ["postgres"]}}).start()
        self.addCleanup(self.p.stop)
        self.p.wait_until(pgwire.all_routable, 15, "n0 primary and n1, n2 routable standbys")

    # -- helpers

    def connect(self, user, password):
        conn = psycopg2.connect(self.p.auto_dsn(user=user, password=password), connect_timeout=10)
        conn.autocommit = True
        self.addCleanup(conn.close)
        return conn

    def value(self, conn, sql):
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchone()[0]

    # -- the tests

    def test_a_user_added_to_the_users_file_logs_in_after_sighup_and_open_sessions_stay(self):
        before = self.connect("postgres", SUPERUSER_PASSWORD)
        with self.assertRaises(psycopg2.OperationalError):
            self.connect(NEWCOMER, NEWCOMER_PASSWORD)
        self.users[NEWCOMER] = NEWCOMER_PASSWORD
        write_users_file(self.p.dir, self.users)
        self.p.reload()
        self.assertEqual(self.value(self.connect(NEWCOMER, NEWCOMER_PASSWORD), "SELECT current_user"), NEWCOMER)
        self.assertEqual(self.value(before, "SELECT 1"), 1)
        # And removed again: the next login is refused, the open session still works.
        newcomer = self.connect(NEWCOMER, NEWCOMER_PASSWORD)
        del self.users[NEWCOMER]
        write_users_file(self.p.dir, self.users)
        self.p.reload()
        with self.assertRaises(psycopg2.OperationalError):
            self.connect(NEWCOMER, NEWCOMER_PASSWORD)
        self.assertEqual(self.value(newcomer, "SELECT current_user"), NEWCOMER)

    def test_limits_and_log_level_apply_and_a_refused_file_changes_nothing(self):
        first = self.connect(LIMITED, LIMITED_PASSWORD)
        self.connect(LIMITED, LIMITED_PASSWORD).close()   # no limit yet
        self.p.config["limits"] = {"max_client_connections_per_user": 1}
        self.p.config["log_level"] = "debug"
        self.p.write_config()
        self.p.reload()
        with self.assertRaises(psycopg2.OperationalError) as refused:
            self.connect(LIMITED, LIMITED_PASSWORD)
        self.assertIn("max_client_connections_per_user = 1", str(refused.exception))
        self.assertEqual(self.value(first, "SELECT 1"), 1)   # over the new limit already: stays
        pgwire.poll(lambda: " debug routed " in self.p.log_text(), 10, "debug lines after the reload")

        # A change only a restart applies: refused as a whole, the limit above stays.
        self.p.config["limits"] = {"max_client_connections_per_user": 0, "startup_timeout_ms": 5000}
        self.p.write_config()
        self.p.reload(expect="config_reload_refused")
        self.assertIn("limits.startup_timeout_ms", self.p.log_text().split("config_reload_refused")[-1])
        with self.assertRaises(psycopg2.OperationalError):
            self.connect(LIMITED, LIMITED_PASSWORD)
        # A file that does not parse: refused too.
        self.p.write_config("{ not json")
        self.p.reload(expect="config_reload_refused")
        self.assertIn("not valid JSON", self.p.log_text().split("config_reload_refused")[-1])
        # Back to a file it takes: the limit is lifted.
        del self.p.config["limits"]["startup_timeout_ms"]
        self.p.write_config()
        self.p.reload()
        self.assertEqual(self.value(self.connect(LIMITED, LIMITED_PASSWORD), "SELECT 1"), 1)

    def test_a_lower_lag_threshold_holds_a_lagging_standby_back(self):
        def n2():
            return self.p.node("n2")

        self.cluster.sql("n2", "SELECT pg_wal_replay_pause()")
        try:
            self.cluster.sql("n0", "DROP TABLE IF EXISTS reload_lag; CREATE TABLE reload_lag AS "
                                   "SELECT g, repeat('x', 100) AS pad FROM generate_series(1, 2000) g")
            pgwire.poll(lambda: n2()["lag_bytes"] > 128 * 1024, 15, "n2 behind by more than 128 KiB")
            self.assertFalse(n2()["held_back"])   # under the default 16 MiB
            self.p.config["health"]["max_lag_bytes"] = 64 * 1024
            self.p.write_config()
            self.p.reload()
            pgwire.poll(lambda: n2()["held_back"], 15, "n2 held back under the new threshold")
        finally:
            self.cluster.sql("n2", "SELECT pg_wal_replay_resume()")
        pgwire.poll(lambda: not n2()["held_back"], 15, "n2 back once it caught up")

    def test_reload_from_the_admin_console(self):
        def console(sql):
            return subprocess.run([pgwire.PSQL, "-X", "-w", "-At", "-h", "127.0.0.1", "-p", str(self.p.auto_port),
                                   "-U", "postgres", "-d", "pglane", "-c", sql],
                                  env=pgwire.pg_env(SUPERUSER_PASSWORD), capture_output=True, text=True, timeout=30)

        self.users[NEWCOMER] = NEWCOMER_PASSWORD
        write_users_file(self.p.dir, self.users)
        done = console("RELOAD")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(self.value(self.connect(NEWCOMER, NEWCOMER_PASSWORD), "SELECT current_user"), NEWCOMER)
        self.p.config["workers"] = 1
        self.p.write_config()
        refused = console("RELOAD")
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn('RELOAD refused: "workers" changed', refused.stderr)

    def test_the_node_list_reloads_and_sessions_stay(self):
        def names():
            return [n["name"] for n in self.p.status()["nodes"]]

        def read_nodes(conn, count=8):
            return {self.value(conn, "SELECT current_setting('cluster_name')") for _ in range(count)}

        def set_nodes(*nodes):
            self.p.config["nodes"] = [{"name": name, "host": "127.0.0.1", "port": self.cluster.port(server)}
                                      for name, server in nodes]
            self.p.write_config()
            self.p.reload()

        auto = self.connect("postgres", SUPERUSER_PASSWORD)
        ro_sessions = []
        for _ in range(2):   # round-robin: one of them is on n2
            conn = psycopg2.connect(self.p.dsn(self.p.ro_port), connect_timeout=10)
            conn.autocommit = True
            self.addCleanup(conn.close)
            ro_sessions.append(conn)
        self.assertEqual({self.value(c, "SELECT current_setting('cluster_name')") for c in ro_sessions}, {"n1", "n2"})

        # n2 leaves; the same server joins as "n2b", a node of its own (a new slot).
        set_nodes(("n0", "n0"), ("n1", "n1"), ("n2b", "n2"))
        self.p.wait_until(lambda s: [n["name"] for n in s["nodes"]] == ["n0", "n1", "n2b"] and
                          all(n["up"] for n in s["nodes"]), 15, "n0, n1 and n2b up, n2 gone")
        self.assertNotIn('node="n2"', self.p.http("/metrics")[1])
        def n2b_serves_reads():
            read_nodes(auto)
            return self.p.node("n2b")["units_routed_total"] > 0

        pgwire.poll(n2b_serves_reads, 15, "reads reaching n2b")
        for conn in ro_sessions:
            self.assertIn(self.value(conn, "SELECT current_setting('cluster_name')"), {"n1", "n2"})

        # n2b leaves too: every read goes to n1, and the ro session that was on n2 moves there.
        set_nodes(("n0", "n0"), ("n1", "n1"))
        self.p.wait_until(lambda s: [n["name"] for n in s["nodes"]] == ["n0", "n1"], 15, "n0 and n1 only")
        # The open sessions' idle connections to the removed node are closed, probes included.
        pgwire.poll(lambda: self.cluster.value("n2", "SELECT count(*) FROM pg_stat_activity WHERE backend_type = "
                                                     "'client backend' AND pid <> pg_backend_pid()") == "0",
                    15, "no pglane connection left on n2's server")
        self.assertEqual(read_nodes(auto), {"n1"})
        for conn in ro_sessions:
            self.assertEqual(self.value(conn, "SELECT current_setting('cluster_name')"), "n1")

        # n2 comes back (its old slot, starting over): reads reach it again.
        set_nodes(("n0", "n0"), ("n1", "n1"), ("n2", "n2"))
        self.p.wait_until(lambda s: pgwire.all_routable(s), 15, "n0 primary and n1, n2 routable standbys")
        pgwire.poll(lambda: "n2" in read_nodes(auto), 15, "reads reaching n2 again")
        self.assertEqual(auto.closed, 0)   # the same client connection all along
        log = self.p.log_text()
        self.assertIn("node_removed node=n2 ", log)
        self.assertIn("node_added node=n2b ", log)
        self.assertIn("node_added node=n2 ", log)


if __name__ == "__main__":
    unittest.main()
