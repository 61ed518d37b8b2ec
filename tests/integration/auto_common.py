"""Shared helpers for the auto-port integration tests (test_auto_*.py): a cluster that is
brought up if needed, an AutoPglane in front of it, psycopg2 connections through
listen.auto, and "which node answered" helpers based on current_setting('cluster_name')
(STABLE, so it may run on a standby)."""

import os
import re
import subprocess
import time

import psycopg2

import pgwire
from cluster import LocalCluster
from pglane import AutoPglane

STANDBYS = {"n1", "n2"}
NODE_SQL = "SELECT current_setting('cluster_name')"


def cluster_up():
    """(cluster, started_here)."""
    cluster = LocalCluster.from_env()
    started = cluster.ensure_up()
    return cluster, started


def cluster_down(cluster, started):
    if started and not os.environ.get("PGLANE_TEST_KEEP_CLUSTER"):
        cluster.down()


def start_auto(cluster, **kwargs):
    """An AutoPglane (debug log) that is running and sees n0 primary and n1, n2 routable."""
    p = AutoPglane(cluster, **kwargs).start()
    try:
        p.wait_until(pgwire.all_routable, 15, "n0 primary and n1, n2 routable standbys")
    except Exception:
        p.stop()
        raise
    return p


def connect(p, autocommit=True, **kw):
    conn = psycopg2.connect(p.auto_dsn(**kw), connect_timeout=5)
    conn.autocommit = autocommit
    return conn


def value(cur, sql, params=None):
    cur.execute(sql, params)
    return cur.fetchone()[0]


def nodes_of(cur, count, sql=NODE_SQL):
    return [value(cur, sql) for _ in range(count)]


def settle(cluster):
    """Waits until both standbys replayed the primary's WAL and pglane's probes (200 ms) saw it."""
    pgwire.wait_replayed(cluster)
    time.sleep(0.7)


def nodes_until_standbys(cur, timeout=5.0):
    """The nodes a session's reads land on, read until both standbys were seen or `timeout`.
    After a write, read-your-writes asks the primary's current WAL position, which may be a
    background record (a standby snapshot, a checkpoint) ahead of what settle() waited for,
    and not yet flushed to the standbys for up to wal_writer_delay: the first reads may then
    rightly stay on the primary."""
    seen = set()
    deadline = time.monotonic() + timeout
    while not STANDBYS <= seen and time.monotonic() < deadline:
        seen.add(value(cur, NODE_SQL))
        time.sleep(0.02)
    return seen


def log_lines(p, pattern):
    return [line for line in p.log_text().splitlines() if re.search(pattern, line)]


def log_tail(p, chars=3000):
    return p.log_text()[-chars:]


def psql(port, sql=None, stdin=None, user="postgres", password="postgres", dbname="postgres",
         extra=(), timeout=60):
    """psql -X -At through a port; sql via -c, or a script on stdin (-f -)."""
    args = [pgwire.PSQL, "-X", "-w", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
            "-p", str(port), "-U", user, "-d", dbname, *extra]
    args += ["-c", sql] if sql is not None else ["-f", "-"]
    return subprocess.run(args, input=stdin, env=pgwire.pg_env(password), capture_output=True,
                          text=True, timeout=timeout)


def sqlstate(result):
    """The SQLSTATE of a psycopg 3 pq result ("" when none)."""
    from psycopg import pq
    return (result.error_field(pq.DiagnosticField.SQLSTATE) or b"").decode()


