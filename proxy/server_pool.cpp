#include "proxy/server_pool.hpp"

#include "common/log.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace pglane::proxy {

namespace {

constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);
constexpr std::string_view too_many_connections = "53300";
constexpr auto maintenance_interval = std::chrono::seconds(1);

std::size_t share(int total, std::size_t workers) {
    if (total <= 0) return 0;
    return std::max<std::size_t>(1, (static_cast<std::size_t>(total) + workers - 1) / workers);
}

std::string escape_label(std::string_view value) {
    std::string out;
    for (char c : value) {
        if (c == '\\' || c == '"') out.push_back('\\');
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out.push_back(c);
    }
    return out;
}

}  // namespace

// ---- figures ----------------------------------------------------------------------------

void PoolStats::observe_wait(std::chrono::steady_clock::duration waited) {
    double seconds = std::chrono::duration<double>(waited).count();
    std::size_t bucket = std::lower_bound(pool_wait_buckets.begin(), pool_wait_buckets.end(), seconds) -
                         pool_wait_buckets.begin();
    wait_buckets[bucket].fetch_add(1, std::memory_order_relaxed);
    wait_microseconds.fetch_add(
        static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(waited).count()),
        std::memory_order_relaxed);
}

PoolStats& PoolStatsRegistry::get(const std::string& node, const std::string& database, const std::string& user) {
    std::lock_guard lock(mutex_);
    auto& slot = stats_[{node, database, user}];
    if (!slot) {
        slot = std::make_unique<PoolStats>();
        slot->node = node;
        slot->database = database;
        slot->user = user;
    }
    return *slot;
}

std::string PoolStatsRegistry::render_metrics() const {
    std::lock_guard lock(mutex_);
    std::string out;
    auto labels = [](const PoolStats& s) {
        return fmt::format("node=\"{}\",database=\"{}\",user=\"{}\"", escape_label(s.node), escape_label(s.database),
                           escape_label(s.user));
    };
    auto gauge = [&](std::string_view name, std::string_view type, std::string_view help, auto value) {
        fmt::format_to(std::back_inserter(out), "# HELP pglane_pool_{} {}\n# TYPE pglane_pool_{} {}\n", name, help,
                       name, type);
        for (const auto& [key, s] : stats_)
            fmt::format_to(std::back_inserter(out), "pglane_pool_{}{{{}}} {}\n", name, labels(*s), value(*s));
    };
    gauge("active_connections", "gauge", "Server connections lent to clients now",
          [](const PoolStats& s) { return s.active.load(); });
    gauge("idle_connections", "gauge", "Server connections idle in the pool now",
          [](const PoolStats& s) { return s.idle.load(); });
    gauge("waiting_clients", "gauge", "Clients waiting for a server connection now",
          [](const PoolStats& s) { return s.waiting.load(); });
    gauge("checkouts_total", "counter", "Server connections lent to clients",
          [](const PoolStats& s) { return s.checkouts.load(); });
    gauge("wait_timeouts_total", "counter", "Clients refused with 53300 after pool.max_wait_ms",
          [](const PoolStats& s) { return s.wait_timeouts.load(); });
    gauge("server_connections_opened_total", "counter", "Server connections the pool opened",
          [](const PoolStats& s) { return s.opened.load(); });
    gauge("server_connections_closed_total", "counter", "Server connections the pool closed",
          [](const PoolStats& s) { return s.closed.load(); });
    fmt::format_to(std::back_inserter(out),
                   "# HELP pglane_pool_wait_seconds Time clients waited for a server connection\n"
                   "# TYPE pglane_pool_wait_seconds histogram\n");
    for (const auto& [key, s] : stats_) {
        std::uint64_t cumulative = 0;
        for (std::size_t b = 0; b < s->wait_buckets.size(); ++b) {
            cumulative += s->wait_buckets[b].load();
            std::string le = b < pool_wait_buckets.size() ? fmt::format("{}", pool_wait_buckets[b]) : "+Inf";
            fmt::format_to(std::back_inserter(out), "pglane_pool_wait_seconds_bucket{{{},le=\"{}\"}} {}\n", labels(*s),
                           le, cumulative);
        }
        fmt::format_to(std::back_inserter(out), "pglane_pool_wait_seconds_sum{{{}}} {}\n", labels(*s),
                       static_cast<double>(s->wait_microseconds.load()) / 1e6);
        fmt::format_to(std::back_inserter(out), "pglane_pool_wait_seconds_count{{{}}} {}\n", labels(*s), cumulative);
    }
    fmt::format_to(std::back_inserter(out),
                   "# HELP pglane_pool_pins_total Clients pinned to one server connection, by reason\n"
                   "# TYPE pglane_pool_pins_total counter\n");
    for (const auto& [key, s] : stats_) {
        for (std::size_t r = 1; r < pin_reason_count; ++r) {
            fmt::format_to(std::back_inserter(out), "pglane_pool_pins_total{{{},reason=\"{}\"}} {}\n", labels(*s),
                           routing::to_string(static_cast<routing::PinReason>(r)), s->pins[r].load());
        }
    }
    return out;
}

