// parse_startup: the untagged packets a client may open with.
// https://www.postgresql.org/docs/15/protocol-message-formats.html (StartupMessage,
// SSLRequest, GSSENCRequest, CancelRequest) and protocol-flow.html#PROTOCOL-FLOW-START-UP

#include "protocol/framing.hpp"
#include "protocol/messages.hpp"
#include "tests/support/messages.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace pglane::protocol;
using namespace pglane::test;

namespace {
constexpr std::uint32_t protocol_2_0 = 2u << 16;
constexpr std::uint32_t protocol_3_1 = (3u << 16) | 1;
}  // namespace

TEST_CASE("the protocol codes are the documented numbers", "[startup]") {
    CHECK(protocol_version_3_0 == 196608);
    CHECK(cancel_request_code == 80877102);
    CHECK(ssl_request_code == 80877103);
    CHECK(gssenc_request_code == 80877104);
}

TEST_CASE("a StartupMessage yields its version and parameters in order", "[startup]") {
    std::string body = startup_body(protocol_version_3_0, "user", "alice", "database", "app",
                                     "options", "-c search_path=s1", "application_name", "psql");

    StartupPacket packet = parse_startup(bytes(body));

    REQUIRE(packet.kind == StartupKind::startup);
    CHECK(packet.version == protocol_version_3_0);
    CHECK(packet.error.empty());
    REQUIRE(packet.parameters.size() == 4);
    CHECK(packet.parameters[0] == std::pair<std::string, std::string>{"user", "alice"});
    CHECK(packet.parameters[1] == std::pair<std::string, std::string>{"database", "app"});
    CHECK(packet.parameters[2] == std::pair<std::string, std::string>{"options", "-c search_path=s1"});
    CHECK(packet.parameters[3] == std::pair<std::string, std::string>{"application_name", "psql"});
    CHECK(packet.parameter("user") == "alice");
    CHECK(packet.parameter("database") == "app");
    CHECK(packet.parameter("options") == "-c search_path=s1");
    CHECK(packet.parameter("replication").empty());
}

TEST_CASE("a StartupMessage with only a user is accepted", "[startup]") {
    StartupPacket packet = parse_startup(bytes(startup_body(protocol_version_3_0, "user", "alice")));
    REQUIRE(packet.kind == StartupKind::startup);
    CHECK(packet.parameters.size() == 1);
    CHECK(packet.parameter("database").empty());
}

TEST_CASE("a StartupMessage with an empty parameter value keeps it", "[startup]") {
    StartupPacket packet =
        parse_startup(bytes(startup_body(protocol_version_3_0, "user", "alice", "options", "")));
    REQUIRE(packet.kind == StartupKind::startup);
    REQUIRE(packet.parameters.size() == 2);
    CHECK(packet.parameters[1].first == "options");
    CHECK(packet.parameters[1].second.empty());
}

TEST_CASE("a StartupMessage without a user is malformed", "[startup]") {
    StartupPacket packet = parse_startup(bytes(startup_body(protocol_version_3_0, "database", "app")));
    CHECK(packet.kind == StartupKind::malformed);
    CHECK_FALSE(packet.error.empty());
}

TEST_CASE("a StartupMessage with no parameters at all is malformed", "[startup]") {
    StartupPacket packet = parse_startup(bytes(startup_body(protocol_version_3_0)));
    CHECK(packet.kind == StartupKind::malformed);
}

TEST_CASE("a StartupMessage with an empty user name is malformed", "[startup]") {
    StartupPacket packet = parse_startup(bytes(startup_body(protocol_version_3_0, "user", "")));
    CHECK(packet.kind == StartupKind::malformed);
}

TEST_CASE("a StartupMessage without its final terminator is malformed", "[startup]") {
    std::string body = be32(protocol_version_3_0) + cstr("user") + cstr("alice");  // no closing NUL
    StartupPacket packet = parse_startup(bytes(body));
    CHECK(packet.kind == StartupKind::malformed);
    CHECK_FALSE(packet.error.empty());
}

TEST_CASE("a StartupMessage whose parameter value lacks its NUL is malformed", "[startup]") {
    std::string body = be32(protocol_version_3_0) + cstr("user") + "alice";
    CHECK(parse_startup(bytes(body)).kind == StartupKind::malformed);
}

TEST_CASE("a StartupMessage whose parameter name lacks its NUL is malformed", "[startup]") {
    std::string body = be32(protocol_version_3_0) + cstr("user") + cstr("alice") + "database";
    CHECK(parse_startup(bytes(body)).kind == StartupKind::malformed);
}

