"""Drives compose/local-cluster for the integration tests (stdlib only, /usr/bin/python3).

`LocalCluster.from_env()` is the cluster the test runner points at with
PGLANE_TEST_BASE_PORT (default 25432) and PGLANE_TEST_CLUSTER_DIR (default
/tmp/pglane-cluster-<port>); it may already be up. Nodes are n0 (initial primary), n1, n2.
"""

import os
import pathlib
import subprocess
import time

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
LAUNCHER = REPO_ROOT / "compose" / "local-cluster"
NODES = ("n0", "n1", "n2")
SUPERUSER = "postgres"


class ClusterError(RuntimeError):
    """A launcher command or a psql call failed; the message carries its stderr."""


class LocalCluster:
    """One local-cluster instance (base port + directory). Not thread-safe; it holds no
    connections, every call runs the launcher or psql as a subprocess with a time bound."""

    def __init__(self, base_port, cluster_dir=None, *, pg_bin=None,
                 superuser_password="postgres", replication_password="replicator",
                 wait_seconds=60):
        self.base_port = int(base_port)
        self.cluster_dir = pathlib.Path(
            cluster_dir or f"/tmp/pglane-cluster-{self.base_port}").absolute()
        self.pg_bin = pathlib.Path(
            pg_bin or os.environ.get("PGLANE_PG_BIN", "/usr/lib/postgresql/15/bin"))
        self.superuser_password = superuser_password
        self.replication_password = replication_password
        self.wait_seconds = wait_seconds

    @classmethod
    def from_env(cls):
        base_port = int(os.environ.get("PGLANE_TEST_BASE_PORT", "25432"))
        return cls(base_port, os.environ.get("PGLANE_TEST_CLUSTER_DIR") or None)

    # --- launcher commands

    def up(self):
        self._launch("up")

    def down(self):
        self._launch("down")

    def stop(self, node, mode="fast"):
        self._launch("stop", self._checked(node), mode)

    def start(self, node):
        self._launch("start", self._checked(node))

    def promote(self, node):
        self._launch("promote", self._checked(node))

    def pause_replay(self, node):
        self._launch("pause-replay", self._checked(node))

    def resume_replay(self, node):
        self._launch("resume-replay", self._checked(node))

    def status(self):
        """{node: {"port", "running" (bool), "role" (primary/standby/unknown/-), "pid"}}."""
        result = self._launch("status", accept=(0, 3))
        table = {}
        for line in result.stdout.splitlines()[1:]:
            node, port, running, role, pid = line.split()
            table[node] = {"port": int(port), "running": running == "yes",
                           "role": role, "pid": None if pid == "-" else int(pid)}
        return table

    def is_up(self):
        return all(row["running"] for row in self.status().values())

    def ensure_up(self):
        """Starts the cluster unless every node already runs; True if this call started it."""
        if self.is_up():
            return False
        self.up()
        return True

    # --- addresses

    def port(self, node):
        return self.base_port + NODES.index(self._checked(node))

    def data_dir(self, node):
        return self.cluster_dir / self._checked(node)

    def socket_dir(self, node):
        """The directory of the node's Unix-domain socket (unix_socket_directories)."""
        return self.cluster_dir / "sockets" / self._checked(node)

    @property
    def archive_dir(self):
        return self.cluster_dir / "archive"

    def dsn(self, node, user=SUPERUSER, password=None, dbname="postgres"):
        password = self.superuser_password if password is None else password
        quoted = password.replace("\\", "\\\\").replace("'", "\\'")
        return (f"host=127.0.0.1 port={self.port(node)} user={user} "
                f"password='{quoted}' dbname={dbname}")

    # --- SQL

    def sql(self, node, query, user=SUPERUSER, password=None, dbname="postgres", timeout=30):
        """Runs `query` over TCP with a password (so pg_hba.conf applies) and returns the rows
        as lists of strings (NULL is ''). Values containing tabs or newlines do not survive."""
        password = self.superuser_password if password is None else password
        env = dict(os.environ, PGPASSWORD=password, PGCONNECT_TIMEOUT="5")
        env.pop("PGSERVICE", None)
        command = [str(self.pg_bin / "psql"), "-X", "-w", "-At", "-F", "\t",
                   "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port(node)),
                   "-U", user, "-d", dbname, "-c", query]
        result = subprocess.run(command, env=env, capture_output=True, text=True,
                                timeout=timeout, check=False)
        if result.returncode != 0:
            raise ClusterError(f"psql on {node} failed ({result.returncode}): "
                               f"{query!r}: {result.stderr.strip()}")
        return [line.split("\t") for line in result.stdout.splitlines()]

    def value(self, node, query, **kwargs):
        """The single value of a one-row, one-column query."""
        rows = self.sql(node, query, **kwargs)
        if len(rows) != 1 or len(rows[0]) != 1:
            raise ClusterError(f"expected one value from {query!r} on {node}, got {rows!r}")
        return rows[0][0]

    def wait_for(self, predicate, what, timeout=None, interval=0.1):
        """Polls `predicate` until it returns a truthy value (returned) or the bound passes."""
        deadline = time.monotonic() + (self.wait_seconds if timeout is None else timeout)
        while True:
            outcome = predicate()
            if outcome:
                return outcome
            if time.monotonic() >= deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            time.sleep(interval)

    # --- internals

    def launcher_env(self):
        return dict(os.environ,
                    PGLANE_BASE_PORT=str(self.base_port),
                    PGLANE_CLUSTER_DIR=str(self.cluster_dir),
                    PGLANE_PG_BIN=str(self.pg_bin),
                    PGLANE_SUPERUSER_PASSWORD=self.superuser_password,
                    PGLANE_REPLICATION_PASSWORD=self.replication_password,
                    PGLANE_WAIT_SECONDS=str(self.wait_seconds))

    def _launch(self, *args, accept=(0,)):
        result = subprocess.run([str(LAUNCHER), *args], env=self.launcher_env(),
                                capture_output=True, text=True, check=False,
                                timeout=3 * self.wait_seconds + 60)
        if result.returncode not in accept:
            raise ClusterError(f"local-cluster {' '.join(args)} failed ({result.returncode}):\n"
                               f"{result.stderr.strip()}")
        return result

    @staticmethod
    def _checked(node):
        if node not in NODES:
            raise ValueError(f"unknown node {node!r}; nodes are {NODES}")
        return node
