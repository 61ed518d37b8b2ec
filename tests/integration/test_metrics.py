"""The metrics endpoint (/metrics Prometheus text, /status JSON, /health) against a real
cluster, and the command line: --check-config names the bad key, --version prints."""

import json
import os
import re
import subprocess
import tempfile
import threading
import unittest

import psycopg2

from cluster import LocalCluster
from pglane import BINARY, Pglane, free_port, start_module_pglane, stop_module_pglane

CLUSTER = None
STARTED_HERE = False
PGLANE = None

SAMPLE = re.compile(r'^(pglane_[a-z_]+)(?:\{([a-z_]+="[^"]*"(?:,[a-z_]+="[^"]*")*)\})? (\S+)$')
NODE_FAMILIES = ("pglane_node_up", "pglane_node_is_primary", "pglane_node_lag_bytes", "pglane_node_lag_seconds",
                 "pglane_node_held_back", "pglane_node_probe_duration_seconds", "pglane_sessions_routed_total")


def setUpModule():
    global CLUSTER, STARTED_HERE, PGLANE
    CLUSTER = LocalCluster.from_env()
    STARTED_HERE, PGLANE = start_module_pglane(CLUSTER, with_roles=False)


def tearDownModule():
    stop_module_pglane(CLUSTER, STARTED_HERE, PGLANE)


def write_text(path, text):
    with open(path, "w") as f:
        f.write(text)


def make_cpu_cgroup_of_one_cpu():
    """A new cgroup with a quota of one CPU, in the cgroup v1 hierarchy of the cpu controller
    or under this process's cgroup v2; its directory, or None where none can be made."""
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            after = fields[fields.index("-") + 1:]
            mounts.append((after[0], after[2].split(","), fields[4]))
    name = f"pglane-test-{os.getpid()}"
    for kind, options, point in mounts:
        if kind == "cgroup" and "cpu" in options:
            directory = os.path.join(point, name)
            files = {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "100000"}
            break
    else:
        v2 = [point for kind, _, point in mounts if kind == "cgroup2"]
        with open("/proc/self/cgroup") as f:
            own = [line.strip()[3:] for line in f if line.startswith("0::/")]
        if not v2 or not own:
            return None
        directory = os.path.join(v2[0] + own[0], name)
        files = {"cpu.max": "100000 100000"}
    try:
        os.mkdir(directory)
    except OSError:
        return None
    try:
        for file, value in files.items():
            write_text(os.path.join(directory, file), value)
    except OSError:
        os.rmdir(directory)
        return None
    return directory


def scrape(pglane):
    """{(family, label string): float} after checking every line is valid exposition text."""
    code, text = pglane.http("/metrics")
    assert code == 200, (code, text)
    samples, typed = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("gauge", "counter", "histogram"), line
            typed.add(name)
            if kind == "histogram":
                typed.update(name + suffix for suffix in ("_bucket", "_sum", "_count"))
            continue
        if line.startswith("# HELP ") or not line:
            continue
        match = SAMPLE.match(line)
        assert match, f"not Prometheus text: {line!r}"
        family, labels, value = match.groups()
        assert family in typed, f"{family} has no # TYPE line before its samples"
        samples[(family, labels or "")] = float(value)
    return samples


def connect_once(dsn):
    conn = psycopg2.connect(dsn, connect_timeout=5)
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
    conn.close()


