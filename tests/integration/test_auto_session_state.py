"""listen.auto: a session behaves as if connected to one server although its statements
run on several nodes (issue 3, "Session semantics"): session settings, ParameterStatus,
prepared statements (SQL and protocol level, psycopg2 / psycopg 3 / asyncpg), pins,
LISTEN/NOTIFY, read-your-writes and the transparent retry on the primary."""

import asyncio
import select
import time
import unittest

import psycopg2
import psycopg2.extensions

import auto_common as ac
from auto_common import STANDBYS, nodes_of, value

CLUSTER = STARTED = PGLANE = None


def setUpModule():
    global CLUSTER, STARTED, PGLANE
    CLUSTER, STARTED = ac.cluster_up()
    CLUSTER.sql("n0", """
        DROP SCHEMA IF EXISTS as_schema CASCADE; CREATE SCHEMA as_schema;
        CREATE TABLE as_schema.as_only_here (x text); INSERT INTO as_schema.as_only_here VALUES ('found');
        DROP TABLE IF EXISTS as_ryw; CREATE TABLE as_ryw (id int PRIMARY KEY, v text);
        DROP TABLE IF EXISTS as_pipe; CREATE TABLE as_pipe (id int PRIMARY KEY, v text);
        DROP SEQUENCE IF EXISTS as_seq CASCADE; CREATE SEQUENCE as_seq;
        -- declared STABLE but calls nextval: pglane sends it to a standby, which refuses (25006)
        CREATE OR REPLACE FUNCTION as_stable_liar() RETURNS bigint LANGUAGE sql STABLE
            AS $$ SELECT nextval('as_seq') $$;
        -- a standby cannot read it (0A000): pglane runs the read again on the primary
        DROP TABLE IF EXISTS as_unlogged CASCADE; CREATE UNLOGGED TABLE as_unlogged (x int);
        INSERT INTO as_unlogged VALUES (42);
        DROP TABLE IF EXISTS as_conflict; CREATE TABLE as_conflict (x int); INSERT INTO as_conflict VALUES (1);""")
    ac.settle(CLUSTER)
    PGLANE = ac.start_auto(CLUSTER)


def tearDownModule():
    if PGLANE:
        PGLANE.stop()
    ac.cluster_down(CLUSTER, STARTED)


