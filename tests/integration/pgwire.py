"""Raw PostgreSQL v3 wire helpers for integration tests (stdlib only): startup packets,
message reading with deadlines, ErrorResponse parsing, and small helpers shared by the
test_ports / test_bad_input / test_health_routing / test_failover_follow files."""

import base64
import hashlib
import os
import socket
import struct
import subprocess
import threading
import time

PG_BIN = os.environ.get("PGLANE_PG_BIN", "/usr/lib/postgresql/15/bin")
PSQL = os.path.join(PG_BIN, "psql")
PGBENCH = os.path.join(PG_BIN, "pgbench")
TRUST_ROLE = "pglane_trust"


class WireError(AssertionError):
    pass


def startup_packet(user, database="postgres", **params):
    body = struct.pack("!I", 196608)
    for key, value in (("user", user), ("database", database), *params.items()):
        body += key.encode() + b"\0" + str(value).encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def message(tag, payload=b""):
    return tag + struct.pack("!I", len(payload) + 4) + payload


def query_message(sql):
    return message(b"Q", sql.encode() + b"\0")


def connect(port, timeout=5.0):
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(f"connection closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def read_message(sock):
    """(tag, body) of the next backend message; EOFError when the peer closed."""
    header = recv_exact(sock, 5)
    tag, length = header[:1], struct.unpack("!I", header[1:])[0]
    if length < 4 or length > 64 * 1024 * 1024:
        raise WireError(f"backend sent a message {tag!r} with length {length}")
    return tag, recv_exact(sock, length - 4)


def error_fields(body):
    """ErrorResponse/NoticeResponse body -> {field code: value} (e.g. 'C' -> SQLSTATE)."""
    fields = {}
    pos = 0
    while pos < len(body) and body[pos] != 0:
        code = chr(body[pos])
        end = body.index(b"\0", pos + 1)
        fields[code] = body[pos + 1:end].decode(errors="replace")
        pos = end + 1
    if pos >= len(body) or body[pos] != 0:
        raise WireError(f"ErrorResponse not terminated: {body!r}")
    return fields


def is_closed(sock, timeout=3.0):
    """True when the peer closes the connection within `timeout` (no more data arrives)."""
    sock.settimeout(timeout)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def expect_error_then_close(sock, timeout=5.0):
    """Reads messages until an ErrorResponse; returns its fields after checking the
    connection is then closed. Raises WireError when no 'E' arrives or it stays open."""
    sock.settimeout(timeout)
    seen = []
    try:
        while True:
            tag, body = read_message(sock)
            if tag == b"E":
                fields = error_fields(body)
                if not is_closed(sock):
                    raise WireError(f"connection still open after ErrorResponse {fields}")
                return fields
            seen.append(tag)
    except EOFError:
        raise WireError(f"connection closed without an ErrorResponse (messages before: {seen})")
    except socket.timeout:
        raise WireError(f"no ErrorResponse within {timeout}s (messages before: {seen})")


def simple_query(sock, sql):
    """Runs `sql` as one Query; returns the transaction status byte of its ReadyForQuery
    (b"I", b"T" or b"E"). WireError on an ErrorResponse."""
    sock.sendall(query_message(sql))
    while True:
        tag, body = read_message(sock)
        if tag == b"E":
            raise WireError(f"{sql!r} failed: {error_fields(body)}")
        if tag == b"Z":
            return body


def rss_mib(pid):
    """Resident memory of process `pid` in MiB (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def data_rows(sock):
    """Reads until ReadyForQuery; returns the DataRow values (text) of a simple query."""
    rows = []
    while True:
        tag, body = read_message(sock)
        if tag == b"D":
            count = struct.unpack("!H", body[:2])[0]
            pos, row = 2, []
            for _ in range(count):
                n = struct.unpack("!i", body[pos:pos + 4])[0]
                pos += 4
                if n < 0:
                    row.append(None)
                else:
                    row.append(body[pos:pos + n].decode())
                    pos += n
            rows.append(row)
        elif tag == b"E":
            raise WireError(f"query failed: {error_fields(body)}")
        elif tag == b"Z":
            return rows


def trust_session(port, application_name=None, timeout=5.0):
    """A raw socket past startup (trust role) up to the first ReadyForQuery."""
    sock = connect(port, timeout)
    try:
        params = {"application_name": application_name} if application_name else {}
        sock.sendall(startup_packet(TRUST_ROLE, **params))
        while True:
            tag, body = read_message(sock)
            if tag == b"R":
                code = struct.unpack("!I", body[:4])[0]
                if code != 0:
                    raise WireError(f"trust role {TRUST_ROLE} was asked for authentication {code}")
            elif tag == b"E":
                raise WireError(f"startup failed: {error_fields(body)}")
            elif tag == b"Z":
                return sock
    except BaseException:
        sock.close()
        raise


def startup_error(port, user, database="postgres", timeout=5.0):
    """Sends a startup packet and returns the fields of the ErrorResponse the port answers
    with (for ports that refuse the session before authentication)."""
    with connect(port, timeout) as sock:
        sock.sendall(startup_packet(user, database))
        return expect_error_then_close(sock, timeout)


def wrong_password_error(port, user, password="definitely-wrong", timeout=5.0):
    """Authenticates with a wrong password over a raw socket (MD5 or SCRAM-SHA-256, whichever
    the server asks for) and returns (auth method, ErrorResponse fields)."""
    with connect(port, timeout) as sock:
        sock.sendall(startup_packet(user))
        tag, body = read_message(sock)
        if tag != b"R":
            raise WireError(f"expected an authentication request, got {tag!r} {body!r}")
        code = struct.unpack("!I", body[:4])[0]
        if code == 5:  # MD5: md5(md5(password + user) + salt)
            salt = body[4:8]
            inner = hashlib.md5((password + user).encode()).hexdigest().encode()
            digest = b"md5" + hashlib.md5(inner + salt).hexdigest().encode()
            sock.sendall(message(b"p", digest + b"\0"))
            method = "md5"
        elif code == 10:  # SASL: a well-formed exchange with a wrong proof
            if b"SCRAM-SHA-256\0" not in body[4:]:
                raise WireError(f"server offers no SCRAM-SHA-256: {body!r}")
            nonce = base64.b64encode(os.urandom(18)).decode()
            first_bare = f"n=,r={nonce}"
            client_first = ("n,," + first_bare).encode()
            sock.sendall(message(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(client_first)) + client_first))
            tag, body = read_message(sock)
            if tag != b"R" or struct.unpack("!I", body[:4])[0] != 11:
                raise WireError(f"expected SASLContinue, got {tag!r} {body!r}")
            server_first = dict(part.split("=", 1) for part in body[4:].decode().split(","))
            proof = base64.b64encode(os.urandom(32)).decode()
            final = f"c=biws,r={server_first['r']},p={proof}".encode()
            sock.sendall(message(b"p", final))
            method = "scram-sha-256"
        else:
            raise WireError(f"unexpected authentication request {code}")
        return method, expect_error_then_close(sock, timeout)


def pg_env(password="postgres"):
    env = dict(os.environ, PGPASSWORD=password, PGCONNECT_TIMEOUT="5")
    for key in ("PGSERVICE", "PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGSSLMODE"):
        env.pop(key, None)
    return env


def psql(port, sql, user="postgres", password="postgres", timeout=30):
    """psql -At through a port; returns CompletedProcess (stdout/stderr text)."""
    return subprocess.run([PSQL, "-X", "-w", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                           "-p", str(port), "-U", user, "-d", "postgres", "-c", sql],
                          env=pg_env(password), capture_output=True, text=True, timeout=timeout)


def pgbench_args(port, *args, user="postgres"):
    return [PGBENCH, "-h", "127.0.0.1", "-p", str(port), "-U", user, *args, "postgres"]


def sleep_cancelled(conn, after=1.0):
    """Runs SELECT pg_sleep(30) on a DB-API connection (psycopg2) and calls conn.cancel() from
    a timer `after` seconds in: (the exception execute raised, or None; seconds it took)."""
    timer = threading.Timer(after, conn.cancel)
    started = time.monotonic()
    timer.start()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_sleep(30)")
        return None, time.monotonic() - started
    except Exception as error:   # the driver's QueryCanceled, for the caller to check
        return error, time.monotonic() - started
    finally:
        timer.cancel()


def poll(predicate, timeout, what, interval=0.1):
    """Calls predicate until truthy (returned) or `timeout` seconds pass (AssertionError)."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            outcome = predicate()
            if outcome:
                return outcome
        except Exception as e:  # noqa: BLE001 - reported below if the bound passes
            last_error = e
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                                 + (f"; last error: {last_error!r}" if last_error else ""))
        time.sleep(interval)