def check_parse_of_a_held_name(test, dsn):
    """Through pglane, as on a server of its own: a Parse of a statement name the session holds
    gets 42P05 and leaves the statement as it was, wherever the Parse is routed; a Parse that
    failed leaves no statement behind, so the name can be Parsed again. libpq's PQprepare
    (psycopg 3's pgconn.prepare) sends Parse and Sync."""
    import psycopg
    from psycopg import pq

    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        pg = conn.pgconn
        first = pg.prepare(b"held", b"SELECT 1")
        test.assertEqual(first.status, pq.ExecStatus.COMMAND_OK, first.error_message)
        for attempt in range(4):   # read-only Parses take the standbys in turn: each must refuse
            again = pg.prepare(b"held", b"SELECT 2")
            test.assertEqual(again.status, pq.ExecStatus.FATAL_ERROR, f"attempt {attempt}: the second Parse succeeded")
            test.assertEqual(sqlstate(again), "42P05", again.error_message)
            # Under pooling too, the message names the statement as the client does.
            test.assertIn(b'prepared statement "held" already exists', again.error_message)
            run = pg.exec_prepared(b"held", [])
            test.assertEqual(run.status, pq.ExecStatus.TUPLES_OK, run.error_message)
            test.assertEqual(run.get_value(0, 0), b"1", "the held statement changed")
        broken = pg.prepare(b"fixed_later", b"SELECT FROM WHERE")
        test.assertEqual(sqlstate(broken), "42601", broken.error_message)
        fixed = pg.prepare(b"fixed_later", b"SELECT 3")
        test.assertEqual(fixed.status, pq.ExecStatus.COMMAND_OK, fixed.error_message)
        run = pg.exec_prepared(b"fixed_later", [])
        test.assertEqual(run.get_value(0, 0), b"3", run.error_message)


def check_deallocate_and_parse_anew_in_one_pipeline(test, dsn):
    """A pipeline that DEALLOCATEs a statement and Parses its name anew before its Sync (a
    driver evicting from its statement cache in the same round trip that prepares): the new
    statement is what the name holds afterwards, on every node the session's reads reach,
    and the same for DEALLOCATE ALL."""
    import psycopg
    from psycopg import pq

    def pipeline(pg, deallocate, query):
        pg.enter_pipeline_mode()
        pg.send_query_params(deallocate, None)
        pg.send_prepare(b"again", query)
        pg.send_query_prepared(b"again", None)
        pg.pipeline_sync()
        answers = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (not answers or answers[-1][0] != pq.ExecStatus.PIPELINE_SYNC):
            pg.consume_input()
            while not pg.is_busy():
                result = pg.get_result()
                if result is None:
                    break
                answers.append((pq.ExecStatus(result.status), result.error_message.decode().strip(),
                                result.get_value(0, 0) if result.status == pq.ExecStatus.TUPLES_OK else None))
                if answers[-1][0] == pq.ExecStatus.PIPELINE_SYNC:
                    break
            time.sleep(0.005)
        while pg.get_result() is not None:
            pass
        pg.exit_pipeline_mode()
        return answers

    cluster = LocalCluster.from_env()
    standby_ports = {cluster.port("n1"), cluster.port("n2")}
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        pg = conn.pgconn
        for round_, deallocate in enumerate((b"DEALLOCATE again", b"DEALLOCATE ALL")):
            old, new = f"SELECT {round_ * 10 + 1}".encode(), f"SELECT {round_ * 10 + 2}, inet_server_port()".encode()
            made = pg.prepare(b"again", old)
            test.assertEqual(made.status, pq.ExecStatus.COMMAND_OK, made.error_message)
            answers = pipeline(pg, deallocate, new)
            test.assertEqual([a[0] for a in answers],
                             [pq.ExecStatus.COMMAND_OK, pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK,
                              pq.ExecStatus.PIPELINE_SYNC], f"{deallocate}: {answers}")
            test.assertEqual(answers[2][2], str(round_ * 10 + 2).encode())
            # Reads take the standbys in turn, once they have replayed what the session did on
            # the primary (read-your-writes): both must hold the new statement.
            ports = set()
            for attempt in range(100):
                run = pg.exec_prepared(b"again", None)
                test.assertEqual(run.status, pq.ExecStatus.TUPLES_OK, f"{deallocate}, {attempt}: {run.error_message}")
                test.assertEqual(run.get_value(0, 0), str(round_ * 10 + 2).encode())
                ports.add(int(run.get_value(0, 1)))
                if standby_ports <= ports:
                    break
                time.sleep(0.02)
            test.assertLessEqual(standby_ports, ports, "the reads did not reach both standbys")
            test.assertEqual(pg.exec_(b"DEALLOCATE again").status, pq.ExecStatus.COMMAND_OK)


