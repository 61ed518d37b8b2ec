"""limits.max_client_connections (global) and the per-user limits: while N sessions are open
the (N+1)th gets FATAL 53300 at once with a message naming the limit, on every port (rw and
ro relayed; rw, ro and auto authenticated by pglane), counted across both workers; once one
session ends a new one is admitted. Refusals are counted in /status and logged."""

import asyncio
import threading
import time
import unittest

import asyncpg
import psycopg
import psycopg2

import pgwire
from cluster import LocalCluster
from pglane import AutoPglane, start_module_pglane, stop_module_pglane

CLUSTER = None
STARTED_HERE = False
RELAYED = None   # rw, ro relaying the servers' authentication: 3 sessions, 2 per user
AUTO = None      # auto, rw, ro authenticated by pglane: 6 sessions, 2 per user, pglane_md5 3
PASSWORDS = {"postgres": "postgres", "pglane_scram": "scram-secret", "pglane_md5": "md5-secret", pgwire.TRUST_ROLE: ""}


def setUpModule():
    global CLUSTER, STARTED_HERE, RELAYED, AUTO
    CLUSTER = LocalCluster.from_env()
    STARTED_HERE, RELAYED = start_module_pglane(
        CLUSTER, overrides={"limits": {"max_client_connections": 3, "max_client_connections_per_user": 2}})
    try:
        AUTO = AutoPglane(CLUSTER, users={"pglane_scram": "scram-secret", "pglane_md5": "md5-secret"},
                          overrides={"limits": {"max_client_connections": 6, "max_client_connections_per_user": 2,
                                                "max_client_connections_by_user": {"pglane_md5": 3}}},
                          log_level="info").start()
        AUTO.wait_until(pgwire.all_routable, 15, "the auto pglane to see the cluster")
    except Exception:
        stop_module_pglane(CLUSTER, STARTED_HERE, RELAYED)
        raise


def tearDownModule():
    if AUTO:
        AUTO.stop()
    stop_module_pglane(CLUSTER, STARTED_HERE, RELAYED)


def dsn(pglane, port, user):
    return pglane.dsn(port, user=user, password=PASSWORDS[user] or "unused")


def listener_counter(pglane, name):
    return sum(ports[name] for ports in pglane.status()["listeners"].values())


class Sessions:
    """psycopg2 sessions opened (and checked with a query) and closed by the test."""

    def __init__(self):
        self.open = []

    def connect(self, pglane, port, user):
        conn = psycopg2.connect(dsn(pglane, port, user), connect_timeout=5)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        self.open.append(conn)
        return conn

    def close_one(self, conn=None):
        conn = conn or self.open[0]
        self.open.remove(conn)
        conn.close()

    def close_all(self):
        for conn in self.open:
            conn.close()
        self.open.clear()


class LimitTest(unittest.TestCase):

    def setUp(self):
        self.sessions = Sessions()

    def tearDown(self):
        self.sessions.close_all()
        # Sessions end asynchronously in pglane: wait until both are empty again.
        for pglane in (RELAYED, AUTO):
            pgwire.poll(lambda: sum(p["client_connections_active"] for p in pglane.status()["listeners"].values()) == 0,
                        10, "every session to end")

    def assert_refused(self, pglane, port, user, message_part):
        """The next session of `user` on `port` gets FATAL 53300 at once, seen over the wire,
        by psycopg2 and by asyncpg; returns the message."""
        started = time.monotonic()
        fields = pgwire.startup_error(port, user)
        self.assertLess(time.monotonic() - started, 2.0, "the refusal was not immediate")
        self.assertEqual(fields.get("C"), "53300", fields)
        self.assertEqual(fields.get("S"), "FATAL", fields)
        self.assertIn(message_part, fields.get("M", ""), fields)
        # libpq does not hand drivers the SQLSTATE of a failed connection attempt (pgcode and
        # sqlstate are None): psycopg2 and psycopg show the FATAL message; asyncpg the SQLSTATE.
        with self.assertRaises(psycopg2.OperationalError) as refused:
            psycopg2.connect(dsn(pglane, port, user), connect_timeout=5)
        self.assertIn("FATAL:  " + message_part if message_part.startswith("sorry") else message_part,
                      str(refused.exception))
        with self.assertRaises(psycopg.OperationalError) as refused3:
            psycopg.connect(dsn(pglane, port, user), connect_timeout=5)
        self.assertIn(message_part, str(refused3.exception))

        async def attempt():
            conn = await asyncpg.connect(host="127.0.0.1", port=port, user=user,
                                         password=PASSWORDS[user] or None, database="postgres", timeout=5, ssl=False)
            await conn.close()
        with self.assertRaises(asyncpg.exceptions.TooManyConnectionsError) as refused_asyncpg:
            asyncio.run(attempt())
        self.assertEqual(refused_asyncpg.exception.sqlstate, "53300")
        return fields["M"]

    def connect_eventually(self, pglane, port, user):
        """The session once the one just closed has ended in pglane (bounded)."""
        return pgwire.poll(lambda: self.sessions.connect(pglane, port, user), 5, f"a session for {user}")


