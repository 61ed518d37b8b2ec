// The writers: exact bytes against hand-built expectations, then read back by the decoders.
// https://www.postgresql.org/docs/15/protocol-message-formats.html

#include "protocol/framing.hpp"
#include "protocol/messages.hpp"
#include "tests/support/messages.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <utility>
#include <vector>

using namespace pglane::protocol;
using namespace pglane::test;

namespace {
const std::string nul(1, '\0');
}

TEST_CASE("append_error_response writes tag E, the length, S V C M fields and the terminator",
          "[messages][writers]") {
    std::string out;
    append_error_response(out, "FATAL", sqlstate::too_many_connections, "too many clients");

    std::string fields = "S" + cstr("FATAL") + "V" + cstr("FATAL") + "C" + cstr("53300") + "M" +
                         cstr("too many clients") + nul;
    std::string expected = std::string("E") + be32(static_cast<std::uint32_t>(4 + fields.size())) + fields;
    CHECK(out == expected);
    CHECK(out.size() == 1 + 4 + 7 + 7 + 7 + 18 + 1);
}

TEST_CASE("append_error_response adds the detail field D only when given", "[messages][writers]") {
    std::string out;
    append_error_response(out, "ERROR", sqlstate::feature_not_supported, "not supported", "because");

    std::string fields = "S" + cstr("ERROR") + "V" + cstr("ERROR") + "C" + cstr("0A000") + "M" +
                         cstr("not supported") + "D" + cstr("because") + nul;
    CHECK(out == "E" + be32(static_cast<std::uint32_t>(4 + fields.size())) + fields);
}

TEST_CASE("an ErrorResponse pglane writes is framed and read back field by field", "[messages][writers]") {
    std::string out;
    append_error_response(out, "FATAL", sqlstate::protocol_violation, "invalid frontend message type 33",
                          "a detail");

    Frame frame = frame_message(bytes(out), min_max_message_length);
    REQUIRE(frame.status == FrameStatus::message);
    CHECK(frame.tag == 'E');
    CHECK(frame.size == out.size());
    CHECK(message_name(frame.tag, Direction::backend) == "ErrorResponse");
    auto fields = read_error_fields(frame.body);
    REQUIRE(fields.has_value());
    CHECK(fields->severity == "FATAL");
    CHECK(fields->sqlstate == "08P01");
    CHECK(fields->message == "invalid frontend message type 33");
    CHECK(fields->detail == "a detail");
    CHECK(fields->hint.empty());
}

TEST_CASE("append_ready_for_query writes Z, length 5 and the status byte", "[messages][writers]") {
    std::string out;
    append_ready_for_query(out, TransactionStatus::idle);
    append_ready_for_query(out, TransactionStatus::in_transaction);
    append_ready_for_query(out, TransactionStatus::failed);
    CHECK(out == "Z" + be32(5) + "I" + "Z" + be32(5) + "T" + "Z" + be32(5) + "E");

    Frame frame = frame_message(bytes(out), min_max_message_length);
    REQUIRE(frame.status == FrameStatus::message);
    CHECK(read_ready_for_query(frame.body) == TransactionStatus::idle);
}

TEST_CASE("append_backend_key_data writes K, length 12, process id and secret key", "[messages][writers]") {
    std::string out;
    append_backend_key_data(out, BackendKey{0x01020304, 0xF0E0D0C0});
    CHECK(out == "K" + be32(12) + be32(0x01020304) + be32(0xF0E0D0C0));

    Frame frame = frame_message(bytes(out), min_max_message_length);
    REQUIRE(frame.status == FrameStatus::message);
    auto key = read_backend_key_data(frame.body);
    REQUIRE(key.has_value());
    CHECK(key->process_id == 0x01020304);
    CHECK(key->secret_key == 0xF0E0D0C0);
}

TEST_CASE("append_parameter_status writes S, the name and the value", "[messages][writers]") {
    std::string out;
    append_parameter_status(out, "client_encoding", "UTF8");
    std::string body = cstr("client_encoding") + cstr("UTF8");
    CHECK(out == "S" + be32(static_cast<std::uint32_t>(4 + body.size())) + body);

    Frame frame = frame_message(bytes(out), min_max_message_length);
    REQUIRE(frame.status == FrameStatus::message);
    auto status = read_parameter_status(frame.body);
    REQUIRE(status.has_value());
    CHECK(status->first == "client_encoding");
    CHECK(status->second == "UTF8");
}

TEST_CASE("append_greeting writes each ParameterStatus, BackendKeyData and ReadyForQuery, one value replaced",
          "[messages][writers]") {
    const std::vector<std::pair<std::string, std::string>> parameters{
        {"in_hot_standby", "on"}, {"server_version", "15.14"}};
    const BackendKey key{7, 8};
    auto expected = [&](std::string_view hot_standby) {
        std::string out;
        append_parameter_status(out, "in_hot_standby", hot_standby);
        append_parameter_status(out, "server_version", "15.14");
        append_backend_key_data(out, key);
        append_ready_for_query(out, TransactionStatus::idle);
        return out;
    };
    std::string as_given;
    append_greeting(as_given, parameters, key);
    CHECK(as_given == expected("on"));
    std::string replaced;
    append_greeting(replaced, parameters, key, {"in_hot_standby", "off"});
    CHECK(replaced == expected("off"));
    // A name the server did not report is not added.
    std::string absent;
    append_greeting(absent, parameters, key, {"default_transaction_read_only", "on"});
    CHECK(absent == as_given);
}

