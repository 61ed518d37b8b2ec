"""listen.auto: statement routing through a real pglane in front of the 3-node cluster
(issue 3, "Classification with the real PostgreSQL parser", "Route hints").

Which node answered is read from current_setting('cluster_name') (n0 primary, n1/n2
standbys; STABLE, so it is a read that may run anywhere)."""

import unittest

import psycopg2
import psycopg2.errors

import auto_common as ac
from auto_common import NODE_SQL, STANDBYS, nodes_of, value

CLUSTER = STARTED = PGLANE = None


def setUpModule():
    global CLUSTER, STARTED, PGLANE
    CLUSTER, STARTED = ac.cluster_up()
    CLUSTER.sql("n0", """
        DROP TABLE IF EXISTS ar_t; CREATE TABLE ar_t (id serial PRIMARY KEY, v int);
        INSERT INTO ar_t (v) SELECT g FROM generate_series(1, 10) g;
        DROP SEQUENCE IF EXISTS ar_seq; CREATE SEQUENCE ar_seq;
        CREATE OR REPLACE FUNCTION ar_f_volatile() RETURNS text LANGUAGE sql VOLATILE
            AS $$ SELECT current_setting('cluster_name') $$;
        CREATE OR REPLACE FUNCTION ar_f_stable() RETURNS text LANGUAGE sql STABLE
            AS $$ SELECT current_setting('cluster_name') $$;""")
    ac.settle(CLUSTER)
    PGLANE = ac.start_auto(CLUSTER)


def tearDownModule():
    if PGLANE:
        PGLANE.stop()
    ac.cluster_down(CLUSTER, STARTED)