TEST_CASE("a StartupMessage with bytes after its terminator is malformed", "[startup]") {
    std::string body = startup_body(protocol_version_3_0, "user", "alice") + "junk";
    CHECK(parse_startup(bytes(body)).kind == StartupKind::malformed);
}

TEST_CASE("a startup body shorter than its 4-byte code is malformed", "[startup]") {
    for (std::size_t n = 0; n < 4; ++n) {
        INFO(n << " bytes");
        StartupPacket packet = parse_startup(bytes(be32(protocol_version_3_0).substr(0, n)));
        CHECK(packet.kind == StartupKind::malformed);
        CHECK_FALSE(packet.error.empty());
    }
}

TEST_CASE("an SSLRequest is recognised", "[startup]") {
    StartupPacket packet = parse_startup(bytes(be32(ssl_request_code)));
    CHECK(packet.kind == StartupKind::ssl_request);
    CHECK(packet.parameters.empty());
}

TEST_CASE("an SSLRequest with a body is malformed", "[startup]") {
    CHECK(parse_startup(bytes(be32(ssl_request_code) + be32(0))).kind == StartupKind::malformed);
}

TEST_CASE("a GSSENCRequest is recognised", "[startup]") {
    CHECK(parse_startup(bytes(be32(gssenc_request_code))).kind == StartupKind::gssenc_request);
    CHECK(parse_startup(bytes(be32(gssenc_request_code) + "x")).kind == StartupKind::malformed);
}

TEST_CASE("a CancelRequest yields the process id and secret key", "[startup]") {
    std::string body = be32(cancel_request_code) + be32(4242) + be32(0xDEADBEEF);
    StartupPacket packet = parse_startup(bytes(body));
    REQUIRE(packet.kind == StartupKind::cancel_request);
    CHECK(packet.process_id == 4242);
    CHECK(packet.secret_key == 0xDEADBEEF);
}

TEST_CASE("a CancelRequest of the wrong length is malformed", "[startup]") {
    SECTION("no key") { CHECK(parse_startup(bytes(be32(cancel_request_code))).kind == StartupKind::malformed); }
    SECTION("process id only") {
        CHECK(parse_startup(bytes(be32(cancel_request_code) + be32(1))).kind == StartupKind::malformed);
    }
    SECTION("secret key cut short") {
        std::string body = be32(cancel_request_code) + be32(1) + be32(2).substr(0, 3);
        CHECK(parse_startup(bytes(body)).kind == StartupKind::malformed);
    }
    SECTION("trailing bytes") {
        std::string body = be32(cancel_request_code) + be32(1) + be32(2) + be32(3);
        CHECK(parse_startup(bytes(body)).kind == StartupKind::malformed);
    }
}

TEST_CASE("protocol 2.0 is an unsupported version, with a reason", "[startup]") {
    StartupPacket packet = parse_startup(bytes(startup_body(protocol_2_0, "user", "alice")));
    CHECK(packet.kind == StartupKind::unsupported_version);
    CHECK(packet.version == protocol_2_0);
    CHECK_THAT(packet.error, Catch::Contains("2.0"));
}

TEST_CASE("a major version other than 3 is unsupported", "[startup]") {
    std::uint32_t version = GENERATE(0u, 1u << 16, 4u << 16, 1234u << 16);
    INFO("version " << (version >> 16) << "." << (version & 0xffff));
    CHECK(parse_startup(bytes(startup_body(version, "user", "alice"))).kind == StartupKind::unsupported_version);
}

TEST_CASE("protocol 3.1 is accepted as a startup, left to the server to negotiate", "[startup]") {
    StartupPacket packet = parse_startup(bytes(startup_body(protocol_3_1, "user", "alice", "_pq_.x", "1")));
    REQUIRE(packet.kind == StartupKind::startup);
    CHECK(packet.version == protocol_3_1);
    CHECK(packet.parameter("user") == "alice");
    CHECK(packet.parameter("_pq_.x") == "1");
}

TEST_CASE("a hand-built StartupMessage framed from a stream parses", "[startup][framing]") {
    std::string stream = untagged(startup_body(protocol_version_3_0, "user", "bob", "database", "db")) +
                         tagged('Q', cstr("SELECT 1"));
    Frame frame = frame_startup(bytes(stream), min_max_message_length);
    REQUIRE(frame.status == FrameStatus::message);
    StartupPacket packet = parse_startup(frame.body);
    REQUIRE(packet.kind == StartupKind::startup);
    CHECK(packet.parameter("user") == "bob");
    CHECK(packet.parameter("database") == "db");
    // The parameters are owned copies: they outlive the buffer.
    stream.assign(stream.size(), '\0');
    CHECK(packet.parameter("user") == "bob");
}
