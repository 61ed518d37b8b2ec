#pragma once
// Maps the BackendKeyData pglane hands each client to the server session it stands for,
// so a CancelRequest (which arrives on a new connection, on any worker) reaches the right
// server. https://www.postgresql.org/docs/15/protocol-flow.html#id-1.10.6.7.9

#include "protocol/messages.hpp"

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace pglane::proxy {

struct CancelTarget {
    std::string host;
    std::uint16_t port = 0;
    std::string node;
    protocol::BackendKey server_key;
};

/// Shared by all workers; touched when sessions start, end or are cancelled, and when an
/// auto-port session's next unit runs on another server than its last (with read_balance
/// statement, most reads): one mutex and one hash lookup, under 0.2% of pglane's CPU in a
/// profile of `pgbench -S -c 16` through the auto port (one worker; with two, 0.12% and no
/// futex wait). Secret keys come from OpenSSL's CSPRNG: a guessable key would let any client
/// cancel other clients' queries.
class CancelRegistry {
public:
    /// Issues a fresh client-facing key for `target`.
    [[nodiscard]] protocol::BackendKey add(CancelTarget target);
    void remove(protocol::BackendKey client_key);
    /// Points an existing key at another server session (a session that moved nodes).
    void update(protocol::BackendKey client_key, CancelTarget target);
    /// The target of a client key, only when both process id and secret match.
    [[nodiscard]] std::optional<CancelTarget> find(protocol::BackendKey client_key) const;
    [[nodiscard]] std::size_t size() const;

private:
    mutable std::mutex mutex_;
    std::uint32_t next_process_id_ = 1;
    std::unordered_map<std::uint32_t, std::pair<std::uint32_t, CancelTarget>> targets_;
};

}  // namespace pglane::proxy
