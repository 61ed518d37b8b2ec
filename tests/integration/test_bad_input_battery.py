"""The bad-input battery (issue 8), on the relayed rw and ro ports and on the auto port
(pglane-authenticated, SCRAM): garbage and impossible lengths before startup, during
authentication and after it, truncated messages, unknown message types, a CancelRequest
with a wrong key, a thousand connections dropped mid-startup, and clients vanishing
mid-COPY and mid-transaction. Each bad client gets ErrorResponse 08P01 (FATAL) and a close,
or a clean close when it vanished; meanwhile a pgbench run through the same port completes
with zero errors, a neighbour session in an open transaction keeps working, pglane's RSS
stays bounded, and afterwards no server backend is left in a transaction and no row of a
vanished transaction or COPY was committed.

test_bad_input.py holds the per-case checks of the relayed ports (server session ended,
counters, log lines); this file runs the whole battery per port under load."""

import base64
import hashlib
import hmac
import os
import re
import socket
import struct
import subprocess
import tempfile
import threading
import time
import unittest

import psycopg2

import pgwire
from cluster import LocalCluster
from pglane import SUPERUSER_PASSWORD, AutoPglane, Pglane

TABLE = "bad_input_t"
BENCH_TABLE = "bad_input_bench"
# pglane's RSS may grow this much over the second round of one port's battery (the first
# brings the allocator to its working size; the sanitizer run's quarantine is 16 MiB, see
# scripts/test). A thousand leaked sessions' buffers alone would be 32 MiB.
RSS_GROWTH_BOUND_MIB = 16
STORM_CONNECTIONS = 1000

CLUSTER = None
STARTED_HERE = False
RELAYED = None
AUTO = None


def be32(value):
    return struct.pack("!I", value & 0xFFFFFFFF)


SSL_REQUEST = be32(8) + be32(80877103)

# What a client sends instead of a startup packet: each gets 08P01 and a close.
BEFORE_STARTUP = {
    "length 0": be32(0),
    "length 3": be32(3) + b"\0\0\0\0",
    "length 2^31-1": be32(2**31 - 1) + be32(196608),
    "negative length": be32(-1) + be32(196608),
    "length over the startup maximum": be32(10_001) + be32(196608),
    "http request": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "random bytes": bytes((i * 97 + 13) % 256 for i in range(200)),
    "no user": be32(4 + 4 + 18) + be32(196608) + b"database\0postgres\0\0",
    "parameters without their NULs": be32(4 + 4 + 10) + be32(196608) + b"user\0alice",
}

# Messages after a successful startup: each gets 08P01 and a close.
AFTER_STARTUP = {
    "length 0": b"Q" + be32(0),
    "length 3": b"Q" + be32(3),
    "length 2^31-1": b"Q" + be32(2**31 - 1) + b"SELECT 1",
    "negative length": b"P" + be32(-1) + b"\0\0",
    "unknown type '!'": b"!" + be32(4),
    "backend-only type 'T'": b"T" + be32(6) + b"\0\0",
    "garbage": b"\x00\xfe" + bytes(range(40)),
}


def setUpModule():
    global CLUSTER, STARTED_HERE, RELAYED, AUTO
    CLUSTER = LocalCluster.from_env()
    STARTED_HERE = CLUSTER.ensure_up()
    pgwire.ensure_roles(CLUSTER)
    CLUSTER.sql("n0", f"""
        CREATE TABLE IF NOT EXISTS {TABLE} (marker text, n int);
        CREATE TABLE IF NOT EXISTS {BENCH_TABLE} (n int);
        GRANT ALL ON {TABLE}, {BENCH_TABLE} TO PUBLIC;""")
    pgwire.wait_replayed(CLUSTER)
    RELAYED = Pglane(CLUSTER).start()
    AUTO = AutoPglane(CLUSTER, log_level="info").start()
    for p in (RELAYED, AUTO):
        p.wait_until(pgwire.all_routable, 15, "n0 primary and n1, n2 routable standbys")


def tearDownModule():
    for p in (AUTO, RELAYED):
        if p:
            p.stop()
    if STARTED_HERE and not os.environ.get("PGLANE_TEST_KEEP_CLUSTER"):
        CLUSTER.down()


# ---- raw sessions ------------------------------------------------------------------------------

