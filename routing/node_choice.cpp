#include "routing/node_choice.hpp"

#include <fmt/format.h>

#include <algorithm>

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

void read_only_candidates(const health::Topology& topology, std::uint64_t turn, bool fallback_to_primary,
                          std::vector<std::size_t>& order) {
    order.clear();
    for (std::size_t i = 0; i < topology.nodes.size(); ++i) {
        if (topology.nodes[i].routable_standby()) order.push_back(i);
    }
    // Rotate the standbys by the turn, in place.
    if (!order.empty()) {
        const auto shift = static_cast<std::ptrdiff_t>(turn % order.size());
        std::rotate(order.begin(), order.begin() + shift, order.end());
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
