"""What sessions see across a built-in failover (issue 6, "What clients see"; destructive).

3. An idle auto-port session (SET application_name, a protocol-level prepared statement from
   psycopg 3 prepare=True, an SQL PREPARE) keeps its socket over a SIGKILL of the primary:
   its next write runs on the new primary with its state restored, and
   pglane_sessions_moved_total goes up. A session in the middle of a transaction gets an
   error of class 08 or 40 for it, then BEGIN; INSERT; COMMIT on the same connection works.
   The same under transaction pooling (no connection is held between units; the old
   primary's pool empties).
4. failover.hold_ms: with failover on and hold_ms 15000, a write sent right after the kill
   (on an existing session, and on a new rw session) waits and then succeeds; with failover
   off and hold_ms 500, a write fails after about 0.5 s with 08006 naming no primary.
"""

import threading
import time
import unittest

import psycopg
import psycopg2

import failover_common as fc
import pgwire

CLUSTER = None


def setUpModule():
    global CLUSTER
    CLUSTER = fc.cluster()


def tearDownModule():
    fc.restore(CLUSTER)


def fresh_table(c):
    c.sql("n0", "DROP TABLE IF EXISTS fo_t; CREATE TABLE fo_t (id text PRIMARY KEY)")
    pgwire.wait_replayed(c)


def ids_on(c, node):
    return {row[0] for row in c.sql(node, "SELECT id FROM fo_t")}


def idle_and_transaction_across_a_failover(test, p, prefix):
    """An idle session (SET, a protocol-level and an SQL prepared statement) and one inside a
    transaction, then SIGKILL of n0. After the promotion the idle one writes again with its
    state, the other gets an error of class 08 or 40 for its lost transaction and then
    commits a retry on the same connection. Returns (new primary, the lost transaction's
    SQLSTATE, the first line of its error)."""
    idle = psycopg.connect(p.auto_dsn(), autocommit=True, connect_timeout=5)
    test.addCleanup(idle.close)
    idle.execute(f"SET application_name = '{prefix}'")
    idle.execute("PREPARE fo_ins(text) AS INSERT INTO fo_t (id) VALUES ($1)")
    idle.execute("INSERT INTO fo_t (id) VALUES (%s)", (f"{prefix}-before",), prepare=True)
    idle.execute(f"EXECUTE fo_ins('{prefix}-before-sql')")
    test.assertEqual(idle.execute("SELECT current_setting('application_name')").fetchone()[0], prefix)
    tx = psycopg2.connect(p.auto_dsn(), connect_timeout=5)
    test.addCleanup(tx.close)
    with tx.cursor() as cur:
        cur.execute(f"INSERT INTO fo_t (id) VALUES ('{prefix}-tx-lost')")  # BEGIN; INSERT; (open)
    test.assertEqual(tx.get_transaction_status(), psycopg2.extensions.TRANSACTION_STATUS_INTRANS)

    fc.kill_node(CLUSTER, "n0")
    new = fc.wait_new_primary(p, "n0", timeout=30)

    # Idle session: same socket, next statements on the new primary with its state.
    idle.execute("INSERT INTO fo_t (id) VALUES (%s)", (f"{prefix}-after",), prepare=True)
    idle.execute(f"EXECUTE fo_ins('{prefix}-after-sql')")
    test.assertEqual(idle.execute("SELECT current_setting('application_name')").fetchone()[0], prefix)
    test.assertFalse(idle.closed)
    # Session mid-transaction: an error for the lost transaction (class 08 or 40) ...
    with test.assertRaises(psycopg2.Error) as raised:
        with tx.cursor() as cur:
            cur.execute(f"INSERT INTO fo_t (id) VALUES ('{prefix}-tx-second')")
    code = raised.exception.pgcode or ""
    test.assertTrue(code[:2] in ("08", "40"), f"SQLSTATE {code!r}: {raised.exception}")
    test.assertEqual(tx.closed, 0, "the connection of the lost transaction was closed")
    # ... and a retry on the same connection works.
    tx.rollback()
    with tx.cursor() as cur:
        cur.execute(f"INSERT INTO fo_t (id) VALUES ('{prefix}-tx-retry')")
    tx.commit()
    on_new = ids_on(CLUSTER, new)
    test.assertTrue({f"{prefix}-{k}" for k in ("before", "before-sql", "after", "after-sql", "tx-retry")} <= on_new,
                    on_new)
    test.assertFalse({f"{prefix}-tx-lost", f"{prefix}-tx-second"} & on_new, on_new)
    return new, code, str(raised.exception).strip().splitlines()[0]


class IdleAndInTransaction(unittest.TestCase):

    def test_idle_session_moves_and_transaction_session_retries(self):
        c = CLUSTER
        fc.rebuild(c)
        fresh_table(c)
        p = fc.failover_pglane(c)
        self.addCleanup(p.stop)
        moved_before = fc.metric(p, "pglane_sessions_moved_total")
        new, code, message = idle_and_transaction_across_a_failover(self, p, "idle")
        moved_after = fc.metric(p, "pglane_sessions_moved_total")
        self.assertGreater(moved_after, moved_before, "pglane_sessions_moved_total did not increase")
        print(f"\nfailover-sessions new primary {new}; moved {moved_before} -> {moved_after}; "
              f"lost transaction: {code} {message}")