def check_extended_deallocate(test, dsn):
    """DEALLOCATE sent with the extended protocol (libpq's PQexecParams, as psycopg 3 sends it
    when it evicts a statement from its cache) drops the statement wherever the session's
    units ran, as on a server of its own: statements Parsed through the protocol or made by
    SQL PREPARE, one by name or all at once. The names are then free and a use of one gets
    26000."""
    import psycopg
    from psycopg import pq

    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        conn.prepare_threshold = 0   # prepare every query at its first execution
        conn.prepared_max = 2        # and evict (DEALLOCATE) the oldest past two
        queries = [f"SELECT {k} AS v" for k in range(6)] + ["SELECT %s::int + 100 AS v"]
        for i in range(28):
            k = i % len(queries)
            params = (i,) if "%s" in queries[k] else None
            expected = i + 100 if params else k
            test.assertEqual(conn.execute(queries[k], params).fetchone()[0], expected, f"execution {i}")
        pg = conn.pgconn
        # psycopg 3 names its statements _pg3_0, _pg3_1...: all but the two newest were evicted.
        evicted = pg.exec_prepared(b"_pg3_0", [])
        test.assertEqual(sqlstate(evicted), "26000", f"_pg3_0 survived its eviction: {evicted.error_message}")

        for attempt in range(3):   # the units take the standbys in turn
            made = pg.exec_(f"PREPARE sql_made AS SELECT {attempt}".encode())
            test.assertEqual(made.status, pq.ExecStatus.COMMAND_OK, made.error_message)
            ran = pg.exec_(b"EXECUTE sql_made")
            test.assertEqual(ran.get_value(0, 0), str(attempt).encode(), ran.error_message)
            parsed = pg.prepare(b"parsed", f"SELECT {attempt}".encode())
            test.assertEqual(parsed.status, pq.ExecStatus.COMMAND_OK, parsed.error_message)
            run = pg.exec_prepared(b"parsed", [])
            test.assertEqual(run.get_value(0, 0), str(attempt).encode(), run.error_message)
            for name in (b"sql_made", b"parsed"):
                gone = pg.exec_params(b"DEALLOCATE " + name, [])
                test.assertEqual(gone.status, pq.ExecStatus.COMMAND_OK,
                                 f"attempt {attempt}, {name}: {gone.error_message}")
            test.assertEqual(sqlstate(pg.exec_(b"EXECUTE sql_made")), "26000", f"attempt {attempt}")
            test.assertEqual(sqlstate(pg.exec_prepared(b"parsed", [])), "26000", f"attempt {attempt}")

        for attempt in range(2):
            test.assertEqual(pg.exec_(b"PREPARE sql_all AS SELECT 1").status, pq.ExecStatus.COMMAND_OK)
            test.assertEqual(pg.prepare(b"parsed_all", b"SELECT 2").status, pq.ExecStatus.COMMAND_OK)
            test.assertEqual(pg.exec_prepared(b"parsed_all", []).get_value(0, 0), b"2")
            gone = pg.exec_params(b"DEALLOCATE ALL", [])
            test.assertEqual(gone.status, pq.ExecStatus.COMMAND_OK, gone.error_message)
            test.assertEqual(sqlstate(pg.exec_(b"EXECUTE sql_all")), "26000", f"attempt {attempt}")
            test.assertEqual(sqlstate(pg.exec_prepared(b"parsed_all", [])), "26000", f"attempt {attempt}")


