// frame_message and frame_startup: need more / a message / malformed, from plain bytes.
// https://www.postgresql.org/docs/15/protocol-overview.html#PROTOCOL-MESSAGE-CONCEPTS

#include "protocol/framing.hpp"
#include "tests/support/messages.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>

using namespace pglane::protocol;
using namespace pglane::test;

namespace {
constexpr std::uint32_t max_length = 1u << 20;
}

// ---- frame_message --------------------------------------------------------------------

TEST_CASE("a tagged message needs more bytes until its 5-byte header is there", "[framing]") {
    std::string message = tagged('Q', cstr("SELECT 1"));
    for (std::size_t n = 0; n <= 4; ++n) {
        INFO("buffer of " << n << " bytes");
        Frame frame = frame_message(bytes(message.substr(0, n)), max_length);
        CHECK(frame.status == FrameStatus::need_more);
        CHECK_FALSE(frame.header_known());
        CHECK(frame.body.empty());
    }
}

TEST_CASE("a whole tagged message is framed with its tag, length, size and body", "[framing]") {
    std::string message = tagged('Q', cstr("SELECT 1"));
    REQUIRE(message.size() == 1 + 4 + 9);

    Frame frame = frame_message(bytes(message), max_length);

    REQUIRE(frame.status == FrameStatus::message);
    CHECK(frame.tag == 'Q');
    CHECK(frame.length == 13);
    CHECK(frame.size == 14);
    CHECK(text(frame.body) == cstr("SELECT 1"));
    // The body points into the buffer, it is not a copy.
    CHECK(frame.body.data() == bytes(message).data() + 5);
}

TEST_CASE("two messages in one buffer are framed one after the other", "[framing]") {
    std::string first = tagged('P', cstr("") + cstr("SELECT $1") + be16(0));
    std::string second = tagged('S', "");
    std::string buffer = first + second;

    Frame one = frame_message(bytes(buffer), max_length);
    REQUIRE(one.status == FrameStatus::message);
    CHECK(one.tag == 'P');
    CHECK(one.size == first.size());
    CHECK(text(one.body) == first.substr(5));

    Frame two = frame_message(bytes(buffer).subspan(one.size), max_length);
    REQUIRE(two.status == FrameStatus::message);
    CHECK(two.tag == 'S');
    CHECK(two.size == 5);
    CHECK(two.body.empty());

    Frame none = frame_message(bytes(buffer).subspan(one.size + two.size), max_length);
    CHECK(none.status == FrameStatus::need_more);
}

TEST_CASE("a message split at every byte offset is framed only once it is complete", "[framing]") {
    std::string message = tagged('Q', cstr("SELECT * FROM pg_stat_replication"));
    std::string next = tagged('X', "");  // bytes of a following message must not change the frame

    for (std::size_t n = 0; n < message.size(); ++n) {
        INFO("prefix of " << n << " bytes out of " << message.size());
        Frame frame = frame_message(bytes(message.substr(0, n)), max_length);
        REQUIRE(frame.status == FrameStatus::need_more);
        CHECK(frame.body.empty());
        if (n >= 5) {
            // Once the header is there the caller learns how much to wait for.
            CHECK(frame.header_known());
            CHECK(frame.length == message.size() - 1);
            CHECK(frame.size == message.size());
        } else {
            CHECK_FALSE(frame.header_known());
        }
    }

    Frame whole = frame_message(bytes(message), max_length);
    REQUIRE(whole.status == FrameStatus::message);
    CHECK(whole.tag == 'Q');
    CHECK(whole.size == message.size());
    CHECK(text(whole.body) == cstr("SELECT * FROM pg_stat_replication"));

    for (std::size_t extra = 1; extra <= next.size(); ++extra) {
        std::string buffer = message + next.substr(0, extra);
        Frame frame = frame_message(bytes(buffer), max_length);
        REQUIRE(frame.status == FrameStatus::message);
        CHECK(frame.size == message.size());
        CHECK(text(frame.body) == cstr("SELECT * FROM pg_stat_replication"));
    }
}

TEST_CASE("a declared length of 0 is malformed", "[framing]") {
    Frame frame = frame_message(bytes(header('Q', 0)), max_length);
    CHECK(frame.status == FrameStatus::malformed);
}

TEST_CASE("a declared length of 3 is malformed because the length counts its own 4 bytes", "[framing]") {
    for (std::uint32_t length : {1u, 2u, 3u}) {
        INFO("declared length " << length);
        Frame frame = frame_message(bytes(header('Q', length) + "abc"), max_length);
        CHECK(frame.status == FrameStatus::malformed);
        CHECK(frame.body.empty());
    }
}