class Pooled(unittest.TestCase):

    def test_pooled_sessions_keep_their_state_and_the_old_primarys_pool_closes(self):
        """The same under transaction pooling: sessions hold no connection between units, so
        the idle one's next write borrows one on the new primary, its SET and statements
        replayed there; the open transaction's connection died with n0, whose pool empties."""
        c = CLUSTER
        fc.rebuild(c)
        fresh_table(c)
        p = fc.failover_pglane(c, extra={"pool": {"mode": "transaction", "size": 4, "min_idle": 1}})
        self.addCleanup(p.stop)
        new, code, message = idle_and_transaction_across_a_failover(self, p, "pooled")

        def pool(node):
            return next(q for q in p.status()["pools"] if q["node"] == node and q["database"] == "postgres")

        pgwire.poll(lambda: pool("n0")["idle"] == 0 and pool("n0")["active"] == 0, 10, "n0's pool empty")
        self.assertGreater(pool(new)["checkouts"], 0)
        print(f"\nfailover-sessions pooled: new primary {new}; lost transaction: {code} {message}")


class Hold(unittest.TestCase):

    def test_write_waits_for_the_promotion(self):
        c = CLUSTER
        fc.rebuild(c)
        fresh_table(c)
        p = fc.failover_pglane(c, hold_ms=15000)
        self.addCleanup(p.stop)
        sessions = {}
        for name in ("existing-now", "existing-gap"):
            conn = sessions[name] = psycopg2.connect(p.auto_dsn(), connect_timeout=5)
            conn.autocommit = True
            self.addCleanup(conn.close)
            with conn.cursor() as cur:
                cur.execute("INSERT INTO fo_t (id) VALUES (%s)", (f"hold-before-{name}",))

        results = {}

        def write_existing(name):
            start = time.monotonic()
            try:
                with sessions[name].cursor() as cur:
                    cur.execute("INSERT INTO fo_t (id) VALUES (%s)", (f"hold-{name}",))
                results[name] = ("ok", round(time.monotonic() - start, 3))
            except psycopg2.Error as e:
                results[name] = (fc.error_text(e), round(time.monotonic() - start, 3))

        def write_new_rw(name):
            start = time.monotonic()
            try:
                conn = psycopg2.connect(p.rw_dsn(), connect_timeout=30)
                try:
                    conn.autocommit = True
                    with conn.cursor() as cur:
                        cur.execute("INSERT INTO fo_t (id) VALUES (%s)", (f"hold-{name}",))
                finally:
                    conn.close()
                results[name] = ("ok", round(time.monotonic() - start, 3))
            except psycopg2.Error as e:
                results[name] = (fc.error_text(e), round(time.monotonic() - start, 3))

        def spawn(fn, name):
            t = threading.Thread(target=fn, args=(name,), daemon=True)
            t.start()
            return t

        fc.kill_node(c, "n0")
        # Right after the kill (100 ms: n0's backends are surely gone, so nothing sent now can
        # run there; pglane's probes need ~400 ms to see n0 down).
        time.sleep(0.1)
        threads = [spawn(write_existing, "existing-now"), spawn(write_new_rw, "new-rw-now")]
        # In the window where pglane knows there is no primary and has not promoted yet.
        p.wait_until(lambda s: s.get("primary") is None, 5, "no primary elected")
        threads += [spawn(write_existing, "existing-gap"), spawn(write_new_rw, "new-rw-gap")]
        hung = fc.join_all(threads, 25)
        self.assertEqual(hung, [], f"writes still waiting 25 s after the kill: {results}")
        new = fc.wait_new_primary(p, "n0", timeout=5)
        print(f"\nfailover-hold new primary {new}: {results}")
        self.assertEqual({k: v[0] for k, v in results.items()},
                         {k: "ok" for k in ("existing-now", "new-rw-now", "existing-gap", "new-rw-gap")},
                         results)
        self.assertTrue({f"hold-{k}" for k in results} <= ids_on(c, new))

    def test_without_failover_a_write_fails_after_hold_ms(self):
        c = CLUSTER
        fc.rebuild(c)
        fresh_table(c)
        p = fc.failover_pglane(c, hold_ms=500, enabled=False)
        self.addCleanup(p.stop)
        conn = psycopg2.connect(p.auto_dsn(), connect_timeout=5)
        conn.autocommit = True
        self.addCleanup(conn.close)
        with conn.cursor() as cur:
            cur.execute("INSERT INTO fo_t (id) VALUES ('nohold-before')")
        fc.kill_node(c, "n0")
        p.wait_until(lambda s: s.get("primary") is None, 5, "no primary elected")
        start = time.monotonic()
        with self.assertRaises(psycopg2.Error) as raised:
            with conn.cursor() as cur:
                cur.execute("INSERT INTO fo_t (id) VALUES ('nohold-after')")
        elapsed = time.monotonic() - start
        e = raised.exception
        print(f"\nfailover-nohold write failed after {elapsed:.2f}s: {fc.error_text(e)}")
        self.assertEqual(e.pgcode, "08006", str(e))
        self.assertIn("no primary", str(e))
        self.assertGreaterEqual(elapsed, 0.4)
        self.assertLess(elapsed, 3.0)
        # The session stays usable: reads still go to a standby.
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM fo_t")
            self.assertEqual(cur.fetchone()[0], 1)
        # A new rw session is refused the same way, after about hold_ms.
        start = time.monotonic()
        with self.assertRaises(psycopg2.OperationalError) as raised:
            psycopg2.connect(p.rw_dsn(), connect_timeout=10).close()
        elapsed = time.monotonic() - start
        self.assertIn("no primary", str(raised.exception))
        self.assertGreaterEqual(elapsed, 0.4)
        self.assertLess(elapsed, 3.0)
        # Nothing promotes with failover off.
        time.sleep(2 * fc.AFTER_MS / 1000)
        self.assertEqual((fc.in_recovery(c, "n1"), fc.in_recovery(c, "n2")), (True, True))


if __name__ == "__main__":
    unittest.main()
