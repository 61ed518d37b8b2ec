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
