#include "proxy/net.hpp"

#include "protocol/messages.hpp"
#include "proxy/stream.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>

#include <sys/un.h>

namespace pglane::proxy {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;

asio::awaitable<std::string> connect_with_deadline(StreamSocket& socket, const health::NodeAddress& address,
                                                   std::chrono::milliseconds timeout) {
    constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);
    auto executor = co_await asio::this_coro::executor;
    asio::steady_timer timer(executor);
    timer.expires_after(timeout);
    boost::system::error_code ec;
    std::vector<StreamSocket::endpoint_type> endpoints;
    auto ip = asio::ip::make_address(address.host, ec);
    if (address.on_unix_socket()) {
        std::string path = address.unix_socket_path();
        if (path.size() >= sizeof(sockaddr_un::sun_path)) co_return "socket path " + path + " is too long";
        if (path.front() == '@') path.front() = '\0';   // the abstract namespace
        endpoints.emplace_back(asio::local::stream_protocol::endpoint(path));
    } else if (!ec) {
        endpoints.emplace_back(tcp::endpoint(ip, address.port));
    } else {
        tcp::resolver resolver(executor);
        auto result = co_await (resolver.async_resolve(address.host, std::to_string(address.port), use_nothrow) ||
                                timer.async_wait(use_nothrow));
        if (result.index() != 0) co_return "resolving " + address.host + " timed out";
        auto [rec, results] = std::get<0>(result);
        if (rec) co_return "cannot resolve " + address.host + ": " + rec.message();
        for (const auto& entry : results) endpoints.push_back(entry.endpoint());
    }
    auto result = co_await (asio::async_connect(socket, endpoints, use_nothrow) || timer.async_wait(use_nothrow));
    if (result.index() != 0) {
        socket.close(ec);
        co_return "connect timed out";
    }
    if (auto [cec, endpoint] = std::get<0>(result); cec) {
        socket.close(ec);
        co_return cec.message();
    }
    if (!address.on_unix_socket()) socket.set_option(tcp::no_delay(true), ec);
    co_return std::string();
}

namespace {

asio::awaitable<std::string> negotiate_tls(Stream& stream, const health::NodeAddress& address, ssl_ctx_st* tls) {
    constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);
    std::string request;
    protocol::append_ssl_request(request);
    auto [ec, n] = co_await stream.write(request);
    if (ec) co_return "connection lost sending SSLRequest: " + ec.message();
    // One byte, and not one more: what follows 'S' is the server's half of the handshake.
    char answer = 0;
    auto [rec, rn] = co_await asio::async_read(stream.socket(), asio::buffer(&answer, 1), use_nothrow);
    if (rec) co_return "connection lost waiting for the answer to SSLRequest: " + rec.message();
    if (answer == 'S') {
        std::string error = co_await stream.connect_tls(tls, address);
        if (!error.empty()) co_return "TLS handshake failed: " + error;
        co_return std::string();
    }
    if (answer == 'N') {
        if (address.sslmode == health::SslMode::prefer) co_return std::string();
        co_return "the server does not accept TLS connections (sslmode " + std::string(health::to_string(address.sslmode)) +
            ")";
    }
    co_return "unexpected answer to SSLRequest";
}

}  // namespace

asio::awaitable<std::string> connect_to_server(Stream& stream, const health::NodeAddress& address, ssl_ctx_st* tls,
                                             std::chrono::milliseconds timeout) {
    const auto started = std::chrono::steady_clock::now();
    std::string error = co_await connect_with_deadline(stream.socket(), address, timeout);
    // No TLS over a Unix-domain socket: PostgreSQL refuses it there, and libpq ignores
    // sslmode for one.
    if (!error.empty() || tls == nullptr || address.sslmode == health::SslMode::disable || address.on_unix_socket())
        co_return error;
    asio::steady_timer timer(stream.get_executor());
    timer.expires_at(started + timeout);
    auto result = co_await (negotiate_tls(stream, address, tls) || timer.async_wait(asio::as_tuple(asio::use_awaitable)));
    if (result.index() == 0) error = std::get<0>(std::move(result));
    else error = "TLS negotiation timed out";
    if (!error.empty()) stream.close();
    co_return error;
}

}  // namespace pglane::proxy
