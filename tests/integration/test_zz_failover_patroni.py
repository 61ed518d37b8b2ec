"""pglane follows Patroni (issue 6, "Proof"): Debian's patroni with etcd-server (both in
scripts/setup) manage three PostgreSQL 15 nodes on loopback (their own data directories and
ports, apart from compose/local-cluster's); two pglane instances with failover off elect
Patroni's leader. The leader crashes (SIGKILL of its patroni and its postmaster); Patroni
promotes a replica once the leader key expires (ttl 20 s), and both pglane instances route
rw sessions to it.

Skipped, with the reason, when patroni or etcd is not installed. Does not touch the
launcher's cluster (its nodes only give the pglane harness a cluster object).
"""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import time
import unittest
import urllib.request

import psycopg2

import failover_common as fc
from pglane import Pglane, free_port

PG_BIN = "/usr/lib/postgresql/15/bin"
TTL, LOOP_WAIT, RETRY_TIMEOUT = 20, 2, 5
FOLLOW_BOUND = 45.0   # ttl + loop_wait + promotion, with headroom on 2 shared cores
NAMES = ("p0", "p1", "p2")


def http_json(url, timeout=2):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read().decode() or "null")
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read().decode() or "null")
        except ValueError:
            return e.code, None
    except (OSError, ValueError):
        return None, None


def wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception:  # noqa: BLE001 - retried until the bound
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class PatroniCluster:
    def __init__(self):
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="pglane-patroni-"))
        os.chmod(self.dir, 0o755)
        shutil.chown(self.dir, "postgres", "postgres")
        self.etcd_client, self.etcd_peer = free_port(), free_port()
        self.pg_ports = {n: free_port() for n in NAMES}
        self.api_ports = {n: free_port() for n in NAMES}
        self.procs = {}
        self.etcd = None
        self.logs = []

    def as_postgres(self, args, log):
        out = open(self.dir / log, "w")
        self.logs.append(out)
        return subprocess.Popen(["runuser", "-u", "postgres", "--", *args], stdout=out,
                                stderr=subprocess.STDOUT, cwd="/", start_new_session=True)

    def start_etcd(self):
        peer = f"http://127.0.0.1:{self.etcd_peer}"
        client = f"http://127.0.0.1:{self.etcd_client}"
        self.etcd = self.as_postgres(
            ["etcd", "--name", "pglfo", "--data-dir", str(self.dir / "etcd"),
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"pglfo={peer}", "--initial-cluster-state", "new"], "etcd.log")
        wait(lambda: http_json(f"{client}/health")[0] == 200, 30, "etcd healthy")

    def config(self, name):
        d = self.dir
        return {
            "scope": f"pglfo{self.etcd_client}", "name": name,
            "log": {"level": "INFO"},
            "restapi": {"listen": f"127.0.0.1:{self.api_ports[name]}",
                        "connect_address": f"127.0.0.1:{self.api_ports[name]}"},
            "etcd3": {"hosts": [f"127.0.0.1:{self.etcd_client}"]},
            "bootstrap": {
                "dcs": {"ttl": TTL, "loop_wait": LOOP_WAIT, "retry_timeout": RETRY_TIMEOUT,
                        "maximum_lag_on_failover": 1048576, "synchronous_mode": True,
                        "postgresql": {"use_pg_rewind": True, "use_slots": True,
                                       "parameters": {"wal_level": "replica", "hot_standby": "on",
                                                      "max_wal_senders": 10, "max_replication_slots": 10,
                                                      "wal_log_hints": "on",
                                                      "wal_receiver_status_interval": "1s",
                                                      "hot_standby_feedback": "on"}}},
                "initdb": [{"encoding": "UTF8"}, {"locale": "C"}],
                "pg_hba": ["local all all trust",
                           "host replication replicator 127.0.0.1/32 scram-sha-256",
                           "host all all 127.0.0.1/32 scram-sha-256"],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{self.pg_ports[name]}",
                "connect_address": f"127.0.0.1:{self.pg_ports[name]}",
                "data_dir": str(d / name), "bin_dir": PG_BIN, "pgpass": str(d / f"pgpass-{name}"),
                "authentication": {"superuser": {"username": "postgres", "password": "postgres"},
                                   "replication": {"username": "replicator", "password": "replicator"}},
                "parameters": {"unix_socket_directories": str(d),
                               "password_encryption": "scram-sha-256"},
            },
            "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
        }

    def start_node(self, name):
        path = self.dir / f"{name}.yml"
        path.write_text(json.dumps(self.config(name), indent=1))  # JSON is YAML
        shutil.chown(path, "postgres", "postgres")
        self.procs[name] = self.as_postgres(["patroni", str(path)], f"patroni-{name}.log")

    def api(self, name, path):
        return http_json(f"http://127.0.0.1:{self.api_ports[name]}{path}")

    def leader(self, among=NAMES):
        for name in among:
            code, body = self.api(name, "/cluster")
            if code == 200 and body:
                for m in body.get("members", []):
                    if m.get("role") == "leader" and m.get("state") == "running":
                        return m["name"]
        return None

    def members(self, among=NAMES):
        for name in among:
            code, body = self.api(name, "/cluster")
            if code == 200 and body:
                return {m["name"]: m for m in body.get("members", [])}
        return {}

    def postmaster_pid(self, name):
        try:
            return int((self.dir / name / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def crash(self, name):
        """SIGKILL the node's patroni (its process group) and its postmaster."""
        pid = self.postmaster_pid(name)
        proc = self.procs[name]
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def destroy(self):
        for name, proc in self.procs.items():
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        for name in NAMES:
            pid = self.postmaster_pid(name)
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self.etcd:
            try:
                os.killpg(self.etcd.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.etcd.wait(10)
        # Backends outlive a SIGKILLed postmaster briefly; their sockets are in self.dir.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(self._alive(n) for n in NAMES):
            time.sleep(0.2)
        for f in self.logs:
            f.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _alive(self, name):
        pid = self.postmaster_pid(name)
        if not pid:
            return False
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False

    def log_tail(self, name, chars=2000):
        try:
            return (self.dir / f"patroni-{name}.log").read_text()[-chars:]
        except OSError:
            return ""


def nodes_config(pc):
    return [{"name": n, "host": "127.0.0.1", "port": pc.pg_ports[n]} for n in NAMES]


def rw_node(p, pc):
    """The node (by its port: Patroni sets cluster_name to the scope) a new rw session writes on."""
    conn = psycopg2.connect(p.rw_dsn(), connect_timeout=3)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("INSERT INTO fo_patroni (at) VALUES (clock_timestamp()) "
                        "RETURNING inet_server_port()")
            port = cur.fetchone()[0]
            return next(n for n, p in pc.pg_ports.items() if p == port)
    finally:
        conn.close()


class FollowPatroni(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        missing = [tool for tool in ("patroni", "etcd") if not shutil.which(tool)]
        if missing:
            raise unittest.SkipTest(f"not installed: {', '.join(missing)} (scripts/setup installs "
                                    "the Debian packages patroni and etcd-server)")
        cls.pc = PatroniCluster()
        try:
            cls.pc.start_etcd()
            cls.pc.start_node("p0")
            wait(lambda: cls.pc.api("p0", "/primary")[0] == 200, 60, "p0 bootstrapped as leader")
            cls.pc.start_node("p1")
            cls.pc.start_node("p2")
            wait(lambda: all(cls.pc.api(n, "/replica")[0] == 200 for n in ("p1", "p2")), 90,
                 "p1 and p2 running as replicas")
            wait(lambda: any(m.get("role") == "sync_standby" for m in cls.pc.members().values()), 30,
                 "a synchronous standby (synchronous_mode)")
        except Exception as e:
            logs = "\n".join(f"--- {n}\n{cls.pc.log_tail(n)}" for n in NAMES)
            cls.pc.destroy()
            raise AssertionError(f"Patroni cluster did not come up: {e}\n{logs}") from e

    @classmethod
    def tearDownClass(cls):
        cls.pc.destroy()

    def test_two_pglanes_follow_patroni_promotion(self):
        pc = self.pc
        leader = pc.leader()
        self.assertEqual(leader, "p0")
        overrides = {"nodes": nodes_config(pc),
                     "health": {"interval_ms": fc.INTERVAL_MS, "failures_before_down": 2},
                     "failover": {"enabled": False, "hold_ms": 1000}}
        # Pglane needs a cluster object only for its default node list, replaced here.
        lanes = [Pglane(fc.cluster(), overrides).start() for _ in range(2)]
        for p in lanes:
            self.addCleanup(p.stop)
        for p in lanes:
            p.wait_until(lambda s: s.get("primary") == leader and
                         all(n["up"] for n in s["nodes"]), 15, "pglane to elect Patroni's leader p0")
        conn = psycopg2.connect(lanes[0].rw_dsn(), connect_timeout=5)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE fo_patroni (at timestamptz)")
        conn.close()
        self.assertEqual([rw_node(p, pc) for p in lanes], ["p0", "p0"])

        pc.crash("p0")
        crashed = time.monotonic()
        new = wait(lambda: (lambda name: name if name in ("p1", "p2") else None)(pc.leader(("p1", "p2"))),
                   FOLLOW_BOUND, "Patroni to promote a replica")
        promoted = time.monotonic() - crashed
        self.assertIn(new, ("p1", "p2"))
        landed = {}
        for i, p in enumerate(lanes):
            p.wait_until(lambda s: s.get("primary") == new, 10, f"pglane {i} to elect {new}")
            landed[i] = wait(lambda: (lambda n: n if n == new else None)(rw_node(p, pc)), 10,
                             f"a rw session through pglane {i} to write on {new}")
        followed = time.monotonic() - crashed
        print(f"\nfailover-patroni leader p0 crashed; Patroni promoted {new} after {promoted:.1f}s; "
              f"both pglanes write on it after {followed:.1f}s")
        self.assertEqual(landed, {0: new, 1: new})
        for p in lanes:
            self.assertEqual(p.status()["primary"], new)


if __name__ == "__main__":
    unittest.main()
