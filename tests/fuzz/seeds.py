#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets (tests/fuzz/corpus/<target>/<seed>): one small,
meaningful input per protocol case, so a short run starts from real messages instead of
rediscovering the framing. Re-run after changing a target's input layout (see the header
comment of each fuzz_*.cpp); libFuzzer's own findings go to a scratch directory, not here."""

import base64
import hashlib
import hmac
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def be32(v):
    return struct.pack("!I", v & 0xFFFFFFFF)


def tagged(tag, body=b""):
    return tag + be32(len(body) + 4) + body


def untagged(body):
    return be32(len(body) + 4) + body


def startup(version=196608, **params):
    body = be32(version)
    for k, v in params.items():
        body += k.encode() + b"\0" + v.encode() + b"\0"
    return untagged(body + b"\0")


def cstr(s):
    return s.encode() + b"\0"


QUERY = tagged(b"Q", cstr("SELECT 1"))
PARSE = tagged(b"P", cstr("s1") + cstr("SELECT $1::int") + struct.pack("!h", 1) + be32(23))
BIND = tagged(b"B", cstr("") + cstr("s1") + struct.pack("!hhh", 0, 1, 0) + be32(1) + b"7" + struct.pack("!h", 0))
DESCRIBE = tagged(b"D", b"P" + cstr(""))
EXECUTE = tagged(b"E", cstr("") + be32(0))
SYNC = tagged(b"S")
COPY_DATA = tagged(b"d", b"1\tone\n" * 40)

# ---- fuzz_framing: capacity byte, max-length byte, piece seed byte, stream
FRAMING = {
    "query": bytes([56, 255, 7]) + QUERY,
    "extended_unit": bytes([92, 255, 3]) + PARSE + BIND + DESCRIBE + EXECUTE + SYNC,
    "copy_streams_through": bytes([0, 255, 11]) + tagged(b"G", b"\0\0\0") + COPY_DATA + tagged(b"c") + SYNC,
    "length_3": bytes([56, 255, 1]) + QUERY + b"Q" + be32(3),
    "length_0": bytes([56, 255, 1]) + b"P" + be32(0),
    "length_2_31_minus_1": bytes([56, 255, 1]) + b"Q" + be32(2**31 - 1) + b"SELECT 1",
    "length_negative": bytes([56, 255, 1]) + SYNC + b"Q" + be32(-1),
    "over_small_max": bytes([200, 2, 5]) + QUERY + tagged(b"Q", cstr("SELECT 'longer than twenty bytes'")),
    "truncated": bytes([56, 255, 9]) + QUERY[:7],
}

# ---- fuzz_messages: tag byte, body
MESSAGES = {
    "query": b"Q" + cstr("SELECT 1"),
    "parse": b"P" + PARSE[5:],
    "bind": b"B" + BIND[5:],
    "describe": b"D" + DESCRIBE[5:],
    "close": b"C" + b"S" + cstr("s1"),
    "execute": b"E" + EXECUTE[5:],
    "ready_for_query": b"Z" + b"T",
    "backend_key_data": b"K" + be32(4242) + be32(0xDEADBEEF),
    "authentication_md5": b"R" + be32(5) + b"salt",
    "authentication_sasl": b"R" + be32(10) + cstr("SCRAM-SHA-256") + b"\0",
    "parameter_status": b"S" + cstr("server_version") + cstr("15.5"),
    "error_response": b"E" + b"SFATAL\0VFATAL\0C08P01\0Minvalid message\0Ddetail\0Hhint\0\0",
    "sasl_initial_response": b"p" + cstr("SCRAM-SHA-256") + be32(32) + b"n,,n=,r=fyko+d2lbbFgONRv9qkxdawL",
    "sasl_no_data": b"p" + cstr("SCRAM-SHA-256") + be32(-1),
    "parse_negative_count": b"P" + cstr("") + cstr("SELECT 1") + struct.pack("!h", -1),
}

# ---- fuzz_startup: piece seed byte, stream
SSL_REQUEST = untagged(be32(80877103))
GSSENC_REQUEST = untagged(be32(80877104))
STARTUP = {
    "startup_message": b"\x05" + startup(user="alice", database="app", application_name="psql"),
    "ssl_then_startup": b"\x03" + SSL_REQUEST + startup(user="alice"),
    "gssenc_ssl_startup": b"\x09" + GSSENC_REQUEST + SSL_REQUEST + startup(user="alice"),
    "duplicate_ssl_request": b"\x01" + SSL_REQUEST + SSL_REQUEST,
    "cancel_request": b"\x02" + untagged(be32(80877102) + be32(1234) + be32(5678)),
    "protocol_2_0": b"\x02" + startup(version=2 << 16, user="alice"),
    "protocol_3_1_with_pq_option": b"\x02" + startup(version=(3 << 16) | 1, user="alice", _pq_opt="x"),
    "no_user": b"\x04" + startup(database="app"),
    "length_7": b"\x01" + be32(7) + b"\0\0\0",
    "length_over_max": b"\x01" + be32(10001) + be32(196608),
    "http_request": b"\x06" + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "bytes_after_end": b"\x02" + untagged(be32(196608) + cstr("user") + cstr("alice") + b"\0junk"),
}

