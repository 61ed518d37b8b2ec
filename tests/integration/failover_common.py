"""Shared helpers for the destructive failover tests (test_zz_failover_*.py, issue 6): a
fresh cluster, a pglane with the built-in failover manager on, SIGKILL of a node's
postmaster, waiting for pglane to elect a new primary, and ledger writers/readers that
record what the clients saw. /usr/bin/python3 only (psycopg2)."""

import os
import re
import signal
import threading
import time

import psycopg2

import pgwire
from cluster import LocalCluster, NODES
from pglane import AutoPglane

# Fast failover for tests: probes every 200 ms, down after 2 failures, promote after 1 s.
INTERVAL_MS = 200
AFTER_MS = 1000


def cluster():
    return LocalCluster.from_env()


def roles(c):
    return {node: row["role"] for node, row in c.status().items()}


def pristine(c):
    try:
        return roles(c) == {"n0": "primary", "n1": "standby", "n2": "standby"}
    except Exception:  # noqa: BLE001 - a half-torn-down cluster is not pristine
        return False


def rebuild(c, force=False):
    """A fresh cluster: n0 primary, n1 and n2 streaming (ANY 1 quorum), test roles created."""
    if force or not pristine(c):
        c.down()
        c.up()
    pgwire.poll(lambda: pgwire.cluster_streaming(c), 30, "n1 and n2 streaming from n0")
    pgwire.ensure_roles(c)


def restore(c):
    """tearDownModule of a file that changed roles: leave a fresh cluster behind."""
    c.down()
    if not os.environ.get("PGLANE_TEST_FAILOVER_LEAVE_DOWN"):
        c.up()


def failover_pglane(c, after_ms=AFTER_MS, hold_ms=15000, enabled=True, extra=None, start=True,
                    **kwargs):
    """An AutoPglane (auth section: rw sessions can move too) with the failover manager."""
    overrides = {"health": {"interval_ms": INTERVAL_MS, "failures_before_down": 2},
                 "failover": {"enabled": enabled, "after_ms": after_ms, "hold_ms": hold_ms,
                              "promote_timeout_ms": 30000}}
    if extra:
        from pglane import merge
        merge(overrides, extra)
    p = AutoPglane(c, overrides, **kwargs)
    if start:
        p.start()
        try:
            p.wait_until(pgwire.all_routable, 15, "n0 primary and n1, n2 routable standbys")
        except Exception:
            p.stop()
            raise
    return p


def postmaster_pid(c, node):
    with open(c.data_dir(node) / "postmaster.pid") as f:
        return int(f.readline().strip())


def kill_node(c, node, sig=signal.SIGKILL):
    """SIGKILLs the node's postmaster; returns time.monotonic() just before the signal.
    Its backends notice the postmaster's death and exit on their own."""
    pid = postmaster_pid(c, node)
    at = time.monotonic()
    os.kill(pid, sig)
    return at


def wait_node_dead(c, node, timeout=15):
    pgwire.poll(lambda: not c.status()[node]["running"], timeout, f"{node} to be dead")


def in_recovery(c, node):
    """True/False, or None when the node does not answer."""
    try:
        return c.value(node, "SELECT pg_is_in_recovery()", timeout=5) == "t"
    except Exception:  # noqa: BLE001 - down node
        return None


def wait_new_primary(p, old="n0", timeout=30):
    """Waits until pglane elects a primary other than `old`; returns its name."""
    status = p.wait_until(lambda s: s.get("primary") not in (None, old), timeout,
                          f"a new primary other than {old}")
    return status["primary"]


def log_events(p, event):
    return [line for line in p.log_text().splitlines() if re.search(rf"\b{event}\b", line)]


def metric(p, name):
    """Sum of a counter over its label sets."""
    total = 0.0
    for key, val in p.metrics().items():
        if key == name or key.startswith(name + "{"):
            total += val
    return total


def error_text(e):
    code = getattr(e, "pgcode", None)
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return f"{code or '-'}: {msg}"


# --- the ledger load (tests 1 and 2)

class Writer(threading.Thread):
    """Inserts ledger rows with unique ids in autocommit through one port; an id counts as
    acknowledged only when its INSERT returned successfully. On an error it reconnects if
    the connection is gone, otherwise retries with a new id on the same connection."""

    def __init__(self, name, dsn, stop_event, deadline_fn):
        super().__init__(daemon=True, name=name)
        self.dsn = dsn
        self.stop_event = stop_event
        self.deadline_fn = deadline_fn
        self.acked = []
        self.ops = []          # (start, end, ok, node that acknowledged or None)
        self.errors = []       # (time, text)
        self.seq = 0
        self.conn = None

    def _connect(self):
        self.conn = psycopg2.connect(self.dsn, connect_timeout=10)
        self.conn.autocommit = True

    def run(self):
        while not self.stop_event.is_set():
            start = time.monotonic()
            try:
                if self.conn is None or self.conn.closed:
                    self._connect()
                self.seq += 1
                ident = f"{self.name}-{self.seq}"
                with self.conn.cursor() as cur:
                    cur.execute("INSERT INTO ledger (id) VALUES (%s) "
                                "RETURNING current_setting('cluster_name')", (ident,))
                    node = cur.fetchone()[0]
                self.acked.append(ident)
                self.ops.append((start, time.monotonic(), True, node))
            except psycopg2.Error as e:
                now = time.monotonic()
                self.ops.append((start, now, False, None))
                self.errors.append((now, error_text(e)))
                if self.conn is not None and self.conn.closed:
                    self.conn = None
                time.sleep(0.05)
            if time.monotonic() > self.deadline_fn():
                break
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001
                pass


class Reader(threading.Thread):
    """SELECTs in a loop through one port; reconnect_every > 0 opens a new session every
    that many queries (new sessions during the outage are reads too)."""

    def __init__(self, name, dsn, stop_event, sql, reconnect_every=0):
        super().__init__(daemon=True, name=name)
        self.dsn = dsn
        self.stop_event = stop_event
        self.sql = sql
        self.reconnect_every = reconnect_every
        self.count = 0
        self.errors = []
        self.nodes = set()

    def run(self):
        conn = None
        n = 0
        while not self.stop_event.is_set():
            try:
                if conn is None or conn.closed or (self.reconnect_every and n >= self.reconnect_every):
                    if conn is not None:
                        conn.close()
                    conn = psycopg2.connect(self.dsn, connect_timeout=10)
                    conn.autocommit = True
                    n = 0
                with conn.cursor() as cur:
                    cur.execute(self.sql)
                    row = cur.fetchone()
                    self.nodes.add(row[0])
                self.count += 1
                n += 1
            except psycopg2.Error as e:
                self.errors.append((time.monotonic(), error_text(e)))
                if conn is not None and conn.closed:
                    conn = None
                time.sleep(0.05)
            time.sleep(0.005)
        if conn is not None:
            conn.close()


def join_all(threads, timeout):
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return [t.name for t in threads if t.is_alive()]


def ledger_ids(c, node):
    return {row[0] for row in c.sql(node, "SELECT id FROM ledger", timeout=60)}


__all__ = ["NODES"]