def read_until(sock, tag, timeout=5.0):
    """Messages [(tag, body)] up to and including the first `tag`; an ErrorResponse first fails."""
    sock.settimeout(timeout)
    seen = []
    while True:
        t, body = pgwire.read_message(sock)
        seen.append((t, body))
        if t == tag:
            return seen
        if t == b"E":
            raise pgwire.WireError(f"unexpected error: {pgwire.error_fields(body)}")


def scram_first(sock, user, **params):
    """Startup as `user` up to the client-first-message; returns (first_bare, server_first)."""
    sock.sendall(pgwire.startup_packet(user, **params))
    tag, body = pgwire.read_message(sock)
    if tag != b"R" or struct.unpack("!I", body[:4])[0] != 10:
        raise pgwire.WireError(f"expected AuthenticationSASL, got {tag!r} {body[:60]!r}")
    first_bare = "n=,r=" + base64.b64encode(os.urandom(18)).decode()
    client_first = ("n,," + first_bare).encode()
    sock.sendall(pgwire.message(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(client_first)) + client_first))
    tag, body = pgwire.read_message(sock)
    if tag != b"R" or struct.unpack("!I", body[:4])[0] != 11:
        raise pgwire.WireError(f"expected AuthenticationSASLContinue, got {tag!r} {body[:60]!r}")
    return first_bare, body[4:].decode()


def scram_login(sock, user, password, **params):
    """A whole SCRAM-SHA-256 login (RFC 5802) up to the first ReadyForQuery; returns the
    (process id, secret key) of the BackendKeyData."""
    first_bare, server_first = scram_first(sock, user, **params)
    attrs = dict(part.split("=", 1) for part in server_first.split(","))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    without_proof = f"c=biws,r={attrs['r']}"
    auth_message = f"{first_bare},{server_first},{without_proof}".encode()
    signature = hmac.new(hashlib.sha256(client_key).digest(), auth_message, "sha256").digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature))).decode()
    sock.sendall(pgwire.message(b"p", f"{without_proof},p={proof}".encode()))
    return backend_key(read_until(sock, b"Z"))


def backend_key(messages):
    for tag, body in messages:
        if tag == b"K":
            return struct.unpack("!II", body)
    raise pgwire.WireError(f"no BackendKeyData in {[t for t, _ in messages]}")


class Port:
    """One port under test: how to log in a raw session and which pglane serves it."""

    def __init__(self, name, pglane, port, authenticated):
        self.name, self.pglane, self.port, self.authenticated = name, pglane, port, authenticated

    def session(self, application_name):
        """(socket past the first ReadyForQuery, (process id, secret key))."""
        sock = pgwire.connect(self.port)
        try:
            if self.authenticated:
                key = scram_login(sock, "postgres", SUPERUSER_PASSWORD, application_name=application_name)
            else:
                sock.sendall(pgwire.startup_packet(pgwire.TRUST_ROLE, application_name=application_name))
                key = backend_key(read_until(sock, b"Z"))
            return sock, key
        except BaseException:
            sock.close()
            raise


