"""Split brain avoided (issue 6, "Proof"; destructive; needs root for ip netns).

pglane runs in its own network namespace, joined to the root namespace by a veth pair
(root side 10.77.0.1/24 and 10.77.0.3/32, pglane side 10.77.0.2/24). The nodes listen on
127.0.0.1 only, so small TCP forwarders in this process expose n0 on 10.77.0.3 and n1, n2 on
10.77.0.1 (each on its node's port); pglane's config names those addresses.

1. Cut pglane off from the primary only (a blackhole route to 10.77.0.3 inside pglane's
   namespace; the standbys still stream from n0 over loopback): pglane sees n0 down, logs
   failover_refused, and no standby is promoted during several failover.after_ms.
2. Cut everyone off (SIGKILL n0): exactly one standby is promoted, and the other one ends
   up streaming from it.
"""

import os
import socket
import subprocess
import threading
import time
import unittest
import urllib.request

import failover_common as fc
import pgwire
from pglane import BINARY, AutoPglane

CLUSTER = None
NS = "pglfo"
VETH_ROOT, VETH_NS = "pglfo0", "pglfo1"
ROOT_IP, NS_IP, N0_IP = "10.77.0.1", "10.77.0.2", "10.77.0.3"


def setUpModule():
    global CLUSTER
    CLUSTER = fc.cluster()


def tearDownModule():
    fc.restore(CLUSTER)


def sh(*args, check=True):
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=20)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def teardown_network():
    """Bounded and idempotent: deleting the namespace removes its veth end and the pair."""
    sh("ip", "netns", "del", NS, check=False)
    sh("ip", "link", "del", VETH_ROOT, check=False)


def setup_network():
    teardown_network()
    sh("ip", "netns", "add", NS)
    sh("ip", "link", "add", VETH_ROOT, "type", "veth", "peer", "name", VETH_NS)
    sh("ip", "link", "set", VETH_NS, "netns", NS)
    sh("ip", "addr", "add", f"{ROOT_IP}/24", "dev", VETH_ROOT)
    sh("ip", "addr", "add", f"{N0_IP}/32", "dev", VETH_ROOT)
    sh("ip", "link", "set", VETH_ROOT, "up")
    sh("ip", "netns", "exec", NS, "ip", "link", "set", "lo", "up")
    sh("ip", "netns", "exec", NS, "ip", "addr", "add", f"{NS_IP}/24", "dev", VETH_NS)
    sh("ip", "netns", "exec", NS, "ip", "link", "set", VETH_NS, "up")


class Forwarder:
    """listen_host:port -> 127.0.0.1:target_port, one thread per direction per connection."""

    def __init__(self, listen_host, port, target_port):
        self.target_port = target_port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((listen_host, port))
        self.sock.listen(64)
        self.closed = False
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            self.conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.closed = True
        for s in [self.sock, *self.conns]:
            try:
                s.close()
            except OSError:
                pass


class NsPglane(AutoPglane):
    """An AutoPglane run with `ip netns exec` that listens on NS_IP and reaches n0 at N0_IP,
    n1 and n2 at ROOT_IP."""

    def __init__(self, cluster, overrides):
        super().__init__(cluster, overrides)
        cfg = self.config
        cfg["listen"] = {k: f"{NS_IP}:{v.rsplit(':', 1)[1]}" for k, v in cfg["listen"].items()}
        cfg["metrics_listen"] = f"{NS_IP}:{self.metrics_port}"
        for node in cfg["nodes"]:
            node["host"] = N0_IP if node["name"] == "n0" else ROOT_IP

    def start(self):
        import json
        with open(self.config_path, "w") as f:
            json.dump(self.config, f, indent=2)
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(["ip", "netns", "exec", NS, BINARY, "--config", self.config_path],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        for port in (self.rw_port, self.ro_port, self.metrics_port, self.auto_port):
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection((NS_IP, port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"pglane does not listen on {NS_IP}:{port}")
                    time.sleep(0.05)
        return self

    def dsn(self, port, user="postgres", password=None, dbname="postgres", **extra):
        return super().dsn(port, user, password, dbname, **extra).replace("host=127.0.0.1", f"host={NS_IP}", 1)

    def http(self, path):
        try:
            with urllib.request.urlopen(f"http://{NS_IP}:{self.metrics_port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()


class SplitBrain(unittest.TestCase):

    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("needs root for ip netns")
        try:
            setup_network()
        except Exception as e:  # noqa: BLE001
            teardown_network()
            reason = f"cannot create a network namespace here: {e}"
            print(f"\nSKIP: {reason}")
            self.skipTest(reason)
        self.addCleanup(teardown_network)
        c = CLUSTER
        fc.rebuild(c)
        self.forwarders = [Forwarder(N0_IP, c.port("n0"), c.port("n0")),
                           Forwarder(ROOT_IP, c.port("n1"), c.port("n1")),
                           Forwarder(ROOT_IP, c.port("n2"), c.port("n2"))]
        for f in self.forwarders:
            self.addCleanup(f.close)
        self.pglane = NsPglane(c, {"health": {"interval_ms": fc.INTERVAL_MS, "failures_before_down": 2},
                                   "failover": {"enabled": True, "after_ms": fc.AFTER_MS, "hold_ms": 1000,
                                                "promote_timeout_ms": 30000}})
        self.addCleanup(self.pglane.stop)
        self.pglane.start()
        self.pglane.wait_until(pgwire.all_routable, 15, "n0 primary and n1, n2 routable standbys (via netns)")

    def test_no_promotion_while_standbys_stream_then_exactly_one(self):
        c, p = CLUSTER, self.pglane
        # 1. pglane alone loses n0.
        sh("ip", "netns", "exec", NS, "ip", "route", "add", "blackhole", f"{N0_IP}/32")
        p.wait_until(lambda s: not fc_node(s, "n0")["up"] and s.get("primary") is None, 10,
                     "pglane to see n0 down")
        time.sleep(5 * fc.AFTER_MS / 1000)
        self.assertTrue(pgwire.cluster_streaming(c), "the standbys stopped streaming from n0")
        self.assertEqual((fc.in_recovery(c, "n1"), fc.in_recovery(c, "n2")), (True, True),
                         "a standby was promoted while both still stream from the live primary")
        self.assertIsNone(p.status()["primary"])
        refused = fc.log_events(p, "failover_refused")
        self.assertTrue(refused, f"no failover_refused in the log:\n{p.log_text()[-3000:]}")
        self.assertEqual(fc.log_events(p, "failover_promoting"), [])
        print(f"\nfailover-netns refused: {refused[0]}")

        # 2. Everyone loses n0.
        fc.kill_node(c, "n0")
        new = fc.wait_new_primary(p, "n0", timeout=30)
        other = ({"n1", "n2"} - {new}).pop()
        time.sleep(3 * fc.AFTER_MS / 1000)
        self.assertEqual((fc.in_recovery(c, new), fc.in_recovery(c, other)), (False, True),
                         f"expected exactly one promotion ({new})")
        self.assertEqual(len(fc.log_events(p, "failover_promoting")), 1, p.log_text()[-3000:])
        self.assertEqual(len(fc.log_events(p, "failover_promoted")), 1, p.log_text()[-3000:])
        self.assertEqual(p.status()["primary"], new)
        pgwire.poll(lambda: pgwire.cluster_streaming(c, standbys=(other,), primary=new), 20,
                    f"{other} streaming from the new primary {new}")


def fc_node(status, name):
    return next(n for n in status["nodes"] if n["name"] == name)


if __name__ == "__main__":
    unittest.main()
