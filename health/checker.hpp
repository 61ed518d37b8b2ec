#pragma once
// The health checker: probes every node on its own thread and io_context, folds each
// round into ClusterState and publishes the resulting Topology for lock-free reads.

#include "health/cluster_state.hpp"
#include "health/failover.hpp"
#include "health/probe.hpp"
#include "health/settings.hpp"
#include "health/topology.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <span>
#include <string>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <thread>
#include <vector>

namespace pglane::health {

/// Owns the health thread, its io_context, one NodeProbe per node, the ClusterState and,
/// with failover.enabled, the failover manager's executor (which runs between rounds on
/// the same thread: a promotion pauses the regular cadence but keeps probing).
/// start()/stop()/probe_now()/on_change()/topology() may be called from any thread;
/// everything else runs on the health thread. Subscribers run on the health thread.
class HealthChecker {
public:
    using Subscriber = std::function<void(const TopologyPtr&)>;

    HealthChecker(Settings settings, std::vector<NodeAddress> nodes);
    ~HealthChecker();
    HealthChecker(const HealthChecker&) = delete;
    HealthChecker& operator=(const HealthChecker&) = delete;

    /// Starts the health thread; the first round runs at once. Call at most once.
    void start();

    /// Ends the in-flight round (probes fail at once), closes the connections and joins.
    /// Idempotent; also done by the destructor. Never call it from a subscriber.
    void stop();

    /// The latest snapshot; before the first round, every node is down. Never null.
    [[nodiscard]] TopologyPtr topology() const;

    /// Called on the health thread after every published round (workers fence sessions).
    void on_change(Subscriber subscriber);

    /// Asks for a round now instead of at the next interval (or right after the one in
    /// flight). Thread-safe.
    void probe_now();

    /// A reload of health.max_lag_bytes / max_lag_seconds, applied from the next round (which
    /// it starts at once). Thread-safe.
    void set_lag_limits(std::uint64_t max_lag_bytes, double max_lag_seconds);

    /// Whether set_nodes(nodes) can be applied: empty, or why not (every slot used; see
    /// max_node_slots). Thread-safe.
    [[nodiscard]] std::string check_nodes(const std::vector<NodeAddress>& nodes) const;
    /// A reload of the node list, applied at the start of the next round (which it starts at
    /// once): nodes that stay keep their slot and state, removed ones are retired, new ones
    /// probed from then on. Check first with check_nodes(). Thread-safe.
    void set_nodes(const std::vector<NodeAddress>& nodes);

private:
    [[nodiscard]] boost::asio::awaitable<void> run();
    [[nodiscard]] boost::asio::awaitable<std::vector<Observation>> probe_round();
    [[nodiscard]] boost::asio::awaitable<void> run_round();
    void publish(Topology topology);
    void apply_pending_nodes();
    /// The slots after a reload to `nodes`, and which of them are active.
    [[nodiscard]] std::pair<std::vector<NodeAddress>, std::vector<bool>> plan_slots(
        const std::vector<NodeAddress>& nodes) const;
    void request_stop();

    // The failover executor (checker_failover.cpp).
    [[nodiscard]] boost::asio::awaitable<void> fail_over(const FailoverDecision& decision);
    [[nodiscard]] boost::asio::awaitable<std::string> promote(std::size_t candidate);
    [[nodiscard]] boost::asio::awaitable<std::string> wait_until_elected(std::size_t candidate);
    [[nodiscard]] boost::asio::awaitable<void> prepare_new_primary(std::size_t primary,
                                                                   std::span<const std::size_t> standbys);
    [[nodiscard]] boost::asio::awaitable<void> repoint_standby(std::size_t standby, std::size_t primary);
    [[nodiscard]] boost::asio::awaitable<QueryResult> run_on(std::size_t node, std::string sql,
                                                             std::chrono::milliseconds timeout);
    [[nodiscard]] std::chrono::milliseconds step_timeout() const;
    [[nodiscard]] static FailoverTracker::Duration monotonic_now();

    Settings settings_;
    boost::asio::io_context io_;
    boost::asio::steady_timer interval_timer_;  // the wait between rounds; probe_now cuts it short
    std::vector<std::unique_ptr<NodeProbe>> probes_;
    ClusterState state_;
    std::atomic<TopologyPtr> topology_;
    std::atomic<std::uint64_t> published_{0};   // snapshots stored in topology_ so far
    const std::uint64_t instance_;              // tells checkers apart in topology()'s per-thread copies
    std::mutex subscribers_mutex_;
    std::vector<Subscriber> subscribers_;
    FailoverTracker failover_tracker_;  // health thread only
    NodeProbe* failover_query_ = nullptr;  // the failover statement in flight, for stop()
    std::thread thread_;
    bool round_in_flight_ = false;  // health thread only
    bool round_requested_ = false;  // health thread only
    bool stopping_ = false;         // health thread only
    mutable std::mutex slots_mutex_;
    std::vector<NodeAddress> slots_;   // every node address ever given a slot (slots_mutex_)
    // A node list reload waiting for the next round (health thread only).
    std::optional<std::pair<std::vector<NodeAddress>, std::vector<bool>>> pending_nodes_;
};

}  // namespace pglane::health
