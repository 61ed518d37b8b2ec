#include "routing/node_choice.hpp"

#include <fmt/format.h>

namespace pglane::routing {

std::optional<std::size_t> choose_primary(const health::Topology& topology) {
    if (!topology.primary) return std::nullopt;
    const health::NodeStatus& node = topology.nodes.at(*topology.primary);
    if (!node.up || node.role != health::Role::primary) return std::nullopt;
    return topology.primary;
}

std::vector<std::size_t> read_only_candidates(const health::Topology& topology, std::uint64_t turn,
                                              bool fallback_to_primary) {
    std::vector<std::size_t> standbys;
    for (std::size_t i = 0; i < topology.nodes.size(); ++i) {
        if (topology.nodes[i].routable_standby()) standbys.push_back(i);
    }
    std::vector<std::size_t> order;
    order.reserve(standbys.size() + 1);
    for (std::size_t k = 0; k < standbys.size(); ++k) {
        order.push_back(standbys[(turn + k) % standbys.size()]);
    }
    if (fallback_to_primary) {
        if (auto primary = choose_primary(topology)) order.push_back(*primary);
    }
    return order;
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