class Metrics(unittest.TestCase):

    def test_per_node_families_describe_the_cluster(self):
        samples = scrape(PGLANE)
        for family in NODE_FAMILIES:
            for node in ("n0", "n1", "n2"):
                self.assertIn((family, f'node="{node}"'), samples, family)
        value = lambda family, node: samples[(family, f'node="{node}"')]
        self.assertEqual([value("pglane_node_up", n) for n in ("n0", "n1", "n2")], [1, 1, 1])
        self.assertEqual([value("pglane_node_is_primary", n) for n in ("n0", "n1", "n2")], [1, 0, 0])
        self.assertEqual([value("pglane_node_held_back", n) for n in ("n0", "n1", "n2")], [0, 0, 0])
        for node in ("n0", "n1", "n2"):
            self.assertGreater(value("pglane_node_probe_duration_seconds", node), 0)
            self.assertLess(value("pglane_node_probe_duration_seconds", node), 5)
            self.assertGreaterEqual(value("pglane_node_lag_bytes", node), 0)
            self.assertGreaterEqual(value("pglane_node_lag_seconds", node), 0)
        for listener in ("rw", "ro"):
            self.assertIn(("pglane_client_connections_total", f'listener="{listener}"'), samples)

    def test_connection_and_routing_counters_increase(self):
        before = scrape(PGLANE)
        connect_once(PGLANE.rw_dsn())
        connect_once(PGLANE.rw_dsn())
        connect_once(PGLANE.ro_dsn())
        after = scrape(PGLANE)
        delta = lambda key: after[key] - before[key]
        self.assertEqual(delta(("pglane_client_connections_total", 'listener="rw"')), 2)
        self.assertEqual(delta(("pglane_client_connections_total", 'listener="ro"')), 1)
        self.assertEqual(delta(("pglane_sessions_routed_total", 'node="n0"')), 2)
        self.assertEqual(delta(("pglane_sessions_routed_total", 'node="n1"'))
                         + delta(("pglane_sessions_routed_total", 'node="n2"')), 1)

    def test_status_json_matches_the_cluster(self):
        code, body = PGLANE.http("/status")
        self.assertEqual(code, 200)
        status = json.loads(body)
        self.assertEqual(status["primary"], "n0")
        self.assertGreaterEqual(status["primary_term"], 1)
        nodes = {n["name"]: n for n in status["nodes"]}
        self.assertEqual(set(nodes), {"n0", "n1", "n2"})
        self.assertEqual({n: (v["role"], v["up"], v["elected_primary"]) for n, v in nodes.items()},
                         {"n0": ("primary", True, True), "n1": ("standby", True, False),
                          "n2": ("standby", True, False)})
        for node in nodes.values():
            for key in ("lag_bytes", "lag_seconds", "held_back", "fenced", "port"):
                self.assertIn(key, node)
        self.assertEqual(nodes["n1"]["port"], CLUSTER.port("n1"))
        connect_once(PGLANE.rw_dsn())
        after = PGLANE.status()
        self.assertEqual(after["listeners"]["rw"]["client_connections_total"],
                         status["listeners"]["rw"]["client_connections_total"] + 1)

    def test_health_is_200_with_a_primary_and_not_without(self):
        code, _ = PGLANE.http("/health")
        self.assertEqual(code, 200)
        code, _ = PGLANE.http("/no-such-page")
        self.assertEqual(code, 404)
        nowhere = Pglane(CLUSTER, {"nodes": [{"name": "gone", "host": "127.0.0.1", "port": free_port()}]})
        with nowhere:
            nowhere.wait_until(lambda s: s["nodes"][0]["probes_failed"] >= 2, 10, "failed probes")
            code, _ = nowhere.http("/health")
            self.assertEqual(code, 503)