nlohmann::json PoolStatsRegistry::to_json() const {
    std::lock_guard lock(mutex_);
    nlohmann::json pools = nlohmann::json::array();
    for (const auto& [key, s] : stats_) {
        nlohmann::json pins = nlohmann::json::object();
        for (std::size_t r = 1; r < pin_reason_count; ++r)
            pins[routing::to_string(static_cast<routing::PinReason>(r))] = s->pins[r].load();
        pools.push_back({{"node", s->node},
                         {"database", s->database},
                         {"user", s->user},
                         {"active", s->active.load()},
                         {"idle", s->idle.load()},
                         {"waiting", s->waiting.load()},
                         {"checkouts", s->checkouts.load()},
                         {"wait_timeouts", s->wait_timeouts.load()},
                         {"opened", s->opened.load()},
                         {"closed", s->closed.load()},
                         {"pins", std::move(pins)}});
    }
    return pools;
}

// ---- pools ------------------------------------------------------------------------------

const ServerPool::Greeting* ServerPool::greeting(const std::string& startup_settings) const {
    return greetings_.find(startup_settings, GreetingCache::Clock::now());
}

void ServerPool::remember_greeting(const std::string& startup_settings,
                                   const std::map<std::string, std::string>& parameters) {
    greetings_.remember(startup_settings, parameters, GreetingCache::Clock::now());
    end_greeting_fetch(startup_settings);
}

bool ServerPool::begin_greeting_fetch(const std::string& startup_settings) {
    return greeting_fetches_.insert(startup_settings).second;
}

void ServerPool::end_greeting_fetch(const std::string& startup_settings) {
    greeting_fetches_.erase(startup_settings);
    for (asio::steady_timer* waiter : greeting_waiters_) waiter->cancel();
}

asio::awaitable<void> ServerPool::wait_for_greeting(std::chrono::milliseconds at_most) {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    timer.expires_after(at_most);
    greeting_waiters_.push_back(&timer);
    (void)co_await timer.async_wait(use_nothrow);
    std::erase(greeting_waiters_, &timer);
}

ServerPools::ServerPools(asio::any_io_executor executor, const Config& config, Counters& counters,
                         PoolStatsRegistry& stats, std::size_t worker_count, SSL_CTX* tls)
    : executor_(executor),
      tls_(tls),
      config_(config),
      counters_(counters),
      stats_(stats),
      size_per_worker_(share(config.pool.size, std::max<std::size_t>(1, worker_count))),
      min_idle_per_worker_(share(config.pool.min_idle, std::max<std::size_t>(1, worker_count))),
      addresses_(config.nodes),
      node_closed_(health::max_node_slots, false),
      tick_(executor) {}

