"""Runs a real pglane process for integration tests: writes its config, starts
build/pglane, waits until its ports answer, and stops it (SIGTERM, then SIGKILL)."""

import json
import os
import random
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

import psycopg2

import pgwire

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("PGLANE_BINARY", os.path.join(ROOT, "build", "pglane"))
SUPERUSER_PASSWORD = os.environ.get("PGLANE_SUPERUSER_PASSWORD", "postgres")


_handed_out = set()


def free_port():
    """A port nothing listens on, below the kernel's ephemeral range (32768 and up): a port
    the kernel chose with bind(0) can be taken by an outgoing connection before pglane binds
    it. Ports already handed out in this run and the test cluster's are skipped."""
    base = int(os.environ.get("PGLANE_TEST_BASE_PORT", "25432"))
    reserved = set(range(base - 10, base + 310))  # the cluster and the launcher tests' side clusters
    for _ in range(1000):
        port = random.randrange(20000, 32000)
        if port in _handed_out or port in reserved:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port in 20000..31999")


def wait_for_port(port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class Pglane:
    """One pglane in front of a LocalCluster. `overrides` deep-merges into the config."""

    def __init__(self, cluster, overrides=None):
        self.cluster = cluster
        self.rw_port = free_port()
        self.ro_port = free_port()
        self.metrics_port = free_port()
        self.config = {
            "listen": {"rw": f"127.0.0.1:{self.rw_port}", "ro": f"127.0.0.1:{self.ro_port}"},
            "metrics_listen": f"127.0.0.1:{self.metrics_port}",
            "nodes": [{"name": n, "host": "127.0.0.1", "port": cluster.port(n)} for n in ("n0", "n1", "n2")],
            "health": {"interval_ms": 200, "failures_before_down": 2, "user": "postgres",
                       "password": SUPERUSER_PASSWORD, "dbname": "postgres"},
            "workers": 2,
            # Tests that stop the primary want a quick answer; the hold itself is tested explicitly.
            "failover": {"hold_ms": 1000},
            # SIGTERM drains: a test that leaves a transaction open must not wait 30 s.
            "shutdown_timeout_ms": 3000,
        }
        merge(self.config, overrides or {})
        self.dir = tempfile.mkdtemp(prefix="pglane-test-")
        self.config_path = os.path.join(self.dir, "pglane.json")
        self.log_path = os.path.join(self.dir, "pglane.log")
        self.process = None

    def start(self):
        with open(self.config_path, "w") as f:
            json.dump(self.config, f, indent=2)
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen([BINARY, "--config", self.config_path], stdout=self.log,
                                        stderr=subprocess.STDOUT)
        for port in (self.rw_port, self.ro_port, self.metrics_port):
            wait_for_port(port)
        return self

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process:
            self.log.close()
        return self.process.returncode if self.process else None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def log_text(self):
        with open(self.log_path) as f:
            return f.read()

    def dsn(self, port, user="postgres", password=None, dbname="postgres", **extra):
        password = SUPERUSER_PASSWORD if password is None else password
        parts = [f"host=127.0.0.1 port={port} user={user} dbname={dbname} password={password}"]
        parts += [f"{k}={v}" for k, v in extra.items()]
        return " ".join(parts)

    def rw_dsn(self, **kw):
        return self.dsn(self.rw_port, **kw)

    def ro_dsn(self, **kw):
        return self.dsn(self.ro_port, **kw)

    def write_config(self, text=None):
        """Writes `text`, or the current `config`, over the config file (for a reload)."""
        with open(self.config_path, "w") as f:
            f.write(text if text is not None else json.dumps(self.config, indent=2))

    def reload(self, expect="config_reloaded"):
        """SIGHUP, then waits for one more `expect` line in the log."""
        before = self.log_text().count(expect)
        self.process.send_signal(signal.SIGHUP)
        pgwire.poll(lambda: self.log_text().count(expect) > before, 10, f"{expect} in the log")
        if self.process.poll() is not None:
            raise AssertionError("pglane exited on SIGHUP")

    def ro_value(self, sql):
        """The first value `sql` returns in a new session on the ro port."""
        conn = psycopg2.connect(self.ro_dsn(), connect_timeout=5)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchone()[0]
        finally:
            conn.close()

    def ro_landings(self, count):
        """cluster_name of `count` new ro sessions, opened one after the other."""
        return [self.ro_value("SELECT current_setting('cluster_name')") for _ in range(count)]

    def http(self, path):
        """(status, body text) of a GET on the metrics port."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def status(self):
        return json.loads(self.http("/status")[1])

    def metrics(self):
        """{'name{labels}': float} from /metrics."""
        out = {}
        for line in self.http("/metrics")[1].splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                try:
                    out[key] = float(value)
                except ValueError:
                    pass
        return out

    def node(self, name):
        return next(n for n in self.status()["nodes"] if n["name"] == name)

    def wait_until(self, predicate, timeout=15.0, what="condition"):
        """Polls predicate(status) until true; bounded."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.status()
            if predicate(last):
                return last
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; last status: {json.dumps(last)[:2000]}")


def merge(base, extra):
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            merge(base[k], v)
        else:
            base[k] = v


# --- the auto port (issue 3): a Pglane with listen.auto and an auth section.

def write_users_file(directory, users):
    """Writes a PgBouncer-format userlist ({user: secret}) into `directory`; returns its path."""
    path = os.path.join(directory, "userlist.txt")
    with open(path, "w") as f:
        for user, secret in users.items():
            f.write('"{}" "{}"\n'.format(user.replace('"', '""'), secret.replace('"', '""')))
    return path


class AutoPglane(Pglane):
    """A Pglane that also listens on listen.auto, with pglane's own auth. `users` ({user: secret})
    becomes auth.users_file (default: postgres/postgres); pass users=None with an auth override
    (e.g. auth.query) for no users file."""

    def __init__(self, cluster, overrides=None, users=None, use_users_file=True, log_level="debug"):
        self.auto_port = free_port()
        super().__init__(cluster, None)
        self.config["listen"]["auto"] = f"127.0.0.1:{self.auto_port}"
        self.config["log_level"] = log_level
        if use_users_file:
            all_users = {"postgres": SUPERUSER_PASSWORD}
            all_users.update(users or {})
            self.config["auth"] = {"users_file": write_users_file(self.dir, all_users)}
        merge(self.config, overrides or {})

    def start(self):
        super().start()
        wait_for_port(self.auto_port)
        return self

    def auto_dsn(self, **kw):
        return self.dsn(self.auto_port, **kw)


def start_module_pglane(cluster, with_roles=True, overrides=None, auto_users=None):
    """The usual module fixture: the cluster up (returns whether this call started it), the
    test roles present, and a pglane whose primary and both standbys are routable: relayed
    auth, or with `auto_users` ({user: secret}) an AutoPglane logging at info."""
    import pgwire  # pgwire does not import this module: no cycle

    started_here = cluster.ensure_up()
    if with_roles:
        pgwire.ensure_roles(cluster)
    if auto_users is None:
        pglane = Pglane(cluster, overrides).start()
    else:
        pglane = AutoPglane(cluster, overrides, users=auto_users, log_level="info").start()
    try:
        pglane.wait_until(pgwire.all_routable, 15, "n0 primary and n1, n2 routable standbys")
    except Exception:
        pglane.stop()
        raise
    return started_here, pglane


def stop_module_pglane(cluster, started_here, pglane):
    """Undoes start_module_pglane; the cluster stays up if PGLANE_TEST_KEEP_CLUSTER is set."""
    if pglane:
        pglane.stop()
    if started_here and not os.environ.get("PGLANE_TEST_KEEP_CLUSTER"):
        cluster.down()
