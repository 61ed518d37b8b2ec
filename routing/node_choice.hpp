#pragma once
// Which node a session (or later, a statement) goes to, given the latest topology.
// Pure: no sockets, no clocks; the round-robin turn is passed in by the caller.

#include "health/topology.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace pglane::routing {

/// The elected primary, when there is one and it is up.
[[nodiscard]] std::optional<std::size_t> choose_primary(const health::Topology& topology);

/// Nodes to try, best first, for a read-only session or statement: routable standbys with a
/// weight, the first chosen by `turn` (consecutive turns spread over all of them, each
/// standby's share following nodes[].weight), then standbys of weight 0, then the primary
/// when `fallback_to_primary` is set. Empty when nothing can serve reads.
[[nodiscard]] std::vector<std::size_t> read_only_candidates(const health::Topology& topology, std::uint64_t turn,
                                                            bool fallback_to_primary);
/// The same into `order` (cleared first), which keeps its storage from call to call.
void read_only_candidates(const health::Topology& topology, std::uint64_t turn, bool fallback_to_primary,
                          std::vector<std::size_t>& order);

/// A sentence saying why no node was found, naming what each node is doing, for the
/// client's ErrorResponse and the log.
[[nodiscard]] std::string describe_unavailable(const health::Topology& topology, bool want_primary);

}  // namespace pglane::routing
