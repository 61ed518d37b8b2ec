"""Transaction pooling (pool.mode = transaction) through real pglane processes in front of
the real cluster: many clients on a few server connections, with every session still
behaving as if it had a server of its own (SET values, prepared statements, temporary
tables), and pools that survive server connections dying.

Two pglanes: `wide` (pool.size 10, one worker, so the size is exact) for load, and
`narrow` (pool.size 1, max_wait_ms 1500) whose rw port has exactly one connection to the
primary: clients there provably take turns on one server session."""

import asyncio
import os
import resource
import signal
import subprocess
import threading
import time
import unittest

import asyncpg
import psycopg
import psycopg2
import psycopg2.errors

import pgwire
from cluster import LocalCluster
from pglane import AutoPglane, SUPERUSER_PASSWORD

USER, PASSWORD, DB = "pool_user", "pool-secret", "pooldb"


def raise_fd_limit():
    """1,000 clients and their server side need more than the default 1,024 descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))


def backends(cluster, node, state=None):
    """pool_user's server sessions on `node` (optionally only those in `state`)."""
    where = f"usename = '{USER}' AND backend_type = 'client backend'"
    if state:
        where += f" AND state = '{state}'"
    return int(cluster.value(node, f"SELECT count(*) FROM pg_stat_activity WHERE {where}"))


def pgbench(port, *args):
    """Runs pgbench as pool_user against pooldb; returns the CompletedProcess."""
    command = [pgwire.PGBENCH, "-h", "127.0.0.1", "-p", str(port), "-U", USER, *args, DB]
    return subprocess.run(command, env=pgwire.pg_env(PASSWORD), capture_output=True, text=True, timeout=180)


