// Stream::write_buffers over real loopback sockets: what the socket does not take in the
// first (immediate) send must follow in order, whatever the split between the pieces.

#include "proxy/stream.hpp"
#include "tests/support/loopback_pair.hpp"

#include <catch2/catch.hpp>

#include <array>
#include <span>
#include <string>
#include <vector>

namespace asio = boost::asio;
using pglane::proxy::Stream;
using tcp = asio::ip::tcp;

namespace {

std::string pattern(std::size_t size, char seed) {
    std::string text(size, '\0');
    for (std::size_t i = 0; i < size; ++i) text[i] = static_cast<char>(seed + (i * 7) % 61);
    return text;
}

struct Pair : pglane::test::LoopbackPair {
    tcp::socket& sender = connecting;
    tcp::socket& receiver = accepted;

    Pair() {
        // Small buffers: a write of a few MiB is taken in many pieces.
        sender.set_option(asio::socket_base::send_buffer_size(16 * 1024));
        receiver.set_option(asio::socket_base::receive_buffer_size(16 * 1024));
    }
};

// Writes `pieces` through a Stream while the other end reads everything: what arrived.
template <typename Sequence>
std::string write_and_read_back(Pair& pair, const Sequence& pieces, std::size_t total, Stream::Result& result) {
    Stream stream(std::move(pair.sender));
    std::string received;
    asio::co_spawn(
        pair.io, [&]() -> asio::awaitable<void> { result = co_await stream.write_buffers(pieces); }, asio::detached);
    asio::co_spawn(
        pair.io,
        [&]() -> asio::awaitable<void> {
            std::array<char, 4096> chunk;
            while (received.size() < total) {
                auto [ec, n] = co_await pair.receiver.async_read_some(asio::buffer(chunk), asio::as_tuple(asio::use_awaitable));
                if (ec) co_return;
                received.append(chunk.data(), n);
            }
        },
        asio::detached);
    pair.io.run();
    return received;
}

}  // namespace

TEST_CASE("a gathered write larger than the socket takes at once arrives whole and in order") {
    Pair pair;
    const std::string a = pattern(3 * 1024 * 1024 + 17, 'a');
    const std::string b = pattern(5, 'B');
    const std::string c = pattern(1024 * 1024 + 3, '0');
    std::vector<asio::const_buffer> pieces{asio::buffer(a), asio::buffer(b), asio::const_buffer(), asio::buffer(c)};
    Stream::Result result;
    const std::string received = write_and_read_back(pair, std::span<const asio::const_buffer>(pieces),
                                                     a.size() + b.size() + c.size(), result);
    REQUIRE_FALSE(std::get<0>(result));
    REQUIRE(std::get<1>(result) == a.size() + b.size() + c.size());
    REQUIRE(received == a + b + c);
}

TEST_CASE("a small write is sent at once") {
    Pair pair;
    const std::string text = pattern(100, 'x');
    Stream::Result result;
    const std::string received = write_and_read_back(pair, asio::buffer(text), text.size(), result);
    REQUIRE_FALSE(std::get<0>(result));
    REQUIRE(std::get<1>(result) == text.size());
    REQUIRE(received == text);
}

TEST_CASE("a write to a connection the peer has closed fails without a signal") {
    Pair pair;
    pair.receiver.set_option(asio::socket_base::linger(true, 0));
    pair.receiver.close();   // linger 0: a reset, so the second write fails at once
    Stream stream(std::move(pair.sender));
    const std::string text = pattern(64 * 1024, 'q');
    Stream::Result first, second;
    asio::co_spawn(
        pair.io,
        [&]() -> asio::awaitable<void> {
            first = co_await stream.write(text);
            second = co_await stream.write(text);
        },
        asio::detached);
    pair.io.run();
    REQUIRE(std::get<0>(second));   // reset by peer or broken pipe; the process is still here
}
