#pragma once
// The two answers a session gives to a read on its hot path that asks whether the peer now
// waits for pglane (PeerWaits, proxy/drained_read.hpp): the bytes are read into a ByteBuffer
// whose unread part starts at a message boundary, and the answer looks at that part plus what
// the read just added. Each lives in the frame of the coroutine that reads, for that read.

#include "protocol/framing.hpp"
#include "proxy/byte_buffer.hpp"
#include "proxy/stream.hpp"

namespace pglane::proxy {

/// A client waits once what it sent ends at a Query or a Sync.
struct ClientWaits {
    const ByteBuffer* in;
    bool at_boundary;   // false while a message too big for the buffer streams through

    static bool check(const void* context, std::size_t received) {
        const auto& self = *static_cast<const ClientWaits*>(context);
        return self.at_boundary && protocol::ends_at_query_or_sync(self.in->unread_with(received));
    }
    [[nodiscard]] PeerWaits hint() const { return PeerWaits{&check, this}; }
};

/// A server waits once it has sent every ReadyForQuery pglane is owed (none owed: never say
/// so, the server may be mid-answer to messages pglane does not count).
struct ServerAnswered {
    const ByteBuffer* in;
    const std::size_t* owed;   // ReadyForQuery messages not yet read; live, another direction may add
    bool at_boundary;          // false while a message too big for the buffer streams through

    static bool check(const void* context, std::size_t received) {
        const auto& self = *static_cast<const ServerAnswered*>(context);
        return self.at_boundary && *self.owed != 0 &&
               protocol::ready_for_query_count_at_end(self.in->unread_with(received)) >= *self.owed;
    }
    [[nodiscard]] PeerWaits hint() const { return PeerWaits{&check, this}; }
};

}  // namespace pglane::proxy
