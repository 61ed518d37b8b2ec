#pragma once
// The startup phase as a pure decision: given the bytes a client sent so far, what the
// session does next (read more, answer an encryption request, forward a CancelRequest,
// refuse, or go on with a StartupMessage). The session coroutine only does the I/O, so every
// garbage and partial-read case is a unit test (and a fuzz target) over plain bytes.
// https://www.postgresql.org/docs/15/protocol-flow.html#PROTOCOL-FLOW-START-UP

#include "protocol/bytes.hpp"
#include "protocol/messages.hpp"

#include <cstdint>
#include <string>
#include <string_view>

namespace pglane::protocol {

enum class StartupAction { need_more, encryption_request, forward_cancel, refuse, start_session };

/// One decision. `bytes` is what the packet occupies at the front of the buffer (consume it
/// for every action but need_more); for need_more, `frame_size` is the whole packet's size
/// once its length is known (0 before), so the caller can make room for it.
struct StartupStep {
    StartupAction action = StartupAction::need_more;
    std::size_t bytes = 0;
    std::size_t frame_size = 0;
    StartupPacket packet;
    std::string_view sqlstate;   // refuse: 08P01 (malformed) or 0A000 (unsupported version)
    std::string message;         // refuse: the ErrorResponse text
    std::string_view reason;     // refuse: the log reason
};

/// The startup phase of one client connection: which encryption requests were already
/// asked (a client may ask once for each, as PostgreSQL allows: a second one is a
/// protocol violation, not a loop pglane answers forever). Owned by one session.
class StartupPhase {
public:
    explicit StartupPhase(std::uint32_t max_packet_length) : max_packet_length_(max_packet_length) {}

    /// Looks at the unread front of the client's buffer. Never consumes half a packet.
    [[nodiscard]] StartupStep next(Bytes unread);

private:
    std::uint32_t max_packet_length_;
    bool ssl_asked_ = false;
    bool gssenc_asked_ = false;
};

}  // namespace pglane::protocol
