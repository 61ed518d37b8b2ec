// async_read_drained over real loopback sockets. A read that says "exhausted" lets the next
// one wait for an edge without trying first, so every case where bytes, a FIN or an RST are
// still queued must still complete: a wrong "exhausted" hangs the read (each run is bounded
// by run_for, so a hang shows as a failed check, not a stuck test).

#include "proxy/drained_read.hpp"
#include "tests/support/loopback_pair.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <catch2/catch.hpp>

#include <array>
#include <cstdio>
#include <chrono>
#include <string>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <vector>

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using pglane::proxy::async_read_drained;
using pglane::proxy::next_read_tries_first;
using pglane::proxy::quiet_since_drained;
using pglane::proxy::PeerWaits;
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

bool always(const void*, std::size_t) { return true; }
bool never(const void*, std::size_t) { return false; }
constexpr PeerWaits peer_waits{&always, nullptr};
constexpr PeerWaits peer_sends_more{&never, nullptr};

struct Pair : pglane::test::LoopbackPair {
    tcp::socket& writer = connecting;
    tcp::socket& reader = accepted;

    Pair() {
        writer.set_option(tcp::no_delay(true));
        REQUIRE(pglane::proxy::enable_queued_byte_reports(reader.native_handle()));
    }
    void send(std::string_view bytes) { asio::write(writer, asio::buffer(bytes)); }
    /// Closes the writer with an RST instead of a FIN (SO_LINGER with a zero timeout).
    void reset() {
        writer.set_option(asio::socket_base::linger(true, 0));
        writer.close();
    }
    /// Runs what was spawned, at most 5 s.
    void run() { io.run_for(std::chrono::seconds(5)); }
};

struct Read {
    boost::system::error_code ec;
    std::string bytes;
    bool done = false;
};

template <typename Socket>
asio::awaitable<Read> read_once(Socket& socket, std::size_t room, PeerWaits waits = peer_waits) {
    std::vector<char> buffer(room);
    auto [ec, n] = co_await async_read_drained(socket, asio::buffer(buffer), waits, use_nothrow);
    co_return Read{ec, std::string(buffer.data(), n), true};
}

/// Lets the reactor see the edges of whatever was sent (the writer is on the same loop).
asio::awaitable<void> settle(Pair& pair) {
    asio::steady_timer timer(pair.io, std::chrono::milliseconds(20));
    co_await timer.async_wait(use_nothrow);
}

}  // namespace

TEST_CASE("a read that empties the socket while the peer waits makes the next wait without trying",
          "[drained_read]") {
    Pair pair;
    std::vector<Read> reads;
    bool tried_first = true;
    asio::co_spawn(
        pair.io,
        [&]() -> asio::awaitable<void> {
            pair.send("first");
            reads.push_back(co_await read_once(pair.reader, 64));
            tried_first = next_read_tries_first(pair.reader);
            asio::steady_timer later(pair.io, std::chrono::milliseconds(20));
            asio::co_spawn(
                pair.io,
                [&]() -> asio::awaitable<void> {
                    co_await later.async_wait(use_nothrow);
                    pair.send("second");
                },
                asio::detached);
            reads.push_back(co_await read_once(pair.reader, 64));   // woken by the edge
        },
        asio::detached);
    pair.run();
    REQUIRE(reads.size() == 2);
    CHECK_FALSE(tried_first);
    CHECK_FALSE(reads[0].ec);
    CHECK(reads[0].bytes == "first");
    CHECK_FALSE(reads[1].ec);
    CHECK(reads[1].bytes == "second");
}

TEST_CASE("a read whose peer may send more leaves the next read trying first", "[drained_read]") {
    Pair pair;
    bool tried_first = false;
    Read read;
    asio::co_spawn(
        pair.io,
        [&]() -> asio::awaitable<void> {
            pair.send("half a message");
            read = co_await read_once(pair.reader, 64, peer_sends_more);
            tried_first = next_read_tries_first(pair.reader);
        },
        asio::detached);
    pair.run();
    CHECK(read.bytes == "half a message");
    CHECK(tried_first);
}

TEST_CASE("the peer's check sees how many bytes the read took", "[drained_read]") {
    Pair pair;
    std::size_t seen = 0;
    const PeerWaits counting{[](const void* context, std::size_t received) {
                                 *static_cast<std::size_t*>(const_cast<void*>(context)) = received;
                                 return false;
                             },
                             &seen};
    asio::co_spawn(
        pair.io,
        [&]() -> asio::awaitable<void> {
            pair.send("0123456");
            (void)co_await read_once(pair.reader, 64, counting);
        },
        asio::detached);
    pair.run();
    CHECK(seen == 7);
}

