#pragma once
// Opening a connection to a node with a deadline (over TCP, names resolved asynchronously,
// or through its Unix-domain socket), TLS negotiated as the node's sslmode asks.

#include "health/topology.hpp"

#include <boost/asio.hpp>

#include <chrono>
#include <string>

struct ssl_ctx_st;

namespace pglane::proxy {

class Stream;

/// Connects `socket` to `address` (over TCP, or to its Unix-domain socket when the host is a
/// directory) within `timeout`; returns an empty string on success, else what went wrong.
/// TCP_NODELAY is set: the protocol is request/response.
[[nodiscard]] boost::asio::awaitable<std::string> connect_with_deadline(boost::asio::generic::stream_protocol::socket& socket,
                                                                        const health::NodeAddress& address,
                                                                        std::chrono::milliseconds timeout);

/// Connects `stream` to `address`, then asks for TLS as `address.sslmode` says (SSLRequest,
/// and a handshake with `tls` when the server answers 'S'; never over a Unix-domain socket),
/// all within `timeout`. An empty string on success, else what went wrong. A null `tls`
/// connects in plaintext.
/// https://www.postgresql.org/docs/15/protocol-flow.html#id-1.10.6.7.12
[[nodiscard]] boost::asio::awaitable<std::string> connect_to_server(Stream& stream, const health::NodeAddress& address,
                                                                  ssl_ctx_st* tls, std::chrono::milliseconds timeout);

}  // namespace pglane::proxy
