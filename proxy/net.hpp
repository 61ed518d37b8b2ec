#pragma once
// Opening a TCP connection to a node with a deadline (names resolved asynchronously).

#include "health/topology.hpp"

#include <boost/asio.hpp>

#include <chrono>
#include <string>

namespace pglane::proxy {

/// Connects `socket` to `address` within `timeout`; returns an empty string on success,
/// else what went wrong. TCP_NODELAY is set: the protocol is request/response.
[[nodiscard]] boost::asio::awaitable<std::string> connect_with_deadline(boost::asio::ip::tcp::socket& socket,
                                                                        const health::NodeAddress& address,
                                                                        std::chrono::milliseconds timeout);

}  // namespace pglane::proxy
