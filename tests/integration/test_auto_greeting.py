"""The auto port without pooling greets a login with the greeting the primary gave the same
startup packet within the last minute (proxy/greeting_cache.hpp). Such a session connects to
the primary only when it first writes: a session that only reads holds no backend there. The
first login of a startup packet, and a login with any parameter changed, is greeted by the
primary as before. The greeting a session gets from the cache is the one the primary gave, and
a cancel reaches the statement of a session greeted so. Whichever node greets, in_hot_standby
says what the port takes: off on the auto and rw ports, on on the ro port."""

import time
import unittest

import psycopg2
import psycopg2.errors

import auto_common as ac
import pgwire
from auto_common import STANDBYS, nodes_of

CLUSTER = STARTED = PGLANE = None
REPORTED = ("server_version", "server_encoding", "client_encoding", "application_name", "is_superuser",
            "session_authorization", "DateStyle", "TimeZone", "integer_datetimes", "standard_conforming_strings",
            "in_hot_standby")


def setUpModule():
    global CLUSTER, STARTED, PGLANE
    CLUSTER, STARTED = ac.cluster_up()
    CLUSTER.sql("n0", "CREATE TABLE IF NOT EXISTS greeting_probe (session text)")
    ac.settle(CLUSTER)
    # One worker: each worker keeps its own greetings, and a test's second login must meet the
    # first one's.
    PGLANE = ac.start_auto(CLUSTER, overrides={"workers": 1})


def tearDownModule():
    if PGLANE:
        PGLANE.stop()
    ac.cluster_down(CLUSTER, STARTED)


def backends(node, application_name):
    return int(CLUSTER.value(node, "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                                   f"'{application_name}'"))


def reported(conn):
    return {name: conn.get_parameter_status(name) for name in REPORTED}


def unique_name(what):
    return f"greet-{what}-{time.time_ns()}"


class GreetingFromCache(unittest.TestCase):
    def first_login(self, application_name, **kw):
        """A login no earlier one had the startup packet of: greeted by the primary, which
        holds a backend for it at once. Returns what the primary reported, after the session
        ended."""
        conn = ac.connect(PGLANE, application_name=application_name, **kw)
        try:
            self.assertEqual(backends("n0", application_name), 1, "a first login left no backend on the primary")
            greeting = reported(conn)
        finally:
            conn.close()
        pgwire.poll(lambda: backends("n0", application_name) == 0, 10, "the first session's backend gone")
        return greeting

    def test_a_later_login_reads_without_a_primary_backend_and_writes_when_it_must(self):
        app = unique_name("reads")
        greeting = self.first_login(app)
        self.assertEqual(greeting["in_hot_standby"], "off", greeting)
        self.assertEqual(greeting["application_name"], app, greeting)

        conn = ac.connect(PGLANE, application_name=app)
        self.addCleanup(conn.close)
        self.assertEqual(reported(conn), greeting, "the cached greeting is not the primary's")
        self.assertEqual(backends("n0", app), 0, "a login greeted from the cache opened a primary backend")
        cur = conn.cursor()
        seen = nodes_of(cur, 6)
        self.assertLessEqual(set(seen), STANDBYS, f"reads reached the primary: {seen}")
        self.assertEqual(backends("n0", app), 0, "reads opened a primary backend")
        self.assertGreaterEqual(backends("n1", app) + backends("n2", app), 1)

        cur.execute("INSERT INTO greeting_probe VALUES (%s)", (app,))
        self.assertEqual(backends("n0", app), 1, "the write did not open the session's primary backend")
        self.assertEqual(int(CLUSTER.value("n0", f"SELECT count(*) FROM greeting_probe WHERE session = '{app}'")), 1)
        # The session goes on: its backend on the primary serves the next write too.
        cur.execute("INSERT INTO greeting_probe VALUES (%s)", (app,))
        self.assertEqual(backends("n0", app), 1)
        self.assertEqual(int(CLUSTER.value("n0", f"SELECT count(*) FROM greeting_probe WHERE session = '{app}'")), 2)

    def test_a_login_with_other_parameters_is_greeted_by_the_primary(self):
        app = unique_name("options")
        self.first_login(app)
        # Same user, database and application_name, one setting more: the primary greets it.
        conn = ac.connect(PGLANE, application_name=app, options="'-c work_mem=7MB'")
        self.addCleanup(conn.close)
        self.assertEqual(backends("n0", app), 1, "a login with other options was greeted from the cache")
        cur = conn.cursor()
        self.assertEqual(ac.value(cur, "SHOW work_mem"), "7MB")

    def test_a_statement_of_a_session_greeted_from_the_cache_can_be_cancelled(self):
        app = unique_name("cancel")
        self.first_login(app)
        conn = ac.connect(PGLANE, application_name=app)
        self.addCleanup(conn.close)
        self.assertEqual(backends("n0", app), 0)
        error, took = pgwire.sleep_cancelled(conn, after=1.0)
        self.assertIsInstance(error, psycopg2.errors.QueryCanceled, f"pg_sleep(30) ended with {error!r}")
        self.assertLess(took, 10, "the cancel did not reach the server")
        self.assertEqual(ac.value(conn.cursor(), "SELECT 1"), 1)

    def test_a_login_the_primary_refused_is_not_remembered(self):
        for attempt in range(2):
            with self.assertRaises(psycopg2.OperationalError, msg=f"attempt {attempt}") as caught:
                ac.connect(PGLANE, dbname="greeting_no_such_db")
            self.assertIn("greeting_no_such_db", str(caught.exception))


class HotStandbyReport(unittest.TestCase):
    """in_hot_standby (PostgreSQL 14+) is what libpq's target_session_attrs=read-write and
    pgjdbc's targetServerType=primary read to tell whether they reached a writable server."""

    def test_the_ports_report_what_they_take(self):
        for dsn, expected in ((PGLANE.auto_dsn(), "off"), (PGLANE.rw_dsn(), "off"), (PGLANE.ro_dsn(), "on")):
            conn = psycopg2.connect(dsn, connect_timeout=5)
            try:
                self.assertEqual(conn.get_parameter_status("in_hot_standby"), expected, dsn)
            finally:
                conn.close()

    def test_a_login_a_standby_greets_while_the_primary_is_down_is_told_the_port_takes_writes(self):
        CLUSTER.stop("n0", "fast")
        try:
            PGLANE.wait_until(lambda s: not next(n for n in s["nodes"] if n["name"] == "n0")["up"], 10, "n0 down")
            # The standby that greets says in_hot_standby=on; libpq would then refuse the
            # connection ("server is in hot standby mode"), though its writes wait for a primary.
            conn = psycopg2.connect(PGLANE.auto_dsn(target_session_attrs="read-write"), connect_timeout=5)
            try:
                self.assertEqual(conn.get_parameter_status("in_hot_standby"), "off")
                conn.autocommit = True
                self.assertIn(ac.value(conn.cursor(), ac.NODE_SQL), STANDBYS)
            finally:
                conn.close()
        finally:
            CLUSTER.start("n0")
            PGLANE.wait_until(pgwire.all_routable, 30, "n0 primary again and n1, n2 routable standbys")


if __name__ == "__main__":
    unittest.main()