class AutoSessionState(unittest.TestCase):
    def session(self, autocommit=True, p=None, **kw):
        conn = ac.connect(p or PGLANE, autocommit=autocommit, **kw)
        self.addCleanup(conn.close)
        return conn

    # --- session settings replayed on every server connection

    def test_set_applies_on_every_node(self):
        conn = self.session()
        cur = conn.cursor()
        cur.execute("SET search_path = as_schema, public")
        cur.execute("SET application_name = 'as_app'")
        cur.execute("SET statement_timeout = '4321ms'")
        seen = set()
        for _ in range(6):
            cur.execute("SELECT current_setting('cluster_name'), current_setting('search_path'), "
                        "current_setting('application_name'), current_setting('statement_timeout'), "
                        "(SELECT x FROM as_only_here)")
            node, path, app, timeout, found = cur.fetchone()
            seen.add(node)
            self.assertEqual((path, app, timeout, found), ("as_schema, public", "as_app", "4321ms", "found"),
                             f"settings not replayed on {node}")
        self.assertEqual(seen, STANDBYS)
        cur.execute("SET pglane.route = 'primary'")
        self.assertEqual(value(cur, "SELECT current_setting('application_name')"), "as_app")

    def test_reset_and_set_config_apply_on_every_node(self):
        cur = self.session().cursor()
        default_work_mem = CLUSTER.value("n1", "SHOW work_mem")
        cur.execute("SELECT set_config('application_name', 'as_cfg', false)")
        cur.execute("SET work_mem = '7MB'")
        nodes_of(cur, 2)  # open both standby connections
        cur.execute("RESET work_mem")
        for _ in range(4):
            cur.execute("SELECT current_setting('cluster_name'), current_setting('application_name'), "
                        "current_setting('work_mem') = %s", (default_work_mem,))
            node, app, reset = cur.fetchone()
            self.assertEqual(app, "as_cfg", f"set_config(..., false) missing on {node}")
            self.assertTrue(reset, f"RESET work_mem not applied on {node}")

    def test_set_in_rolled_back_transaction_is_not_replayed(self):
        conn = self.session(autocommit=False, application_name="as_orig")
        cur = conn.cursor()
        cur.execute("SET application_name = 'as_rolled_back'")
        conn.rollback()
        conn.autocommit = True
        seen = set()
        for _ in range(6):
            cur.execute("SELECT current_setting('cluster_name'), current_setting('application_name')")
            node, app = cur.fetchone()
            seen.add(node)
            self.assertEqual(app, "as_orig", f"rolled-back SET replayed on {node}")
        self.assertEqual(seen, STANDBYS)
        self.assertEqual(conn.get_parameter_status("application_name"), "as_orig")

    def test_set_in_committed_transaction_is_replayed(self):
        conn = self.session(autocommit=False)
        cur = conn.cursor()
        cur.execute("SET application_name = 'as_committed'")
        conn.commit()
        conn.autocommit = True
        for _ in range(4):
            cur.execute("SELECT current_setting('cluster_name'), current_setting('application_name')")
            node, app = cur.fetchone()
            self.assertEqual(app, "as_committed", f"SET committed in a transaction missing on {node}")

    def test_set_local_is_not_replayed(self):
        conn = self.session(autocommit=False)
        cur = conn.cursor()
        cur.execute("SET LOCAL statement_timeout = '1234ms'")
        conn.commit()
        conn.autocommit = True
        for _ in range(4):
            cur.execute("SELECT current_setting('cluster_name'), current_setting('statement_timeout')")
            node, timeout = cur.fetchone()
            self.assertNotEqual(timeout, "1234ms", f"SET LOCAL leaked onto {node}")

    def test_parameter_status_stays_consistent(self):
        conn = self.session()
        cur = conn.cursor()
        cur.execute("SET application_name = 'as_param'")
        self.assertEqual(conn.get_parameter_status("application_name"), "as_param")
        cur.execute("SET TimeZone = 'Asia/Tokyo'")
        self.assertEqual(conn.get_parameter_status("TimeZone"), "Asia/Tokyo")
        seen = nodes_of(cur, 6)  # new standby connections report their own startup values
        self.assertEqual(set(seen), STANDBYS)
        self.assertEqual(conn.get_parameter_status("application_name"), "as_param")
        self.assertEqual(conn.get_parameter_status("TimeZone"), "Asia/Tokyo")
        self.assertEqual(value(cur, "SELECT current_setting('TimeZone')"), "Asia/Tokyo")

    # --- prepared statements

    def test_sql_prepare_execute_across_nodes_and_deallocate(self):
        cur = self.session().cursor()
        cur.execute("PREPARE as_q(int) AS SELECT current_setting('cluster_name'), $1 * 2")
        seen = set()
        for i in range(10):
            cur.execute("EXECUTE as_q(%s)", (i,))
            node, doubled = cur.fetchone()
            self.assertEqual(doubled, i * 2)
            seen.add(node)
        self.assertEqual(seen, STANDBYS, "EXECUTE of a read did not spread over the standbys")
        cur.execute("DEALLOCATE as_q")
        for _ in range(3):  # whichever node it lands on
            with self.assertRaises(psycopg2.Error) as caught:
                cur.execute("EXECUTE as_q(1)")
            self.assertEqual(caught.exception.pgcode, "26000", str(caught.exception))
        cur.execute("PREPARE as_w AS INSERT INTO as_ryw VALUES (-1, 'w') ON CONFLICT (id) DO UPDATE SET v = 'w' "
                    "RETURNING current_setting('cluster_name')")
        self.assertEqual(value(cur, "EXECUTE as_w"), "n0", "EXECUTE of a prepared write left the primary")

    def test_asyncpg_named_prepared_statements_over_a_pool(self):
        import asyncpg

        async def run():
            pool = await asyncpg.create_pool(host="127.0.0.1", port=PGLANE.auto_port, user="postgres",
                                             password="postgres", database="postgres", min_size=2, max_size=4)
            try:
                async def one(i):
                    async with pool.acquire() as conn:
                        row = await conn.fetchrow("SELECT $1::int + 1 AS n, current_setting('cluster_name') AS node", i)
                        return i, row["n"], row["node"]
                results = []
                for batch in range(10):
                    results += await asyncio.gather(*(one(batch * 20 + k) for k in range(20)))
                async with pool.acquire() as conn:
                    stmt = await conn.prepare("SELECT $1::text || '!' AS s, current_setting('cluster_name') AS node")
                    explicit = [await stmt.fetchrow(str(k)) for k in range(10)]
                return results, explicit
            finally:
                await pool.close()

        results, explicit = asyncio.run(asyncio.wait_for(run(), 60))
        self.assertEqual(len(results), 200)
        for i, n, _ in results:
            self.assertEqual(n, i + 1)
        # asyncpg prepares with Parse/Describe/Flush: what follows that Flush is unknown when
        # the unit must be routed, so a connection's first use of a statement runs on the
        # primary; every execution after that is a read pglane can route to a standby.
        all_nodes = [node for _, _, node in results] + [r["node"] for r in explicit]
        on_standbys = [node for node in all_nodes if node in STANDBYS]
        self.assertEqual(set(on_standbys), STANDBYS, f"asyncpg reads went to {sorted(set(all_nodes))}")
        self.assertGreater(len(on_standbys), 0.8 * len(all_nodes), f"too many asyncpg reads on the primary: {all_nodes}")
        self.assertEqual([r["s"] for r in explicit], [f"{k}!" for k in range(10)])

    def test_a_parse_of_a_name_the_session_holds_gets_42P05(self):
        ac.check_parse_of_a_held_name(self, PGLANE.auto_dsn())

    def test_deallocate_drops_a_statement_parsed_through_the_protocol(self):
        ac.check_deallocate_of_a_parsed_statement(self, PGLANE.auto_dsn())

    def test_deallocate_through_the_extended_protocol(self):
        ac.check_extended_deallocate(self, PGLANE.auto_dsn())

    def test_deallocate_and_parse_anew_in_one_pipeline(self):
        ac.check_deallocate_and_parse_anew_in_one_pipeline(self, PGLANE.auto_dsn())

    def test_sql_and_protocol_statements_share_one_namespace(self):
        ac.check_sql_and_protocol_statements_share_names(self, PGLANE.auto_dsn())

    def test_psycopg3_prepared_and_pipeline(self):
        import psycopg
        with psycopg.connect(PGLANE.auto_dsn(), autocommit=True, connect_timeout=5) as conn:
            conn.execute("DELETE FROM as_pipe")
            ac.settle(CLUSTER)   # the standbys have replayed it: reads may leave the primary
            seen = set()
            for i in range(12):  # prepare=True: a named server-side statement from the first call
                node, n = conn.execute("SELECT current_setting('cluster_name'), %s::int * 3", (i,),
                                       prepare=True).fetchone()
                self.assertEqual(n, i * 3)
                seen.add(node)
            # n0 may appear: the DELETE makes reads wait for the standbys (read-your-writes)
            self.assertTrue(seen & STANDBYS, f"prepared reads never reached a standby: {seen}")
            with conn.pipeline():
                cursors = []
                for i in range(40):
                    conn.execute("INSERT INTO as_pipe (id, v) VALUES (%s, %s)", (i, f"v{i}"), prepare=True)
                    cursors.append(conn.execute("SELECT v FROM as_pipe WHERE id = %s", (i,), prepare=True))
                count_cursor = conn.execute("SELECT count(*) FROM as_pipe")
            self.assertEqual([c.fetchone()[0] for c in cursors], [f"v{i}" for i in range(40)])
            self.assertEqual(count_cursor.fetchone()[0], 40)
            with conn.transaction():
                with conn.pipeline():
                    conn.execute("UPDATE as_pipe SET v = 'tx' WHERE id < 10", prepare=True)
                    c = conn.execute("SELECT count(*), current_setting('cluster_name') FROM as_pipe WHERE v = 'tx'")
                self.assertEqual(c.fetchone(), (10, "n0"))
        self.assertEqual(CLUSTER.value("n0", "SELECT count(*) FROM as_pipe"), "40")

    # --- pins

    def assert_pinned(self, cur, what):
        ac.settle(CLUSTER)  # read-your-writes alone would release the session by now
        seen = nodes_of(cur, 5)
        self.assertEqual(seen, ["n0"] * 5, f"session not pinned to the primary after {what}")

    def test_temp_table_pins_session(self):
        before = PGLANE.metrics()
        cur = self.session().cursor()
        self.assertEqual(set(nodes_of(cur, 4)), STANDBYS)
        cur.execute("CREATE TEMP TABLE as_tmp (x int)")
        cur.execute("INSERT INTO as_tmp VALUES (1), (2)")
        self.assert_pinned(cur, "CREATE TEMP TABLE")
        for _ in range(4):
            self.assertEqual(value(cur, "SELECT count(*) FROM as_tmp"), 2)
        after = PGLANE.metrics()
        pins = sum(v for k, v in after.items() if k.startswith("pglane_session_pins_total")) - \
            sum(v for k, v in before.items() if k.startswith("pglane_session_pins_total"))
        self.assertGreaterEqual(pins, 1, "pin not counted in pglane_session_pins_total")

    def test_discard_all_releases_pin(self):
        cur = self.session().cursor()
        cur.execute("CREATE TEMP TABLE as_tmp2 (x int)")
        self.assert_pinned(cur, "CREATE TEMP TABLE")
        cur.execute("DISCARD ALL")
        ac.settle(CLUSTER)
        self.assertLessEqual(STANDBYS, ac.nodes_until_standbys(cur), "DISCARD ALL did not release the pin")

    def test_listen_notify(self):
        listener = self.session()
        lcur = listener.cursor()
        lcur.execute("LISTEN as_channel")
        self.assert_pinned(lcur, "LISTEN")
        notifier = self.session()
        notifier.cursor().execute("NOTIFY as_channel, 'hello from auto'")
        deadline = time.monotonic() + 5
        while not listener.notifies and time.monotonic() < deadline:
            if select.select([listener], [], [], 0.5)[0]:
                listener.poll()
        self.assertTrue(listener.notifies, "NOTIFY did not reach the idle LISTENing session within 5 s")
        self.assertEqual((listener.notifies[0].channel, listener.notifies[0].payload),
                         ("as_channel", "hello from auto"))

    def test_advisory_lock_pins_session(self):
        cur = self.session().cursor()
        cur.execute("SELECT pg_advisory_lock(424242)")
        self.assert_pinned(cur, "pg_advisory_lock")
        self.assertEqual(CLUSTER.value("n0", "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                             "AND objid = 424242 AND granted"), "1")
        self.assertTrue(value(cur, "SELECT pg_advisory_unlock(424242)"))

    # --- read-your-writes and retry

    def test_read_your_writes_1000_times(self):
        conn = self.session()
        cur = conn.cursor()
        cur.execute("DELETE FROM as_ryw WHERE id >= 0")
        missing, on_standby = [], 0
        for i in range(1000):
            cur.execute("INSERT INTO as_ryw (id, v) VALUES (%s, %s)", (i, f"r{i}"))
            cur.execute("SELECT v, current_setting('cluster_name') FROM as_ryw WHERE id = %s", (i,))
            row = cur.fetchone()
            if row is None or row[0] != f"r{i}":
                missing.append(i)
            elif row[1] != "n0":
                on_standby += 1
        print(f"\n  read-your-writes: 1000 insert+select pairs, {on_standby} reads on a standby, "
              f"{len(missing)} missing", flush=True)
        self.assertEqual(missing, [], f"{len(missing)} rows not seen right after their insert")

    def test_read_your_writes_lsn_returns_to_standbys(self):
        cur = self.session().cursor()
        cur.execute("INSERT INTO as_ryw VALUES (-2, 'x') ON CONFLICT (id) DO UPDATE SET v = 'x'")
        ac.settle(CLUSTER)
        self.assertLessEqual(STANDBYS, ac.nodes_until_standbys(cur), "reads stayed on the primary after standbys caught up")

    def test_read_your_writes_session_mode(self):
        p = ac.start_auto(CLUSTER, overrides={"routing": {"read_your_writes": "session"}})
        self.addCleanup(p.stop)
        cur = self.session(p=p).cursor()
        self.assertEqual(set(nodes_of(cur, 4)), STANDBYS)
        cur.execute("INSERT INTO as_ryw VALUES (-3, 'x') ON CONFLICT (id) DO UPDATE SET v = 'x'")
        ac.settle(CLUSTER)
        self.assertEqual(nodes_of(cur, 6), ["n0"] * 6, "read_your_writes=session released the session")
        other = self.session(p=p).cursor()
        self.assertEqual(set(nodes_of(other, 4)), STANDBYS, "another session was affected")

    def test_read_your_writes_off(self):
        p = ac.start_auto(CLUSTER, overrides={"routing": {"read_your_writes": "off"}})
        self.addCleanup(p.stop)
        cur = self.session(p=p).cursor()
        cur.execute("INSERT INTO as_ryw VALUES (-4, 'x') ON CONFLICT (id) DO UPDATE SET v = 'x'")
        self.assertEqual(set(nodes_of(cur, 6)), STANDBYS, "read_your_writes=off still sent reads to the primary")

    def test_read_retried_on_primary_after_25006(self):
        before = PGLANE.metrics()
        cur = self.session().cursor()
        # a function declared STABLE that calls nextval: routed to a standby, which answers 25006
        got = [value(cur, "SELECT as_stable_liar()") for _ in range(3)]
        self.assertEqual(got, list(range(got[0], got[0] + 3)), got)
        self.assertEqual(CLUSTER.value("n0", "SELECT last_value FROM as_seq"), str(got[-1]),
                         "the values did not come from the primary's sequence")
        self.assertTrue(ac.log_lines(PGLANE, r"read_retried_on_primary"),
                        f"no read_retried_on_primary in the log:\n{ac.log_tail(PGLANE)}")
        retries = PGLANE.metrics().get('pglane_read_retries_total{listener="auto"}', 0) - \
            before.get('pglane_read_retries_total{listener="auto"}', 0)
        self.assertGreaterEqual(retries, 3, "retries not counted in pglane_read_retries_total")
        self.assertEqual(value(cur, "SELECT 7"), 7)

    def test_a_read_a_standby_cannot_run_is_retried_on_the_primary(self):
        """A standby refuses to read an unlogged table ("cannot access temporary or unlogged
        relations during recovery", 0A000). The read, autocommit and unseen by the client so
        far, runs again on the primary: through simple and extended queries, and through a
        view that hides the table. pglane remembers the refusal: later runs of the statement,
        and of every statement of its shape, go straight to the primary."""
        CLUSTER.sql("n0", "CREATE OR REPLACE VIEW as_unlogged_view AS SELECT x FROM as_unlogged")
        ac.settle(CLUSTER)

        def retries():
            return PGLANE.metrics().get('pglane_read_retries_total{listener="auto"}', 0)
        cur = self.session().cursor()
        for sql in ("SELECT x, current_setting('cluster_name') FROM as_unlogged",
                    "SELECT x, current_setting('cluster_name') FROM as_unlogged_view",
                    "SELECT x, current_setting('cluster_name') FROM as_unlogged WHERE x < 100"):
            before = retries()
            for _ in range(4):   # read-only units would take the standbys in turn
                cur.execute(sql)
                self.assertEqual(cur.fetchall(), [(42, "n0")], sql)
            self.assertEqual(retries() - before, 1, f"{sql}: one refusal, then the primary at once")
        before = retries()
        cur.execute("SELECT x, current_setting('cluster_name') FROM as_unlogged WHERE x < 7")
        self.assertEqual(cur.fetchall(), [], "another literal of that shape")
        self.assertEqual(retries() - before, 0, "a statement of a refused shape was tried on a standby")
        import psycopg
        with psycopg.connect(PGLANE.auto_dsn(), autocommit=True) as conn:
            before = retries()
            for k in range(3):
                got = conn.execute("SELECT x + %s FROM as_unlogged", (k,), prepare=True).fetchall()
                self.assertEqual(got, [(42 + k,)])
            self.assertEqual(retries() - before, 1, "a prepared statement: one refusal, then the primary")
        self.assertTrue(ac.log_lines(PGLANE, r"read_retried_on_primary.*sqlstate=0A000"),
                        f"no read_retried_on_primary with sqlstate=0A000 in the log:\n{ac.log_tail(PGLANE)}")

    def test_a_read_cancelled_by_a_conflict_with_recovery_is_retried_on_the_primary(self):
        """A standby cancels a read that holds up the replay of the primary's WAL (here an ACCESS
        EXCLUSIVE lock on the table it reads) after max_standby_streaming_delay, with 40001
        "canceling statement due to conflict with recovery". A primary never does that to an
        autocommit read: pglane runs the read again there, and the client gets its rows."""
        import threading
        standbys = sorted(STANDBYS)
        for node in standbys:
            CLUSTER.sql(node, "ALTER SYSTEM SET max_standby_streaming_delay = '100ms'")
            CLUSTER.sql(node, "SELECT pg_reload_conf()")

        def restore():
            for node in standbys:
                CLUSTER.sql(node, "ALTER SYSTEM RESET max_standby_streaming_delay")
                CLUSTER.sql(node, "SELECT pg_reload_conf()")
        self.addCleanup(restore)
        time.sleep(0.3)   # the reload reached the startup processes
        long_read = "SELECT count(*) FROM as_conflict, generate_series(1, 15000000) g"
        conflicts = 0
        for attempt in range(3):   # a run the lock missed (the read ended first) is tried again
            cur = self.session().cursor()
            got = {}

            def read():
                try:
                    got["rows"] = value(cur, long_read)
                except Exception as e:   # pragma: the assertion below names it
                    got["error"] = e
            reader = threading.Thread(target=read)
            started = len(ac.log_lines(PGLANE, r"read_retried_on_primary.*sqlstate=40001"))
            reader.start()
            time.sleep(0.4)   # the read is running on a standby
            CLUSTER.sql("n0", "BEGIN; LOCK TABLE as_conflict IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(0.5); COMMIT")
            reader.join(60)
            self.assertFalse(reader.is_alive(), "the read never finished")
            self.assertNotIn("error", got, f"attempt {attempt}: the client saw {got.get('error')!r}")
            self.assertEqual(got["rows"], 15000000)
            conflicts += len(ac.log_lines(PGLANE, r"read_retried_on_primary.*sqlstate=40001")) - started
            if conflicts:
                break
        self.assertGreater(conflicts, 0, f"no read was cancelled by a conflict in 3 tries:\n{ac.log_tail(PGLANE)}")


if __name__ == "__main__":
    unittest.main()
