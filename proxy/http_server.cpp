// The only translation unit that includes Beast (it is heavy to compile): the metrics
// endpoint, and the small client `pglane status` reads it with.
#include "proxy/http_server.hpp"

#include "common/log.hpp"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>

#include <thread>

namespace pglane::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);
constexpr auto request_timeout = std::chrono::seconds(10);
}  // namespace

struct HttpServer::Impl {
    asio::io_context io{1};
    tcp::acceptor acceptor{io};
    Handler handler;
    std::thread thread;

    asio::awaitable<void> accept_loop() {
        for (;;) {
            auto [ec, socket] = co_await acceptor.async_accept(use_nothrow);
            if (ec) {
                if (ec == asio::error::operation_aborted) co_return;
                log::warn("http_accept_failed", {{"error", ec.message()}});
                continue;
            }
            asio::co_spawn(io, serve(beast::tcp_stream(std::move(socket))), asio::detached);
        }
    }

    // One connection: requests answered in order while the client keeps it alive, each
    // read bounded by a deadline.
    asio::awaitable<void> serve(beast::tcp_stream stream) {
        beast::flat_buffer buffer;
        for (;;) {
            http::request<http::string_body> request;
            stream.expires_after(request_timeout);
            auto [ec, n] = co_await http::async_read(stream, buffer, request, use_nothrow);
            if (ec) break;
            std::string_view target = request.target();
            target = target.substr(0, target.find('?'));
            HttpResponse answer;
            if (request.method() != http::verb::get && request.method() != http::verb::head) {
                answer = {405, "text/plain; charset=utf-8", "only GET\n"};
            } else {
                answer = handler(target);
            }
            http::response<http::string_body> response{static_cast<http::status>(answer.status), request.version()};
            response.set(http::field::server, "pglane");
            response.set(http::field::content_type, answer.content_type);
            response.keep_alive(request.keep_alive());
            response.body() = std::move(answer.body);
            response.prepare_payload();
            stream.expires_after(request_timeout);
            auto [wec, written] = co_await http::async_write(stream, response, use_nothrow);
            if (wec || !response.keep_alive()) break;
        }
        boost::system::error_code ignored;
        stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    }
};

HttpServer::HttpServer(const Endpoint& endpoint, Handler handler) : impl_(std::make_unique<Impl>()) {
    impl_->handler = std::move(handler);
    boost::system::error_code ec;
    auto address = asio::ip::make_address(endpoint.host, ec);
    if (ec) {
        tcp::resolver resolver(impl_->io);
        auto results = resolver.resolve(endpoint.host, std::to_string(endpoint.port), ec);
        if (ec || results.empty())
            throw std::system_error(ec, fmt::format("cannot resolve metrics_listen {}", endpoint.to_string()));
        address = results.begin()->endpoint().address();
    }
    tcp::endpoint where(address, endpoint.port);
    impl_->acceptor.open(where.protocol());
    impl_->acceptor.set_option(tcp::acceptor::reuse_address(true));
    impl_->acceptor.bind(where, ec);
    if (ec) throw std::system_error(ec, fmt::format("cannot listen on metrics_listen {}", endpoint.to_string()));
    impl_->acceptor.listen();
}

HttpServer::~HttpServer() { stop(); }

void HttpServer::start() {
    asio::co_spawn(impl_->io, impl_->accept_loop(), asio::detached);
    impl_->thread = std::thread([this] { impl_->io.run(); });
}

void HttpServer::stop() {
    impl_->io.stop();
    if (impl_->thread.joinable()) impl_->thread.join();
}

namespace {

asio::awaitable<void> get_into(const Endpoint& endpoint, const std::string& target, std::chrono::milliseconds timeout,
                               HttpGetResult& out) {
    auto executor = co_await asio::this_coro::executor;
    tcp::resolver resolver(executor);
    beast::tcp_stream stream(executor);
    std::string port = std::to_string(endpoint.port);
    asio::steady_timer resolve_deadline(executor, timeout);
    resolve_deadline.async_wait([&resolver](const boost::system::error_code& ec) {
        if (!ec) resolver.cancel();
    });
    auto [resolve_ec, results] = co_await resolver.async_resolve(endpoint.host, port, use_nothrow);
    resolve_deadline.cancel();
    if (resolve_ec) {
        out.error = fmt::format("cannot resolve {}: {}", endpoint.host, resolve_ec.message());
        co_return;
    }
    stream.expires_after(timeout);
    auto [connect_ec, connected] = co_await stream.async_connect(results, use_nothrow);
    if (connect_ec) {
        out.error = connect_ec == beast::error::timeout ? std::string("connection timed out") : connect_ec.message();
        co_return;
    }
    http::request<http::empty_body> request(http::verb::get, target, 11);
    request.set(http::field::host, endpoint.to_string());
    request.set(http::field::user_agent, "pglane-status");
    request.keep_alive(false);
    stream.expires_after(timeout);
    auto [write_ec, written] = co_await http::async_write(stream, request, use_nothrow);
    if (write_ec) {
        out.error = "sending the request failed: " + write_ec.message();
        co_return;
    }
    beast::flat_buffer buffer;
    http::response<http::string_body> response;
    stream.expires_after(timeout);
    auto [read_ec, read] = co_await http::async_read(stream, buffer, response, use_nothrow);
    if (read_ec) {
        out.error = "reading the answer failed: " + read_ec.message();
        co_return;
    }
    out.response.status = static_cast<int>(response.result_int());
    out.response.content_type = std::string(response[http::field::content_type]);
    out.response.body = std::move(response.body());
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
}

}  // namespace

HttpGetResult http_get(const Endpoint& endpoint, const std::string& target, std::chrono::milliseconds timeout) {
    HttpGetResult result;
    asio::io_context io{1};
    asio::co_spawn(io, get_into(endpoint, target, timeout, result), [&result](std::exception_ptr error) {
        if (!error) return;
        try {
            std::rethrow_exception(error);
        } catch (const std::exception& e) {
            result.error = e.what();
        }
    });
    io.run();
    return result;
}

}  // namespace pglane::proxy
