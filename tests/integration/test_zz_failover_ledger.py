"""Built-in failover under load (issue 6, "Proof"; destructive: rebuilds the cluster).

1. No acknowledged commit lost, 5 runs: writer threads insert ledger rows with unique ids
   in autocommit through the auto port and the rw port (pglane authenticates, so rw sessions
   can move); n0's postmaster is SIGKILLed mid-load; writers keep retrying; once pglane has
   promoted a standby, every id whose INSERT returned is on the new primary. Prints, per
   run, kill -> first successful write and the client-visible errors (bench reports these).
2. Reads through the auto and ro ports see no failure while n0 is SIGKILLed and a standby
   is promoted.
"""

import collections
import threading
import time
import unittest

import failover_common as fc
import pgwire

CLUSTER = None
RUNS = int(__import__("os").environ.get("PGLANE_TEST_FAILOVER_RUNS", "5"))
WRITERS_PER_PORT = 3
LOAD_BEFORE_KILL = 1.0
RETRY_WINDOW = 20.0        # writers keep retrying this long after the kill at most


def setUpModule():
    global CLUSTER
    CLUSTER = fc.cluster()


def tearDownModule():
    fc.restore(CLUSTER)


class Ledger(unittest.TestCase):

    def one_run(self, run):
        c = CLUSTER
        fc.rebuild(c, force=run > 0)
        c.sql("n0", "DROP TABLE IF EXISTS ledger; CREATE TABLE ledger (id text PRIMARY KEY, "
                    "at timestamptz NOT NULL DEFAULT clock_timestamp())")
        pgwire.wait_replayed(c)
        p = fc.failover_pglane(c)
        self.addCleanup(p.stop)

        stop = threading.Event()
        kill_at = [None]

        def deadline():
            return (kill_at[0] or time.monotonic()) + RETRY_WINDOW

        writers = []
        for port_name, dsn in (("auto", p.auto_dsn()), ("rw", p.rw_dsn())):
            for i in range(WRITERS_PER_PORT):
                writers.append(fc.Writer(f"r{run}-{port_name}{i}", dsn, stop, deadline))
        for w in writers:
            w.start()
        time.sleep(LOAD_BEFORE_KILL)
        before = sum(len(w.acked) for w in writers)
        self.assertGreater(before, 0, f"no write succeeded before the kill: "
                                      f"{[w.errors[:3] for w in writers]}")
        kill_at[0] = fc.kill_node(c, "n0")
        new = fc.wait_new_primary(p, "n0", timeout=30)

        def resumed(w):
            return any(ok and node != "n0" for _, _, ok, node in w.ops)

        # Every writer must get a write through after the kill (bounded by RETRY_WINDOW).
        while time.monotonic() < deadline() and not all(resumed(w) for w in writers):
            time.sleep(0.1)
        time.sleep(0.5)  # a little load on the new primary
        stop.set()
        hung = fc.join_all(writers, 15)
        self.assertEqual(hung, [], f"run {run}: writers blocked in a statement for 15 s "
                                   f"(new primary {new}); pglane log tail:\n{p.log_text()[-3000:]}")

        self.assertEqual(fc.in_recovery(c, new), False, f"{new} is elected but in recovery")
        acked = [i for w in writers for i in w.acked]
        present = fc.ledger_ids(c, new)
        lost = sorted(set(acked) - present)
        self.assertEqual(lost, [], f"run {run}: {len(lost)} acknowledged ids missing on {new}")

        # Failover time: kill -> the first write acknowledged by the new primary. (Writes
        # acknowledged by n0 a few ms after the SIGKILL are real: its backends and walsenders
        # outlive the postmaster briefly; they are in the ledger check like any other.)
        late_n0 = sum(1 for w in writers for start, _, ok, node in w.ops
                      if ok and node == "n0" and start >= kill_at[0])
        on_wrong = sorted({node for w in writers for _, _, ok, node in w.ops if ok} - {"n0", new})
        self.assertEqual(on_wrong, [], f"run {run}: writes acknowledged by a node that is not the new primary")
        firsts = {}
        for port_name in ("auto", "rw"):
            ends = [end for w in writers if f"-{port_name}" in w.name
                    for start, end, ok, node in w.ops if ok and node == new]
            self.assertTrue(ends, f"run {run}: no write through {port_name} succeeded within "
                                  f"{RETRY_WINDOW}s of the kill; errors: "
                                  f"{[e for w in writers for e in w.errors][:10]}")
            firsts[port_name] = min(ends) - kill_at[0]
        errors = [(w.name, round(t - kill_at[0], 3), text) for w in writers for t, text in w.errors]
        not_resumed = [w.name for w in writers if not resumed(w)]
        self.assertEqual(not_resumed, [], f"run {run}: writers without a write after the kill")
        summary = {"run": run, "new_primary": new, "acked": len(acked),
                   "kill_to_first_write_s": round(min(firsts.values()), 3),
                   "kill_to_first_write_auto_s": round(firsts["auto"], 3),
                   "kill_to_first_write_rw_s": round(firsts["rw"], 3),
                   "client_errors": len(errors), "acked_by_n0_after_kill": late_n0,
                   "moved": fc.metric(p, "pglane_sessions_moved_total")}
        print(f"\nfailover-ledger {summary}")
        grouped = collections.Counter((name.split("-")[1].rstrip("0123456789"), text)
                                      for name, _, text in errors)
        for (port_name, text), count in sorted(grouped.items()):
            window = [t for name, t, txt in errors if txt == text and f"-{port_name}" in name]
            print(f"  {count:3d} x {port_name}: {text} (at +{min(window):.3f}..+{max(window):.3f}s)")
        p.stop()
        return summary

    def test_no_acknowledged_commit_lost(self):
        summaries = [self.one_run(run) for run in range(RUNS)]
        times = [s["kill_to_first_write_s"] for s in summaries]
        print(f"\nfailover-ledger kill->first write: min {min(times):.3f}s "
              f"max {max(times):.3f}s; errors per run {[s['client_errors'] for s in summaries]}")


