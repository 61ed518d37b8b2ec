// RelayCursor: walking a relayed byte stream through a fixed-capacity buffer, the way a
// session's relay loop does (read into free space, step until need_more, compact).

#include "protocol/framing.hpp"
#include "tests/support/messages.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

using namespace pglane::protocol;
using namespace pglane::test;
using Kind = RelayCursor::Kind;

namespace {

constexpr std::uint32_t max_length = 1u << 20;

/// What the caller saw of one message: whole (kind message) or streamed (passthrough).
struct Seen {
    char tag;
    bool streamed;
    std::string body;  // only for whole messages

    bool operator==(const Seen&) const = default;
};

struct Expected {
    char tag;
    std::string body;
};

std::string random_body(std::mt19937& rng, std::size_t size) {
    std::uniform_int_distribution<int> byte(0, 255);
    std::string body(size, '\0');
    for (char& c : body) c = static_cast<char>(byte(rng));
    return body;
}

/// Plays the relay loop over `stream` with a buffer of `capacity` bytes, reading chunks of
/// 1..`max_chunk` bytes. Returns the messages seen; `covered` gets the bytes of every step.
std::vector<Seen> relay(const std::string& stream, std::size_t capacity, std::size_t max_chunk,
                        std::uint32_t seed, std::string& covered) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<std::size_t> chunk_size(1, max_chunk);
    RelayCursor cursor(max_length, capacity);
    std::vector<Seen> seen;
    std::string buffer;
    std::size_t read = 0;
    bool streaming = false;

    while (read < stream.size()) {
        std::size_t free = capacity - buffer.size();
        // A full buffer the cursor cannot step over would stall the session for good.
        REQUIRE(free > 0);
        std::size_t n = std::min({chunk_size(rng), free, stream.size() - read});
        buffer.append(stream, read, n);
        read += n;

        std::size_t consumed = 0;
        while (true) {
            Bytes unread = bytes(buffer).subspan(consumed);
            RelayCursor::Step step = cursor.next(unread);
            if (step.kind == Kind::need_more) {
                CHECK(step.bytes == 0);
                break;
            }
            REQUIRE(step.kind != Kind::malformed);
            REQUIRE(step.bytes > 0);
            REQUIRE(step.bytes <= unread.size());
            if (step.kind == Kind::message) {
                REQUIRE_FALSE(streaming);
                REQUIRE(step.frame.status == FrameStatus::message);
                REQUIRE(step.bytes == step.frame.size);
                seen.push_back({step.frame.tag, false, text(step.frame.body)});
            } else {  // passthrough
                if (!streaming) {
                    // The first piece carries the big message's header.
                    REQUIRE(step.frame.header_known());
                    REQUIRE(step.frame.size > capacity);
                    seen.push_back({step.frame.tag, true, {}});
                    streaming = true;
                }
            }
            covered.append(as_text(unread.first(step.bytes)));
            consumed += step.bytes;
            streaming = cursor.in_passthrough();
        }
        buffer.erase(0, consumed);  // compact the unconsumed tail to the front
    }
    CHECK(buffer.empty());
    CHECK_FALSE(cursor.in_passthrough());
    return seen;
}

}  // namespace

TEST_CASE("many small messages come out of the relay cursor one by one", "[framing][relay]") {
    std::string stream;
    std::vector<Seen> expected;
    for (int i = 0; i < 50; ++i) {
        std::string row = cstr("row " + std::to_string(i));
        stream += tagged('D', row);
        expected.push_back({'D', false, row});
    }
    stream += tagged('C', cstr("SELECT 50"));
    expected.push_back({'C', false, cstr("SELECT 50")});
    stream += tagged('Z', "I");
    expected.push_back({'Z', false, "I"});

    // The whole stream in one buffer: every message in order, each covering its own bytes.
    RelayCursor cursor(max_length, stream.size());
    Bytes unread = bytes(stream);
    std::vector<Seen> seen;
    std::string covered;
    while (true) {
        RelayCursor::Step step = cursor.next(unread);
        if (step.kind == Kind::need_more) break;
        REQUIRE(step.kind == Kind::message);
        seen.push_back({step.frame.tag, false, text(step.frame.body)});
        covered.append(as_text(unread.first(step.bytes)));
        unread = unread.subspan(step.bytes);
    }
    CHECK(unread.empty());
    CHECK(seen == expected);
    CHECK(covered == stream);
}

TEST_CASE("a message of exactly the buffer capacity comes out whole", "[framing][relay]") {
    constexpr std::size_t capacity = 64;
    std::string big = tagged('d', std::string(capacity - 5, 'x'));
    REQUIRE(big.size() == capacity);
    RelayCursor cursor(max_length, capacity);

    for (std::size_t n = 0; n < big.size(); ++n) {
        INFO("prefix of " << n << " bytes");
        RelayCursor::Step step = cursor.next(bytes(big.substr(0, n)));
        CHECK(step.kind == Kind::need_more);
        CHECK_FALSE(cursor.in_passthrough());
    }
    RelayCursor::Step step = cursor.next(bytes(big));
    CHECK(step.kind == Kind::message);
    CHECK(step.bytes == capacity);
}

