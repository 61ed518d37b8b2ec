// StartupPhase: what a session does with the bytes a client sends before its StartupMessage.
// https://www.postgresql.org/docs/15/protocol-flow.html#PROTOCOL-FLOW-START-UP

#include "protocol/startup_phase.hpp"
#include "tests/support/messages.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace pglane::protocol;
using namespace pglane::test;

namespace {

constexpr std::uint32_t max_packet = 10'000;

std::string ssl_request() { return untagged(be32(ssl_request_code)); }
std::string gssenc_request() { return untagged(be32(gssenc_request_code)); }
std::string startup_message() { return untagged(startup_body(protocol_version_3_0, "user", "alice", "database", "app")); }

}  // namespace

TEST_CASE("a StartupMessage starts the session and covers exactly its bytes", "[startup_phase]") {
    StartupPhase phase(max_packet);
    const std::string bytes_in = startup_message() + "Q";
    StartupStep step = phase.next(bytes(bytes_in));
    REQUIRE(step.action == StartupAction::start_session);
    CHECK(step.bytes == bytes_in.size() - 1);
    CHECK(step.packet.parameter("user") == "alice");
}

TEST_CASE("a partial packet asks for more, with its size once the length is known", "[startup_phase]") {
    StartupPhase phase(max_packet);
    const std::string packet = startup_message();
    CHECK(phase.next(bytes(packet.substr(0, 3))).action == StartupAction::need_more);
    CHECK(phase.next(bytes(packet.substr(0, 3))).frame_size == 0);
    StartupStep step = phase.next(bytes(packet.substr(0, 10)));
    CHECK(step.action == StartupAction::need_more);
    CHECK(step.bytes == 0);
    CHECK(step.frame_size == packet.size());
}

TEST_CASE("SSLRequest and GSSENCRequest are declined once each, then the StartupMessage follows",
          "[startup_phase]") {
    StartupPhase phase(max_packet);
    std::string in = gssenc_request() + ssl_request() + startup_message();
    StartupStep gss = phase.next(bytes(in));
    CHECK(gss.action == StartupAction::encryption_request);
    CHECK(gss.bytes == 8);
    in.erase(0, 8);
    StartupStep ssl = phase.next(bytes(in));
    CHECK(ssl.action == StartupAction::encryption_request);
    in.erase(0, 8);
    CHECK(phase.next(bytes(in)).action == StartupAction::start_session);
}

TEST_CASE("a second SSLRequest is a protocol violation, not an endless exchange", "[startup_phase]") {
    StartupPhase phase(max_packet);
    const std::string one = ssl_request();
    REQUIRE(phase.next(bytes(one)).action == StartupAction::encryption_request);
    StartupStep again = phase.next(bytes(one));
    CHECK(again.action == StartupAction::refuse);
    CHECK(again.sqlstate == "08P01");
    CHECK(again.message == "duplicate SSLRequest during startup");
}

TEST_CASE("a CancelRequest is forwarded", "[startup_phase]") {
    StartupPhase phase(max_packet);
    const std::string cancel = untagged(be32(cancel_request_code) + be32(7) + be32(9));
    StartupStep step = phase.next(bytes(cancel));
    REQUIRE(step.action == StartupAction::forward_cancel);
    CHECK(step.packet.process_id == 7);
    CHECK(step.packet.secret_key == 9);
}

TEST_CASE("garbage and bad lengths before startup are refused with 08P01", "[startup_phase]") {
    struct Case {
        const char* name;
        std::string bytes;
        std::string message;
    };
    const Case cases[] = {
        {"an HTTP request (length 1.2 GB)", "GET / HTTP/1.1\r\n", "invalid length of startup packet (1195725856)"},
        {"length 7", be32(7) + "abc", "invalid length of startup packet (7)"},
        {"length 0", be32(0), "invalid length of startup packet (0)"},
        {"length 2^31-1", be32(0x7FFFFFFF) + be32(protocol_version_3_0), "invalid length of startup packet (2147483647)"},
        {"negative length", be32(0xFFFFFFFF), "invalid length of startup packet (4294967295)"},
        {"over the maximum", be32(max_packet + 1), "invalid length of startup packet (10001)"},
        {"no user", untagged(startup_body(protocol_version_3_0, "database", "app")),
         "no PostgreSQL user name specified in startup packet"},
        {"bytes after the parameters", untagged(startup_body(protocol_version_3_0, "user", "a") + "x"),
         "bytes after the end of the startup packet"},
    };
    for (const Case& c : cases) {
        INFO(c.name);
        StartupPhase phase(max_packet);
        StartupStep step = phase.next(bytes(c.bytes));
        CHECK(step.action == StartupAction::refuse);
        CHECK(step.sqlstate == "08P01");
        CHECK(step.reason == "malformed_startup");
        CHECK(step.message == c.message);
    }
}

TEST_CASE("a protocol version other than 3 is refused with 0A000", "[startup_phase]") {
    StartupPhase phase(max_packet);
    const std::string v2 = untagged(startup_body(2u << 16, "user", "alice"));
    StartupStep step = phase.next(bytes(v2));
    CHECK(step.action == StartupAction::refuse);
    CHECK(step.sqlstate == "0A000");
    CHECK(step.reason == "unsupported_protocol");
}