class Reads(unittest.TestCase):

    def test_reads_see_no_failure_during_failover(self):
        c = CLUSTER
        fc.rebuild(c)
        c.sql("n0", "DROP TABLE IF EXISTS fo_read; CREATE TABLE fo_read (v int); "
                    "INSERT INTO fo_read SELECT generate_series(1, 100)")
        pgwire.wait_replayed(c)
        p = fc.failover_pglane(c)
        self.addCleanup(p.stop)
        sql = "SELECT current_setting('cluster_name'), count(*) FROM fo_read"
        stop = threading.Event()
        readers = [fc.Reader("auto-keep", p.auto_dsn(), stop, sql),
                   fc.Reader("auto-new", p.auto_dsn(), stop, sql, reconnect_every=10),
                   fc.Reader("ro-keep", p.ro_dsn(), stop, sql),
                   fc.Reader("ro-new", p.ro_dsn(), stop, sql, reconnect_every=10)]
        for r in readers:
            r.start()
        try:
            time.sleep(1.0)
            before = {r.name: r.count for r in readers}
            kill_at = fc.kill_node(c, "n0")
            new = fc.wait_new_primary(p, "n0", timeout=30)
            promoted_after = time.monotonic() - kill_at
            at_promotion = {r.name: r.count for r in readers}
            time.sleep(2.0)
        finally:
            stop.set()
            hung = fc.join_all(readers, 15)
        self.assertEqual(hung, [], "readers blocked for 15 s")
        errors = [(r.name, round(t - kill_at, 3), text) for r in readers for t, text in r.errors]
        print(f"\nfailover-reads new primary {new} after {promoted_after:.2f}s; "
              f"reads {{{', '.join(f'{r.name}: {r.count}' for r in readers)}}}; errors {len(errors)}")
        for e in errors:
            print(f"  error {e}")
        self.assertEqual(errors, [], "reads failed during the failover:\n" + "\n".join(map(str, errors)))
        for r in readers:
            self.assertGreater(before[r.name], 0, f"{r.name} read nothing before the kill")
            self.assertGreater(at_promotion[r.name], before[r.name],
                               f"{r.name} read nothing between the kill and the promotion")
            self.assertGreater(r.count, at_promotion[r.name], f"{r.name} read nothing after the promotion")


if __name__ == "__main__":
    unittest.main()
