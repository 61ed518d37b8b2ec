#pragma once
// What `pglane status` prints: a /status JSON snapshot as a table a person reads at a
// glance. Pure (JSON in, text out), so tests render it from snapshots.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

namespace pglane::proxy {

/// The table for one /status document: a summary line (version, elected primary, client
/// sessions per port, failovers), then one row per node. Throws std::runtime_error when
/// `status` is not a pglane /status document.
[[nodiscard]] std::string render_status_table(const nlohmann::json& status);

/// "0 B", "512 B", "4.0 KiB", "16.0 MiB": lag at a glance.
[[nodiscard]] std::string human_bytes(std::uint64_t bytes);

}  // namespace pglane::proxy
