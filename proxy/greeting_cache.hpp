#pragma once
// The greetings (ParameterStatus values) servers gave logins, kept so that a later login
// with the same parameters can be greeted at once. Without pooling, an auto-port session
// greeted from here connects to the primary only when it first needs it: a session that only
// reads never does, so read traffic holds no backends on the primary and a login costs one
// backend, not two. Under pooling, each pool keeps one (proxy/server_pool.hpp), keyed by the
// settings its connections apply.

#include <chrono>
#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace pglane::proxy {

/// Worker-local: touched by one thread, at session start only. Pointers find() returns are
/// good until the next remember().
class GreetingCache {
public:
    using Clock = std::chrono::steady_clock;
    using Parameters = std::vector<std::pair<std::string, std::string>>;
    using StartupParameters = std::vector<std::pair<std::string, std::string>>;

    /// Entries older than `ttl` are not used: a server-side change that alters a greeting
    /// (ALTER ROLE ... SET, a reload of postgresql.conf) reaches new sessions within it.
    explicit GreetingCache(Clock::duration ttl = std::chrono::seconds(60), std::size_t max_entries = 256)
        : ttl_(ttl), max_entries_(max_entries) {}

    /// The key of a login with `startup` on `node`: every parameter counts (the user, the
    /// database, application_name and options all show in a greeting), in any order.
    [[nodiscard]] static std::string key(std::string_view node, const StartupParameters& startup);

    /// The greeting under `key` if there is one younger than the time to live, else null.
    [[nodiscard]] const Parameters* find(const std::string& key, Clock::time_point now) const;
    void remember(const std::string& key, const std::map<std::string, std::string>& parameters, Clock::time_point now);
    [[nodiscard]] std::size_t size() const { return entries_.size(); }

private:
    struct Entry {
        Parameters parameters;
        Clock::time_point stored;
    };
    Clock::duration ttl_;
    std::size_t max_entries_;
    std::unordered_map<std::string, Entry> entries_;
};

}  // namespace pglane::proxy