def cluster_streaming(cluster, standbys=("n1", "n2"), primary="n0"):
    """True when every standby in `standbys` streams from `primary` (pg_stat_replication)."""
    rows = cluster.sql(primary, "SELECT application_name, state FROM pg_stat_replication")
    streaming = {name for name, state in rows if state == "streaming"}
    return set(standbys) <= streaming


def all_routable(status, standbys=("n1", "n2"), primary="n0"):
    nodes = {n["name"]: n for n in status["nodes"]}
    if primary not in nodes or any(s not in nodes for s in standbys):
        return False   # e.g. the status of the round before a reload added the node
    return (status.get("primary") == primary and nodes[primary]["up"]
            and all(nodes[s]["up"] and nodes[s]["role"] == "standby" and not nodes[s]["held_back"]
                    for s in standbys))


def ensure_roles(cluster):
    """Creates the roles the tests log in with (idempotent): pglane_trust (trust),
    pglane_scram (SCRAM verifier), pglane_md5 (md5 hash)."""
    cluster.sql("n0", f"""
        DO $$BEGIN
          IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{TRUST_ROLE}') THEN
            CREATE ROLE {TRUST_ROLE} LOGIN; END IF;
          IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pglane_scram') THEN
            CREATE ROLE pglane_scram LOGIN; END IF;
          IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pglane_md5') THEN
            CREATE ROLE pglane_md5 LOGIN; END IF;
        END$$;
        SET password_encryption = 'scram-sha-256';
        ALTER ROLE pglane_scram PASSWORD 'scram-secret';
        SET password_encryption = 'md5';
        ALTER ROLE pglane_md5 PASSWORD 'md5-secret';
        SELECT pg_current_wal_lsn();""")
    wait_replayed(cluster)


def ensure_password_role(cluster, user, password):
    """Creates login role `user` with a SCRAM verifier for `password` (idempotent)."""
    cluster.sql("n0", f"""
        DO $$BEGIN
          IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{user}') THEN
            CREATE ROLE {user} LOGIN; END IF;
        END$$;
        SET password_encryption = 'scram-sha-256';
        ALTER ROLE {user} PASSWORD '{password}'""")


def wait_replayed(cluster, standbys=("n1", "n2"), timeout=15):
    """Waits until every standby replayed the primary's current WAL position."""
    lsn = cluster.value("n0", "SELECT pg_current_wal_lsn()")
    for node in standbys:
        poll(lambda: cluster.value(
            node, f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn") == "t",
            timeout, f"{node} to replay up to {lsn}")