TEST_CASE("append_authentication writes R, the code and its data", "[messages][writers]") {
    std::string ok;
    append_authentication(ok, auth_ok);
    CHECK(ok == "R" + be32(8) + be32(0));

    std::string md5;
    std::string salt{'\x00', '\x11', '\x22', '\x33'};
    append_authentication(md5, 5, salt);
    CHECK(md5 == "R" + be32(12) + be32(5) + salt);

    Frame frame = frame_message(bytes(md5), min_max_message_length);
    REQUIRE(frame.status == FrameStatus::message);
    auto auth = read_authentication(frame.body);
    REQUIRE(auth.has_value());
    CHECK(auth->code == 5);
    CHECK(text(auth->data) == salt);
}

TEST_CASE("append_startup_message writes an untagged v3 packet with the parameters and terminator",
          "[messages][writers][startup]") {
    std::string out;
    append_startup_message(out, {{"user", "alice"}, {"database", "app"}});
    CHECK(out == untagged(startup_body(protocol_version_3_0, "user", "alice", "database", "app")));
    CHECK(out.substr(0, 4) == be32(static_cast<std::uint32_t>(out.size())));
}

TEST_CASE("a startup message round-trips through frame_startup and parse_startup",
          "[messages][writers][startup]") {
    std::vector<std::pair<std::string, std::string>> parameters{
        {"user", "alice"}, {"database", "app"}, {"options", "-c statement_timeout=5s"},
        {"application_name", "pglane test"}};
    std::string out;
    append_startup_message(out, parameters);

    Frame frame = frame_startup(bytes(out), min_max_message_length);
    REQUIRE(frame.status == FrameStatus::message);
    CHECK(frame.size == out.size());
    StartupPacket packet = parse_startup(frame.body);
    REQUIRE(packet.kind == StartupKind::startup);
    CHECK(packet.version == protocol_version_3_0);
    CHECK(packet.parameters == parameters);
}

TEST_CASE("append_ssl_request writes the 8-byte SSLRequest", "[messages][writers][startup]") {
    std::string out;
    append_ssl_request(out);
    CHECK(out == be32(8) + be32(80877103));

    Frame frame = frame_startup(bytes(out), min_max_message_length);
    REQUIRE(frame.status == FrameStatus::message);
    CHECK(parse_startup(frame.body).kind == StartupKind::ssl_request);
}

TEST_CASE("append_cancel_request writes the 16-byte CancelRequest that parses back",
          "[messages][writers][startup]") {
    std::string out;
    append_cancel_request(out, BackendKey{777, 0x89ABCDEF});
    CHECK(out == be32(16) + be32(80877102) + be32(777) + be32(0x89ABCDEF));

    Frame frame = frame_startup(bytes(out), min_max_message_length);
    REQUIRE(frame.status == FrameStatus::message);
    StartupPacket packet = parse_startup(frame.body);
    REQUIRE(packet.kind == StartupKind::cancel_request);
    CHECK(packet.process_id == 777);
    CHECK(packet.secret_key == 0x89ABCDEF);
}

TEST_CASE("append_query writes Q, the length and the NUL-terminated SQL", "[messages][writers]") {
    std::string out;
    append_query(out, "SELECT pg_is_in_recovery()");
    CHECK(out == "Q" + be32(4 + 26 + 1) + cstr("SELECT pg_is_in_recovery()"));

    Frame frame = frame_message(bytes(out), min_max_message_length);
    REQUIRE(frame.status == FrameStatus::message);
    CHECK(is_frontend_message(frame.tag));
    CHECK(read_query(frame.body) == std::string_view("SELECT pg_is_in_recovery()"));
}

TEST_CASE("append_terminate and append_sync write empty-bodied X and S", "[messages][writers]") {
    std::string terminate;
    append_terminate(terminate);
    CHECK(terminate == "X" + be32(4));

    std::string sync;
    append_sync(sync);
    CHECK(sync == "S" + be32(4));
    CHECK(message_name('X', Direction::frontend) == "Terminate");
    CHECK(message_name('S', Direction::frontend) == "Sync");
}

TEST_CASE("writers append after what the string already holds", "[messages][writers]") {
    std::string out = "prefix";
    append_query(out, "BEGIN");
    append_sync(out);
    append_terminate(out);
    CHECK(out == "prefix" + ("Q" + be32(10) + cstr("BEGIN")) + ("S" + be32(4)) + ("X" + be32(4)));
}

TEST_CASE("MessageWriter patches a length that needs all four bytes", "[messages][writers]") {
    std::string big(70'000, 'x');
    std::string out;
    append_query(out, big);
    CHECK(out.substr(0, 5) == "Q" + be32(4 + 70'000 + 1));

    Frame frame = frame_message(bytes(out), 1u << 20);
    REQUIRE(frame.status == FrameStatus::message);
    CHECK(read_query(frame.body)->size() == 70'000);
}

TEST_CASE("MessageWriter writes signed and unsigned integers big-endian", "[messages][writers]") {
    std::string out;
    {
        MessageWriter w(out, 'x');
        w.u8(0xAB).i16(-2).i32(-1).u32(0x01020304).cstring("a").raw("bc");
    }
    std::string body = std::string{'\xAB', '\xFF', '\xFE'} + be32(0xFFFFFFFF) + be32(0x01020304) + cstr("a") + "bc";
    CHECK(out == "x" + be32(static_cast<std::uint32_t>(4 + body.size())) + body);
}
