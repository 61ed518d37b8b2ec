"""Review findings on the auto port (issue 3) and its failover side (issue 6), each pinned
as a test that fails while the bug is present. Raw-protocol tests log in with auth.method
trust (pglane still logs in to the servers with the users file's password), so the exact
message sequence a driver would send can be written out.

PGLANE_TEST_BASE_PORT=57432 PGLANE_TEST_CLUSTER_DIR=/tmp/pglane-review-57432 \
  /usr/bin/python3 -m unittest discover -s tests/integration -t tests/integration \
  -p 'test_auto_review.py' -v
"""

import socket
import struct
import time
import unittest

import psycopg2

import auto_common as ac
import pgwire
from pglane import AutoPglane

TABLE = "review_t"


# ---- raw extended-protocol client ------------------------------------------------------------

def cstr(text):
    return text.encode() + b"\0"


def parse(name, sql):
    return pgwire.message(b"P", cstr(name) + cstr(sql) + struct.pack("!h", 0))


def bind(statement, portal=""):
    # no parameters, all results in text
    return pgwire.message(b"B", cstr(portal) + cstr(statement) + struct.pack("!hhh", 0, 0, 0))


def describe(kind, name):
    return pgwire.message(b"D", kind + cstr(name))


def execute(portal="", max_rows=0):
    return pgwire.message(b"E", cstr(portal) + struct.pack("!i", max_rows))


def close(kind, name):
    return pgwire.message(b"C", kind + cstr(name))


SYNC = pgwire.message(b"S")
FLUSH = pgwire.message(b"H")


def copy_data(data):
    return pgwire.message(b"d", data)


COPY_DONE = pgwire.message(b"c")


class Raw:
    """A raw session through the auto port (trust auth), past the first ReadyForQuery."""

    def __init__(self, port, timeout=5.0, **params):
        self.sock = pgwire.connect(port, timeout)
        self.sock.sendall(pgwire.startup_packet("postgres", **params))
        self.until(b"Z")

    def send(self, *messages):
        self.sock.sendall(b"".join(messages))

    def until(self, *tags, timeout=5.0):
        """Messages [(tag, body)] up to and including the first whose tag is in `tags`."""
        self.sock.settimeout(timeout)
        seen = []
        while True:
            tag, body = pgwire.read_message(self.sock)
            seen.append((tag, body))
            if tag in tags:
                return seen

    def close(self):
        try:
            self.sock.sendall(pgwire.message(b"X"))
        except OSError:
            pass
        self.sock.close()


def tags(messages):
    return b"".join(tag for tag, _ in messages).decode()


def errors(messages):
    return [pgwire.error_fields(body) for tag, body in messages if tag == b"E"]


def rows(messages):
    out = []
    for tag, body in messages:
        if tag != b"D":
            continue
        count = struct.unpack("!H", body[:2])[0]
        pos, row = 2, []
        for _ in range(count):
            n = struct.unpack("!i", body[pos:pos + 4])[0]
            pos += 4
            row.append(None if n < 0 else body[pos:pos + n].decode())
            pos += max(n, 0)
        out.append(row)
    return out


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# ---- fixture ---------------------------------------------------------------------------------

class ReviewBase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster, cls.started = ac.cluster_up()
        cls.cluster.sql("n0", f"CREATE TABLE IF NOT EXISTS {TABLE} (id int, note text)")
        # Counts below expect each id once: a cluster kept from an earlier run holds them already.
        cls.cluster.sql("n0", f"TRUNCATE {TABLE}")
        ac.settle(cls.cluster)

    @classmethod
    def tearDownClass(cls):
        ac.cluster_down(cls.cluster, cls.started)

    def start(self, overrides=None, standbys=("n1", "n2")):
        """pglane with trust auth for raw sockets; `standbys`: the standbys it is told about."""
        merged = {"auth": {"method": "trust"}}
        for key, val in (overrides or {}).items():
            merged[key] = val
        p = AutoPglane(self.cluster, merged)
        p.config["nodes"] = [{"name": n, "host": "127.0.0.1", "port": self.cluster.port(n)}
                             for n in ("n0", *standbys)]
        p.start()
        self.addCleanup(p.stop)
        p.wait_until(lambda s: pgwire.all_routable(s, standbys=standbys), 15, "routable")
        return p

    def raw(self, p, **params):
        r = Raw(p.auto_port, **params)
        self.addCleanup(r.close)
        return r