def metric(p, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    total = 0.0
    for key, value in p.metrics().items():
        if key.startswith(name + "{") and all(f'{k}="{v}"' in key for k, v in labels.items()):
            total += value
        elif key == name and not want:
            total += value
    return total


class TransactionPooling(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        raise_fd_limit()
        cls.cluster = LocalCluster.from_env()
        cls.started_here = cls.cluster.ensure_up()
        pgwire.ensure_password_role(cls.cluster, USER, PASSWORD)
        if cls.cluster.value("n0", f"SELECT count(*) FROM pg_database WHERE datname = '{DB}'") == "0":
            cls.cluster.sql("n0", f"CREATE DATABASE {DB} OWNER {USER}")
        pgwire.wait_replayed(cls.cluster)
        users = {USER: PASSWORD}
        cls.wide = cls.narrow = None
        try:
            cls.wide = AutoPglane(cls.cluster, users=users, log_level="info", overrides={
                "workers": 1, "pool": {"mode": "transaction", "size": 10, "min_idle": 2, "max_wait_ms": 120000}}).start()
            cls.narrow = AutoPglane(cls.cluster, users=users, log_level="debug", overrides={
                "workers": 1, "pool": {"mode": "transaction", "size": 1, "max_wait_ms": 1500}}).start()
            for p in (cls.wide, cls.narrow):
                p.wait_until(pgwire.all_routable, 15, "n0 primary and n1, n2 routable standbys")
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for p in (cls.wide, cls.narrow):
            if p:
                p.stop()
        if cls.started_here and not os.environ.get("PGLANE_TEST_KEEP_CLUSTER"):
            cls.cluster.down()

    # -- helpers

    def connect(self, p, port=None, autocommit=True):
        conn = psycopg2.connect(p.dsn(port or p.auto_port, user=USER, password=PASSWORD, dbname=DB),
                                connect_timeout=10)
        conn.autocommit = autocommit
        return conn

    def value(self, conn, sql, params=None):
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchone()[0]

    def asyncpg_args(self, p, port=None):
        return dict(host="127.0.0.1", port=port or p.auto_port, user=USER, password=PASSWORD, database=DB,
                    timeout=60)

    def direct(self, sql):
        """Runs `sql` on the primary as pool_user, bypassing pglane."""
        return self.cluster.sql("n0", sql, user=USER, password=PASSWORD, dbname=DB)

    # -- the tests

    def test_thousand_clients_share_ten_connections_per_node(self):
        clients, transactions = 1000, 2
        self.direct("DROP TABLE IF EXISTS pool_counter, pool_log;"
                    "CREATE TABLE pool_counter (id int PRIMARY KEY, n bigint NOT NULL);"
                    "CREATE TABLE pool_log (client int, i int);"
                    f"INSERT INTO pool_counter SELECT g, 0 FROM generate_series(1, {clients}) g;")
        pgwire.wait_replayed(self.cluster)
        most = {"n0": 0, "n1": 0, "n2": 0}
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                for node in most:
                    most[node] = max(most[node], backends(self.cluster, node))
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        errors = []

        async def client(c, conn):
            try:
                for i in range(transactions):
                    # pgbench-style: a write, a read of it, an insert, in one transaction.
                    async with conn.transaction():
                        await conn.execute("UPDATE pool_counter SET n = n + 1 WHERE id = $1", c)
                        n = await conn.fetchval("SELECT n FROM pool_counter WHERE id = $1", c)
                        if n != i + 1:
                            errors.append(f"client {c}: read {n} after {i + 1} increments")
                        await conn.execute("INSERT INTO pool_log VALUES ($1, $2)", c, i)
                    # and an autocommit read, which may run on a standby
                    await conn.fetchval("SELECT count(*) FROM pool_counter WHERE id <= $1", c)
            except Exception as e:  # noqa: BLE001 - every failure is reported below
                errors.append(f"client {c}: {type(e).__name__}: {e}")
            finally:
                await conn.close()

        async def everyone():
            # All 1,000 are connected before any starts: the client side's SCRAM work (in
            # Python) is paced so that it does not count against pglane's startup deadline.
            pace = asyncio.Semaphore(50)

            async def connect():
                async with pace:
                    return await asyncpg.connect(**self.asyncpg_args(self.wide))

            conns = await asyncio.gather(*(connect() for _ in range(clients)))
            await asyncio.gather(*(client(c, conn) for c, conn in enumerate(conns, start=1)))

        try:
            asyncio.run(everyone())
        finally:
            stop.set()
            sampler.join(5)
        self.assertEqual(errors, [], f"{len(errors)} client errors, first: {errors[:5]}")
        # Every committed write is there, once.
        self.assertEqual(self.direct("SELECT sum(n), count(*) FROM pool_counter")[0],
                         [str(clients * transactions), str(clients)])
        self.assertEqual(self.direct("SELECT count(*), count(DISTINCT (client, i)) FROM pool_log")[0],
                         [str(clients * transactions)] * 2)
        for node, count in most.items():
            # the wide pool's 10, and the narrow pglane's one
            self.assertLessEqual(count, 11, f"{node} had {count} server sessions for a pool of 10")
        self.assertGreater(most["n0"], 0)
        self.assertGreaterEqual(metric(self.wide, "pglane_pool_checkouts_total", node="n0", database=DB),
                                clients * transactions)
        self.assertLessEqual(metric(self.wide, "pglane_pool_server_connections_opened_total", node="n0",
                                    database=DB) - metric(self.wide, "pglane_pool_server_connections_closed_total",
                                                          node="n0", database=DB), 10)
        self.assertGreater(metric(self.wide, "pglane_pool_wait_seconds_count", node="n0", database=DB), 0)

    def test_a_function_catalog_load_does_not_hold_its_connection_while_the_unit_waits(self):
        """A database's first read that calls a function loads pglane's function catalog on a
        connection it borrows, the primary's when it can. It used to keep that connection
        while the unit waited for its standby. Meanwhile a session that held that standby waited
        for the primary, to ask its WAL position for read-your-writes. Each waited for what the
        other held, until pool.max_wait_ms. Here both meet for certain: one connection per node,
        reads only to n1 (n2 weight 0), and the catalog query held up by a lock on pg_proc."""
        self.direct("DROP TABLE IF EXISTS catalog_cycle; CREATE TABLE catalog_cycle (id int)")
        pgwire.wait_replayed(self.cluster)
        nodes = [{"name": n, "host": "127.0.0.1", "port": self.cluster.port(n), "weight": 0 if n == "n2" else 1}
                 for n in ("n0", "n1", "n2")]
        fresh = AutoPglane(self.cluster, users={USER: PASSWORD}, log_level="info", overrides={
            "workers": 1, "nodes": nodes, "pool": {"mode": "transaction", "size": 1, "max_wait_ms": 3000}})
        with fresh:
            fresh.wait_until(pgwire.all_routable, 15, "n0 primary and n1, n2 routable standbys")
            reader, writer = self.connect(fresh), self.connect(fresh)
            writer.cursor().execute("INSERT INTO catalog_cycle VALUES (1)")   # its reads wait for a replay check
            lock = psycopg2.connect(host="127.0.0.1", port=self.cluster.port("n0"), user="postgres",
                                    password=SUPERUSER_PASSWORD, dbname=DB)
            results, errors = {}, []

            def read(name, conn, sql):
                try:
                    results[name] = self.value(conn, sql)
                except Exception as e:  # noqa: BLE001 - reported below
                    errors.append(f"{name}: {type(e).__name__}: {e}")

            try:
                lock.cursor().execute("LOCK TABLE pg_catalog.pg_proc IN ACCESS EXCLUSIVE MODE")
                # count() calls a function: the catalog loads on n0 and waits for the lock there.
                first = threading.Thread(target=read, args=("catalog", reader, "SELECT count(*) FROM catalog_cycle"))
                first.start()
                deadline = time.monotonic() + 10
                waiting = (f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{USER}' "
                           "AND wait_event_type = 'Lock'")
                while self.cluster.value("n0", waiting) == "0":   # from "postgres": its pg_proc is not locked
                    self.assertLess(time.monotonic(), deadline, "the catalog query never waited for the lock")
                    time.sleep(0.05)
                # No function: straight to n1, then the replay check wants n0.
                second = threading.Thread(target=read, args=("replay", writer, "SELECT id FROM catalog_cycle"))
                second.start()
                time.sleep(1.0)
            finally:
                lock.rollback()
                lock.close()
            first.join(20)
            second.join(20)
            self.assertEqual(errors, [])
            self.assertEqual(results, {"catalog": 1, "replay": 1})
            reader.close()
            writer.close()
            self.assertNotIn("pool_wait_timeout", fresh.log_text())

    def test_set_values_stay_with_their_client_on_one_server_session(self):
        p = self.narrow
        a, b = self.connect(p, p.rw_port), self.connect(p, p.rw_port)
        try:
            default = self.value(b, "SHOW TimeZone")
            zone = "Asia/Tokyo" if default != "Asia/Tokyo" else "America/Lima"
            with a.cursor() as cur:
                cur.execute(f"SET TimeZone = '{zone}'")
                cur.execute("SET application_name = 'client-a'")
            for _ in range(3):
                self.assertEqual(self.value(a, "SHOW TimeZone"), zone)
                self.assertEqual(self.value(b, "SHOW TimeZone"), default)
                self.assertEqual(self.value(a, "SELECT current_setting('application_name')"), "client-a")
                self.assertNotEqual(self.value(b, "SELECT current_setting('application_name')"), "client-a")
            # One pooled server session served both, in turns.
            self.assertEqual(self.value(a, "SELECT pg_backend_pid()"), self.value(b, "SELECT pg_backend_pid()"))
            # A SET inside a rolled-back transaction does not stand.
            a.autocommit = False
            with a.cursor() as cur:
                cur.execute("SET TimeZone = 'Europe/Paris'")
            a.rollback()
            a.autocommit = True
            self.assertEqual(self.value(a, "SHOW TimeZone"), zone)
            # SQL-level PREPARE is the client's own.
            with a.cursor() as cur:
                cur.execute("PREPARE who AS SELECT 'a'::text")
            with self.assertRaises(psycopg2.errors.InvalidSqlStatementName):
                self.value(b, "EXECUTE who")
            self.assertEqual(self.value(a, "EXECUTE who"), "a")
        finally:
            a.close()
            b.close()
        c = self.connect(p, p.rw_port)
        try:
            self.assertEqual(self.value(c, "SHOW TimeZone"), default)
        finally:
            c.close()

    def test_a_parse_of_a_name_the_session_holds_gets_42P05(self):
        import auto_common
        auto_common.check_parse_of_a_held_name(
            self, self.wide.dsn(self.wide.auto_port, user=USER, password=PASSWORD, dbname=DB))

    def test_deallocate_drops_a_statement_parsed_through_the_protocol(self):
        import auto_common
        auto_common.check_deallocate_of_a_parsed_statement(
            self, self.wide.dsn(self.wide.auto_port, user=USER, password=PASSWORD, dbname=DB))

    def test_deallocate_through_the_extended_protocol(self):
        import auto_common
        auto_common.check_extended_deallocate(
            self, self.wide.dsn(self.wide.auto_port, user=USER, password=PASSWORD, dbname=DB))

    def test_deallocate_and_parse_anew_in_one_pipeline(self):
        import auto_common
        auto_common.check_deallocate_and_parse_anew_in_one_pipeline(
            self, self.wide.dsn(self.wide.auto_port, user=USER, password=PASSWORD, dbname=DB))

    def test_sql_and_protocol_statements_share_one_namespace(self):
        import auto_common
        auto_common.check_sql_and_protocol_statements_share_names(
            self, self.wide.dsn(self.wide.auto_port, user=USER, password=PASSWORD, dbname=DB))

    def test_same_named_prepared_statements_of_two_clients_interleave(self):
        p = self.narrow
        dsn = p.dsn(p.rw_port, user=USER, password=PASSWORD, dbname=DB)
        # psycopg 3 names its prepared statements _pg3_0, _pg3_1... on every connection.
        with psycopg.connect(dsn, autocommit=True) as a, psycopg.connect(dsn, autocommit=True) as b:
            for i in range(4):
                ra = a.execute("SELECT 'a' || %s::text, 1", (str(i),), prepare=True).fetchone()
                rb = b.execute("SELECT %s::int * 10", (i,), prepare=True).fetchone()
                self.assertEqual(ra, ("a" + str(i), 1))
                self.assertEqual(rb, (i * 10,))
            self.assertEqual(a.execute("SELECT pg_backend_pid()").fetchone(),
                             b.execute("SELECT pg_backend_pid()").fetchone())

        # asyncpg prepares every statement it runs (Parse, Describe, Flush; then Bind,
        # Execute, Sync) and keeps it: its statements outlive the turn on the connection.
        async def interleave():
            one = await asyncpg.connect(**self.asyncpg_args(p, p.rw_port))
            two = await asyncpg.connect(**self.asyncpg_args(p, p.rw_port))
            try:
                out = []
                for i in range(5):
                    out.append(await one.fetchval("SELECT $1::int + 1", i))
                    out.append(await two.fetchval("SELECT $1::text || '-two'", str(i)))
                    out.append(await one.fetchval("SELECT $1::int * 2", i))
                    out.append(await two.fetchval("SELECT $1::int * 3", i))
                pids = (await one.fetchval("SELECT pg_backend_pid()"), await two.fetchval("SELECT pg_backend_pid()"))
                # An explicit prepare (Parse, Describe, Flush) does not hold the only
                # connection until the statement runs: pglane ends it with its own Sync.
                s1 = await one.prepare("SELECT $1::int - 1")
                s2 = await two.prepare("SELECT $1::text || '-prepared'")
                out.append(await s2.fetchval("x"))
                out.append(await s1.fetchval(10))
                # A prepare that fails: the error, then the session goes on.
                with self.assertRaises(asyncpg.PostgresSyntaxError):
                    await one.prepare("SELEC 1")
                out.append(await one.fetchval("SELECT 41 + 1"))
                return out, pids
            finally:
                await one.close()
                await two.close()

        out, pids = asyncio.run(interleave())
        self.assertEqual(out, [v for i in range(5) for v in (i + 1, f"{i}-two", i * 2, i * 3)] + ["x-prepared", 9, 42])
        self.assertEqual(pids[0], pids[1])

    def test_pgbench_prepared_extended_and_simple(self):
        run = pgbench(self.cluster.port("n0"), "-i", "-s", "1", "-q")
        self.assertEqual(run.returncode, 0, run.stderr)
        pgwire.wait_replayed(self.cluster)
        for mode in ("prepared", "extended", "simple"):
            # -j equal to -c: pgbench prepares synchronously, a thread with several clients
            # would block them mid-transaction while it waits for a pooled connection.
            run = pgbench(self.wide.auto_port, "-n", "-M", mode, "-c", "16", "-j", "16", "-t", "10")
            self.assertEqual(run.returncode, 0, f"{mode}: {run.stdout[-1500:]} {run.stderr[-1500:]}")
            self.assertIn("number of transactions actually processed: 160/160", run.stdout, mode)
            self.assertIn("number of failed transactions: 0 ", run.stdout, mode)
        # the wide pool's 10, and the narrow pglane's one
        self.assertLessEqual(backends(self.cluster, "n0"), 11)

    def test_ddl_between_executions_of_a_prepared_statement(self):
        p = self.narrow
        self.direct("DROP TABLE IF EXISTS pool_ddl; CREATE TABLE pool_ddl (id int, a text);"
                    "INSERT INTO pool_ddl VALUES (1, 'x');")
        before = metric(p, "pglane_statements_replanned_total")
        dsn = p.dsn(p.rw_port, user=USER, password=PASSWORD, dbname=DB)
        with psycopg.connect(dsn, autocommit=True) as conn:
            self.assertEqual(conn.execute("SELECT * FROM pool_ddl", prepare=True).fetchall(), [(1, "x")])
            self.direct("ALTER TABLE pool_ddl ADD COLUMN b int DEFAULT 7")
            # PostgreSQL itself would answer 0A000 "cached plan must not change result type".
            self.assertEqual(conn.execute("SELECT * FROM pool_ddl", prepare=True).fetchall(), [(1, "x", 7)])
            self.assertEqual(conn.execute("SELECT * FROM pool_ddl", prepare=True).fetchall(), [(1, "x", 7)])
        self.assertGreaterEqual(metric(p, "pglane_statements_replanned_total"), before + 1)

        # asyncpg names a format per result column: it gets the 0A000 and prepares again itself.
        async def through_asyncpg():
            conn = await asyncpg.connect(**self.asyncpg_args(p, p.rw_port))
            try:
                first = await conn.fetch("SELECT * FROM pool_ddl")
                self.direct("ALTER TABLE pool_ddl ADD COLUMN c text DEFAULT 'z'")
                second = await conn.fetch("SELECT * FROM pool_ddl")
                return [tuple(r) for r in first], [tuple(r) for r in second]
            finally:
                await conn.close()

        first, second = asyncio.run(through_asyncpg())
        self.assertEqual(first, [(1, "x", 7)])
        self.assertEqual(second, [(1, "x", 7, "z")])

    def test_temporary_table_pins_and_a_full_pool_answers_53300(self):
        p = self.narrow
        a, b = self.connect(p, p.rw_port), self.connect(p, p.rw_port)
        try:
            self.assertEqual(self.value(b, "SELECT 1"), 1)
            pins = metric(p, "pglane_pool_pins_total", reason="temporary_table")
            with a.cursor() as cur:
                cur.execute("CREATE TEMP TABLE pool_mine (v int)")
                cur.execute("INSERT INTO pool_mine VALUES (42)")
            self.assertEqual(self.value(a, "SELECT v FROM pool_mine"), 42)
            pinned_pid = self.value(a, "SELECT pg_backend_pid()")
            self.assertEqual(metric(p, "pglane_pool_pins_total", reason="temporary_table"), pins + 1)
            # a holds the only connection to the primary now: b waits max_wait_ms, then 53300.
            started = time.monotonic()
            with self.assertRaises(psycopg2.errors.TooManyConnections) as refused:
                self.value(b, "SELECT 1")
            self.assertGreaterEqual(time.monotonic() - started, 1.4)
            self.assertIn("pool.max_wait_ms", str(refused.exception))
            self.assertGreater(metric(p, "pglane_pool_wait_timeouts_total", node="n0", database=DB), 0)
            self.assertEqual(self.value(a, "SELECT v FROM pool_mine"), 42)
        finally:
            a.close()
        # The pinned connection was closed with its session (its temp table cannot be lent);
        # b's session goes on and gets a fresh one.
        self.assertIsNone(self.value(b, "SELECT to_regclass('pool_mine')"))
        self.assertNotEqual(self.value(b, "SELECT pg_backend_pid()"), pinned_pid)
        b.close()

    def test_clients_vanishing_mid_transaction_and_mid_copy_leave_no_server_state(self):
        p = self.narrow
        self.direct("DROP TABLE IF EXISTS pool_vanish; CREATE TABLE pool_vanish (v text)")
        gone = self.connect(p, p.rw_port, autocommit=False)
        with gone.cursor() as cur:
            cur.execute("INSERT INTO pool_vanish VALUES ('mid-transaction')")
        os.close(gone.fileno())  # the socket goes away without a Terminate
        pgwire.poll(lambda: backends(self.cluster, "n0", "idle in transaction") == 0, 10,
                    "no pool_user session left idle in transaction")

        copying = psycopg.connect(p.dsn(p.rw_port, user=USER, password=PASSWORD, dbname=DB), autocommit=True)
        try:
            with copying.cursor() as cur:
                with cur.copy("COPY pool_vanish FROM STDIN") as copy:
                    copy.write_row(["mid-copy"])
                    os.close(copying.fileno())
        except Exception:  # noqa: BLE001 - the client broke its own socket
            pass
        pgwire.poll(lambda: backends(self.cluster, "n0", "active") == 0, 10, "no pool_user COPY left running")
        after = self.connect(p, p.rw_port)
        try:
            self.assertEqual(self.value(after, "SELECT count(*) FROM pool_vanish"), 0)
            self.assertEqual(self.value(after, "SELECT 1"), 1)
        finally:
            after.close()
        self.assertEqual(backends(self.cluster, "n0", "idle in transaction"), 0)

    def test_pool_recovers_when_its_server_sessions_are_killed_mid_load(self):
        p = self.wide
        self.direct("DROP TABLE IF EXISTS pool_kill; CREATE TABLE pool_kill (v int)")
        pgwire.wait_replayed(self.cluster)
        stop_at = time.monotonic() + 3.0
        failures, successes = [], [0]

        async def worker(w):
            conn = await asyncpg.connect(**self.asyncpg_args(p))
            try:
                while time.monotonic() < stop_at:
                    try:
                        async with conn.transaction():
                            await conn.execute("INSERT INTO pool_kill VALUES ($1)", w)
                        successes[0] += 1
                    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as e:
                        failures.append(type(e).__name__)
                        await asyncio.sleep(0.05)
            finally:
                await conn.close()

        async def killer():
            await asyncio.sleep(1.0)
            self.cluster.sql("n0", f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                   f"WHERE usename = '{USER}' AND backend_type = 'client backend'")

        async def load():
            await asyncio.gather(killer(), *(worker(w) for w in range(20)))

        closed_before = metric(p, "pglane_pool_server_connections_closed_total", node="n0", database=DB)
        asyncio.run(load())
        self.assertGreater(successes[0], 0)
        self.assertGreater(metric(p, "pglane_pool_server_connections_closed_total", node="n0", database=DB),
                           closed_before)

        # Afterwards every transaction succeeds, on fresh server connections.
        async def afterwards():
            conn = await asyncpg.connect(**self.asyncpg_args(p))
            try:
                for i in range(50):
                    async with conn.transaction():
                        await conn.execute("INSERT INTO pool_kill VALUES ($1)", 1000 + i)
            finally:
                await conn.close()

        asyncio.run(afterwards())
        self.assertEqual(self.direct("SELECT count(*) FROM pool_kill WHERE v >= 1000")[0][0], "50")

    def test_a_server_dying_before_a_deferred_begin_is_answered_leaves_the_session_usable(self):
        """pglane answers BEGIN itself and sends it with the transaction's first statement.
        Here the narrow pool's one connection to n0 is frozen and told to terminate, so its
        server dies before answering that BEGIN. The client gets one 08006 naming the server's
        reason (not the server's FATAL, which would tell it its own session is over), and its
        next statement gets an answer: the failed unit used to leave pglane waiting to drop
        the BEGIN's answers from the next unit, and the client hung there."""
        p = self.narrow
        self.direct("DROP TABLE IF EXISTS pool_dying; CREATE TABLE pool_dying (v int)")
        pgwire.wait_replayed(self.cluster)

        async def scenario():
            conn = await asyncpg.connect(**self.asyncpg_args(p), command_timeout=10)
            try:
                async with conn.transaction():
                    pid = await conn.fetchval("SELECT pg_backend_pid()")
                # That server session is back in the pool, idle: freeze it, then terminate it.
                os.kill(pid, signal.SIGSTOP)
                try:
                    self.cluster.sql("n0", f"SELECT pg_terminate_backend({pid})")
                    transaction = conn.transaction()
                    await transaction.start()
                    asyncio.get_running_loop().call_later(0.5, os.kill, pid, signal.SIGCONT)
                    with self.assertRaises(asyncpg.PostgresError) as caught:
                        await conn.execute("INSERT INTO pool_dying VALUES (1)")
                finally:
                    try:
                        os.kill(pid, signal.SIGCONT)
                    except ProcessLookupError:
                        pass
                await transaction.rollback()
                after = await conn.fetchval("SELECT 1")
                await conn.execute("INSERT INTO pool_dying VALUES (2)")
                return caught.exception, after
            finally:
                await conn.close(timeout=5)

        error, after = asyncio.run(asyncio.wait_for(scenario(), 60))
        self.assertEqual(error.sqlstate, "08006", error)
        self.assertIn("lost the connection to server n0: terminating connection due to administrator command",
                      str(error))
        self.assertEqual(after, 1)
        self.assertEqual(self.direct("SELECT array_agg(v) FROM pool_dying")[0][0], "{2}")

    def test_a_stopped_standby_empties_its_pool_which_refills_when_it_returns(self):
        p = self.wide

        def idle(node):
            return metric(p, "pglane_pool_idle_connections", node=node, database=DB)

        conn = self.connect(p)
        try:
            for _ in range(6):
                self.value(conn, "SELECT 1")  # reads: the standbys' pools are used
            pgwire.poll(lambda: idle("n2") >= 2, 10, "n2's pool holding min_idle connections")
            self.cluster.stop("n2")
            try:
                p.wait_until(lambda s: not next(n for n in s["nodes"] if n["name"] == "n2")["up"], 15, "n2 down")
                pgwire.poll(lambda: idle("n2") == 0, 10, "n2's idle connections closed")
                for _ in range(10):
                    self.assertEqual(self.value(conn, "SELECT current_setting('cluster_name')"), "n1")
            finally:
                self.cluster.start("n2")
            p.wait_until(pgwire.all_routable, 30, "n2 routable again")
            # min_idle refills the pool of the node that came back, without any client asking.
            pgwire.poll(lambda: idle("n2") >= 2, 15, "n2's pool refilled to min_idle")
            nodes = {self.value(conn, "SELECT current_setting('cluster_name')") for _ in range(10)}
            self.assertIn("n2", nodes)
        finally:
            conn.close()


if __name__ == "__main__":
    unittest.main()