# ---- fuzz_scram: mode byte, text
SALT_B64 = "W22ZaJ0SNY7soEsUEjb6gQ=="
SALT = base64.b64decode(SALT_B64)
SERVER_NONCE = "3rfcNHYJY1ZVvWVs7j"
CLIENT_NONCE = "fyko+d2lbbFgONRv9qkxdawL"
SALTED = hashlib.pbkdf2_hmac("sha256", b"pencil", SALT, 4096)
CLIENT_KEY = hmac.new(SALTED, b"Client Key", "sha256").digest()
STORED_KEY = hashlib.sha256(CLIENT_KEY).digest()
SERVER_KEY = hmac.new(SALTED, b"Server Key", "sha256").digest()
b64 = lambda raw: base64.b64encode(raw).decode()


def client_proof(client_first_bare, server_first, without_proof):
    """ClientProof = ClientKey XOR HMAC(StoredKey, AuthMessage) (RFC 5802 section 3)."""
    auth = f"{client_first_bare},{server_first},{without_proof}".encode()
    signature = hmac.new(STORED_KEY, auth, "sha256").digest()
    return bytes(a ^ b for a, b in zip(CLIENT_KEY, signature))


def server_exchange():
    bare = f"n=user,r={CLIENT_NONCE}"
    server_first = f"r={CLIENT_NONCE}{SERVER_NONCE},s={SALT_B64},i=4096"
    without_proof = f"c=biws,r={CLIENT_NONCE}{SERVER_NONCE}"
    proof = client_proof(bare, server_first, without_proof)
    return f"n,,{bare}".encode(), f"{without_proof},p={b64(proof)}".encode()


def client_exchange():
    bare = f"n=,r={CLIENT_NONCE}"
    server_first = f"r={CLIENT_NONCE}{SERVER_NONCE},s={SALT_B64},i=4096"
    without_proof = f"c=biws,r={CLIENT_NONCE}{SERVER_NONCE}"
    auth = f"{bare},{server_first},{without_proof}".encode()
    signature = hmac.new(SERVER_KEY, auth, "sha256").digest()
    return server_first.encode(), f"v={b64(signature)}".encode()


FIRST, FINAL = server_exchange()
SERVER_FIRST, SERVER_FINAL = client_exchange()
VERIFIER = f"SCRAM-SHA-256$4096:{SALT_B64}${b64(STORED_KEY)}:{b64(SERVER_KEY)}".encode()
SASL_BODY = cstr("SCRAM-SHA-256") + be32(len(FIRST)) + FIRST
SCRAM = {
    "server_exchange_ok": b"\x00" + FIRST + b"\0" + FINAL,
    "server_exchange_y_flag": b"\x00" + b"y" + FIRST[1:] + b"\0" + b"c=eSws" + FINAL[6:],
    "server_exchange_channel_binding": b"\x00" + b"p=tls-server-end-point,,n=,r=abc\0",
    "server_exchange_extension": b"\x00" + b"n,,m=ext,n=,r=abc\0",
    "client_exchange_ok": b"\x01" + SERVER_FIRST + b"\0" + SERVER_FINAL,
    "client_exchange_server_error": b"\x01" + SERVER_FIRST + b"\0" + b"e=invalid-proof",
    "client_exchange_huge_iterations": b"\x01" + SERVER_FIRST.replace(b"i=4096", b"i=2147483647") + b"\0v=",
    "verifier": b"\x02" + VERIFIER,
    "md5_hash": b"\x02" + b"md5" + b"0123456789abcdef" * 2,
    "base64": b"\x03" + b"W22ZaJ0SNY7soEsUEjb6gQ==",
    "sasl_initial_response": b"\x04" + struct.pack("!H", len(SASL_BODY)) + SASL_BODY + FINAL,
}


def write(target, seeds):
    directory = os.path.join(HERE, "corpus", target)
    os.makedirs(directory, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    write("fuzz_framing", FRAMING)
    write("fuzz_messages", MESSAGES)
    write("fuzz_startup", STARTUP)
    write("fuzz_scram", SCRAM)
