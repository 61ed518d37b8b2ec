// The only translation unit that includes Beast: it is heavy to compile.
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

}  // namespace pglane::proxy
