#pragma once
// How many client sessions pglane admits: limits.max_client_connections in all, and
// limits.max_client_connections_per_user (or a per-user override) for each user, counted
// across every worker and every port. A session is counted from the moment its startup
// packet names its user (SSLRequests and CancelRequests never count) until it ends.

#include "proxy/config.hpp"

#include <cstddef>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace pglane::proxy {

struct Disconnect;
struct SessionServices;

/// The client sessions admitted now, in all and per user. Owned by the server and shared by
/// every worker: thread-safe (one mutex, taken when a connection is accepted, admitted and
/// closed; never on the relay path).
class ClientLimits {
public:
    /// One session's share of the counts, held by the coroutine that serves the session, and
    /// given back when it is destroyed. Lives in that coroutine's frame: neither copied nor moved.
    class Slot {
    public:
        Slot() = default;
        ~Slot();
        Slot(const Slot&) = delete;
        Slot& operator=(const Slot&) = delete;
        [[nodiscard]] bool held() const { return owner_ != nullptr; }

    private:
        friend class ClientLimits;
        ClientLimits* owner_ = nullptr;
        std::string user_;
    };

    /// Registers `slot` as the one of the client socket `fd` until the returned guard ends, so
    /// the startup phase (which sees only the socket) can admit the session into it.
    class Attachment {
    public:
        Attachment(ClientLimits& limits, int fd, Slot& slot);
        ~Attachment();
        Attachment(const Attachment&) = delete;
        Attachment& operator=(const Attachment&) = delete;

    private:
        ClientLimits& limits_;
        int fd_;
        Slot& slot_;
    };

    enum class Verdict { admitted, over_total, over_user };

    explicit ClientLimits(const Limits& limits);

    /// A reload: the new maxima apply to sessions admitted from now on; sessions already
    /// over them stay.
    void set_limits(const Limits& limits);

    /// Admits one session of `user` into `slot` (which must not hold a share yet), or says
    /// which limit refuses it; a refused session is not counted.
    [[nodiscard]] Verdict admit(Slot& slot, std::string_view user);
    /// The same for the slot attached to the socket `fd`; a socket with no slot attached is
    /// admitted without being counted.
    [[nodiscard]] Verdict admit(int fd, std::string_view user);

    /// What the refused client reads (FATAL 53300), naming the limit's config key.
    [[nodiscard]] std::string refusal_message(Verdict verdict, std::string_view user) const;
    /// The limit that applies to `user`; 0: none.
    [[nodiscard]] std::uint32_t user_limit(std::string_view user) const;

    [[nodiscard]] std::size_t sessions() const;
    [[nodiscard]] std::size_t sessions_of(std::string_view user) const;

private:
    void release(Slot& slot);
    [[nodiscard]] std::uint32_t user_limit_locked(std::string_view user) const;

    mutable std::mutex mutex_;   // guards everything below
    std::uint32_t max_total_;
    std::uint32_t max_per_user_;
    std::unordered_map<std::string, std::uint32_t> max_by_user_;
    std::size_t total_ = 0;
    std::unordered_map<std::string, std::size_t> per_user_;
    std::unordered_map<int, Slot*> attached_;
};

/// The startup phase's check, once the startup packet names `user`: nullopt when the session
/// is admitted; otherwise counts, logs and returns the FATAL 53300 the client gets.
[[nodiscard]] std::optional<Disconnect> admit_client(SessionServices& services, ListenerKind kind, int client_fd,
                                                     std::string_view user, const std::string& peer);

}  // namespace pglane::proxy
