#pragma once
// Quoting for the few statements pglane writes itself (DEALLOCATE of a client's statement,
// auth.query's user name), and how a peer is named in logs.

#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <fmt/format.h>

#include <cstring>

#include <string>
#include <string_view>

namespace pglane::proxy {

/// "name" with embedded quotes doubled: an identifier exactly as written.
[[nodiscard]] inline std::string quote_identifier(std::string_view name) {
    std::string out = "\"";
    for (char c : name) {
        if (c == '"') out.push_back('"');
        out.push_back(c);
    }
    out.push_back('"');
    return out;
}

/// 'text' with embedded quotes doubled (standard_conforming_strings is on since 9.1).
[[nodiscard]] inline std::string quote_literal(std::string_view text) {
    std::string out = "'";
    for (char c : text) {
        if (c == '\'') out.push_back('\'');
        out.push_back(c);
    }
    out.push_back('\'');
    return out;
}

/// "address:port" of the other end, "[local]" for a Unix-domain socket (as PostgreSQL
/// logs it), or "unknown".
[[nodiscard]] inline std::string describe_peer(const boost::asio::generic::stream_protocol::socket& socket) {
    boost::system::error_code ec;
    const auto endpoint = socket.remote_endpoint(ec);
    if (ec) return "unknown";
    const int family = endpoint.protocol().family();
    if (family == AF_UNIX) return "[local]";
    if (family != AF_INET && family != AF_INET6) return "unknown";
    boost::asio::ip::tcp::endpoint ip;
    if (endpoint.size() > ip.capacity()) return "unknown";
    std::memcpy(ip.data(), endpoint.data(), endpoint.size());
    ip.resize(endpoint.size());
    return fmt::format("{}:{}", ip.address().to_string(), ip.port());
}

}  // namespace pglane::proxy