class CommandLine(unittest.TestCase):

    def check_config(self, config):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(config, f) if not isinstance(config, str) else f.write(config)
        try:
            return subprocess.run([BINARY, "--check-config", "--config", f.name],
                                  capture_output=True, text=True, timeout=10)
        finally:
            os.unlink(f.name)

    def valid_config(self):
        return json.loads(json.dumps(Pglane(CLUSTER).config))

    def test_check_config_accepts_a_valid_config(self):
        result = self.check_config(self.valid_config())
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_check_config_warns_of_standbys_a_promotion_could_not_re_point(self):
        """The valid config (every node on loopback) has none; n0 on its socket with n1 and n2
        given by an address of another host has one per standby, once failover is enabled,
        and a replication_host for n0 takes them away. A warning: the config stays valid."""
        config = self.valid_config()
        config["failover"] = {"enabled": True}
        result = self.check_config(config)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertNotIn("warning", result.stderr)
        config["nodes"][0]["host"] = str(CLUSTER.socket_dir("n0"))
        for node in config["nodes"][1:]:
            node["host"] = "192.0.2.10"   # TEST-NET-1: never reached, only checked
        result = self.check_config(config)
        self.assertEqual(result.returncode, 0, result.stderr)
        warnings = [line for line in result.stderr.splitlines() if line.startswith("pglane: warning: if n0 is promoted")]
        self.assertEqual(len(warnings), 2, result.stderr)
        self.assertIn("pglane reaches n2 at 192.0.2.10", warnings[1])
        self.assertIn("replication_host", warnings[0])
        config["failover"]["enabled"] = False
        self.assertNotIn("warning", self.check_config(config).stderr)
        config["failover"]["enabled"] = True
        config["nodes"][0]["replication_host"] = "192.0.2.9"
        self.assertNotIn("warning", self.check_config(config).stderr)

    def test_check_config_rejects_naming_the_key(self):
        cases = {}
        bad = self.valid_config()
        bad["nodes"][1]["port"] = 70000
        cases["nodes[1].port"] = bad
        bad = self.valid_config()
        bad["no_such_key"] = 1
        cases["no_such_key"] = bad
        bad = self.valid_config()
        bad["health"]["interval_ms"] = "fast"
        cases["health.interval_ms"] = bad
        bad = self.valid_config()
        bad["health"]["max_lag_bytes"] = -1
        cases["health.max_lag_bytes"] = bad
        bad = self.valid_config()
        bad["nodes"][2]["name"] = "n0"
        cases["nodes[2].name"] = bad
        bad = self.valid_config()
        del bad["listen"]
        cases["listen"] = bad
        for key, config in cases.items():
            with self.subTest(key=key):
                result = self.check_config(config)
                self.assertNotEqual(result.returncode, 0, result.stdout + result.stderr)
                self.assertIn(key, result.stdout + result.stderr)
        result = self.check_config("{ not json")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("JSON", result.stdout + result.stderr)

    def start_line(self, command_prefix=(), preexec_fn=None):
        """pglane's start line ("pglane_started workers=N usable_cpus=M ...") as a dict, for a
        config without "workers", run under `command_prefix`; pglane is stopped after it."""
        config = self.valid_config()
        config["workers"] = 0
        config["log_level"] = "info"
        for port_key in ("rw", "ro"):
            config["listen"][port_key] = f"127.0.0.1:{free_port()}"
        config["metrics_listen"] = f"127.0.0.1:{free_port()}"
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "pglane.json")
            write_text(path, json.dumps(config))
            process = subprocess.Popen([*command_prefix, BINARY, "--config", path], preexec_fn=preexec_fn,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            watchdog = threading.Timer(30, process.kill)   # the read below ends at exit
            watchdog.start()
            try:
                for line in process.stdout:
                    if " pglane_started " in line:
                        return dict(part.split("=", 1) for part in line.split() if "=" in part)
                self.fail("pglane exited without a pglane_started line")
            finally:
                watchdog.cancel()
                process.terminate()
                process.wait(timeout=10)
                process.stdout.close()

    def test_workers_default_to_the_cpus_pglane_may_use(self):
        """Without "workers", pglane starts one per CPU its affinity mask allows, not one per
        CPU of the machine, and says so in its start line; taskset narrows the mask as a
        container's cpuset would."""
        cpus = sorted(os.sched_getaffinity(0))
        for n in sorted({1, len(cpus) - 1, len(cpus)} - {0}):
            fields = self.start_line(["taskset", "-c", ",".join(str(c) for c in cpus[:n])])
            with self.subTest(cpus=n):
                usable = int(fields["usable_cpus"])
                # A cgroup CPU quota may allow fewer than the mask.
                self.assertTrue(1 <= usable <= n, fields)
                if n == 1:
                    self.assertEqual(usable, 1, fields)
                self.assertEqual(int(fields["workers"]), usable, fields)

    def test_workers_follow_a_cgroup_cpu_quota(self):
        """In a cgroup allowed one CPU (cgroup v1's cpu.cfs_quota_us or v2's cpu.max, as
        `docker run --cpus 1` sets), pglane starts one worker whatever its affinity mask."""
        group = make_cpu_cgroup_of_one_cpu()
        if group is None:
            self.skipTest("no cgroup with a cpu controller this test may create (needs root and a writable cgroupfs)")
        try:
            fields = self.start_line(preexec_fn=lambda: write_text(os.path.join(group, "cgroup.procs"), str(os.getpid())))
        finally:
            os.rmdir(group)
        self.assertEqual(int(fields["usable_cpus"]), 1, fields)
        self.assertEqual(int(fields["workers"]), 1, fields)

    def test_version_prints(self):
        result = subprocess.run([BINARY, "--version"], capture_output=True, text=True, timeout=10)
        self.assertEqual(result.returncode, 0)
        self.assertRegex(result.stdout, r"^pglane \d+\.\d+\.\d+")
        self.assertIn(PGLANE.status()["version"], result.stdout)


if __name__ == "__main__":
    unittest.main()