# ---- confirmed bugs --------------------------------------------------------------------------

class ExtendedProtocolReview(ReviewBase):

    def test_extended_copy_from_stdin_with_trailing_sync_completes(self):
        """libpq (PQexecParams/psycopg 3 with parameters, JDBC CopyManager) sends COPY FROM
        STDIN as Parse/Bind/Describe/Execute/Sync, then CopyData/CopyDone and a second Sync.
        The server ignores the first Sync while in copy-in mode and answers ReadyForQuery only
        after the second one. pglane stops forwarding client bytes after CopyDone because
        the unit is 'complete', so the second Sync stays in its buffer: both sides wait forever."""
        p = self.start()
        r = self.raw(p)
        r.send(parse("", f"COPY {TABLE} (id, note) FROM STDIN"), bind(""), describe(b"P", ""), execute(), SYNC)
        got = r.until(b"G", b"E")
        self.assertEqual(got[-1][0], b"G", f"expected CopyInResponse, got {tags(got)} {errors(got)}")
        r.send(copy_data(b"9001\tcopy-ext\n"), COPY_DONE, SYNC)
        try:
            done = r.until(b"Z", timeout=5)
        except socket.timeout:
            self.fail("no ReadyForQuery 5 s after CopyDone + Sync: the second Sync never reached the server")
        self.assertIn("C", tags(done))
        self.assertEqual(errors(done), [])

    def test_write_after_flush_in_same_unit_does_not_run_on_a_standby(self):
        """A unit is routed when it is first read; after a Flush (psycopg 3 pipeline mode
        fetching results before the pipeline's Sync sends one), the rest of the unit up to
        Sync is appended to the same server unclassified. A read followed by a write in one
        Sync block sends the write to the standby: 25006 'cannot execute INSERT in a
        read-only transaction'."""
        p = self.start()
        r = self.raw(p)
        r.send(parse("", ac.NODE_SQL), bind(""), execute(), FLUSH)
        first = r.until(b"C", b"E")
        r.send(parse("", f"INSERT INTO {TABLE} VALUES (9002, 'after flush')"), bind(""), execute(), SYNC)
        rest = r.until(b"Z")
        node = rows(first)[0][0] if rows(first) else "?"
        self.assertEqual(errors(first + rest), [], f"the unit started on {node}")

    def test_psycopg3_pipeline_fetch_then_write(self):
        """The same through a real client: psycopg 3 pipeline mode, a fetch inside the
        pipeline (psycopg sends Flush), then an INSERT before the pipeline ends."""
        import psycopg
        p = self.start()
        with psycopg.connect(p.auto_dsn(), autocommit=True) as conn:
            with conn.pipeline():
                cur = conn.cursor()
                cur.execute(ac.NODE_SQL)
                cur.fetchone()
                conn.cursor().execute(f"INSERT INTO {TABLE} VALUES (%s, 'pipeline')", (9003,))
            count = conn.execute(f"/* pglane: route=primary */ SELECT count(*) FROM {TABLE} "
                                 "WHERE id = 9003").fetchone()[0]
            self.assertGreaterEqual(count, 1)

    def test_unnamed_statement_survives_pglane_hidden_queries(self):
        """The unnamed prepared statement lives until the next Parse of it or the next simple
        Query. pglane's own read-your-writes probe (SELECT pg_last_wal_replay_lsn(), a simple
        Query) runs on the standby that holds the client's unnamed statement and destroys it,
        while pglane still records it as held there: the client's Bind fails with 26000.
        (Drivers that Parse+Describe first and Bind later, e.g. pgx's describe-exec mode.)"""
        p = self.start(standbys=("n1",))
        r = self.raw(p)
        failures = []
        for i in range(3):
            r.send(parse("", ac.NODE_SQL), describe(b"S", ""), SYNC)
            first = r.until(b"Z")
            self.assertEqual(errors(first), [])
            r.send(parse("w", f"INSERT INTO {TABLE} VALUES ({9100 + i}, 'w')"), bind("w"), execute(),
                   close(b"S", "w"), SYNC)
            self.assertEqual(errors(r.until(b"Z")), [])
            time.sleep(0.3)  # the standby has replayed: the unit will run there after the probe
            r.send(bind(""), execute(), SYNC)
            failures += errors(r.until(b"Z"))
        self.assertEqual(failures, [])

    def test_pipelined_injection_answers_keep_their_order(self):
        """Messages that arrive after a Flush are appended to the running unit with their own
        injected Parse in front. pglane swallows 'the next N ParseComplete' it sees; when the
        client's own Parse is still unanswered, the client's ParseComplete is swallowed and
        the injected one forwarded in a later position: the client sees BindComplete before
        ParseComplete."""
        p = self.start(standbys=("n1",))
        r = self.raw(p)
        # "s" is prepared on the primary only (route hint), so the standby lacks it.
        r.send(parse("s", "/* pglane: route=primary */ SELECT 2"), SYNC)
        self.assertEqual(errors(r.until(b"Z")), [])
        # One write from the client: a read that goes to the standby, Flush, then Bind "s".
        r.send(parse("", "SELECT 1"), bind(""), execute(), FLUSH,
               bind("s"), execute(), SYNC)
        got = r.until(b"Z")
        self.assertEqual(errors(got), [])
        self.assertEqual(tags(got), "12DC2DCZ")