def check_sql_and_protocol_statements_share_names(test, dsn):
    """SQL PREPARE and the protocol's Parse name statements in one namespace, as on a server
    of its own: a Bind or Describe runs a statement SQL PREPARE made, EXECUTE runs one the
    client Parsed, and a name either one holds is refused to the other (42P05), whichever
    node each unit lands on. Under transaction pooling a server knows a Parsed statement by
    a pooled name: pglane sends the SQL with that name, so all of this holds there too."""
    import psycopg
    from psycopg import pq

    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        pg = conn.pgconn
        made = pg.exec_(b"PREPARE by_sql AS SELECT 10 + $1::int")
        test.assertEqual(made.status, pq.ExecStatus.COMMAND_OK, made.error_message)
        for attempt in range(3):   # reads take the standbys in turn
            run = pg.exec_prepared(b"by_sql", [str(attempt).encode()])
            test.assertEqual(run.status, pq.ExecStatus.TUPLES_OK, f"attempt {attempt}: {run.error_message}")
            test.assertEqual(run.get_value(0, 0), str(10 + attempt).encode())
            described = pg.describe_prepared(b"by_sql")
            test.assertEqual(described.status, pq.ExecStatus.COMMAND_OK, described.error_message)
            test.assertEqual((described.nfields, described.nparams), (1, 1))
            taken = pg.prepare(b"by_sql", b"SELECT 2")
            test.assertEqual(sqlstate(taken), "42P05", f"attempt {attempt}: {taken.status} {taken.error_message}")
        test.assertEqual(pg.exec_(b"EXECUTE by_sql(5)").get_value(0, 0), b"15", "the SQL statement changed")

        parsed = pg.prepare(b"by_parse", b"SELECT 20 + $1::int")
        test.assertEqual(parsed.status, pq.ExecStatus.COMMAND_OK, parsed.error_message)
        for attempt in range(3):
            ran = pg.exec_(f"EXECUTE by_parse({attempt})".encode())
            refused = pg.exec_(b"PREPARE by_parse AS SELECT 2")
            test.assertEqual(ran.status, pq.ExecStatus.TUPLES_OK, f"attempt {attempt}: {ran.error_message}")
            test.assertEqual(ran.get_value(0, 0), str(20 + attempt).encode())
            test.assertEqual(sqlstate(refused), "42P05", f"attempt {attempt}: {refused.status} {refused.error_message}")
            test.assertIn(b'prepared statement "by_parse" already exists', refused.error_message)
        # Inside a transaction, and after the Parsed statement's table went away.
        test.assertEqual(pg.exec_(b"BEGIN").status, pq.ExecStatus.COMMAND_OK)
        test.assertEqual(pg.exec_(b"EXECUTE by_parse(1)").get_value(0, 0), b"21")
        test.assertEqual(pg.exec_(b"COMMIT").status, pq.ExecStatus.COMMAND_OK)
        test.assertEqual(pg.exec_(b"CREATE TABLE IF NOT EXISTS namespace_gone (a int)").status, pq.ExecStatus.COMMAND_OK)
        counted = pg.prepare(b"counts_gone", b"SELECT count(*) FROM namespace_gone")
        test.assertEqual(counted.status, pq.ExecStatus.COMMAND_OK, counted.error_message)
        test.assertEqual(pg.exec_(b"DROP TABLE namespace_gone").status, pq.ExecStatus.COMMAND_OK)
        for attempt in range(3):
            failed = pg.exec_(b"EXECUTE counts_gone")
            # PostgreSQL says 42P01 when it replans; on a node pglane could not bring the
            # statement to, the client gets that same error, not "does not exist" (26000).
            # One error, and the session goes on.
            test.assertEqual(sqlstate(failed), "42P01", f"attempt {attempt}: {failed.error_message}")
            test.assertEqual(pg.exec_(b"SELECT 7").get_value(0, 0), b"7")
        test.assertEqual(pg.transaction_status, pq.TransactionStatus.IDLE)


def check_deallocate_of_a_parsed_statement(test, dsn):
    """SQL DEALLOCATE drops a statement the client Parsed through the protocol (one namespace,
    as on a server of its own), whichever nodes ran it: the name is free again and a Bind of it
    gets 26000."""
    import psycopg
    from psycopg import pq

    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        pg = conn.pgconn
        for attempt in range(3):   # the reads take the standbys in turn, DEALLOCATE may go anywhere
            made = pg.prepare(b"dropped", f"SELECT {attempt}".encode())
            test.assertEqual(made.status, pq.ExecStatus.COMMAND_OK, made.error_message)
            run = pg.exec_prepared(b"dropped", [])
            test.assertEqual(run.get_value(0, 0), str(attempt).encode(), run.error_message)
            gone = pg.exec_(b"DEALLOCATE dropped")   # PQexec: a simple Query
            test.assertEqual(gone.status, pq.ExecStatus.COMMAND_OK, gone.error_message)
            for _ in range(2):
                after = pg.exec_prepared(b"dropped", [])
                test.assertEqual(sqlstate(after), "26000", f"attempt {attempt}: {after.status} {after.error_message}")
