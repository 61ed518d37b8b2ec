#pragma once
// The metrics endpoint: /metrics, /status, /health over HTTP/1.1 (Boost.Beast). Runs on
// its own thread so a slow scraper never delays a client session.

#include "proxy/config.hpp"

#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace pglane::proxy {

struct HttpResponse {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
};

/// Owns its io_context, acceptor and thread. `handler` is called on that thread with the
/// request path (no query string) and must be thread-safe with respect to the workers.
class HttpServer {
public:
    using Handler = std::function<HttpResponse(std::string_view path)>;

    HttpServer(const Endpoint& endpoint, Handler handler);   // binds; throws std::system_error
    ~HttpServer();
    void start();
    void stop();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/// The client side, for `pglane status`: one GET of `target` (e.g. "/status") on `endpoint`,
/// every step bounded by `timeout`. Empty `error` and the answer, or why it failed.
struct HttpGetResult {
    std::string error;
    HttpResponse response;
};
[[nodiscard]] HttpGetResult http_get(const Endpoint& endpoint, const std::string& target,
                                     std::chrono::milliseconds timeout);

}  // namespace pglane::proxy
