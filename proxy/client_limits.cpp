#include "proxy/client_limits.hpp"

#include "common/log.hpp"
#include "proxy/client_session.hpp"

#include <fmt/format.h>

namespace pglane::proxy {

ClientLimits::Slot::~Slot() {
    if (owner_) owner_->release(*this);
}

ClientLimits::Attachment::Attachment(ClientLimits& limits, int fd, Slot& slot) : limits_(limits), fd_(fd), slot_(slot) {
    std::lock_guard lock(limits_.mutex_);
    // A socket number is reused as soon as it is closed: the newest session on it wins.
    limits_.attached_[fd_] = &slot_;
}

ClientLimits::Attachment::~Attachment() {
    std::lock_guard lock(limits_.mutex_);
    auto it = limits_.attached_.find(fd_);
    if (it != limits_.attached_.end() && it->second == &slot_) limits_.attached_.erase(it);
}

ClientLimits::ClientLimits(const Limits& limits)
    : max_total_(limits.max_client_connections),
      max_per_user_(limits.max_client_connections_per_user),
      max_by_user_(limits.max_client_connections_by_user.begin(), limits.max_client_connections_by_user.end()) {}

void ClientLimits::set_limits(const Limits& limits) {
    std::lock_guard lock(mutex_);
    max_total_ = limits.max_client_connections;
    max_per_user_ = limits.max_client_connections_per_user;
    max_by_user_ = {limits.max_client_connections_by_user.begin(), limits.max_client_connections_by_user.end()};
}

std::uint32_t ClientLimits::user_limit_locked(std::string_view user) const {
    auto it = max_by_user_.find(std::string(user));
    return it != max_by_user_.end() ? it->second : max_per_user_;
}

std::uint32_t ClientLimits::user_limit(std::string_view user) const {
    std::lock_guard lock(mutex_);
    return user_limit_locked(user);
}

ClientLimits::Verdict ClientLimits::admit(Slot& slot, std::string_view user) {
    std::lock_guard lock(mutex_);
    std::uint32_t per_user = user_limit_locked(user);
    if (slot.owner_) return Verdict::admitted;
    if (max_total_ > 0 && total_ >= max_total_) return Verdict::over_total;
    std::size_t& of_user = per_user_[std::string(user)];
    if (per_user > 0 && of_user >= per_user) return Verdict::over_user;  // of_user > 0: no empty entry left
    ++of_user;
    ++total_;
    slot.owner_ = this;
    slot.user_ = std::string(user);
    return Verdict::admitted;
}

ClientLimits::Verdict ClientLimits::admit(int fd, std::string_view user) {
    Slot* slot = nullptr;
    {
        std::lock_guard lock(mutex_);
        auto it = attached_.find(fd);
        if (it != attached_.end()) slot = it->second;
    }
    // The slot lives in the frame of the coroutine that serves this very socket, which is
    // the caller's: it cannot end while admit runs.
    if (!slot) return Verdict::admitted;
    return admit(*slot, user);
}

void ClientLimits::release(Slot& slot) {
    std::lock_guard lock(mutex_);
    --total_;
    auto it = per_user_.find(slot.user_);
    if (it != per_user_.end() && --it->second == 0) per_user_.erase(it);
    slot.owner_ = nullptr;
}

std::string ClientLimits::refusal_message(Verdict verdict, std::string_view user) const {
    std::lock_guard lock(mutex_);
    if (verdict == Verdict::over_total)
        return fmt::format("sorry, too many clients already (pglane limits.max_client_connections = {})", max_total_);
    if (max_by_user_.contains(std::string(user)))
        return fmt::format("too many connections for user \"{}\" (pglane limits.max_client_connections_by_user = {})",
                           user, user_limit_locked(user));
    return fmt::format("too many connections for user \"{}\" (pglane limits.max_client_connections_per_user = {})",
                       user, max_per_user_);
}

std::size_t ClientLimits::sessions() const {
    std::lock_guard lock(mutex_);
    return total_;
}

std::size_t ClientLimits::sessions_of(std::string_view user) const {
    std::lock_guard lock(mutex_);
    auto it = per_user_.find(std::string(user));
    return it == per_user_.end() ? 0 : it->second;
}

std::optional<Disconnect> admit_client(SessionServices& services, ListenerKind kind, int client_fd,
                                       std::string_view user, const std::string& peer) {
    if (!services.limits) return std::nullopt;
    ClientLimits::Verdict verdict = services.limits->admit(client_fd, user);
    if (verdict == ClientLimits::Verdict::admitted) return std::nullopt;
    bool total = verdict == ClientLimits::Verdict::over_total;
    services.counters.add(kind, total ? ListenerCounter::clients_over_max_connections_total
                                      : ListenerCounter::clients_over_user_connections_total);
    std::string_view limit = total ? "max_client_connections" : "max_client_connections_per_user";
    log::warn("client_refused", {{"listener", to_string(kind)}, {"client", peer}, {"user", user},
                                 {"limit", limit}, {"sessions", services.limits->sessions()}});
    return Disconnect{std::string(protocol::sqlstate::too_many_connections),
                      services.limits->refusal_message(verdict, user), std::string(limit)};
}

}  // namespace pglane::proxy