ServerPools::~ServerPools() {
    for (auto& [key, pool] : pools_) {
        for (auto& server : pool->idle_) {
            counters_.add(server->node(), NodeCounter::server_connections_active, -1);
            pool->stats_.idle.fetch_sub(1, std::memory_order_relaxed);
            server->close();
        }
    }
}

ServerPool& ServerPools::pool(std::size_t node, const std::string& database, const std::string& user) {
    auto& slot = pools_[{node, database, user}];
    if (!slot) slot = std::make_unique<ServerPool>(node, database, user, stats_.get(addresses_.at(node).name, database, user));
    return *slot;
}

bool ServerPools::node_usable(std::size_t node) const { return node < node_closed_.size() && !node_closed_[node]; }

asio::awaitable<std::variant<std::unique_ptr<ServerConnection>, ServerFailure>> ServerPools::checkout(
    ServerPool& pool, const ServerCredentials& credentials) {
    using Result = std::variant<std::unique_ptr<ServerConnection>, ServerFailure>;
    const auto started = std::chrono::steady_clock::now();
    const auto deadline = started + std::chrono::milliseconds(config_.pool.max_wait_ms);
    PoolStats& stats = pool.stats_;
    auto lend = [&](std::unique_ptr<ServerConnection> server) {
        stats.checkouts.fetch_add(1, std::memory_order_relaxed);
        stats.active.fetch_add(1, std::memory_order_relaxed);
        stats.observe_wait(std::chrono::steady_clock::now() - started);
        return Result(std::move(server));
    };
    bool may_open = false;  // a free place was handed to this client while it waited
    bool was_waiting = false;
    for (;;) {
        if (stopping_) co_return ServerFailure{std::string(protocol::sqlstate::admin_shutdown), "pglane is shutting down"};
        // 1. An idle connection, still alive (the server may have closed it meanwhile).
        while (!pool.idle_.empty()) {
            std::unique_ptr<ServerConnection> server = std::move(pool.idle_.back());
            pool.idle_.pop_back();
            stats.idle.fetch_sub(1, std::memory_order_relaxed);
            if (server->usable_after_idle()) co_return lend(std::move(server));
            discard(pool, std::move(server));
        }
        // 2. A new one while the pool is under its size (and nobody queues before this client).
        if (pool.open_ < size_per_worker_ && (pool.waiters_.empty() || may_open)) {
            stats.active.fetch_add(1, std::memory_order_relaxed);   // counted while it opens
            auto opened = co_await open_connection(pool, credentials);
            stats.active.fetch_sub(1, std::memory_order_relaxed);
            if (auto* failure = std::get_if<ServerFailure>(&opened)) co_return std::move(*failure);
            pool.credentials_ = credentials;
            pool.have_credentials_ = true;
            co_return lend(std::move(std::get<std::unique_ptr<ServerConnection>>(opened)));
        }
        // 3. Wait for a connection to come back (or for a place to open one).
        if (std::chrono::steady_clock::now() >= deadline) break;
        asio::steady_timer timer(executor_);
        timer.expires_at(deadline);
        ServerPool::Waiter waiter;
        waiter.timer = &timer;
        // A client woken for a place another took keeps its turn at the front.
        if (was_waiting) pool.waiters_.push_front(&waiter);
        else pool.waiters_.push_back(&waiter);
        was_waiting = true;
        stats.waiting.fetch_add(1, std::memory_order_relaxed);
        co_await timer.async_wait(use_nothrow);
        stats.waiting.fetch_sub(1, std::memory_order_relaxed);
        std::erase(pool.waiters_, &waiter);
        if (waiter.handed) co_return lend(std::move(waiter.handed));
        may_open = waiter.may_open;
        if (std::chrono::steady_clock::now() >= deadline) break;
    }
    stats.wait_timeouts.fetch_add(1, std::memory_order_relaxed);
    log::warn("pool_wait_timeout", {{"node", addresses_.at(pool.node_).name}, {"database", pool.database_},
                                    {"user", pool.user_}, {"max_wait_ms", config_.pool.max_wait_ms}});
    co_return ServerFailure{std::string(too_many_connections),
                            fmt::format("pglane: no server connection to {} for database \"{}\" and user \"{}\" became "
                                        "free within pool.max_wait_ms ({} ms); all {} are in use",
                                        addresses_.at(pool.node_).name, pool.database_, pool.user_,
                                        config_.pool.max_wait_ms, size_per_worker_)};
}