class SessionStateReview(ReviewBase):

    def test_parse_only_set_is_not_replayed(self):
        """session_sql is recorded when a SET is Parsed, not when it runs: a SET that is only
        Parsed (and Described) is replayed on every other node, so reads on standbys run with
        a setting the client never applied."""
        p = self.start()
        r = self.raw(p, application_name="original")
        r.send(parse("never", "SET application_name = 'never-executed'"), describe(b"S", "never"), SYNC)
        self.assertEqual(errors(r.until(b"Z")), [])
        seen = set()
        for _ in range(4):
            r.send(pgwire.query_message("SELECT current_setting('application_name')"))
            seen.update(v[0] for v in rows(r.until(b"Z")))
        self.assertEqual(seen, {"original"})

    def test_reexecuted_prepared_set_is_replayed(self):
        """A SET run again through Bind/Execute of a named statement adds nothing to the
        session's SET history (only Parse does): other nodes replay an older value."""
        p = self.start()
        r = self.raw(p)
        r.send(parse("s1", "SET application_name = 'first'"), bind("s1"), execute(), SYNC)
        self.assertEqual(errors(r.until(b"Z")), [])
        r.send(pgwire.query_message("SET application_name = 'second'"))
        self.assertEqual(errors(r.until(b"Z")), [])
        r.send(bind("s1"), execute(), SYNC)   # the client's setting is 'first' again
        self.assertEqual(errors(r.until(b"Z")), [])
        seen = set()
        for _ in range(4):
            r.send(pgwire.query_message("SELECT current_setting('application_name')"))
            seen.update(v[0] for v in rows(r.until(b"Z")))
        self.assertEqual(seen, {"first"})

    def test_set_undone_by_rollback_to_savepoint_is_not_replayed(self):
        """remember_settings() keeps a transaction's SETs when the ending unit contains COMMIT,
        but ROLLBACK TO SAVEPOINT undid this one (the primary even reported application_name
        back to its old value with a ParameterStatus). The standbys replay it anyway."""
        p = self.start()
        r = self.raw(p, application_name="original")
        for sql in ("BEGIN", "SAVEPOINT a", "SET application_name = 'undone-by-savepoint'",
                    "ROLLBACK TO SAVEPOINT a", "COMMIT"):
            r.send(pgwire.query_message(sql))
            self.assertEqual(errors(r.until(b"Z")), [], sql)
        seen = set()
        for _ in range(4):
            r.send(pgwire.query_message("SELECT current_setting('application_name')"))
            seen.update(v[0] for v in rows(r.until(b"Z")))
        self.assertEqual(seen, {"original"})

