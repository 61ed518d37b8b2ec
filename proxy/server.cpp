#include "proxy/server.hpp"

#include "common/log.hpp"
#include "health/checker.hpp"
#include "proxy/cancel_registry.hpp"
#include "proxy/client_auth.hpp"
#include "proxy/client_limits.hpp"
#include "proxy/cpu_budget.hpp"
#include "proxy/function_catalogs.hpp"
#include "proxy/http_server.hpp"
#include "proxy/reload.hpp"
#include "proxy/status.hpp"
#include "proxy/unix_listener.hpp"
#include "proxy/worker.hpp"

#include <boost/asio/signal_set.hpp>

#include <thread>

namespace pglane::proxy {

namespace {

int worker_count(const Config& config, int cpus) { return config.workers > 0 ? config.workers : cpus; }

CounterTotals sum_counters(const std::vector<std::unique_ptr<Worker>>& workers, std::size_t node_count) {
    CounterTotals totals;
    totals.node.resize(node_count);
    for (const auto& worker : workers) worker->counters().sum_into(totals);
    return totals;
}

// What /status serves and the admin console's SHOW NODES, POOLS and STATS read.
nlohmann::json status_document(const health::Topology& topology, const std::vector<std::unique_ptr<Worker>>& workers,
                               std::size_t node_count, const PoolStatsRegistry& pools) {
    nlohmann::json status = render_status(topology, sum_counters(workers, node_count));
    status["pools"] = pools.to_json();
    return status;
}

HttpResponse answer_http(std::string_view path, const health::HealthChecker& health,
                         const std::vector<std::unique_ptr<Worker>>& workers, std::size_t node_count,
                         const PoolStatsRegistry& pools) {
    auto topology = health.topology();
    if (path == "/metrics") {
        return {200, "text/plain; version=0.0.4; charset=utf-8",
                render_metrics(*topology, sum_counters(workers, node_count)) + pools.render_metrics()};
    }
    if (path == "/status")
        return {200, "application/json", status_document(*topology, workers, node_count, pools).dump(2) + "\n"};
    if (path == "/health") {
        // Ready when writes can be served: what a load balancer in front of pglane asks.
        if (topology->primary) return {200, "text/plain; charset=utf-8", "ok\n"};
        return {503, "text/plain; charset=utf-8", "no primary\n"};
    }
    return {404, "text/plain; charset=utf-8", "not found: try /metrics, /status or /health\n"};
}

// Routing before the first probe round would refuse every client: wait for it, bounded.
void wait_for_first_round(const health::HealthChecker& health, const Config& config) {
    auto limit = std::chrono::steady_clock::now() + std::chrono::milliseconds(config.health.probe_timeout_ms() + 1000);
    while (health.topology()->version == 0 && std::chrono::steady_clock::now() < limit) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

}  // namespace

int run_server(const Config& config, const std::string& config_path) {
    health::HealthChecker health(config.health, config.nodes);
    CancelRegistry cancels;
    std::atomic<std::uint64_t> read_only_turn{0};
    FunctionCatalogs catalogs;
    ClientLimits limits(config.limits);
    TlsContexts tls(config.tls);
    std::unique_ptr<SecretSources> secrets;
    if (config.auth) {
        secrets = std::make_unique<SecretSources>();
        secrets->settings = *config.auth;
        if (!config.auth->users_file.empty()) {
            std::string error;
            auto users = load_users_file(config.auth->users_file, error);
            if (!users) throw ConfigError("config key \"auth.users_file\": " + error);
            secrets->users = std::make_shared<const UsersFile>(std::move(*users));
        }
    }

    ConfigReloader reloader(config_path, {secrets.get(), [&limits](const Limits& l) { limits.set_limits(l); },
                                          [&health](std::uint64_t bytes, double seconds) {
                                              health.set_lag_limits(bytes, seconds);
                                          },
                                          &tls,
                                          [&health](const std::vector<health::NodeAddress>& nodes) {
                                              return health.check_nodes(nodes);
                                          },
                                          [&health](const std::vector<health::NodeAddress>& nodes) {
                                              health.set_nodes(nodes);
                                          }});

    // listen.unix_socket_dir: a socket per port, which every worker accepts on; the files go
    // when these do, after the workers.
    std::vector<std::pair<std::unique_ptr<UnixListener>, ListenerKind>> unix_listeners;
    if (!config.unix_socket_dir.empty()) {
        for (ListenerKind kind : {ListenerKind::rw, ListenerKind::ro, ListenerKind::auto_}) {
            if (const auto& endpoint = config.listener(kind))
                unix_listeners.emplace_back(
                    std::make_unique<UnixListener>(config.unix_socket_dir, endpoint->port, config.unix_socket_mode,
                                                   config.unix_socket_group),
                    kind);
        }
    }
    std::vector<std::unique_ptr<Worker>> workers;
    PoolStatsRegistry pool_stats;
    std::unique_ptr<AdminConsole> console;
    if (!config.admin_users.empty()) {
        console = std::make_unique<AdminConsole>(
            config.admin_users,
            [&] { return status_document(*health.topology(), workers, health::max_node_slots, pool_stats); },
            [&reloader] { return reloader.reload(); });
    }
    const int cpus = usable_cpus();
    const int count = worker_count(config, cpus);
    for (int i = 0; i < count; ++i) {
        auto worker = std::make_unique<Worker>(
            config, [&health] { return health.topology(); }, [&health] { health.probe_now(); }, cancels, read_only_turn,
            secrets.get(), catalogs, limits, tls);
        for (ListenerKind kind : {ListenerKind::rw, ListenerKind::ro, ListenerKind::auto_}) {
            if (const auto& endpoint = config.listener(kind)) worker->listen(kind, *endpoint);
        }
        for (const auto& [listener, kind] : unix_listeners) worker->listen_unix(kind, listener->descriptor());
        if (config.pool.mode == PoolSettings::Mode::transaction)
            worker->enable_pooling(pool_stats, static_cast<std::size_t>(count));
        if (console) worker->enable_admin(*console, i);
        workers.push_back(std::move(worker));
    }
    std::unique_ptr<HttpServer> http;
    if (config.metrics_listen) {
        http = std::make_unique<HttpServer>(*config.metrics_listen, [&](std::string_view path) {
            return answer_http(path, health, workers, health::max_node_slots, pool_stats);
        });
    }

    health.on_change([&workers](const health::TopologyPtr& topology) {
        for (auto& worker : workers) worker->publish_topology(topology);
    });
    health.start();
    wait_for_first_round(health, config);
    for (auto& worker : workers) worker->start();
    if (http) http->start();
    log::info("pglane_started", {{"workers", count},
                                 {"usable_cpus", cpus},
                                 {"rw", config.listen_rw ? config.listen_rw->to_string() : "-"},
                                 {"ro", config.listen_ro ? config.listen_ro->to_string() : "-"},
                                 {"auto", config.listen_auto ? config.listen_auto->to_string() : "-"},
                                 {"metrics", config.metrics_listen ? config.metrics_listen->to_string() : "-"},
                                 {"unix_socket_dir", config.unix_socket_dir.empty() ? "-" : config.unix_socket_dir}});

    // SIGHUP reloads (reload.hpp) and pglane goes on; SIGINT and SIGTERM stop it.
    asio::io_context signals_io{1};
    asio::signal_set signals(signals_io, SIGINT, SIGTERM, SIGHUP);
    int received = 0;
    std::function<void(const boost::system::error_code&, int)> on_signal = [&](const boost::system::error_code& ec,
                                                                               int signal) {
        if (ec) return;
        if (signal != SIGHUP) {
            received = signal;
            return;
        }
        log::info("reload_requested", {{"signal", "SIGHUP"}});
        (void)reloader.reload();
        signals.async_wait(on_signal);
    };
    signals.async_wait(on_signal);
    signals_io.run();

    // SIGTERM drains: no new clients, transactions finish (up to shutdown_timeout_ms), each
    // session is closed with 57P01 once outside a transaction. SIGINT closes them all now.
    const Disconnect why{std::string(protocol::sqlstate::admin_shutdown), "pglane is shutting down", "shutdown"};
    log::info("pglane_stopping", {{"signal", received == SIGTERM ? "SIGTERM" : "SIGINT"},
                                  {"mode", received == SIGTERM ? "drain" : "immediate"},
                                  {"shutdown_timeout_ms", config.shutdown_timeout_ms}});
    for (auto& worker : workers) {
        if (received == SIGTERM) worker->drain(why, std::chrono::milliseconds(config.shutdown_timeout_ms));
        else worker->shutdown(why);
    }
    for (auto& worker : workers) worker->join();
    if (http) http->stop();
    health.stop();
    log::info("pglane_stopped");
    return 0;
}

}  // namespace pglane::proxy
