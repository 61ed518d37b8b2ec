#pragma once
// Incremental framing of the v3 protocol: given the bytes received so far, say whether a
// whole message is there, more bytes are needed, or the stream is malformed. Never
// consumes half a frame. https://www.postgresql.org/docs/15/protocol-overview.html

#include "protocol/bytes.hpp"

#include <cstdint>

namespace pglane::protocol {

enum class FrameStatus { need_more, message, malformed };

/// The outcome of looking at the front of a buffer.
struct Frame {
    FrameStatus status = FrameStatus::need_more;
    char tag = 0;               // 0 for untagged startup-phase packets
    std::uint32_t length = 0;   // declared length (counts itself); 0 until the header is complete
    std::size_t size = 0;       // bytes the whole message occupies on the wire (tag included)
    Bytes body;                 // valid when status == message

    [[nodiscard]] bool header_known() const { return length != 0; }
};

/// Smallest maximum a config may set: every legal startup packet and control message fits.
inline constexpr std::uint32_t min_max_message_length = 10'000;

/// A tagged message: 1-byte tag, 4-byte length (counting itself), body.
/// Malformed when the declared length is under 4 or over `max_length`.
[[nodiscard]] Frame frame_message(Bytes buffer, std::uint32_t max_length);

/// An untagged startup-phase packet (StartupMessage, SSLRequest, GSSENCRequest,
/// CancelRequest): 4-byte length (counting itself, at least 8), body.
[[nodiscard]] Frame frame_startup(Bytes buffer, std::uint32_t max_length);

/// For reads that want to know whether the peer now waits for pglane (proxy/drained_read.hpp):
/// true when `bytes`, starting at a message boundary, are whole frontend messages and the last
/// is a Query or a Sync, after which a client has nothing more it must send.
[[nodiscard]] bool ends_at_query_or_sync(Bytes bytes);

/// The same for a server: how many ReadyForQuery messages `bytes` (starting at a message
/// boundary) hold when they are whole messages and the last is a ReadyForQuery; 0 otherwise.
[[nodiscard]] std::size_t ready_for_query_count_at_end(Bytes bytes);

/// Walks a relayed byte stream message by message. Messages that fit the relay buffer come
/// out whole; one larger than the buffer (a big CopyData or Bind) is reported as
/// `passthrough` pieces so it streams through without being held in memory.
/// Owns no bytes. One per direction of a session; touched by the session's thread only.
class RelayCursor {
public:
    enum class Kind { message, passthrough, need_more, malformed };

    struct Step {
        Kind kind = Kind::need_more;
        Frame frame;              // the message (kind == message) or the big message's header
        std::size_t bytes = 0;    // how many of the unread bytes this step covers
    };

    RelayCursor(std::uint32_t max_length, std::size_t buffer_capacity)
        : max_length_(max_length), capacity_(buffer_capacity) {}

    /// Looks at `unread` (the bytes not yet covered by a previous step).
    [[nodiscard]] Step next(Bytes unread);

    [[nodiscard]] bool in_passthrough() const { return passthrough_left_ != 0; }

private:
    std::uint32_t max_length_;
    std::size_t capacity_;
    std::size_t passthrough_left_ = 0;
};

}  // namespace pglane::protocol