TEST_CASE("a declared length of 4 is a message with an empty body", "[framing]") {
    Frame frame = frame_message(bytes(header('S', 4)), max_length);
    REQUIRE(frame.status == FrameStatus::message);
    CHECK(frame.tag == 'S');
    CHECK(frame.length == 4);
    CHECK(frame.size == 5);
    CHECK(frame.body.empty());
}

TEST_CASE("a declared length over the maximum is malformed as soon as the header is there", "[framing]") {
    std::uint32_t length = GENERATE(max_length + 1, 0x7FFFFFFFu, 0x80000000u, 0xFFFFFFFFu);
    INFO("declared length " << length);
    std::string head = header('d', length);

    // Four bytes are not enough to judge.
    CHECK(frame_message(bytes(head.substr(0, 4)), max_length).status == FrameStatus::need_more);
    // The fifth completes the header: no waiting for a body that will never fit.
    Frame frame = frame_message(bytes(head), max_length);
    CHECK(frame.status == FrameStatus::malformed);
    CHECK(frame.tag == 'd');
    CHECK(frame.body.empty());
    // Some body bytes behind it change nothing.
    CHECK(frame_message(bytes(head + std::string(100, 'x')), max_length).status == FrameStatus::malformed);
}

TEST_CASE("a declared length of exactly the maximum is accepted", "[framing]") {
    constexpr std::uint32_t max = 104;
    std::string message = tagged('d', std::string(100, '\xAB'));
    REQUIRE(message.size() == 105);

    CHECK(frame_message(bytes(message.substr(0, 5)), max).status == FrameStatus::need_more);
    CHECK(frame_message(bytes(message.substr(0, 104)), max).status == FrameStatus::need_more);
    Frame frame = frame_message(bytes(message), max);
    REQUIRE(frame.status == FrameStatus::message);
    CHECK(frame.length == max);
    CHECK(frame.body.size() == 100);

    CHECK(frame_message(bytes(header('d', max + 1)), max).status == FrameStatus::malformed);
}

TEST_CASE("the body of a tagged message may contain any byte, NUL and 0xFF included", "[framing]") {
    std::string body{'\0', '\xFF', '\0', '\x7F', '\x80'};
    std::string message = tagged('d', body);
    Frame frame = frame_message(bytes(message), max_length);
    REQUIRE(frame.status == FrameStatus::message);
    CHECK(text(frame.body) == body);
}

// ---- frame_startup --------------------------------------------------------------------

TEST_CASE("a startup packet needs more bytes until its 4-byte length is there", "[framing][startup]") {
    std::string packet = untagged(be32(ssl_request_code));
    for (std::size_t n = 0; n <= 3; ++n) {
        INFO("buffer of " << n << " bytes");
        CHECK(frame_startup(bytes(packet.substr(0, n)), max_length).status == FrameStatus::need_more);
    }
}

TEST_CASE("a startup packet length under 8 is malformed", "[framing][startup]") {
    for (std::uint32_t length = 0; length < 8; ++length) {
        INFO("declared length " << length);
        Frame frame = frame_startup(bytes(be32(length) + std::string(8, '\0')), max_length);
        CHECK(frame.status == FrameStatus::malformed);
        CHECK(frame.body.empty());
    }
}

