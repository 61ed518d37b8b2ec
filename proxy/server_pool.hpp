#pragma once
// Transaction pooling: logged-in server connections kept per (node, database, user) and
// lent to sessions for one transaction or one autocommit unit at a time.
//
// Each worker owns its pools (connections belong to the worker's io_context, so nothing is
// locked on the hot path); pool.size is shared out among the workers. What a session put
// on a connection (SET values, SQL-level prepared statements) is undone before the
// connection goes back; protocol-level statements stay, under names derived from their
// definition, so the next client running the same statement finds it prepared. The
// session side (what to undo, when to return) is in auto_session_pool.cpp.

#include "health/topology.hpp"
#include "proxy/admin_commands.hpp"
#include "proxy/config.hpp"
#include "proxy/counters.hpp"
#include "proxy/greeting_cache.hpp"
#include "proxy/server_connection.hpp"
#include "routing/session_router.hpp"

#include <boost/asio.hpp>
#include <nlohmann/json.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

namespace pglane::proxy {

/// Upper bounds of the pool wait-time histogram, in seconds.
inline constexpr std::array<double, 12> pool_wait_buckets{0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05,
                                                          0.1,    0.5,    1,     5,     30,   120};
inline constexpr std::size_t pin_reason_count = static_cast<std::size_t>(routing::PinReason::other) + 1;

/// One pool's figures summed over workers; written by workers, read by the metrics thread.
struct PoolStats {
    std::string node, database, user;
    std::atomic<std::int64_t> active{0};    // lent to sessions (or being opened for one)
    std::atomic<std::int64_t> idle{0};
    std::atomic<std::int64_t> waiting{0};   // clients waiting for a connection now
    std::atomic<std::uint64_t> checkouts{0};
    std::atomic<std::uint64_t> wait_timeouts{0};
    std::atomic<std::uint64_t> opened{0};
    std::atomic<std::uint64_t> closed{0};
    std::array<std::atomic<std::uint64_t>, pool_wait_buckets.size() + 1> wait_buckets{};  // last: +Inf
    std::atomic<std::uint64_t> wait_microseconds{0};
    std::array<std::atomic<std::uint64_t>, pin_reason_count> pins{};

    void observe_wait(std::chrono::steady_clock::duration waited);
};

/// Shared by all workers: one PoolStats per (node, database, user), created on first use
/// and kept for the process's life (so workers may hold plain references).
class PoolStatsRegistry {
public:
    PoolStats& get(const std::string& node, const std::string& database, const std::string& user);
    [[nodiscard]] std::string render_metrics() const;
    [[nodiscard]] nlohmann::json to_json() const;

private:
    mutable std::mutex mutex_;
    std::map<std::tuple<std::string, std::string, std::string>, std::unique_ptr<PoolStats>> stats_;
};

/// The connections of one (node, database, user) on one worker.
class ServerPool {
public:
    ServerPool(std::size_t node, std::string database, std::string user, PoolStats& stats)
        : node_(node), database_(std::move(database)), user_(std::move(user)), stats_(stats) {}

    [[nodiscard]] std::size_t node() const { return node_; }
    [[nodiscard]] PoolStats& stats() { return stats_; }

    /// The ParameterStatus values a connection of this pool reported once `startup_settings`
    /// (AutoSession's set_config of a client's startup parameters) were applied: later clients
    /// with the same parameters are greeted without waiting for a connection, for as long as
    /// GreetingCache keeps a greeting.
    using Greeting = GreetingCache::Parameters;
    [[nodiscard]] const Greeting* greeting(const std::string& startup_settings) const;
    void remember_greeting(const std::string& startup_settings, const std::map<std::string, std::string>& parameters);
    /// One session at a time fetches a missing greeting; the others wait for it (woken by
    /// remember_greeting or end_greeting_fetch) instead of queueing for connections.
    [[nodiscard]] bool begin_greeting_fetch(const std::string& startup_settings);
    void end_greeting_fetch(const std::string& startup_settings);
    asio::awaitable<void> wait_for_greeting(std::chrono::milliseconds at_most);

private:
    friend class ServerPools;
    struct Waiter {
        asio::steady_timer* timer = nullptr;
        std::unique_ptr<ServerConnection> handed;  // a connection given straight to this waiter
        bool may_open = false;                     // woken because a place to open one is free
    };

