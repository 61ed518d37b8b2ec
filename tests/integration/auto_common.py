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
            run = pg.exec_prepared(b"held", [])
            test.assertEqual(run.status, pq.ExecStatus.TUPLES_OK, run.error_message)
            test.assertEqual(run.get_value(0, 0), b"1", "the held statement changed")
        broken = pg.prepare(b"fixed_later", b"SELECT FROM WHERE")
        test.assertEqual(sqlstate(broken), "42601", broken.error_message)
        fixed = pg.prepare(b"fixed_later", b"SELECT 3")
        test.assertEqual(fixed.status, pq.ExecStatus.COMMAND_OK, fixed.error_message)
        run = pg.exec_prepared(b"fixed_later", [])
        test.assertEqual(run.get_value(0, 0), b"3", run.error_message)


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