TEST_CASE("a read that fills its buffer leaves the rest readable at once", "[drained_read]") {
    Pair pair;
    std::string received;
    asio::co_spawn(
        pair.io,
        [&]() -> asio::awaitable<void> {
            pair.send("0123456789");
            co_await settle(pair);
            // Reads of at most 4 bytes: the first two leave bytes queued (no "exhausted"),
            // the third gets the last 2 without any new data arriving.
            for (int i = 0; i < 3; ++i) {
                Read read = co_await read_once(pair.reader, 4);
                if (read.ec) co_return;
                received += read.bytes;
            }
        },
        asio::detached);
    pair.run();
    CHECK(received == "0123456789");
}

TEST_CASE("bytes that arrived between two reads are read without waiting for another edge",
          "[drained_read]") {
    Pair pair;
    std::string received;
    asio::co_spawn(
        pair.io,
        [&]() -> asio::awaitable<void> {
            pair.send("a");
            received += (co_await read_once(pair.reader, 64)).bytes;   // exhausted
            pair.send("b");   // its edge arrives while no read is queued
            co_await settle(pair);
            received += (co_await read_once(pair.reader, 64)).bytes;
        },
        asio::detached);
    pair.run();
    CHECK(received == "ab");
}

TEST_CASE("last bytes and a FIN in one edge: the bytes, then eof", "[drained_read]") {
    Pair pair;
    Read last, after;
    asio::co_spawn(
        pair.io,
        [&]() -> asio::awaitable<void> {
            pair.send("bye");
            pair.writer.shutdown(tcp::socket::shutdown_send);
            co_await settle(pair);
            // The peer "waits" by the protocol's word, but TCP_INQ reports the queued FIN.
            last = co_await read_once(pair.reader, 64);
            after = co_await read_once(pair.reader, 64);
        },
        asio::detached);
    pair.run();
    CHECK(last.bytes == "bye");
    REQUIRE(after.done);
    CHECK(after.ec == asio::error::eof);
}

TEST_CASE("last bytes and an RST in one edge, the peer not waiting: the bytes, then the reset",
          "[drained_read]") {
    Pair pair;
    Read last, after;
    asio::co_spawn(
        pair.io,
        [&]() -> asio::awaitable<void> {
            pair.send("partial");
            co_await settle(pair);
            pair.reset();
            co_await settle(pair);
            last = co_await read_once(pair.reader, 64, peer_sends_more);
            after = co_await read_once(pair.reader, 64, peer_sends_more);
        },
        asio::detached);
    pair.run();
    CHECK(last.bytes == "partial");
    REQUIRE(after.done);
    CHECK(after.ec);
}

TEST_CASE("a waiting read cancelled by a parallel timer takes nothing; the next read gets every byte",
          "[drained_read]") {
    Pair pair;
    std::size_t winner = 99;
    std::string received;
    asio::co_spawn(
        pair.io,
        [&]() -> asio::awaitable<void> {
            std::array<char, 64> buffer{};
            asio::steady_timer timer(pair.io, std::chrono::milliseconds(20));
            auto woke = co_await (async_read_drained(pair.reader, asio::buffer(buffer), peer_waits, use_nothrow) ||
                                  timer.async_wait(use_nothrow));
            winner = woke.index();
            pair.send("after");
            Read read = co_await read_once(pair.reader, 64);
            if (!read.ec) received = read.bytes;
        },
        asio::detached);
    pair.run();
    CHECK(winner == 1);
    CHECK(received == "after");
}

TEST_CASE("socket cancel aborts a waiting read and the peer's close ends the next with eof", "[drained_read]") {
    Pair pair;
    Read cancelled, closed;
    asio::co_spawn(
        pair.io,
        [&]() -> asio::awaitable<void> {
            asio::steady_timer timer(pair.io, std::chrono::milliseconds(20));
            asio::co_spawn(
                pair.io,
                [&]() -> asio::awaitable<void> {
                    co_await timer.async_wait(use_nothrow);
                    pair.reader.cancel();
                },
                asio::detached);
            cancelled = co_await read_once(pair.reader, 64);
            pair.writer.close();
            closed = co_await read_once(pair.reader, 64);
        },
        asio::detached);
    pair.run();
    CHECK(cancelled.ec == asio::error::operation_aborted);
    REQUIRE(closed.done);
    CHECK(closed.ec == asio::error::eof);
}

TEST_CASE("quiet_since_drained: true after a read said exhausted, false once anything arrived", "[drained_read]") {
    Pair pair;
    bool quiet_after_read = false, quiet_after_bytes = true, quiet_after_fin = true;
    bool quiet_after_partial = true;
    asio::co_spawn(
        pair.io,
        [&]() -> asio::awaitable<void> {
            pair.send("answer");
            (void)co_await read_once(pair.reader, 64);
            quiet_after_read = quiet_since_drained(pair.reader);
            pair.send("notice");
            co_await settle(pair);   // the reactor takes the edge, no read is queued
            quiet_after_bytes = quiet_since_drained(pair.reader);
            (void)co_await read_once(pair.reader, 64);   // takes "notice": exhausted again
            pair.writer.shutdown(tcp::socket::shutdown_send);
            co_await settle(pair);
            quiet_after_fin = quiet_since_drained(pair.reader);
        },
        asio::detached);
    pair.run();
    CHECK(quiet_after_read);
    CHECK_FALSE(quiet_after_bytes);
    CHECK_FALSE(quiet_after_fin);

    Pair other;
    asio::co_spawn(
        other.io,
        [&]() -> asio::awaitable<void> {
            other.send("half");
            (void)co_await read_once(other.reader, 64, peer_sends_more);
            quiet_after_partial = quiet_since_drained(other.reader);
        },
        asio::detached);
    other.run();
    CHECK_FALSE(quiet_after_partial);
}

