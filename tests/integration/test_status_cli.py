"""`pglane status` against a running pglane: the table names each node's role and whether
it is up, counts the sessions on each node, shows a stopped standby as DOWN, refreshes with
--watch, reads the address from --config, and fails with a clear message and exit code 1
when nothing answers."""

import signal
import subprocess
import time
import unittest

import psycopg2

import pgwire
from cluster import LocalCluster
from pglane import BINARY, free_port, start_module_pglane, stop_module_pglane

CLUSTER = None
STARTED_HERE = False
PGLANE = None
CLEAR_SCREEN = "\x1b[H\x1b[2J"


def setUpModule():
    global CLUSTER, STARTED_HERE, PGLANE
    CLUSTER = LocalCluster.from_env()
    STARTED_HERE, PGLANE = start_module_pglane(CLUSTER, with_roles=False)


def tearDownModule():
    stop_module_pglane(CLUSTER, STARTED_HERE, PGLANE)


def run_status(*args, timeout=30):
    return subprocess.run([BINARY, "status", *args], capture_output=True, text=True, timeout=timeout)


def rows(table):
    """{node: [words of its row]} from the table's node rows."""
    out = {}
    lines = table.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("NODE "))
    for line in lines[header + 1:]:
        words = line.split()
        if words:
            out[words[0]] = words
    return out


class StatusCommand(unittest.TestCase):

    def url(self):
        return f"http://127.0.0.1:{PGLANE.metrics_port}/status"

    def test_the_table_shows_each_node_role_and_state(self):
        PGLANE.wait_until(pgwire.all_routable, 60, "n0 primary and n1, n2 routable standbys")
        result = run_status("--url", self.url())
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertRegex(result.stdout, r"^pglane \S+  primary: n0 \(term \d+\)  clients: ")
        self.assertRegex(result.stdout, r"\nNODE +ROLE +STATE +TIMELINE +LAG +LAG TIME +ROUTING +CONNS +NOTES\n")
        table = rows(result.stdout)
        self.assertEqual(sorted(table), ["n0", "n1", "n2"])
        self.assertEqual(table["n0"][1:3], ["primary", "up"])
        for standby in ("n1", "n2"):
            self.assertEqual(table[standby][1:3], ["standby", "up"], result.stdout)
            self.assertIn("reads", table[standby], result.stdout)
        self.assertIn("writes", table["n0"])
        self.assertEqual(table["n0"][3], str(PGLANE.node("n0")["timeline"]))

    def test_sessions_on_a_node_and_per_port_are_counted(self):
        conns = [psycopg2.connect(PGLANE.rw_dsn(), connect_timeout=5) for _ in range(3)]
        try:
            for conn in conns:
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")
            result = run_status("--url", self.url())
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertRegex(result.stdout, r"clients: \d+ \(rw [3-9]\d*, ro \d+, auto \d+\)")
            n0 = rows(result.stdout)["n0"]
            self.assertGreaterEqual(int(n0[n0.index("writes") + 1]), 3, result.stdout)
        finally:
            for conn in conns:
                conn.close()

    def test_a_stopped_standby_shows_down(self):
        CLUSTER.stop("n2")
        try:
            PGLANE.wait_until(lambda s: not next(n for n in s["nodes"] if n["name"] == "n2")["up"], 20,
                              "n2 to be seen down")
            result = run_status("--url", self.url())
            self.assertEqual(result.returncode, 0, result.stderr)
            table = rows(result.stdout)
            self.assertEqual(table["n2"][2], "DOWN", result.stdout)
            self.assertEqual(table["n2"][6], "-", result.stdout)   # routes nothing
            self.assertEqual(table["n1"][2], "up", result.stdout)
            self.assertEqual(table["n0"][1:3], ["primary", "up"], result.stdout)
        finally:
            CLUSTER.start("n2")
            # A restarted standby may be held back until it has replayed what it missed.
            PGLANE.wait_until(pgwire.all_routable, 60, "n2 back as a routable standby")
        table = rows(run_status("--url", self.url()).stdout)
        self.assertEqual(table["n2"][1:3], ["standby", "up"])

    def test_watch_refreshes_until_its_bound(self):
        result = run_status("--url", self.url(), "--watch", "0.2", "--iterations", "3")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.count(CLEAR_SCREEN), 3, result.stdout)
        self.assertEqual(result.stdout.count("\nNODE "), 3)
        self.assertIn("Every 0.2s: pglane status --url " + self.url(), result.stdout)

    def test_watch_stops_on_ctrl_c(self):
        proc = subprocess.Popen([BINARY, "status", "--url", self.url(), "--watch", "0.2"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(1.0)
            self.assertIsNone(proc.poll(), "the watch ended by itself")
            proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
            stdout, _ = proc.communicate(timeout=5)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        self.assertEqual(proc.returncode, 0)
        self.assertGreaterEqual(stdout.count(CLEAR_SCREEN), 2)

    def test_the_address_comes_from_the_config(self):
        result = run_status("--config", PGLANE.config_path)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(sorted(rows(result.stdout)), ["n0", "n1", "n2"])

    def test_an_unreachable_pglane_is_a_clear_error(self):
        port = free_port()
        result = run_status("--url", f"127.0.0.1:{port}")
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stdout, "")
        self.assertIn(f"cannot reach pglane at http://127.0.0.1:{port}/status: Connection refused", result.stderr)
        # Something that is not pglane's /status: a clear error too.
        result = run_status("--url", f"http://127.0.0.1:{PGLANE.metrics_port}/health")
        self.assertEqual(result.returncode, 1)
        self.assertIn("did not answer with pglane's /status JSON", result.stderr)
        result = run_status("--url", f"http://127.0.0.1:{PGLANE.metrics_port}/nope")
        self.assertEqual(result.returncode, 1)
        self.assertIn("answered HTTP 404", result.stderr)

    def test_bad_arguments_exit_2(self):
        for args in (["--bogus"], ["--watch", "zero"], ["--url", "https://127.0.0.1:1/status"]):
            with self.subTest(args=args):
                result = run_status(*args)
                self.assertEqual(result.returncode, 2, result.stderr)
                self.assertIn("usage: pglane status", result.stderr)


if __name__ == "__main__":
    unittest.main()
