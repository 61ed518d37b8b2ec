#pragma once
// The startup phase every session begins with, whoever authenticates: startup packets
// (SSLRequest answered with a TLS handshake when tls.mode allows it, GSSENCRequest declined
// with 'N'), CancelRequests forwarded to the server
// they name, and framed reads with the bounds of the startup phase.

#include "protocol/framing.hpp"
#include "protocol/messages.hpp"
#include "proxy/byte_buffer.hpp"
#include "proxy/client_session.hpp"

#include <boost/asio.hpp>

#include <optional>
#include <string>

namespace pglane::proxy {

struct ClientStartup {
    std::optional<Disconnect> stop;          // refuse (or quietly end) the session
    bool cancel_handled = false;             // it was a CancelRequest, now forwarded
    protocol::StartupPacket packet;          // kind == startup when the session goes on
    std::string raw;                         // the StartupMessage as received
};

/// Runs a session's startup `phase` within its deadline (limits.startup_timeout_ms, plus
/// failover.hold_ms for a primary to be elected): the phase's own result, or, once the
/// deadline passes, the phase cancelled and a startup_timeout Disconnect (counted).
[[nodiscard]] asio::awaitable<std::optional<Disconnect>> within_startup_deadline(
    asio::awaitable<std::optional<Disconnect>> phase, SessionServices& services, ListenerKind kind);

/// Reads startup-phase packets until a StartupMessage (or a reason to stop).
[[nodiscard]] asio::awaitable<ClientStartup> read_client_startup(Stream& client, ByteBuffer& in,
                                                                 SessionServices& services, ListenerKind kind,
                                                                 const std::string& peer);

/// The latest topology once it has an elected primary, waiting up to failover.hold_ms for
/// one (a promotion in progress) instead of failing at once; the last topology seen if the
/// wait runs out.
[[nodiscard]] asio::awaitable<health::TopologyPtr> await_primary(SessionServices& services);

/// Reads one whole message (startup-phase packet when `startup`) into `in`; nullopt when the
/// connection ended first. A malformed length comes back as a Frame with status malformed.
[[nodiscard]] asio::awaitable<std::optional<protocol::Frame>> read_frame(Stream& stream, ByteBuffer& in,
                                                                         bool startup, std::uint32_t max);

}  // namespace pglane::proxy