void ServerPools::checkin(ServerPool& pool, std::unique_ptr<ServerConnection> server) {
    if (!server) return;
    pool.stats_.active.fetch_sub(1, std::memory_order_relaxed);
    const auto now = std::chrono::steady_clock::now();
    bool reusable = !server->broken() && server->between_units &&
                    server->ready_status == protocol::TransactionStatus::idle && node_usable(pool.node_) &&
                    !stopping_ &&
                    now - server->opened_at < std::chrono::milliseconds(config_.pool.server_lifetime_ms);
    if (!reusable) {
        discard(pool, std::move(server));
        return;
    }
    server->idle_since = now;
    if (!pool.waiters_.empty()) {
        // Straight to the longest waiting client: no one can overtake it.
        ServerPool::Waiter* first = pool.waiters_.front();
        pool.waiters_.pop_front();
        first->handed = std::move(server);  // counted active again when the waiter takes it
        first->timer->cancel();
        return;
    }
    pool.idle_.push_back(std::move(server));
    pool.stats_.idle.fetch_add(1, std::memory_order_relaxed);
}

void ServerPools::retire(ServerPool& pool, std::unique_ptr<ServerConnection> server) {
    if (!server) return;
    pool.stats_.active.fetch_sub(1, std::memory_order_relaxed);
    discard(pool, std::move(server));
}

void ServerPools::discard(ServerPool& pool, std::unique_ptr<ServerConnection> server) {
    server->terminate();
    counters_.add(server->node(), NodeCounter::server_connections_active, -1);
    pool.stats_.closed.fetch_add(1, std::memory_order_relaxed);
    --pool.open_;
    wake_one(pool);
}

void ServerPools::wake_one(ServerPool& pool) {
    // A waiter woken without a connection finds the place to open one.
    if (pool.waiters_.empty()) return;
    ServerPool::Waiter* first = pool.waiters_.front();
    pool.waiters_.pop_front();
    first->may_open = true;
    first->timer->cancel();
}

void ServerPools::describe(int worker, std::vector<admin::ServerInfo>& servers) const {
    for (const auto& [key, pool] : pools_) {
        for (const auto& server : pool->idle_) {
            servers.push_back({server->address().name, pool->database_, pool->user_, server->backend_key().process_id,
                               worker, "idle in pool", 0, std::string(std::as_const(*server).stream().tls_version())});
        }
    }
}

void ServerPools::on_topology(const health::Topology& topology) {
    // Nodes a reload added; a slot's address never changes.
    for (std::size_t node = addresses_.size(); node < topology.nodes.size(); ++node)
        addresses_.push_back(topology.nodes[node].address);
    for (std::size_t node = 0; node < node_closed_.size() && node < topology.nodes.size(); ++node) {
        const health::NodeStatus& status = topology.nodes[node];
        bool closed = !status.up || status.fenced;
        if (closed == node_closed_[node]) continue;
        node_closed_[node] = closed;
        if (!closed) {
            log::info("pool_node_back", {{"node", status.address.name}});
            continue;
        }
        std::size_t dropped = 0;
        for (auto& [key, pool] : pools_) {
            if (pool->node_ != node) continue;
            while (!pool->idle_.empty()) {
                std::unique_ptr<ServerConnection> server = std::move(pool->idle_.back());
                pool->idle_.pop_back();
                pool->stats_.idle.fetch_sub(1, std::memory_order_relaxed);
                discard(*pool, std::move(server));
                ++dropped;
            }
        }
        log::info("pool_node_closed", {{"node", status.address.name}, {"reason", status.fenced ? "fenced" : "down"},
                                       {"idle_closed", dropped}});
    }
}