class GlobalLimit(LimitTest):

    def test_relayed_ports_refuse_the_fourth_session_until_one_ends(self):
        before = listener_counter(RELAYED, "clients_over_max_connections_total")
        first = self.sessions.connect(RELAYED, RELAYED.rw_port, "postgres")
        self.sessions.connect(RELAYED, RELAYED.ro_port, "postgres")
        self.sessions.connect(RELAYED, RELAYED.ro_port, pgwire.TRUST_ROLE)
        for port in (RELAYED.rw_port, RELAYED.ro_port):
            message = self.assert_refused(RELAYED, port, pgwire.TRUST_ROLE, "too many clients already")
            self.assertEqual(message, "sorry, too many clients already (pglane limits.max_client_connections = 3)")
        # Each refusal above is one wire, one psycopg2, one psycopg and one asyncpg attempt.
        self.assertEqual(listener_counter(RELAYED, "clients_over_max_connections_total") - before, 8)
        self.assertIn("client_refused", RELAYED.log_text())
        self.assertRegex(RELAYED.log_text(), r"warn client_refused listener=r[wo] client=\S+ user=pglane_trust "
                                             r"limit=max_client_connections sessions=3")
        # The open sessions are unaffected, and one ending makes room for one more.
        with first.cursor() as cur:
            cur.execute("SELECT 2")
            self.assertEqual(cur.fetchone()[0], 2)
        self.sessions.close_one(first)
        self.connect_eventually(RELAYED, RELAYED.rw_port, pgwire.TRUST_ROLE)
        self.assert_refused(RELAYED, RELAYED.rw_port, "postgres", "too many clients already")

    def test_authenticated_ports_share_one_count(self):
        for port, user in ((AUTO.auto_port, "postgres"), (AUTO.rw_port, "postgres"), (AUTO.ro_port, "pglane_scram"),
                           (AUTO.auto_port, "pglane_scram"), (AUTO.auto_port, "pglane_md5"),
                           (AUTO.rw_port, "pglane_md5")):
            self.sessions.connect(AUTO, port, user)
        # pglane_md5 may have 3, but the 7th session is over the global 6, on every port.
        for port in (AUTO.auto_port, AUTO.rw_port, AUTO.ro_port):
            self.assert_refused(AUTO, port, "pglane_md5", "limits.max_client_connections = 6")
        self.sessions.close_one()
        self.connect_eventually(AUTO, AUTO.auto_port, "pglane_md5")

    def test_cancel_requests_are_not_sessions(self):
        # A full pglane still forwards CancelRequests (they are never counted).
        holder = [self.sessions.connect(RELAYED, RELAYED.rw_port, "postgres") for _ in range(2)]
        self.sessions.connect(RELAYED, RELAYED.ro_port, pgwire.TRUST_ROLE)
        with holder[0].cursor() as cur:
            timer = threading.Timer(0.5, holder[0].cancel)
            timer.start()
            try:
                with self.assertRaises(psycopg2.errors.QueryCanceled):
                    cur.execute("SELECT pg_sleep(10)")
            finally:
                timer.cancel()


class PerUserLimit(LimitTest):

    def test_a_user_at_its_limit_is_refused_while_others_connect(self):
        before = listener_counter(AUTO, "clients_over_user_connections_total")
        self.sessions.connect(AUTO, AUTO.auto_port, "pglane_scram")
        scram_ro = self.sessions.connect(AUTO, AUTO.ro_port, "pglane_scram")
        for port in (AUTO.auto_port, AUTO.rw_port, AUTO.ro_port):
            message = self.assert_refused(AUTO, port, "pglane_scram", "too many connections for user")
            self.assertEqual(message, 'too many connections for user "pglane_scram" '
                                      '(pglane limits.max_client_connections_per_user = 2)')
        self.assertEqual(listener_counter(AUTO, "clients_over_user_connections_total") - before, 12)
        self.assertRegex(AUTO.log_text(), r"warn client_refused listener=\S+ client=\S+ user=pglane_scram "
                                          r"limit=max_client_connections_per_user")
        # Other users are admitted; pglane_md5's own limit is 3.
        for port in (AUTO.auto_port, AUTO.rw_port, AUTO.ro_port):
            self.sessions.connect(AUTO, port, "pglane_md5")
        message = self.assert_refused(AUTO, AUTO.auto_port, "pglane_md5", "too many connections for user")
        self.assertIn("limits.max_client_connections_by_user = 3", message)
        self.sessions.connect(AUTO, AUTO.auto_port, "postgres")
        # One of pglane_scram's sessions ends: it may open one again.
        self.sessions.close_one(scram_ro)
        self.connect_eventually(AUTO, AUTO.rw_port, "pglane_scram")

    def test_relayed_ports_limit_each_user(self):
        self.sessions.connect(RELAYED, RELAYED.rw_port, pgwire.TRUST_ROLE)
        self.sessions.connect(RELAYED, RELAYED.ro_port, pgwire.TRUST_ROLE)
        self.assert_refused(RELAYED, RELAYED.rw_port, pgwire.TRUST_ROLE, "limits.max_client_connections_per_user = 2")
        self.sessions.connect(RELAYED, RELAYED.rw_port, "postgres")


if __name__ == "__main__":
    unittest.main()
