"""listen.auto with real clients (issue 3, Tests): pgbench -S and TPC-B in -M simple,
extended and prepared; psql \\copy (COPY FROM STDIN / TO STDOUT); node-postgres; pgjdbc."""

import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import auto_common as ac
import pgwire
from auto_common import STANDBYS

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH_DB = "ac_bench"
CLUSTER = STARTED = PGLANE = None


def setUpModule():
    global CLUSTER, STARTED, PGLANE
    CLUSTER, STARTED = ac.cluster_up()
    CLUSTER.sql("n0", f"DROP DATABASE IF EXISTS {BENCH_DB}")
    CLUSTER.sql("n0", f"CREATE DATABASE {BENCH_DB}")
    CLUSTER.sql("n0", """
        DROP TABLE IF EXISTS ac_copy; CREATE TABLE ac_copy (id int PRIMARY KEY, v text);
        DROP TABLE IF EXISTS ac_node; CREATE TABLE ac_node (id serial PRIMARY KEY, v text);
        DROP TABLE IF EXISTS ac_java; CREATE TABLE ac_java (id serial PRIMARY KEY, v text);
        DROP TABLE IF EXISTS ac_java_unlogged;
        CREATE UNLOGGED TABLE ac_java_unlogged (v int); INSERT INTO ac_java_unlogged VALUES (7);""")
    ac.settle(CLUSTER)
    PGLANE = ac.start_auto(CLUSTER)


def tearDownModule():
    if PGLANE:
        PGLANE.stop()
    if CLUSTER:
        try:
            CLUSTER.sql("n0", f"DROP DATABASE IF EXISTS {BENCH_DB}")
        except Exception:  # noqa: BLE001 - cleanup only
            pass
    ac.cluster_down(CLUSTER, STARTED)


def pgbench(*args, timeout=120):
    command = [pgwire.PGBENCH, "-h", "127.0.0.1", "-p", str(PGLANE.auto_port), "-U", "postgres", *args, BENCH_DB]
    return subprocess.run(command, env=pgwire.pg_env(), capture_output=True, text=True, timeout=timeout)


def units(metrics, node):
    return metrics.get(f'pglane_units_routed_total{{node="{node}"}}', 0)


class AutoPgbench(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        result = pgbench("-i", "-s", "1", "-q")
        if result.returncode != 0:
            raise AssertionError(f"pgbench -i through the auto port failed:\n{result.stderr}\n"
                                 f"{ac.log_tail(PGLANE)}")
        ac.settle(CLUSTER)

    def run_bench(self, *args):
        result = pgbench("-T", "3", "-c", "4", "-j", "2", *args)
        self.assertEqual(result.returncode, 0, f"pgbench {args} failed:\n{result.stdout}\n{result.stderr}\n"
                                               f"{ac.log_tail(PGLANE)}")
        processed = int(re.search(r"number of transactions actually processed: (\d+)", result.stdout).group(1))
        failed = re.search(r"number of failed transactions: (\d+)", result.stdout)
        self.assertIsNotNone(failed, result.stdout)
        self.assertEqual(int(failed.group(1)), 0, result.stdout)
        self.assertGreater(processed, 0, result.stdout)
        return processed, result

    def select_only(self, mode):
        before = PGLANE.metrics()
        processed, _ = self.run_bench("-S", "-M", mode)
        after = PGLANE.metrics()
        per_node = {n: units(after, n) - units(before, n) for n in ("n0", "n1", "n2")}
        print(f"\n  pgbench -S -M {mode}: {processed} transactions, units per node {per_node}", flush=True)
        for standby in STANDBYS:
            self.assertGreater(per_node[standby], processed / 10, f"-S -M {mode}: reads did not reach {standby}: {per_node}")

    def tpcb(self, mode):
        # pgbench (without -n) vacuums and truncates pgbench_history through pglane before the run
        processed, _ = self.run_bench("-M", mode)
        added = int(CLUSTER.value("n0", "SELECT count(*) FROM pgbench_history", dbname=BENCH_DB))
        print(f"\n  pgbench TPC-B -M {mode}: {processed} transactions, {added} history rows on n0", flush=True)
        self.assertEqual(added, processed, "TPC-B transactions processed != rows added to pgbench_history on n0")

    def test_select_only_simple(self):
        self.select_only("simple")

    def test_select_only_extended(self):
        self.select_only("extended")

    def test_select_only_prepared(self):
        self.select_only("prepared")

    def test_tpcb_simple(self):
        self.tpcb("simple")

    def test_tpcb_extended(self):
        self.tpcb("extended")

    def test_tpcb_prepared(self):
        self.tpcb("prepared")


class AutoCopy(unittest.TestCase):
    def test_psql_copy_from_stdin_and_to_stdout(self):
        CLUSTER.sql("n0", "TRUNCATE ac_copy")
        data = "".join(f"{i}\tline {i}\n" for i in range(500))
        result = ac.psql(PGLANE.auto_port, r"\copy ac_copy FROM pstdin", stdin=data)
        self.assertEqual(result.returncode, 0, result.stderr + ac.log_tail(PGLANE))
        self.assertEqual(result.stdout.strip(), "COPY 500")
        self.assertEqual(CLUSTER.value("n0", "SELECT count(*) FROM ac_copy"), "500")
        result = ac.psql(PGLANE.auto_port, r"\copy ac_copy TO STDOUT")
        self.assertEqual(result.returncode, 0, result.stderr + ac.log_tail(PGLANE))
        self.assertEqual(sorted(result.stdout.splitlines(), key=lambda l: int(l.split("\t")[0])),
                         data.splitlines())
        ac.settle(CLUSTER)
        result = ac.psql(PGLANE.auto_port, r"\copy (SELECT current_setting('cluster_name') FROM ac_copy LIMIT 1) TO STDOUT")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(result.stdout.strip(), STANDBYS, "COPY (SELECT ...) TO STDOUT did not go to a standby")
        # one session: COPY out, then ordinary queries keep working
        result = ac.psql(PGLANE.auto_port, stdin="\\copy ac_copy TO STDOUT\nSELECT count(*) FROM ac_copy;\n")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.splitlines()[-1], "500")
        self.assertEqual(len(result.stdout.splitlines()), 501)


