#pragma once
// Hand-built protocol bytes for tests. Lengths are written big-endian here, not by the
// MessageWriter under test, so a test that decodes these bytes checks the code against the
// protocol docs rather than against itself.
// https://www.postgresql.org/docs/15/protocol-message-formats.html

#include "protocol/bytes.hpp"
#include "protocol/framing.hpp"
#include "protocol/messages.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace pglane::test {

/// A 32-bit integer in network byte order.
inline std::string be32(std::uint32_t v) {
    return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
            static_cast<char>(v)};
}

/// A 16-bit integer in network byte order.
inline std::string be16(std::uint16_t v) { return {static_cast<char>(v >> 8), static_cast<char>(v)}; }

/// A NUL-terminated string.
inline std::string cstr(std::string_view text) {
    std::string out(text);
    out.push_back('\0');
    return out;
}

/// The 5-byte header of a tagged message with an arbitrary declared length.
inline std::string header(char tag, std::uint32_t declared_length) { return std::string(1, tag) + be32(declared_length); }

/// A whole tagged message: tag, length counting itself, body.
inline std::string tagged(char tag, std::string_view body) {
    return header(tag, static_cast<std::uint32_t>(body.size() + 4)) + std::string(body);
}

/// A whole untagged startup-phase packet: length counting itself, body.
inline std::string untagged(std::string_view body) {
    return be32(static_cast<std::uint32_t>(body.size() + 4)) + std::string(body);
}

/// A StartupMessage body for protocol `version` with name/value pairs, terminated.
template <typename... Strings>
std::string startup_body(std::uint32_t version, Strings... names_and_values) {
    std::string out = be32(version);
    ((out += cstr(names_and_values)), ...);
    out.push_back('\0');
    return out;
}

/// The bytes of a string, viewed as a span for the protocol functions. Decoders return
/// views into it: keep the string in a variable while a result is used.
inline protocol::Bytes bytes(const std::string& s) { return protocol::as_bytes(s); }

/// The bytes of a string literal (without its closing NUL); literals live forever.
template <std::size_t N>
protocol::Bytes bytes(const char (&literal)[N]) {
    return protocol::as_bytes(std::string_view(literal, N - 1));
}

/// The bytes of a span, copied into a string for comparison.
inline std::string text(protocol::Bytes b) { return std::string(protocol::as_text(b)); }

}  // namespace pglane::test

// Failed assertions print enum names rather than numbers.
CATCH_REGISTER_ENUM(pglane::protocol::FrameStatus, pglane::protocol::FrameStatus::need_more,
                    pglane::protocol::FrameStatus::message, pglane::protocol::FrameStatus::malformed)
CATCH_REGISTER_ENUM(pglane::protocol::RelayCursor::Kind, pglane::protocol::RelayCursor::Kind::message,
                    pglane::protocol::RelayCursor::Kind::passthrough,
                    pglane::protocol::RelayCursor::Kind::need_more,
                    pglane::protocol::RelayCursor::Kind::malformed)
CATCH_REGISTER_ENUM(pglane::protocol::StartupKind, pglane::protocol::StartupKind::startup,
                    pglane::protocol::StartupKind::ssl_request, pglane::protocol::StartupKind::gssenc_request,
                    pglane::protocol::StartupKind::cancel_request,
                    pglane::protocol::StartupKind::unsupported_version,
                    pglane::protocol::StartupKind::malformed)
CATCH_REGISTER_ENUM(pglane::protocol::TransactionStatus, pglane::protocol::TransactionStatus::idle,
                    pglane::protocol::TransactionStatus::in_transaction,
                    pglane::protocol::TransactionStatus::failed)
