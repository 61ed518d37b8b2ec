#include "routing/node_choice.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>

namespace pglane::routing {

std::optional<std::size_t> choose_primary(const health::Topology& topology) {
    if (!topology.primary) return std::nullopt;
    const health::NodeStatus& node = topology.nodes.at(*topology.primary);
    if (!node.up || node.role != health::Role::primary) return std::nullopt;
    return topology.primary;
}

std::vector<std::size_t> read_only_candidates(const health::Topology& topology, std::uint64_t turn,
                                              bool fallback_to_primary) {
    std::vector<std::size_t> order;
    read_only_candidates(topology, turn, fallback_to_primary, order);
    return order;
}

namespace {

/// Which of `order` (standbys with a weight, in slot order) a turn goes to when their
/// weights differ. Every `total` consecutive turns give each standby exactly its weight's
/// share: turn t takes position (t * step) mod total of the standbys' weight ranges laid end
/// to end, and `step`, coprime with `total`, makes that a permutation of the positions.
/// A step near total / 1.618 spreads each standby's turns over the cycle (3:1 gives
/// a, b, a, a rather than a, a, a, b).
std::size_t weighted_first(const health::Topology& topology, const std::vector<std::size_t>& order,
                           std::uint64_t total, std::uint64_t turn) {
    std::uint64_t step = std::max<std::uint64_t>(1, (total * 618) / 1000);
    while (std::gcd(step, total) != 1) ++step;
    std::uint64_t position = ((turn % total) * step) % total;
    for (std::size_t k = 0; k < order.size(); ++k) {
        const std::uint64_t weight = topology.nodes[order[k]].address.weight;
        if (position < weight) return k;
        position -= weight;
    }
    return 0;   // unreachable: the positions are below the sum of the weights
}

}  // namespace

void read_only_candidates(const health::Topology& topology, std::uint64_t turn, bool fallback_to_primary,
                          std::vector<std::size_t>& order) {
    order.clear();
    std::uint64_t total = 0;
    bool equal = true;
    for (std::size_t i = 0; i < topology.nodes.size(); ++i) {
        const health::NodeStatus& node = topology.nodes[i];
        if (!node.routable_standby() || node.address.weight == 0) continue;
        if (!order.empty() && node.address.weight != topology.nodes[order.front()].address.weight) equal = false;
        total += node.address.weight;
        order.push_back(i);
    }
    // The turn's standby first, then the others in slot order after it (the ones to try if it
    // cannot take the read). Equal weights: a plain rotation by the turn.
    if (!order.empty()) {
        const std::size_t first = equal ? turn % order.size() : weighted_first(topology, order, total, turn);
        std::rotate(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(first), order.end());
    }
    // Standbys of weight 0 only after every weighted one, before the primary.
    for (std::size_t i = 0; i < topology.nodes.size(); ++i) {
        if (topology.nodes[i].routable_standby() && topology.nodes[i].address.weight == 0) order.push_back(i);
    }
    if (fallback_to_primary) {
        if (auto primary = choose_primary(topology)) order.push_back(*primary);
    }
}

std::string describe_unavailable(const health::Topology& topology, bool want_primary) {
    std::string states;
    for (const health::NodeStatus& node : topology.nodes) {
        if (!states.empty()) states += ", ";
        std::string_view what = !node.up                ? "down"
                                : node.fenced           ? "fenced"
                                : node.held_back        ? "standby held back for lag"
                                                        : health::to_string(node.role);
        states += fmt::format("{} {}", node.address.name, what);
    }
    if (topology.version == 0) states = "no health probe has completed yet";
    return fmt::format("pglane: no {} is available ({})", want_primary ? "primary" : "standby or primary", states);
}

}  // namespace pglane::routing
