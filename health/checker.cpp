#include "health/checker.hpp"

#include "common/log.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>
#include <exception>

#include <fmt/format.h>

namespace pglane::health {
namespace asio = boost::asio;
using asio::use_awaitable;

namespace {

[[nodiscard]] std::uint64_t next_instance() {
    static std::atomic<std::uint64_t> next{1};
    return next.fetch_add(1, std::memory_order_relaxed);
}

// Probes report expected failures as values; anything thrown is a bug, logged once here.
[[nodiscard]] Observation failed_probe(const std::exception_ptr& failure) {
    try {
        std::rethrow_exception(failure);
    } catch (const std::exception& e) {
        log::error("health_probe_threw", {{"error", e.what()}});
        return Observation::failure(e.what());
    } catch (...) {
        return Observation::failure("probe threw");
    }
}

}  // namespace

HealthChecker::HealthChecker(Settings settings, std::vector<NodeAddress> nodes)
    : settings_(settings), interval_timer_(io_), state_(settings, nodes), instance_(next_instance()),
      failover_tracker_(settings.failover), slots_(nodes) {
    probes_.reserve(nodes.size());
    for (auto& node : nodes) {
        probes_.push_back(std::make_unique<NodeProbe>(io_.get_executor(), std::move(node), settings));
    }
    topology_.store(std::make_shared<const Topology>(state_.current()));
}

HealthChecker::~HealthChecker() { stop(); }

void HealthChecker::start() {
    if (thread_.joinable()) return;
    asio::co_spawn(io_, run(), [this](std::exception_ptr failure) {
        if (failure) {
            try {
                std::rethrow_exception(failure);
            } catch (const std::exception& e) {
                log::error("health_checker_failed", {{"error", e.what()}});
            }
        }
        // A name lookup may still hold work on the resolver thread; do not wait for it.
        io_.stop();
    });
    thread_ = std::thread([this] { io_.run(); });
}

void HealthChecker::stop() {
    if (!thread_.joinable()) return;
    asio::post(io_, [this] { request_stop(); });
    thread_.join();
    for (auto& probe : probes_)
        if (probe) probe->close();
}

TopologyPtr HealthChecker::topology() const {
    // Sessions ask for the snapshot several times per statement, from every worker thread.
    // Each thread keeps a copy of its own, reloaded only after a publish, so that taking a
    // reference never touches a count (or the atomic's lock) that another thread uses too.
    struct Copy {
        std::uint64_t instance = 0;
        std::uint64_t published = 0;
        TopologyPtr topology;
    };
    thread_local Copy copy;
    const std::uint64_t published = published_.load(std::memory_order_acquire);
    if (copy.instance != instance_ || copy.published != published || !copy.topology) {
        // A publish between the two loads only makes the copy newer than its count says.
        copy.topology = std::make_shared<const Topology>(*topology_.load(std::memory_order_acquire));
        copy.instance = instance_;
        copy.published = published;
    }
    return copy.topology;
}

void HealthChecker::on_change(Subscriber subscriber) {
    std::lock_guard lock(subscribers_mutex_);
    subscribers_.push_back(std::move(subscriber));
}

void HealthChecker::set_lag_limits(std::uint64_t max_lag_bytes, double max_lag_seconds) {
    asio::post(io_, [this, max_lag_bytes, max_lag_seconds] {
        settings_.max_lag_bytes = max_lag_bytes;
        settings_.max_lag_seconds = max_lag_seconds;
        state_.set_lag_limits(max_lag_bytes, max_lag_seconds);
    });
    probe_now();
}

std::pair<std::vector<NodeAddress>, std::vector<bool>> HealthChecker::plan_slots(
    const std::vector<NodeAddress>& nodes) const {
    std::vector<NodeAddress> slots = slots_;
    std::vector<bool> active(slots.size(), false);
    for (const NodeAddress& node : nodes) {
        auto it = std::find(slots.begin(), slots.end(), node);
        if (it == slots.end()) {
            slots.push_back(node);
            active.push_back(true);
        } else {
            active[static_cast<std::size_t>(it - slots.begin())] = true;
            // The same node: only its weight and replication host can differ.
            it->weight = node.weight;
            it->replication_host = node.replication_host;
        }
    }
    return {std::move(slots), std::move(active)};
}

std::string HealthChecker::check_nodes(const std::vector<NodeAddress>& nodes) const {
    std::lock_guard lock(slots_mutex_);
    const std::size_t needed = plan_slots(nodes).first.size();
    if (needed <= max_node_slots) return {};
    return fmt::format("the node list would need {} node slots, over the {} a running pglane has (nodes removed "
                       "or changed keep theirs): restart pglane to apply it",
                       needed, max_node_slots);
}

void HealthChecker::set_nodes(const std::vector<NodeAddress>& nodes) {
    std::pair<std::vector<NodeAddress>, std::vector<bool>> plan;
    {
        std::lock_guard lock(slots_mutex_);
        plan = plan_slots(nodes);
        slots_ = plan.first;
    }
    asio::post(io_, [this, plan = std::move(plan)]() mutable { pending_nodes_ = std::move(plan); });
    probe_now();
}

// Between rounds only: a round in flight holds on to probes_.
void HealthChecker::apply_pending_nodes() {
    if (!pending_nodes_) return;
    auto [slots, active] = std::move(*pending_nodes_);
    pending_nodes_.reset();
    state_.set_nodes(slots, active);
    for (std::size_t i = 0; i < slots.size(); ++i) {
        if (i == probes_.size()) probes_.push_back(nullptr);
        if (!active[i] && probes_[i]) {
            probes_[i]->close();
            probes_[i].reset();
        } else if (active[i] && !probes_[i]) {
            probes_[i] = std::make_unique<NodeProbe>(io_.get_executor(), slots[i], settings_);
        }
    }
}

void HealthChecker::probe_now() {
    asio::post(io_, [this] {
        if (round_in_flight_) {
            round_requested_ = true;
        } else {
            interval_timer_.cancel();
        }
    });
}

void HealthChecker::request_stop() {
    stopping_ = true;
    interval_timer_.cancel();
    for (auto& probe : probes_)
        if (probe) probe->abort();
    if (failover_query_ != nullptr) failover_query_->abort();
}

asio::awaitable<void> HealthChecker::run() {
    const auto interval = std::chrono::milliseconds(settings_.interval_ms);
    while (!stopping_) {
        const auto round_started = std::chrono::steady_clock::now();
        round_requested_ = false;
        co_await run_round();
        if (stopping_) break;
        if (settings_.failover.enabled) {
            const FailoverDecision decision =
                failover_tracker_.on_round(state_.current(), state_.last_primary(), monotonic_now());
            if (decision.promote()) {
                co_await fail_over(decision);
                if (stopping_) break;
                continue;
            }
        }
        if (round_requested_) continue;
        // Rounds start on a fixed cadence, so a slow round shortens the pause after it.
        interval_timer_.expires_at(round_started + interval);
        (void)co_await interval_timer_.async_wait(asio::as_tuple(use_awaitable));
    }
    log::info("health_checker_stopped");
}

asio::awaitable<void> HealthChecker::run_round() {
    apply_pending_nodes();
    round_in_flight_ = true;
    std::vector<Observation> round = co_await probe_round();
    round_in_flight_ = false;
    if (!stopping_) publish(state_.apply_round(round));
}

// All nodes at once, each bounded by its own deadline, so the round is bounded too.
asio::awaitable<std::vector<Observation>> HealthChecker::probe_round() {
    std::vector<Observation> round(probes_.size());
    std::size_t remaining = probes_.size();
    asio::steady_timer all_done(io_, asio::steady_timer::time_point::max());
    for (std::size_t i = 0; i < probes_.size(); ++i) {
        if (!probes_[i]) {   // retired by a reload
            round[i] = Observation::failure("removed from the configuration");
            if (--remaining == 0) all_done.cancel();
            continue;
        }
        asio::co_spawn(io_, probes_[i]->probe(),
                       [&, i](std::exception_ptr failure, Observation observation) {
                           round[i] = failure ? failed_probe(failure) : std::move(observation);
                           if (--remaining == 0) all_done.cancel();
                       });
    }
    // The completions reference this frame, so it must outlive them: wait for every one.
    while (remaining > 0) (void)co_await all_done.async_wait(asio::as_tuple(use_awaitable));
    co_return round;
}

void HealthChecker::publish(Topology topology) {
    auto snapshot = std::make_shared<const Topology>(std::move(topology));
    topology_.store(snapshot, std::memory_order_release);
    published_.fetch_add(1, std::memory_order_release);
    std::vector<Subscriber> subscribers;
    {
        std::lock_guard lock(subscribers_mutex_);
        subscribers = subscribers_;
    }
    for (const auto& subscriber : subscribers) {
        // One faulty subscriber must not stop health checking for everyone.
        try {
            subscriber(snapshot);
        } catch (const std::exception& e) {
            log::error("health_subscriber_failed", {{"error", e.what()}});
        }
    }
}

}  // namespace pglane::health