TEST_CASE("quiet_since_drained: an RST after the last read is seen", "[drained_read]") {
    Pair pair;
    bool quiet_before = false, quiet_after = true;
    asio::co_spawn(
        pair.io,
        [&]() -> asio::awaitable<void> {
            pair.send("answer");
            (void)co_await read_once(pair.reader, 64);
            quiet_before = quiet_since_drained(pair.reader);
            pair.reset();
            co_await settle(pair);
            quiet_after = quiet_since_drained(pair.reader);
        },
        asio::detached);
    pair.run();
    CHECK(quiet_before);
    CHECK_FALSE(quiet_after);
}

TEST_CASE("quiet_since_drained: an edge the last poll collected but not yet handled counts", "[drained_read]") {
    // Two connections on one loop. Bytes go to the first, then to the second, in one
    // handler; the next poll collects both edges in that order, and the first one's read
    // resumes this coroutine while the second socket's state still waits in the queue (its
    // flag not yet set). The check must see it there.
    Pair first;
    tcp::socket second_writer(first.io), second_reader(first.io);
    pglane::test::connect_loopback(first.io, second_writer, second_reader);
    REQUIRE(pglane::proxy::enable_queued_byte_reports(second_reader.native_handle()));
    bool drained = false, quiet_before = false, quiet_while_queued = true, flag_while_queued = true;
    Read woke;
    asio::co_spawn(
        first.io,
        [&]() -> asio::awaitable<void> {
            asio::write(second_writer, asio::buffer(std::string_view("answer")));
            drained = (co_await read_once(second_reader, 64)).bytes == "answer";
            quiet_before = quiet_since_drained(second_reader);
            asio::co_spawn(
                first.io,
                [&]() -> asio::awaitable<void> {
                    co_await settle(first);   // the read below is queued by then
                    first.send("query");
                    asio::write(second_writer, asio::buffer(std::string_view("late")));
                },
                asio::detached);
            woke = co_await read_once(first.reader, 64);
            flag_while_queued = next_read_tries_first(second_reader);
            quiet_while_queued = quiet_since_drained(second_reader);
        },
        asio::detached);
    first.run();
    REQUIRE(drained);
    CHECK(quiet_before);
    CHECK(woke.bytes == "query");
    CHECK_FALSE(flag_while_queued);   // the case this test is about: the flag alone says quiet
    CHECK_FALSE(quiet_while_queued);
}

namespace {

/// Whether the running kernel predates SO_INQ (Linux 6.17): Unix-domain reads cannot drain.
bool kernel_before_6_17() {
    utsname name{};
    REQUIRE(::uname(&name) == 0);
    int major = 0, minor = 0;
    REQUIRE(std::sscanf(name.release, "%d.%d", &major, &minor) == 2);
    return major < 6 || (major == 6 && minor < 17);
}

}  // namespace

TEST_CASE("Unix-domain sockets: a read that empties the socket drains it, one that leaves bytes does not",
          "[drained_read]") {
    asio::io_context io;
    asio::local::stream_protocol::socket writer(io), reader(io);
    asio::local::connect_pair(writer, reader);
    if (!pglane::proxy::enable_queued_byte_reports(reader.native_handle())) {
        // No SO_INQ here: a Stream reads such a socket with Asio's own reads.
        CHECK(kernel_before_6_17());
        return;
    }
    std::vector<Read> reads;
    bool tried_after_partial = false, tried_after_all = true;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            asio::write(writer, asio::buffer(std::string_view("0123456789")));
            asio::steady_timer settle(io, std::chrono::milliseconds(20));   // the reactor takes the write's edge
            co_await settle.async_wait(use_nothrow);
            reads.push_back(co_await read_once(reader, 4));
            tried_after_partial = next_read_tries_first(reader);
            reads.push_back(co_await read_once(reader, 64));
            tried_after_all = next_read_tries_first(reader);
            asio::steady_timer later(io, std::chrono::milliseconds(20));
            co_await later.async_wait(use_nothrow);
            asio::write(writer, asio::buffer(std::string_view("after")));
            reads.push_back(co_await read_once(reader, 64));   // woken by the edge
        },
        asio::detached);
    io.run_for(std::chrono::seconds(5));
    REQUIRE(reads.size() == 3);
    CHECK(reads[0].bytes == "0123");
    CHECK(tried_after_partial);
    CHECK(reads[1].bytes == "456789");
    CHECK_FALSE(tried_after_all);
    CHECK(reads[2].bytes == "after");
}