class AutoNode(unittest.TestCase):
    def test_node_postgres(self):
        node_dir = os.path.join(HERE, "node")
        if not shutil.which("node") or not shutil.which("npm"):
            self.skipTest("node/npm not installed")
        if not os.path.isdir(os.path.join(node_dir, "node_modules", "pg")):
            result = subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=node_dir,
                                    capture_output=True, text=True, timeout=300)
            self.assertEqual(result.returncode, 0, f"npm install failed:\n{result.stderr}")
        result = subprocess.run(["node", "auto_client.js"], cwd=node_dir, capture_output=True, text=True,
                                timeout=60, env=dict(os.environ, PGLANE_AUTO_PORT=str(PGLANE.auto_port)))
        self.assertEqual(result.returncode, 0, result.stderr + ac.log_tail(PGLANE))
        out = json.loads(result.stdout)
        self.assertEqual(set(out["reads"]), STANDBYS, out)
        self.assertEqual([n for n, _ in out["params"]], [i * 2 for i in range(6)])
        self.assertEqual(set(node for _, node in out["params"]), STANDBYS, out)
        self.assertEqual([s for s, _ in out["named"]], [f"{i}?" for i in range(6)])
        self.assertEqual(set(node for _, node in out["named"]), STANDBYS, out)
        self.assertEqual(out["tx"], ["n0", "n0"])
        self.assertEqual(out["committed_v"], "from node")
        self.assertEqual(CLUSTER.value("n0", f"SELECT v FROM ac_node WHERE id = {int(out['committed_id'])}"),
                         "from node")


class AutoJava(unittest.TestCase):
    JAR = "/usr/share/java/postgresql.jar"

    def test_pgjdbc(self):
        if not shutil.which("javac") or not shutil.which("java"):
            self.skipTest("javac/java not installed (default-jdk-headless)")
        if not os.path.exists(self.JAR):
            self.skipTest(f"{self.JAR} missing (libpostgresql-jdbc-java)")
        build = tempfile.mkdtemp(prefix="pglane-java-")
        self.addCleanup(shutil.rmtree, build, True)
        source = os.path.join(HERE, "java", "AutoClient.java")
        result = subprocess.run(["javac", "-cp", self.JAR, "-d", build, source], capture_output=True, text=True,
                                timeout=120)
        self.assertEqual(result.returncode, 0, result.stderr)
        retries = PGLANE.metrics().get('pglane_read_retries_total{listener="auto"}', 0)
        result = subprocess.run(["java", "-cp", f"{build}:{self.JAR}", "AutoClient", str(PGLANE.auto_port)],
                                capture_output=True, text=True, timeout=120)
        retries = PGLANE.metrics().get('pglane_read_retries_total{listener="auto"}', 0) - retries
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr + ac.log_tail(PGLANE))
        lines = [line.split() for line in result.stdout.splitlines()]
        reads = [l[1] for l in lines if l[0] == "read"]
        prepared = [l[1:] for l in lines if l[0] == "prepared"]
        tx = [l[1] for l in lines if l[0] == "tx"]
        self.assertEqual(set(reads), STANDBYS, result.stdout)
        self.assertEqual([int(p[1]) for p in prepared], [i * 3 for i in range(12)])
        self.assertEqual(prepared[-1][3], "true", "pgjdbc never switched to a server-side statement")
        self.assertEqual(set(p[2] for p in prepared[6:]), STANDBYS,
                         f"server-prepared executions did not spread over the standbys: {prepared}")
        self.assertEqual(tx, ["n0", "n0"])
        self.assertIn(["txvalue", "from", "java"], lines)
        # Read-only transactions as Spring's @Transactional(readOnly = true) runs them:
        # pgjdbc sends BEGIN READ ONLY with the first query. One reads an unlogged table,
        # which a standby refuses: the transaction runs on the primary, unseen by pgjdbc.
        ro = [l[1:] for l in lines if l[0] == "rotx"]
        self.assertEqual(len(ro), 3, result.stdout)
        self.assertTrue(all(r[0] in STANDBYS and r[1] == "on" for r in ro), f"read-only transactions: {ro}")
        self.assertEqual([l for l in lines if l[0] == "unlogged"], [["unlogged", "7", "n0", "on"]] * 2)
        self.assertEqual(retries, 1, "the refused query was not remembered: the second transaction tried a standby")
        self.assertEqual(lines[-1], ["done"])


if __name__ == "__main__":
    unittest.main()
