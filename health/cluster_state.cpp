#include "health/cluster_state.hpp"

#include "common/log.hpp"

#include <fmt/format.h>

#include <stdexcept>
#include <utility>

namespace pglane::health {
namespace {

[[nodiscard]] bool claims_primary(const NodeStatus& node) {
    return node.up && node.role == Role::primary;
}

[[nodiscard]] std::string node_names(const std::vector<NodeStatus>& nodes,
                                     std::span<const Observation> round) {
    std::string names;
    for (std::size_t i = 0; i < nodes.size(); ++i) {
        if (!round[i].ok || round[i].in_recovery) continue;
        if (!names.empty()) names += ',';
        names += nodes[i].address.name;
    }
    return names;
}

}  // namespace

ClusterState::ClusterState(Settings settings, std::vector<NodeAddress> nodes)
    : settings_(std::move(settings)),
      replay_lag_seconds_(nodes.size()),
      lost_primary_role_(nodes.size(), false),
      sync_absent_rounds_(nodes.size(), 0) {
    topology_.nodes.reserve(nodes.size());
    for (auto& address : nodes) {
        NodeStatus node;
        node.address = std::move(address);
        topology_.nodes.push_back(std::move(node));
    }
}

void ClusterState::set_nodes(std::span<const NodeAddress> slots, const std::vector<bool>& active) {
    for (std::size_t i = topology_.nodes.size(); i < slots.size(); ++i) {
        NodeStatus node;
        node.address = slots[i];
        node.retired = true;   // until marked active below
        topology_.nodes.push_back(std::move(node));
        replay_lag_seconds_.emplace_back();
        lost_primary_role_.push_back(false);
        sync_absent_rounds_.push_back(0);
    }
    for (std::size_t i = 0; i < topology_.nodes.size(); ++i) {
        NodeStatus& node = topology_.nodes[i];
        const bool keep = i < active.size() && active[i];
        if (keep) {
            node.address.weight = slots[i].weight;
            node.address.replication_host = slots[i].replication_host;
        }
        if (keep == !node.retired) continue;
        // Both ways the slot starts over: a fresh node is down until its first probe answers.
        NodeStatus fresh;
        fresh.address = node.address;
        fresh.retired = !keep;
        node = std::move(fresh);
        replay_lag_seconds_[i].reset();
        lost_primary_role_[i] = false;
        sync_absent_rounds_[i] = 0;
        log::info(keep ? "node_added" : "node_removed", {{"node", node.address.name},
                                                        {"host", node.address.host},
                                                        {"port", node.address.port}});
    }
}

Topology ClusterState::apply_round(std::span<const Observation> round) {
    if (round.size() != topology_.nodes.size()) {
        throw std::invalid_argument("health round size does not match the node list");
    }
    for (std::size_t i = 0; i < round.size(); ++i) {
        if (topology_.nodes[i].retired) continue;
        apply_observation(topology_.nodes[i], round[i]);
        if (round[i].ok) replay_lag_seconds_[i] = round[i].replay_lag_seconds;
    }
    for (std::size_t i = 0; i < round.size(); ++i) {
        // Back in recovery: it rejoined as a standby, so it may be elected again one day.
        if (round[i].ok && round[i].in_recovery && lost_primary_role_[i]) {
            lost_primary_role_[i] = false;
            log::info("fence_lifted", {{"node", topology_.nodes[i].address.name}, {"role", "standby"}});
        }
    }
    set_primary(elect_primary());
    update_fencing(round);
    update_sync_states(round);
    for (std::size_t i = 0; i < topology_.nodes.size(); ++i) update_lag(i);
    ++topology_.version;
    return topology_;
}

void ClusterState::apply_observation(NodeStatus& node, const Observation& observation) {
    node.probe_seconds = observation.probe_seconds;
    if (!observation.ok) {
        // Role and LSNs keep their last known values: a node that misses one probe is
        // most likely still what it was, and the election needs that to stay stable.
        ++node.probes_failed;
        ++node.consecutive_failures;
        node.last_error = observation.error;
        if (node.consecutive_failures >= settings_.failures_before_down) set_up(node, false);
        return;
    }
    ++node.probes_ok;
    node.consecutive_failures = 0;
    node.last_error.clear();
    node.role = observation.in_recovery ? Role::standby : Role::primary;
    node.timeline = observation.timeline;
    node.current_lsn = observation.current_lsn;
    node.receive_lsn = observation.receive_lsn;
    node.replay_lsn = observation.replay_lsn;
    node.replay_paused = observation.replay_paused;
    node.wal_receiver = observation.wal_receiver_status;
    node.upstream = observation.sender_host.empty() && observation.sender_port == 0
                        ? std::string()
                        : fmt::format("{}:{}", observation.sender_host, observation.sender_port);
    node.streaming = observation.wal_receiver_status == "streaming";
    set_up(node, true);
}

// The one place a node's reachability changes, so each transition is logged once.
void ClusterState::set_up(NodeStatus& node, bool up) {
    if (node.up == up) return;
    node.up = up;
    if (up) {
        log::info("node_up", {{"node", node.address.name}, {"role", to_string(node.role)}});
    } else {
        log::warn("node_down", {{"node", node.address.name},
                                {"failures", node.consecutive_failures},
                                {"error", node.last_error}});
    }
}

// Highest timeline wins: a promotion always starts a new timeline, so the newest primary
// is the one to follow. Ties keep the incumbent so two primaries on one timeline do not
// make writes flap; without an incumbent, the furthest WAL position, then config order.
std::optional<std::size_t> ClusterState::elect_primary() const {
    const auto& nodes = topology_.nodes;
    std::optional<std::size_t> best;
    for (std::size_t i = 0; i < nodes.size(); ++i) {
        if (!claims_primary(nodes[i]) || lost_primary_role_[i]) continue;
        if (!best) {
            best = i;
            continue;
        }
        const NodeStatus& current = nodes[*best];
        const NodeStatus& challenger = nodes[i];
        if (challenger.timeline != current.timeline) {
            if (challenger.timeline > current.timeline) best = i;
            continue;
        }
        if (topology_.primary == *best) continue;
        if (topology_.primary == i || challenger.current_lsn > current.current_lsn) best = i;
    }
    return best;
}

void ClusterState::set_primary(std::optional<std::size_t> elected) {
    if (elected == topology_.primary) return;
    // The node elected before (now or before an outage) lost the role to another: unless it
    // came back in recovery, it must never take writes again, even if it is the only one
    // left claiming primary. Only a rejoin (in recovery) lifts that.
    if (elected && last_primary_ && *last_primary_ != *elected &&
        topology_.nodes[*last_primary_].role == Role::primary) {
        fence(*last_primary_, fmt::format("replaced by {}", topology_.nodes[*elected].address.name));
    }
    if (elected) last_primary_ = elected;
    topology_.primary = elected;
    ++topology_.primary_term;
    if (elected) {
        const NodeStatus& node = topology_.nodes[*elected];
        log::info("primary_elected", {{"node", node.address.name},
                                      {"timeline", node.timeline},
                                      {"term", topology_.primary_term}});
    } else {
        log::warn("primary_elected", {{"node", "none"}, {"term", topology_.primary_term}});
    }
}

// Fencing uses the last known role (a failing old primary must not take writes either);
// split brain counts only nodes that said "primary" in this very round, so a primary
// that merely stopped answering during a promotion is not reported as a split brain.
void ClusterState::update_fencing(std::span<const Observation> round) {
    std::size_t claiming_now = 0;
    for (std::size_t i = 0; i < topology_.nodes.size(); ++i) {
        NodeStatus& node = topology_.nodes[i];
        node.fenced = lost_primary_role_[i] || (claims_primary(node) && topology_.primary != i);
        if (round[i].ok && !round[i].in_recovery) ++claiming_now;
    }
    const bool split_brain = claiming_now > 1;
    if (split_brain && !topology_.split_brain) {
        log::error("split_brain", {{"nodes", node_names(topology_.nodes, round)},
                                   {"elected", topology_.primary
                                                   ? topology_.nodes[*topology_.primary].address.name
                                                   : std::string("none")}});
    }
    topology_.split_brain = split_brain;
}

// Only the elected primary's view counts, and only when it answered this round: when it
// stops answering, the last states seen stay for the failover manager to choose with. A
// node missing from the list loses its state only after failures_before_down answers in a
// row: a primary that is being killed may still answer once after its WAL senders are gone.
void ClusterState::update_sync_states(std::span<const Observation> round) {
    if (!topology_.primary || !round[*topology_.primary].ok) return;
    const auto& peers = round[*topology_.primary].replication;
    for (std::size_t i = 0; i < topology_.nodes.size(); ++i) {
        NodeStatus& node = topology_.nodes[i];
        // A removed node's WAL position no longer counts for the failover's quorum check.
        if (node.retired) continue;
        const ReplicationPeer* best = nullptr;
        for (const ReplicationPeer& peer : peers) {
            // Several senders for one name (a reconnect racing the old one): the furthest counts.
            if (peer.application_name == node.address.name && (!best || peer.flush_lsn > best->flush_lsn)) {
                best = &peer;
            }
        }
        if (best != nullptr && i != *topology_.primary) {
            node.sync_state = best->sync_state;
            node.primary_seen_flush_lsn = best->flush_lsn;
            sync_absent_rounds_[i] = 0;
        } else if (i == *topology_.primary ||
                   ++sync_absent_rounds_[i] >= settings_.failures_before_down) {
            node.sync_state.clear();
            node.primary_seen_flush_lsn = 0;
        }
    }
}

void ClusterState::fence(std::size_t index, std::string_view reason) {
    if (index >= topology_.nodes.size() || lost_primary_role_[index]) return;
    lost_primary_role_[index] = true;
    topology_.nodes[index].fenced = true;
    log::warn("primary_fenced", {{"node", topology_.nodes[index].address.name}, {"reason", reason}});
}

void ClusterState::record_failover(bool succeeded, std::string description) {
    if (succeeded) {
        ++topology_.failovers;
    } else {
        ++topology_.failover_failures;
    }
    topology_.last_failover = std::move(description);
}

Topology ClusterState::snapshot() {
    ++topology_.version;
    return topology_;
}

void ClusterState::update_lag(std::size_t index) {
    NodeStatus& node = topology_.nodes[index];
    if (node.role != Role::standby) {
        node.lag_bytes = 0;
        node.lag_seconds = 0;
        node.held_back = false;
        return;
    }
    node.lag_bytes = 0;
    if (topology_.primary) {
        const std::uint64_t primary_lsn = topology_.nodes[*topology_.primary].current_lsn;
        if (primary_lsn > node.replay_lsn) node.lag_bytes = primary_lsn - node.replay_lsn;
    }
    // The last replayed commit's age grows forever on an idle primary; a standby that has
    // replayed all it received is not late, whatever that age says.
    const bool caught_up = node.receive_lsn == node.replay_lsn;
    node.lag_seconds = caught_up ? 0 : replay_lag_seconds_[index].value_or(0);

    const bool over = node.lag_bytes > settings_.max_lag_bytes ||
                      node.lag_seconds > settings_.max_lag_seconds;
    // Release only well below the limits, so a standby hovering at the limit does not flap.
    const bool well_under = node.lag_bytes < settings_.max_lag_bytes / 2 &&
                            node.lag_seconds < settings_.max_lag_seconds / 2;
    if (!node.held_back && over) set_held_back(node, true);
    if (node.held_back && well_under) set_held_back(node, false);
}

void ClusterState::set_held_back(NodeStatus& node, bool held_back) {
    node.held_back = held_back;
    if (held_back) {
        log::warn("standby_held_back", {{"node", node.address.name},
                                        {"lag_bytes", node.lag_bytes},
                                        {"lag_seconds", node.lag_seconds}});
    } else {
        log::info("standby_released", {{"node", node.address.name},
                                       {"lag_bytes", node.lag_bytes},
                                       {"lag_seconds", node.lag_seconds}});
    }
}

}  // namespace pglane::health