TEST_CASE("a message larger than the buffer streams through as passthrough pieces", "[framing][relay]") {
    constexpr std::size_t capacity = 64;
    std::string big = tagged('d', std::string(200, 'x'));
    std::string after = tagged('c', "");
    RelayCursor cursor(max_length, capacity);

    // Header and a few body bytes: the cursor sees it cannot fit and starts streaming.
    std::string first = big.substr(0, 10);
    RelayCursor::Step step = cursor.next(bytes(first));
    REQUIRE(step.kind == Kind::passthrough);
    CHECK(step.frame.tag == 'd');
    CHECK(step.frame.size == big.size());
    CHECK(step.bytes == 10);
    CHECK(cursor.in_passthrough());

    // Nothing unread: nothing to pass on, still streaming.
    CHECK(cursor.next(Bytes{}).kind == Kind::need_more);
    CHECK(cursor.in_passthrough());

    // The middle, a buffer-full at a time.
    std::size_t offset = 10;
    while (big.size() - offset > capacity) {
        step = cursor.next(bytes(big.substr(offset, capacity)));
        REQUIRE(step.kind == Kind::passthrough);
        CHECK(step.bytes == capacity);
        offset += capacity;
    }
    // The last piece shares the buffer with the next message: it covers only the big one.
    std::string tail = big.substr(offset) + after;
    step = cursor.next(bytes(tail));
    REQUIRE(step.kind == Kind::passthrough);
    CHECK(step.bytes == big.size() - offset);
    CHECK_FALSE(cursor.in_passthrough());

    // And the next message is framed normally.
    step = cursor.next(bytes(tail).subspan(big.size() - offset));
    REQUIRE(step.kind == Kind::message);
    CHECK(step.frame.tag == 'c');
    CHECK(step.bytes == after.size());
}

TEST_CASE("a relayed stream fed in random chunks is covered exactly, big messages streamed",
          "[framing][relay]") {
    constexpr std::size_t capacity = 64;
    std::uint32_t seed = GENERATE(1u, 7u, 42u, 2024u);
    std::size_t max_chunk = GENERATE(std::size_t{1}, std::size_t{5}, std::size_t{17}, std::size_t{64});
    INFO("seed " << seed << ", chunks of 1.." << max_chunk << " bytes");

    std::mt19937 rng(seed);
    std::uniform_int_distribution<std::size_t> small_size(0, capacity - 5);
    std::uniform_int_distribution<std::size_t> big_size(capacity - 4, 5 * capacity);
    std::string stream;
    std::vector<Seen> expected;
    auto add = [&](char tag, std::string body) {
        std::string message = tagged(tag, body);
        bool streamed = message.size() > capacity;
        expected.push_back({tag, streamed, streamed ? std::string{} : body});
        stream += message;
    };
    add('T', random_body(rng, 20));
    for (int i = 0; i < 40; ++i) {
        // Random body bytes include ones that look like headers: they must not be parsed.
        if (i % 7 == 3) {
            add('d', random_body(rng, big_size(rng)));
        } else {
            add('D', random_body(rng, small_size(rng)));
        }
    }
    add('d', std::string(capacity - 5, '\xFF'));   // exactly fits
    add('d', std::string(capacity - 4, '\xFF'));   // one byte too big
    add('d', random_body(rng, 3 * capacity));      // two big ones back to back
    add('d', random_body(rng, 2 * capacity + 1));
    add('c', "");
    add('Z', "T");

    std::string covered;
    std::vector<Seen> seen = relay(stream, capacity, max_chunk, seed, covered);

    CHECK(covered == stream);
    REQUIRE(seen.size() == expected.size());
    for (std::size_t i = 0; i < seen.size(); ++i) {
        INFO("message " << i);
        CHECK(seen[i].tag == expected[i].tag);
        CHECK(seen[i].streamed == expected[i].streamed);
        CHECK(seen[i].body == expected[i].body);
    }
}

TEST_CASE("the relay cursor reports a malformed length without covering any bytes", "[framing][relay]") {
    RelayCursor cursor(1000, 64);

    SECTION("a length under 4") {
        RelayCursor::Step step = cursor.next(bytes(header('Q', 3)));
        CHECK(step.kind == Kind::malformed);
        CHECK(step.bytes == 0);
    }
    SECTION("a length over the maximum is not mistaken for a big message to stream") {
        RelayCursor::Step step = cursor.next(bytes(header('d', 2000) + "partial body"));
        CHECK(step.kind == Kind::malformed);
        CHECK(step.bytes == 0);
        CHECK_FALSE(cursor.in_passthrough());
    }
    SECTION("after good messages") {
        std::string stream = tagged('Z', "I") + header('Q', 0xFFFFFFFF);
        RelayCursor::Step step = cursor.next(bytes(stream));
        REQUIRE(step.kind == Kind::message);
        step = cursor.next(bytes(stream).subspan(step.bytes));
        CHECK(step.kind == Kind::malformed);
        CHECK(step.bytes == 0);
    }
}

TEST_CASE("the relay cursor needs more bytes for a partial header", "[framing][relay]") {
    RelayCursor cursor(max_length, 64);
    std::string big_header = header('d', 10'000);
    for (std::size_t n = 0; n < 5; ++n) {
        INFO(n << " header bytes");
        RelayCursor::Step step = cursor.next(bytes(big_header.substr(0, n)));
        CHECK(step.kind == Kind::need_more);
        CHECK(step.bytes == 0);
        CHECK_FALSE(cursor.in_passthrough());
    }
}