class AutoRouting(unittest.TestCase):
    def setUp(self):
        # Reads must be free to go to the standbys: nothing this session wrote is pending.
        self.conn = ac.connect(PGLANE)
        self.cur = self.conn.cursor()

    def tearDown(self):
        self.conn.close()

    def fresh(self):
        """A new session with no writes of its own."""
        conn = ac.connect(PGLANE)
        self.addCleanup(conn.close)
        return conn.cursor()

    def test_reads_spread_over_both_standbys(self):
        seen = []
        for _ in range(3):
            conn = ac.connect(PGLANE)
            seen += nodes_of(conn.cursor(), 6)
            conn.close()
        self.assertTrue(set(seen) <= STANDBYS, f"a read reached the primary: {seen}")
        self.assertEqual(set(seen), STANDBYS, f"reads did not reach both standbys: {seen}")

    def test_psql_reads_spread_over_both_standbys(self):
        result = ac.psql(PGLANE.auto_port, stdin=f"{NODE_SQL};\n" * 8)
        self.assertEqual(result.returncode, 0, result.stderr)
        seen = result.stdout.split()
        self.assertEqual(len(seen), 8, result.stdout)
        self.assertEqual(set(seen), STANDBYS, f"psql reads: {seen}")

    def test_insert_returning_goes_to_primary(self):
        for _ in range(3):
            self.assertEqual(value(self.cur, "INSERT INTO ar_t (v) VALUES (1) RETURNING current_setting('cluster_name')"), "n0")

    def test_nextval_goes_to_primary(self):
        for _ in range(4):
            self.cur.execute("SELECT nextval('ar_seq'), current_setting('cluster_name')")
            self.assertEqual(self.cur.fetchone()[1], "n0")

    def test_select_for_update_goes_to_primary(self):
        cur = self.fresh()
        for _ in range(4):
            self.assertEqual(value(cur, "SELECT current_setting('cluster_name') FROM ar_t WHERE id = 1 FOR UPDATE"), "n0")
        cur = self.fresh()
        self.assertEqual(value(cur, "SELECT current_setting('cluster_name') FROM ar_t WHERE id = 1 FOR SHARE"), "n0")

    def test_data_modifying_cte_goes_to_primary(self):
        cur = self.fresh()
        self.assertEqual(value(cur, "WITH x AS (INSERT INTO ar_t (v) VALUES (2) RETURNING id) "
                                    "SELECT current_setting('cluster_name') FROM x"), "n0")
        cur = self.fresh()
        self.assertEqual(value(cur, "WITH x AS (DELETE FROM ar_t WHERE v = -1 RETURNING id) "
                                    "SELECT current_setting('cluster_name') FROM (SELECT 1) s LEFT JOIN x ON true"), "n0")

    def test_transaction_stays_on_one_node(self):
        conn = ac.connect(PGLANE, autocommit=False)  # psycopg2 opens BEGIN implicitly
        self.addCleanup(conn.close)
        cur = conn.cursor()
        seen = nodes_of(cur, 3)
        seen.append(value(cur, "INSERT INTO ar_t (v) VALUES (3) RETURNING current_setting('cluster_name')"))
        seen += nodes_of(cur, 3)
        conn.commit()
        self.assertEqual(seen, ["n0"] * 7)
        # explicit BEGIN ... COMMIT in autocommit mode, reads only
        cur = self.fresh()
        cur.execute("BEGIN")
        seen = nodes_of(cur, 5)
        cur.execute("COMMIT")
        self.assertEqual(seen, ["n0"] * 5, "a read inside BEGIN..COMMIT left the primary")

    def test_begin_read_only_runs_on_one_standby(self):
        for _ in range(3):
            cur = self.fresh()
            cur.execute("BEGIN READ ONLY")
            seen = nodes_of(cur, 5)
            in_recovery = value(cur, "SELECT pg_is_in_recovery()")
            cur.execute("COMMIT")
            self.assertEqual(len(set(seen)), 1, f"one read-only transaction on several nodes: {seen}")
            self.assertIn(seen[0], STANDBYS, f"BEGIN READ ONLY did not go to a standby: {seen}")
            self.assertTrue(in_recovery, "pg_is_in_recovery() inside the read-only transaction ran on the primary")

    def test_set_transaction_read_only_first_runs_the_transaction_on_a_standby(self):
        for _ in range(3):
            cur = self.fresh()
            cur.execute("BEGIN")
            cur.execute("SET TRANSACTION READ ONLY")
            seen = nodes_of(cur, 3)
            cur.execute("COMMIT")
            self.assertEqual(len(set(seen)), 1, f"one read-only transaction on several nodes: {seen}")
            self.assertIn(seen[0], STANDBYS, f"BEGIN; SET TRANSACTION READ ONLY did not go to a standby: {seen}")

    def test_serializable_read_only_transactions_run_on_the_primary(self):
        """A hot standby refuses SERIALIZABLE ("cannot use serializable mode in a hot standby"),
        READ ONLY or not: such transactions, and every transaction of a session whose default
        isolation is serializable, run on the primary. REPEATABLE READ READ ONLY still goes to a
        standby."""
        isolation = "SELECT current_setting('cluster_name'), current_setting('transaction_isolation')"
        openers = ["BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY",
                   "START TRANSACTION READ ONLY, ISOLATION LEVEL SERIALIZABLE, DEFERRABLE",
                   "BEGIN; SET TRANSACTION ISOLATION LEVEL SERIALIZABLE READ ONLY",
                   "BEGIN ISOLATION LEVEL SERIALIZABLE; SET TRANSACTION READ ONLY"]
        retried = len(ac.log_lines(PGLANE, r"read_retried_on_primary"))
        for opener in openers:
            for _ in range(2):   # the read-only units take the standbys in turn
                cur = self.fresh()
                for statement in opener.split("; "):
                    cur.execute(statement)
                cur.execute(isolation)
                self.assertEqual(cur.fetchone(), ("n0", "serializable"), opener)
                cur.execute("COMMIT")
        # Straight to the primary: no standby was tried first (and refused).
        self.assertEqual(len(ac.log_lines(PGLANE, r"read_retried_on_primary")), retried)
        # psycopg2's set_session opens each transaction with one BEGIN carrying both options.
        conn = ac.connect(PGLANE, autocommit=False)
        self.addCleanup(conn.close)
        conn.set_session(isolation_level="SERIALIZABLE", readonly=True)
        for _ in range(2):
            cur = conn.cursor()
            cur.execute(isolation)
            self.assertEqual(cur.fetchone(), ("n0", "serializable"))
            conn.commit()
        # A session default: its reads and its read-only transactions stay on the primary.
        cur = self.fresh()
        cur.execute("SET default_transaction_isolation = 'serializable'")
        for _ in range(2):
            cur.execute(isolation)
            self.assertEqual(cur.fetchone(), ("n0", "serializable"))
            cur.execute("BEGIN READ ONLY")
            cur.execute(isolation)
            self.assertEqual(cur.fetchone(), ("n0", "serializable"))
            cur.execute("COMMIT")
        # The control: a read-only transaction at another level is a standby's.
        self.assert_repeatable_read_on_a_standby("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def test_the_first_statement_after_begin_read_only_can_move_the_transaction(self):
        """BEGIN READ ONLY is answered by pglane and sent with the transaction's first
        statement: SET TRANSACTION ISOLATION LEVEL SERIALIZABLE or READ WRITE there make it a
        transaction no standby can run, so it runs on the primary; other levels stay on a
        standby."""
        isolation = "SELECT current_setting('cluster_name'), current_setting('transaction_isolation')"
        for _ in range(2):
            cur = self.fresh()
            cur.execute("BEGIN READ ONLY")
            cur.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
            cur.execute(isolation)
            self.assertEqual(cur.fetchone(), ("n0", "serializable"))
            cur.execute("COMMIT")

            cur.execute("BEGIN READ ONLY")
            cur.execute("SET TRANSACTION READ WRITE")
            cur.execute("INSERT INTO ar_t (v) VALUES (-1) RETURNING current_setting('cluster_name')")
            self.assertEqual(cur.fetchone(), ("n0",))
            cur.execute("ROLLBACK")

            self.assert_repeatable_read_on_a_standby("BEGIN READ ONLY", "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")

    def assert_repeatable_read_on_a_standby(self, *opener):
        cur = self.fresh()
        for statement in opener:
            cur.execute(statement)
        cur.execute("SELECT current_setting('cluster_name'), current_setting('transaction_isolation')")
        node, level = cur.fetchone()
        cur.execute("COMMIT")
        self.assertIn(node, STANDBYS, opener)
        self.assertEqual(level, "repeatable read", opener)

    def test_a_read_only_transaction_a_standby_refuses_at_once_moves_to_the_primary(self):
        """A standby cannot read an unlogged table. When that is the first statement of a
        read-only transaction, the client has seen nothing but pglane's own answer to its
        BEGIN: the transaction starts again on the primary and carries on there."""
        CLUSTER.sql("n0", "DROP TABLE IF EXISTS ar_unlogged; CREATE UNLOGGED TABLE ar_unlogged (x int); "
                          "INSERT INTO ar_unlogged VALUES (7)")
        ac.settle(CLUSTER)
        retried = len(ac.log_lines(PGLANE, r"read_retried_on_primary"))
        for _ in range(3):   # the transactions would take the standbys in turn
            cur = self.fresh()
            cur.execute("BEGIN READ ONLY")
            cur.execute("SELECT x, current_setting('cluster_name') FROM ar_unlogged")
            self.assertEqual(cur.fetchall(), [(7, "n0")])
            self.assertEqual(value(cur, "SELECT current_setting('transaction_read_only')"), "on")
            self.assertEqual(nodes_of(cur, 2), ["n0", "n0"])
            cur.execute("COMMIT")
            # the standby's connection was rolled back: the session's next reads run there
            self.assertTrue(set(nodes_of(cur, 4)) <= STANDBYS)
        # Once refused, the statement opens its read-only transactions on the primary at once
        # (on the worker that saw the refusal; the sessions are spread over two workers).
        self.assertIn(len(ac.log_lines(PGLANE, r"read_retried_on_primary")) - retried, (1, 2))

    def test_a_unit_that_opens_a_read_only_transaction_moves_to_the_primary_when_refused(self):
        """BEGIN READ ONLY in the same unit as the first query (pgjdbc's way; here a psycopg 3
        pipeline up to one Sync): the BEGIN's CommandComplete is held back with the
        descriptions, so when the standby refuses the query (an unlogged table) nothing has
        reached the client, the standby's transaction is rolled back and the unit runs on the
        primary."""
        import psycopg
        CLUSTER.sql("n0", "DROP TABLE IF EXISTS ar_unlogged_unit; CREATE UNLOGGED TABLE ar_unlogged_unit (x int); "
                          "INSERT INTO ar_unlogged_unit VALUES (9)")
        ac.settle(CLUSTER)
        with psycopg.connect(PGLANE.auto_dsn(), autocommit=True) as conn:
            with conn.pipeline():
                conn.execute("BEGIN READ ONLY")
                cur = conn.execute("SELECT x, current_setting('cluster_name'), "
                                   "current_setting('transaction_read_only') FROM ar_unlogged_unit")
                conn.execute("COMMIT")
            self.assertEqual(cur.fetchall(), [(9, "n0", "on")])
            # the standby's connection was rolled back: the session reads there again
            nodes = [conn.execute(NODE_SQL).fetchone()[0] for _ in range(4)]
            self.assertTrue(set(nodes) <= STANDBYS, nodes)

    def test_psycopg3_transactions_begin_with_the_extended_protocol(self):
        """psycopg 3 outside autocommit opens each transaction with BEGIN alone, sent with the
        extended protocol (Parse, Bind, Describe, Execute, Sync). pglane answers it as a server
        would and sends it with the first query, as for a simple-query BEGIN: a read-only
        transaction a standby refuses at its first query (an unlogged table) runs on the
        primary, other read-only transactions on a standby, read-write ones on the primary."""
        import psycopg
        CLUSTER.sql("n0", "DROP TABLE IF EXISTS ar_unlogged_pg3; CREATE UNLOGGED TABLE ar_unlogged_pg3 (x int); "
                          "INSERT INTO ar_unlogged_pg3 VALUES (5)")
        ac.settle(CLUSTER)
        with psycopg.connect(PGLANE.auto_dsn()) as conn:
            conn.read_only = True
            got = conn.execute("SELECT x, current_setting('cluster_name'), current_setting('transaction_read_only') "
                               "FROM ar_unlogged_pg3").fetchall()
            conn.commit()
            self.assertEqual(got, [(5, "n0", "on")])
            node, read_only = conn.execute(
                "SELECT current_setting('cluster_name'), current_setting('transaction_read_only')").fetchone()
            conn.commit()
            self.assertIn(node, STANDBYS)
            self.assertEqual(read_only, "on")
            conn.read_only = False
            row = conn.execute("INSERT INTO ar_t (v) VALUES (-5) RETURNING current_setting('cluster_name')").fetchone()
            self.assertEqual(row, ("n0",))
            conn.rollback()

    def test_plain_begin_keeps_the_transaction_on_the_primary(self):
        cur = self.fresh()
        cur.execute("BEGIN")
        seen = nodes_of(cur, 3)
        cur.execute("ROLLBACK")
        self.assertEqual(seen, ["n0"] * 3)
        cur.execute("BEGIN")
        cur.execute("ROLLBACK")  # an empty transaction is fine too
        self.assertIn(value(cur, NODE_SQL), STANDBYS | {"n0"})

    def test_volatile_user_function_goes_to_primary(self):
        cur = self.fresh()
        self.assertEqual(nodes_of(cur, 4, "SELECT ar_f_volatile()"), ["n0"] * 4)

    def test_stable_user_function_goes_to_standby(self):
        cur = self.fresh()
        seen = nodes_of(cur, 6, "SELECT ar_f_stable()")
        self.assertEqual(set(seen), STANDBYS, seen)

    def test_pg_is_in_recovery_is_volatile_so_goes_to_primary(self):
        cur = self.fresh()
        self.assertEqual(nodes_of(cur, 4, "SELECT pg_is_in_recovery()"), [False] * 4)

    def test_syntax_error_comes_from_server_and_session_continues(self):
        cur = self.fresh()
        with self.assertRaises(psycopg2.Error) as caught:
            cur.execute("SELEC 1 FROM")
        self.assertEqual(caught.exception.pgcode, "42601", str(caught.exception))
        self.assertIn("syntax error", str(caught.exception))
        self.assertEqual(value(cur, "SELECT 41 + 1"), 42)
        self.assertIn(value(cur, NODE_SQL), STANDBYS)

    def test_multi_statement_simple_query(self):
        cur = self.fresh()
        self.assertEqual(value(cur, "SELECT 1; SELECT 2"), 2)
        result = ac.psql(PGLANE.auto_port, "SELECT 1; SELECT 2")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.split(), ["1", "2"])

    def test_multi_statement_with_a_write_is_routed_as_a_whole(self):
        result = ac.psql(PGLANE.auto_port, f"{NODE_SQL}; INSERT INTO ar_t (v) VALUES (4); {NODE_SQL}")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.splitlines(), ["n0", "INSERT 0 1", "n0"])

    def test_set_route_primary_then_standby_then_auto(self):
        cur = self.fresh()
        cur.execute("SET pglane.route = 'primary'")
        self.assertEqual(nodes_of(cur, 4), ["n0"] * 4)
        # answered by pglane, never sent to a server: the primary has no such setting
        self.assertIsNone(value(cur, "SELECT current_setting('pglane.route', true)"))
        cur.execute("SET pglane.route = 'standby'")
        seen = nodes_of(cur, 4)
        self.assertEqual(set(seen), STANDBYS, seen)
        self.assertEqual(set(nodes_of(cur, 4, "SELECT ar_f_volatile()")) - STANDBYS, set(),
                         "route=standby should waive the volatility proof")
        cur.execute("SET pglane.route = 'auto'")
        self.assertEqual(set(nodes_of(cur, 4)), STANDBYS)
        self.assertEqual(nodes_of(cur, 2, "SELECT ar_f_volatile()"), ["n0"] * 2)

    def test_set_route_rejects_unknown_value(self):
        cur = self.fresh()
        with self.assertRaises(psycopg2.Error) as caught:
            cur.execute("SET pglane.route = 'sideways'")
        self.assertEqual(caught.exception.pgcode, "22023", str(caught.exception))
        self.assertIn(value(cur, NODE_SQL), STANDBYS)

    def test_route_hint_comment_steers_one_statement(self):
        cur = self.fresh()
        self.assertEqual(value(cur, f"/* pglane: route=primary */ {NODE_SQL}"), "n0")
        self.assertIn(value(cur, NODE_SQL), STANDBYS, "the comment hint outlived its statement")
        self.assertIn(value(cur, "/* pglane: route=standby */ SELECT ar_f_volatile()"), STANDBYS)
        self.assertEqual(value(cur, "SELECT ar_f_volatile()"), "n0")

    def test_routing_reasons_logged_at_debug(self):
        cur = self.fresh()
        cur.execute("SELECT nextval('ar_seq')")
        cur.execute("/* pglane: route=primary */ SELECT 1")
        text = PGLANE.log_text()
        self.assertRegex(text, r'routed session=\d+ node=\S+ reason="?volatile function nextval')
        self.assertRegex(text, r'routed session=\d+ node=\S+ reason="?route hint comment')
        self.assertRegex(text, r'routed session=\d+ node=n[12] reason="?read-only')

    def test_statement_metrics_exported(self):
        """Issue 3, Metrics: statements routed per node and reason, retries, pins,
        classification cache hits/misses, parse time."""
        before = PGLANE.metrics()
        cur = self.fresh()
        for _ in range(4):
            cur.execute(NODE_SQL)
        cur.execute("SELECT nextval('ar_seq')")
        after = PGLANE.metrics()
        delta = lambda key: after.get(key, 0) - before.get(key, 0)  # noqa: E731
        standby_units = delta('pglane_units_routed_total{node="n1"}') + delta('pglane_units_routed_total{node="n2"}')
        self.assertGreaterEqual(standby_units, 4, f"units_routed_total on standbys; metrics: {after}")
        self.assertGreaterEqual(delta('pglane_units_routed_total{node="n0"}'), 1)
        reasons = {k: delta(k) for k in after if k.startswith("pglane_units_routed_by_reason_total{")}
        self.assertGreaterEqual(reasons.get('pglane_units_routed_by_reason_total{reason="read_only"}', 0), 4, reasons)
        self.assertGreaterEqual(reasons.get('pglane_units_routed_by_reason_total{reason="write"}', 0)
                                + reasons.get('pglane_units_routed_by_reason_total{reason="function"}', 0), 1,
                                f"no reason counted for the nextval: {reasons}")
        self.assertGreaterEqual(delta('pglane_classification_cache_hits_total{listener="auto"}'), 3, "repeated text not cached")
        for name in ("pglane_read_retries_total", "pglane_session_pins_total",
                     "pglane_classification_cache_misses_total", "pglane_classification_parse_nanoseconds_total"):
            self.assertTrue(any(k.split("{")[0] == name for k in after), f"/metrics lacks {name}")


class AutoFunctionLists(unittest.TestCase):
    """routing.read_only_functions and routing.write_functions override pg_proc."""

    @classmethod
    def setUpClass(cls):
        cls.p = ac.start_auto(CLUSTER, overrides={"routing": {
            "read_only_functions": ["ar_f_volatile", "pg_is_in_recovery"],
            "write_functions": ["ar_f_stable"]}})

    @classmethod
    def tearDownClass(cls):
        cls.p.stop()

    def test_read_only_functions_go_to_standbys(self):
        conn = ac.connect(self.p)  # (psycopg2's `with conn` would open a transaction)
        self.addCleanup(conn.close)
        cur = conn.cursor()
        seen = nodes_of(cur, 6, "SELECT ar_f_volatile()")
        self.assertEqual(set(seen), STANDBYS, seen)
        self.assertEqual(nodes_of(cur, 3, "SELECT pg_is_in_recovery()"), [True] * 3)

    def test_write_functions_go_to_primary(self):
        conn = ac.connect(self.p)
        self.addCleanup(conn.close)
        self.assertEqual(nodes_of(conn.cursor(), 4, "SELECT ar_f_stable()"), ["n0"] * 4)


if __name__ == "__main__":
    unittest.main()