    std::size_t node_;
    std::string database_;
    std::string user_;
    PoolStats& stats_;
    std::vector<std::unique_ptr<ServerConnection>> idle_;  // most recently returned last
    std::size_t open_ = 0;                                 // idle + lent + being opened
    std::deque<Waiter*> waiters_;
    ServerCredentials credentials_;                        // the last client's, to refill min_idle
    bool have_credentials_ = false;
    // Fewer than the non-pooled cache: the key is the settings alone, and a pool has one
    // database and user.
    GreetingCache greetings_{std::chrono::seconds(60), 64};
    std::set<std::string> greeting_fetches_;
    std::vector<asio::steady_timer*> greeting_waiters_;
};

/// One worker's pools. Touched by that worker's thread only.
class ServerPools {
public:
    ServerPools(asio::any_io_executor executor, const Config& config, Counters& counters, PoolStatsRegistry& stats,
                std::size_t worker_count, SSL_CTX* tls);
    ~ServerPools();

    [[nodiscard]] ServerPool& pool(std::size_t node, const std::string& database, const std::string& user);

    /// A connection of `pool`: an idle one (checked first), a new one while the pool is
    /// under its size, else the next one returned, waiting up to pool.max_wait_ms (53300).
    [[nodiscard]] asio::awaitable<std::variant<std::unique_ptr<ServerConnection>, ServerFailure>> checkout(
        ServerPool& pool, const ServerCredentials& credentials);

    /// Takes a connection back. Broken ones, ones returned mid-unit or inside a transaction,
    /// past pool.server_lifetime_ms or on a node that went down are closed instead.
    void checkin(ServerPool& pool, std::unique_ptr<ServerConnection> server);

    /// Closes a lent connection the session cannot give back clean (state that cannot be
    /// shared, or the session ended mid-transaction).
    void retire(ServerPool& pool, std::unique_ptr<ServerConnection> server);

    /// Closes the idle connections of nodes that are down or fenced; later returns to them
    /// are closed too, until the node is back.
    void on_topology(const health::Topology& topology);

    /// Runs until the worker stops: closes connections idle too long, keeps min_idle open.
    asio::awaitable<void> maintain();
    void stop();

    [[nodiscard]] const PoolSettings& settings() const { return config_.pool; }
    /// The idle connections, for the admin console's SHOW SERVERS.
    void describe(int worker, std::vector<admin::ServerInfo>& servers) const;

private:
    void discard(ServerPool& pool, std::unique_ptr<ServerConnection> server);
    void wake_one(ServerPool& pool);
    [[nodiscard]] bool node_usable(std::size_t node) const;
    /// A new connection for `pool`, counted in it (open_, metrics) once it is open.
    asio::awaitable<std::variant<std::unique_ptr<ServerConnection>, ServerFailure>> open_connection(
        ServerPool& pool, const ServerCredentials& credentials);
    asio::awaitable<void> open_idle(ServerPool& pool);

    asio::any_io_executor executor_;
    SSL_CTX* tls_;   // pglane's TLS toward servers (null: plaintext)
    const Config& config_;
    Counters& counters_;
    PoolStatsRegistry& stats_;
    std::size_t size_per_worker_;
    std::size_t min_idle_per_worker_;
    std::map<std::tuple<std::size_t, std::string, std::string>, std::unique_ptr<ServerPool>> pools_;
    std::vector<health::NodeAddress> addresses_;   // per node slot, grown by reloads (on_topology)
    std::vector<bool> node_closed_;
    asio::steady_timer tick_;
    bool stopping_ = false;
};

}  // namespace pglane::proxy