def vanish(sock):
    """The client disappears: no Terminate, the socket just closes (RST when data is unread)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def in_transaction_backends():
    """Client backends on any node that sit in a transaction without running anything."""
    found = []
    for node in ("n0", "n1", "n2"):
        rows = CLUSTER.sql(node, "SELECT pid, application_name, state FROM pg_stat_activity "
                                 "WHERE backend_type = 'client backend' AND state LIKE 'idle in transaction%'")
        found += [(node, *row) for row in rows]
    return found


class Pgbench:
    """pgbench through a port, run after run (2 s each, 4 clients) from construction until
    stop(): a load that overlaps the whole battery however long it takes."""

    def __init__(self, port, script):
        self.port, self.script = port, script
        self.runs = []
        self.current = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while not self.stopping.is_set():
            self.current = subprocess.Popen(
                pgwire.pgbench_args(self.port, "-n", "-f", self.script, "-T", "2", "-c", "4"),
                env=pgwire.pg_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                output, _ = self.current.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                self.current.kill()
                output, _ = self.current.communicate()
            self.current.output = output
            self.runs.append(self.current)

    def stop(self):
        """Waits for the run in progress (bounded) and returns every run."""
        self.stopping.set()
        self.thread.join(timeout=90)
        if self.thread.is_alive() and self.current:
            self.current.kill()
        if not self.runs:
            raise AssertionError("pgbench never completed a run")
        return self.runs


# ---- the battery -------------------------------------------------------------------------------

class BadInputBattery:
    """Mixin: PORT() returns the Port under test."""

    @classmethod
    def setUpClass(cls):
        cls.port = cls.PORT()
        cls.script = tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False)
        # Single statements (no explicit transaction): a pgbench backend is never idle in
        # transaction, so any such backend afterwards belongs to a vanished client.
        write = cls.port.name != "ro"
        cls.script.write(f"INSERT INTO {BENCH_TABLE} VALUES (1);\n" if write else "")
        cls.script.write("SELECT count(*) FROM pg_class;\n")
        cls.script.close()

    @classmethod
    def tearDownClass(cls):
        os.unlink(cls.script.name)

    def app(self, what):
        return f"pglane_bad_{self.port.name}_{re.sub(r'[^a-z0-9]+', '_', what.lower())}"

    def assert_08P01(self, sock, what):
        fields = pgwire.expect_error_then_close(sock)
        self.assertEqual(fields.get("C"), "08P01", f"{self.port.name}: {what}: {fields}")
        self.assertEqual(fields.get("S"), "FATAL", f"{self.port.name}: {what}: {fields}")
        self.assertTrue(fields.get("M"), f"{self.port.name}: {what}: no message in {fields}")

    def test_bad_input_costs_only_the_bad_clients_their_connections(self):
        p = self.port.pglane
        neighbour = psycopg2.connect(p.dsn(self.port.port), connect_timeout=5)
        self.addCleanup(neighbour.close)
        neighbour.autocommit = True
        cur = neighbour.cursor()
        cur.execute("BEGIN")  # a neighbour in an open transaction, on the same port, throughout
        cur.execute("SELECT 1")
        for _ in range(20):  # warm up: sessions, caches, pools
            with pgwire.connect(self.port.port) as sock:
                sock.sendall(SSL_REQUEST)
                self.assertEqual(pgwire.recv_exact(sock, 1), b"N")
        bench = Pgbench(self.port.port, self.script.name)
        self.addCleanup(bench.stop)

        # Twice: the first round brings the allocator to its working size (and fills
        # ASan's quarantine in the sanitizer build); the second must not grow it further.
        markers = []
        rss = [pgwire.rss_mib(p.process.pid)]
        for round_number in (1, 2):
            self.bad_startups()
            if self.port.authenticated:
                self.bad_authentication()
            self.bad_messages()
            markers += self.vanishing_clients(round_number)
            self.wrong_cancel_keys()
            self.dropped_mid_startup()
            rss.append(pgwire.rss_mib(p.process.pid))

        for run in bench.stop():
            self.assertEqual(run.returncode, 0, run.output)
            self.assertRegex(run.output, r"number of failed transactions: 0\b", run.output)
            processed = re.search(r"number of transactions actually processed: (\d+)", run.output)
            self.assertGreater(int(processed.group(1)) if processed else 0, 0, run.output)

        cur.execute("SELECT 2")
        self.assertEqual(cur.fetchone()[0], 2)
        cur.execute("COMMIT")

        # No server session is left in a transaction, and nothing the vanished clients did
        # was committed.
        pgwire.poll(lambda: not in_transaction_backends(), 10, "no backend idle in transaction")
        if markers:
            marker_list = ", ".join(f"'{m}'" for m in markers)
            self.assertEqual(CLUSTER.value("n0", f"SELECT count(*) FROM {TABLE} WHERE marker IN ({marker_list})"),
                             "0", "a vanished client's rows were committed")

        grown = rss[2] - rss[1]
        self.assertLess(grown, RSS_GROWTH_BOUND_MIB,
                        f"pglane's RSS grew by {grown:.1f} MiB over the second round (MiB after each: {rss})")
        self.assertIsNone(p.process.poll(), "pglane exited")

    # -- the cases

    def bad_startups(self):
        for name, garbage in BEFORE_STARTUP.items():
            with self.subTest(before_startup=name), pgwire.connect(self.port.port) as sock:
                sock.sendall(garbage)
                self.assert_08P01(sock, name)
        with self.subTest(before_startup="a second SSLRequest"), pgwire.connect(self.port.port) as sock:
            sock.sendall(SSL_REQUEST)
            self.assertEqual(pgwire.recv_exact(sock, 1), b"N")
            sock.sendall(SSL_REQUEST)
            self.assert_08P01(sock, "a second SSLRequest")
        with self.subTest(before_startup="protocol 2.0"), pgwire.connect(self.port.port) as sock:
            sock.sendall(be32(4 + 4 + 10) + be32(2 << 16) + b"user\0bob\0\0")
            fields = pgwire.expect_error_then_close(sock)
            self.assertEqual(fields.get("C"), "0A000", fields)
        with self.subTest(before_startup="truncated, then gone"):
            packet = pgwire.startup_packet("postgres")
            for cut in (2, 6, len(packet) - 1):
                with pgwire.connect(self.port.port) as sock:
                    sock.sendall(packet[:cut])
                    sock.shutdown(socket.SHUT_WR)
                    self.assertTrue(pgwire.is_closed(sock), f"cut at {cut}: not closed")

    def bad_authentication(self):
        """On a pglane-authenticated port: what the client sends instead of SCRAM messages."""
        cases = {
            "garbage instead of SASLInitialResponse": b"\xff" * 16,
            "Query instead of SASLInitialResponse": pgwire.query_message("SELECT 1"),
            "SASLInitialResponse with length -2": pgwire.message(b"p", b"SCRAM-SHA-256\0" + be32(-2)),
            "SASLInitialResponse longer than its message": pgwire.message(b"p", b"SCRAM-SHA-256\0" + be32(500) + b"n,,"),
            "unknown mechanism": pgwire.message(b"p", b"SCRAM-SHA-1\0" + be32(3) + b"n,,"),
            "malformed client-first": pgwire.message(b"p", b"SCRAM-SHA-256\0" + be32(4) + b"x,,n"),
            "truncated message, then gone": pgwire.message(b"p", b"SCRAM-SHA-256\0" + be32(8) + b"n,,n=,r=")[:12],
        }
        for name, payload in cases.items():
            with self.subTest(authentication=name), pgwire.connect(self.port.port) as sock:
                sock.sendall(pgwire.startup_packet("postgres"))
                tag, body = pgwire.read_message(sock)
                self.assertEqual((tag, struct.unpack("!I", body[:4])[0]), (b"R", 10))
                sock.sendall(payload)
                if name.endswith("then gone"):
                    sock.shutdown(socket.SHUT_WR)
                    self.assertTrue(pgwire.is_closed(sock))
                else:
                    self.assert_08P01(sock, name)
        with self.subTest(authentication="garbage instead of the client-final"), pgwire.connect(self.port.port) as sock:
            scram_first(sock, "postgres")
            sock.sendall(pgwire.message(b"p", b"c=biws,r=wrong,p=" + b"A" * 44))
            self.assert_08P01(sock, "client-final with a wrong nonce")
        with self.subTest(authentication="wrong proof"), pgwire.connect(self.port.port) as sock:
            first_bare, server_first = scram_first(sock, "postgres")
            nonce = dict(part.split("=", 1) for part in server_first.split(","))["r"]
            sock.sendall(pgwire.message(b"p", f"c=biws,r={nonce},p={'A' * 43}=".encode()))
            fields = pgwire.expect_error_then_close(sock)
            self.assertEqual(fields.get("C"), "28P01", f"a wrong proof is a wrong password: {fields}")

    def bad_messages(self):
        for name, payload in AFTER_STARTUP.items():
            with self.subTest(after_startup=name):
                sock, _ = self.port.session(self.app(name))
                with sock:
                    sock.sendall(pgwire.query_message("SELECT 1"))
                    self.assertEqual(pgwire.data_rows(sock), [["1"]])
                    sock.sendall(payload)
                    self.assert_08P01(sock, name)
        with self.subTest(after_startup="truncated message, then gone"):
            sock, _ = self.port.session(self.app("truncated"))
            with sock:
                sock.sendall(pgwire.query_message("SELECT 'never complete'")[:9])
                sock.shutdown(socket.SHUT_WR)
                self.assertTrue(pgwire.is_closed(sock))

    def vanishing_clients(self, round_number):
        """Clients that disappear inside a transaction and inside COPY FROM STDIN; returns the
        markers of rows that must never be committed."""
        markers = []
        if self.port.name == "ro":
            return markers  # a standby takes neither; the rw and auto ports cover them
        for step in ("after INSERT", "after a failed statement", "mid-COPY", "mid-COPY message"):
            marker = f"{self.port.name}:{step}:{os.getpid()}:{round_number}"
            markers.append(marker)
            with self.subTest(vanishing=step):
                sock, _ = self.port.session(self.app(step))
                sock.sendall(pgwire.query_message("BEGIN"))
                read_until(sock, b"Z")
                if step.startswith("after"):
                    sock.sendall(pgwire.query_message(f"INSERT INTO {TABLE} VALUES ('{marker}', 1)"))
                    messages = read_until(sock, b"Z")
                    self.assertEqual(messages[-1][1], b"T")
                    if step == "after a failed statement":
                        sock.sendall(pgwire.query_message("SELECT 1/0"))
                        sock.settimeout(5)
                        while pgwire.read_message(sock)[0] != b"Z":
                            pass
                else:
                    sock.sendall(pgwire.query_message(f"COPY {TABLE} FROM STDIN"))
                    sock.settimeout(5)
                    self.assertEqual(pgwire.read_message(sock)[0], b"G")
                    rows = "".join(f"{marker}\t{i}\n" for i in range(200)).encode()
                    data = pgwire.message(b"d", rows)
                    sock.sendall(data if step == "mid-COPY" else data + data[:20])
                vanish(sock)
        return markers

    def wrong_cancel_keys(self):
        """A CancelRequest with a wrong secret (or an unknown process id) is closed quietly and
        cancels nothing."""
        sock, (pid, secret) = self.port.session(self.app("cancel victim"))
        with sock:
            sock.sendall(pgwire.query_message("SELECT pg_sleep(1.2), 42"))
            time.sleep(0.2)
            for wrong in ((pid, secret ^ 1), (pid ^ 0x5A5A5A5A, secret)):
                with pgwire.connect(self.port.port) as cancel:
                    cancel.sendall(be32(16) + be32(80877102) + be32(wrong[0]) + be32(wrong[1]))
                    self.assertTrue(pgwire.is_closed(cancel), "a CancelRequest gets no answer but a close")
            sock.settimeout(10)
            rows = pgwire.data_rows(sock)  # raises on 57014 (canceled)
            self.assertEqual(rows, [["", "42"]])

    def dropped_mid_startup(self):
        """A thousand connections opened and dropped mid-startup (in waves of 100 open at once);
        afterwards pglane counts none of them as open."""
        p = self.port.pglane
        kind = {"rw": "rw", "ro": "ro", "auto": "auto"}[self.port.name]
        active = lambda: p.status()["listeners"][kind]["client_connections_active"]  # noqa: E731
        before = active()
        packet = pgwire.startup_packet("postgres")
        for wave in range(STORM_CONNECTIONS // 100):
            socks = []
            try:
                for i in range(100):
                    s = socket.create_connection(("127.0.0.1", self.port.port), timeout=5)
                    socks.append(s)
                    s.sendall(packet[: (wave * 100 + i) % (len(packet) - 1)])
            finally:
                for s in socks:
                    vanish(s)
        pgwire.poll(lambda: active() <= before, 10, f"{kind} client_connections_active back to {before}")


class AutoPortMemoryAfterABigMessage(unittest.TestCase):
    """The auto port reads a whole message into the session's input buffer (grown to the
    message's size): between units the buffer goes back to its small size, so an idle session
    does not keep the memory of the largest message it ever sent."""

    def test_an_idle_auto_session_does_not_keep_the_memory_of_its_largest_message(self):
        sock, _ = Port("auto", AUTO, AUTO.auto_port, True).session("pglane_bad_big_message")
        with sock:
            before = pgwire.rss_mib(AUTO.process.pid)
            sock.sendall(pgwire.query_message("SELECT length('" + "x" * (64 * 1024 * 1024) + "')"))
            sock.settimeout(60)
            self.assertEqual(pgwire.data_rows(sock), [[str(64 * 1024 * 1024)]])
            time.sleep(0.5)
            held = pgwire.rss_mib(AUTO.process.pid) - before
            self.assertLess(held, 16, f"an idle session holds {held:.0f} MiB after one 64 MiB Query")


def relayed_port(kind):
    return lambda: Port(kind, RELAYED, RELAYED.rw_port if kind == "rw" else RELAYED.ro_port, False)


class BadInputBatteryRw(BadInputBattery, unittest.TestCase):
    PORT = staticmethod(relayed_port("rw"))


class BadInputBatteryRo(BadInputBattery, unittest.TestCase):
    PORT = staticmethod(relayed_port("ro"))


class BadInputBatteryAuto(BadInputBattery, unittest.TestCase):
    PORT = staticmethod(lambda: Port("auto", AUTO, AUTO.auto_port, True))


if __name__ == "__main__":
    unittest.main()