asio::awaitable<std::variant<std::unique_ptr<ServerConnection>, ServerFailure>> ServerPools::open_connection(
    ServerPool& pool, const ServerCredentials& credentials) {
    ++pool.open_;
    auto server = std::make_unique<ServerConnection>(executor_, pool.node_, addresses_.at(pool.node_), config_.limits,
                                                     tls_);
    const std::vector<std::pair<std::string, std::string>> login{{"user", pool.user_}, {"database", pool.database_}};
    std::optional<ServerFailure> failure = co_await server->open(login, credentials);
    if (failure) {
        --pool.open_;
        counters_.add(pool.node_, NodeCounter::server_connect_errors_total);
        wake_one(pool);  // the place this attempt held is free again
        co_return *failure;
    }
    counters_.add(pool.node_, NodeCounter::server_connections_active);
    pool.stats_.opened.fetch_add(1, std::memory_order_relaxed);
    co_return std::move(server);
}

asio::awaitable<void> ServerPools::open_idle(ServerPool& pool) {
    const ServerCredentials credentials = pool.credentials_;
    auto opened = co_await open_connection(pool, credentials);
    auto* server = std::get_if<std::unique_ptr<ServerConnection>>(&opened);
    if (!server) co_return;
    pool.stats_.active.fetch_add(1, std::memory_order_relaxed);  // checkin counts it back
    checkin(pool, std::move(*server));   // closes it instead when pglane is stopping
}

asio::awaitable<void> ServerPools::maintain() {
    while (!stopping_) {
        tick_.expires_after(maintenance_interval);
        (void)co_await tick_.async_wait(use_nothrow);
        if (stopping_) co_return;
        const auto now = std::chrono::steady_clock::now();
        const auto idle_limit = std::chrono::milliseconds(config_.pool.server_idle_timeout_ms);
        const auto lifetime = std::chrono::milliseconds(config_.pool.server_lifetime_ms);
        for (auto& [key, pool] : pools_) {
            // Oldest returns first: close the ones idle or alive too long.
            auto& idle = pool->idle_;
            for (std::size_t i = 0; i < idle.size();) {
                ServerConnection& server = *idle[i];
                bool expired = now - server.idle_since > idle_limit || now - server.opened_at > lifetime;
                bool surplus = idle.size() > min_idle_per_worker_ || now - server.opened_at > lifetime;
                if (expired && surplus) {
                    std::unique_ptr<ServerConnection> gone = std::move(idle[i]);
                    idle.erase(idle.begin() + static_cast<std::ptrdiff_t>(i));
                    pool->stats_.idle.fetch_sub(1, std::memory_order_relaxed);
                    discard(*pool, std::move(gone));
                    continue;
                }
                ++i;
            }
            // Refill to min_idle once a client has logged in (pglane holds no credentials before).
            if (!pool->have_credentials_ || !node_usable(pool->node_)) continue;
            if (pool->idle_.size() < min_idle_per_worker_ && pool->open_ < size_per_worker_ && pool->waiters_.empty()) {
                // One per pool per tick: a refill never floods a node that just came back.
                asio::co_spawn(executor_, open_idle(*pool), asio::detached);
            }
        }
    }
}

void ServerPools::stop() {
    stopping_ = true;
    tick_.cancel();
    for (auto& [key, pool] : pools_) {
        for (ServerPool::Waiter* waiter : pool->waiters_) waiter->timer->cancel();
    }
    for (auto& [key, pool] : pools_) {
        while (!pool->idle_.empty()) {
            std::unique_ptr<ServerConnection> server = std::move(pool->idle_.back());
            pool->idle_.pop_back();
            pool->stats_.idle.fetch_sub(1, std::memory_order_relaxed);
            discard(*pool, std::move(server));
        }
    }
}

}  // namespace pglane::proxy
