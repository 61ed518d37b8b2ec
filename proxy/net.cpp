#include "proxy/net.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>

namespace pglane::proxy {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;

asio::awaitable<std::string> connect_with_deadline(tcp::socket& socket, const health::NodeAddress& address,
                                                   std::chrono::milliseconds timeout) {
    constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);
    auto executor = co_await asio::this_coro::executor;
    asio::steady_timer timer(executor);
    timer.expires_after(timeout);
    boost::system::error_code ec;
    std::vector<tcp::endpoint> endpoints;
    auto ip = asio::ip::make_address(address.host, ec);
    if (!ec) {
        endpoints.emplace_back(ip, address.port);
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
    socket.set_option(tcp::no_delay(true), ec);
    co_return std::string();
}

}  // namespace pglane::proxy