class ReadYourWritesReview(ReviewBase):

    def pause_standbys(self):
        for node in ("n1", "n2"):
            self.cluster.pause_replay(node)
            self.addCleanup(self.cluster.resume_replay, node)

    def test_begin_read_only_sees_own_write(self):
        """BEGIN READ ONLY (and BEGIN + SET TRANSACTION READ ONLY) go to a standby without the
        read-your-writes check: a session that just committed a row does not see it."""
        p = self.start()
        conn = ac.connect(p)
        self.addCleanup(conn.close)
        cur = conn.cursor()
        self.pause_standbys()
        missed = []
        for i, opener in enumerate(("BEGIN READ ONLY", "BEGIN; SET TRANSACTION READ ONLY")):
            cur.execute(f"INSERT INTO {TABLE} VALUES (%s, 'ryw')", (9200 + i,))
            for statement in opener.split("; "):
                cur.execute(statement)
            cur.execute(f"SELECT count(*), current_setting('cluster_name') FROM {TABLE} WHERE id = %s",
                        (9200 + i,))
            count, node = cur.fetchone()
            cur.execute("COMMIT")
            if count != 1:
                missed.append((opener, node))
        self.assertEqual(missed, [])


class RobustnessReview(ReviewBase):

    def test_restarted_standby_does_not_fail_the_next_read(self):
        """A standby restarts while a session is idle: its connection to it holds the server's
        FATAL 57P01 and EOF, unread. When the standby is routable again the next read routed
        there reuses the dead connection and the client gets the stale FATAL (plus an 08006)
        instead of a result; nothing had been forwarded, so it should be re-run elsewhere."""
        p = self.start()
        conn = ac.connect(p)
        self.addCleanup(conn.close)
        cur = conn.cursor()
        self.assertEqual(set(ac.nodes_of(cur, 4)), {"n1", "n2"})  # both standby connections open
        self.cluster.stop("n1")
        self.addCleanup(lambda: self.cluster.start("n1") if not self.cluster.status()["n1"]["running"] else None)
        p.wait_until(lambda s: not next(n for n in s["nodes"] if n["name"] == "n1")["up"], 15, "n1 down")
        self.cluster.start("n1")
        p.wait_until(pgwire.all_routable, 30, "n1 routable again")
        failures = []
        for _ in range(4):
            try:
                ac.value(cur, ac.NODE_SQL)
            except psycopg2.Error as e:
                failures.append(f"{e.pgcode}: {e}".strip())
        self.assertEqual(failures, [])

    def test_unit_without_sync_cannot_grow_pglane_without_bound(self):
        """read_unit() keeps every message up to Sync in Unit::bytes. A client that streams
        messages without Sync makes pglane's memory grow without bound (here 128 MiB of
        Describe-portal messages), a flood that should cost only that client its connection."""
        p = self.start()
        before = rss_kib(p.process.pid)
        sock = pgwire.connect(p.auto_port, 10)
        self.addCleanup(sock.close)
        sock.sendall(pgwire.startup_packet("postgres"))
        r = Raw.__new__(Raw)
        r.sock = sock
        r.until(b"Z")
        chunk = describe(b"P", "") * 65536   # 458 KiB
        sent = 0
        try:
            while sent < 128 * 1024 * 1024:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # closed by pglane: fine
        time.sleep(0.5)
        grown_mib = (rss_kib(p.process.pid) - before) / 1024
        self.assertLess(grown_mib, 48, f"pglane grew by {grown_mib:.0f} MiB for one session's unsynced messages")


if __name__ == "__main__":
    unittest.main()