TEST_CASE("a startup packet length over the maximum is malformed without waiting for the body",
          "[framing][startup]") {
    CHECK(frame_startup(bytes(be32(10'001)), 10'000).status == FrameStatus::malformed);
    CHECK(frame_startup(bytes(be32(0xFFFFFFFF)), 10'000).status == FrameStatus::malformed);
    // An SSLRequest aimed at a v3 port looks like this: a huge "length" in the first 4 bytes
    // of a TLS ClientHello (0x16 0x03 0x01 ...).
    CHECK(frame_startup(bytes(std::string{'\x16', '\x03', '\x01', '\x02'}), 10'000).status ==
          FrameStatus::malformed);
}

TEST_CASE("a startup packet of exactly the maximum length is accepted", "[framing][startup]") {
    std::string packet = untagged(std::string(10'000 - 4, 'a'));
    Frame frame = frame_startup(bytes(packet), 10'000);
    REQUIRE(frame.status == FrameStatus::message);
    CHECK(frame.size == 10'000);
}

TEST_CASE("a whole startup packet is framed untagged with its body after the length",
          "[framing][startup]") {
    std::string body = startup_body(protocol_version_3_0, "user", "alice");
    std::string packet = untagged(body);
    std::string trailing = tagged('Q', cstr("SELECT 1"));

    for (std::size_t n = 0; n < packet.size(); ++n) {
        INFO("prefix of " << n << " bytes");
        CHECK(frame_startup(bytes(packet.substr(0, n)), max_length).status == FrameStatus::need_more);
    }
    std::string buffer = packet + trailing;
    Frame frame = frame_startup(bytes(buffer), max_length);
    REQUIRE(frame.status == FrameStatus::message);
    CHECK(frame.tag == 0);
    CHECK(frame.length == packet.size());
    CHECK(frame.size == packet.size());
    CHECK(text(frame.body) == body);
}

TEST_CASE("the smallest startup packet, an 8-byte SSLRequest, is framed", "[framing][startup]") {
    std::string packet = be32(8) + be32(ssl_request_code);
    Frame frame = frame_startup(bytes(packet), min_max_message_length);
    REQUIRE(frame.status == FrameStatus::message);
    CHECK(frame.size == 8);
    CHECK(text(frame.body) == be32(ssl_request_code));
}

// ---- ends_at_query_or_sync, ready_for_query_count_at_end --------------------------------

TEST_CASE("a client's bytes end where it waits only after a whole Query or Sync", "[framing][waits]") {
    const std::string query = tagged('Q', cstr("SELECT 1"));
    const std::string sync = tagged('S', "");
    const std::string parse = tagged('P', cstr("") + cstr("SELECT $1") + be16(0));
    const std::string bind = tagged('B', cstr("") + cstr("") + be16(0) + be16(0) + be16(0));
    const std::string execute = tagged('E', cstr("") + be32(0));
    CHECK(ends_at_query_or_sync(bytes(query)));
    CHECK(ends_at_query_or_sync(bytes(sync)));
    CHECK(ends_at_query_or_sync(bytes(parse + bind + execute + sync)));
    CHECK(ends_at_query_or_sync(bytes(query + query)));
    // Not yet: the extended protocol before its Sync, half a Query, a Flush, COPY data.
    CHECK_FALSE(ends_at_query_or_sync(bytes(parse + bind + execute)));
    CHECK_FALSE(ends_at_query_or_sync(bytes(query.substr(0, query.size() - 1))));
    CHECK_FALSE(ends_at_query_or_sync(bytes(query + sync.substr(0, 3))));
    CHECK_FALSE(ends_at_query_or_sync(bytes(tagged('H', ""))));
    CHECK_FALSE(ends_at_query_or_sync(bytes(tagged('d', "1\t2\n"))));
    // A CopyData whose last byte is NUL is still not a Query.
    CHECK_FALSE(ends_at_query_or_sync(bytes(tagged('d', cstr("x")))));
    // A Sync's bytes at the end of a longer message are not a Sync.
    CHECK_FALSE(ends_at_query_or_sync(bytes(tagged('d', sync))));
    CHECK_FALSE(ends_at_query_or_sync(bytes("")));
    CHECK_FALSE(ends_at_query_or_sync(bytes(header('Q', 2) + std::string(1, '\0'))));   // malformed length
}

TEST_CASE("a server's bytes count their ReadyForQuery messages only when they end with one",
          "[framing][waits]") {
    const std::string ready = tagged('Z', "I");
    const std::string row = tagged('D', be16(1) + be32(1) + "1");
    const std::string complete = tagged('C', cstr("SELECT 1"));
    CHECK(ready_for_query_count_at_end(bytes(ready)) == 1);
    CHECK(ready_for_query_count_at_end(bytes(row + complete + ready)) == 1);
    CHECK(ready_for_query_count_at_end(bytes(complete + ready + complete + tagged('Z', "T"))) == 2);
    CHECK(ready_for_query_count_at_end(bytes(row + complete)) == 0);
    CHECK(ready_for_query_count_at_end(bytes(ready + complete)) == 0);
    CHECK(ready_for_query_count_at_end(bytes(ready.substr(0, 5))) == 0);
    // A DataRow whose value ends with a ReadyForQuery's six bytes is not one.
    CHECK(ready_for_query_count_at_end(bytes(tagged('D', be16(1) + be32(6) + ready))) == 0);
    // Bytes that do not start at a message boundary are not counted.
    CHECK(ready_for_query_count_at_end(bytes(row.substr(2) + ready)) == 0);
}
