#pragma once
// The whole running pglane: health checker, workers, cancel registry, metrics endpoint,
// and signal handling. main() builds one and calls run().

#include "proxy/config.hpp"

namespace pglane::proxy {

/// Runs until SIGINT or SIGTERM; returns the process exit code. Throws std::system_error
/// when a port cannot be bound.
[[nodiscard]] int run_server(const Config& config, const std::string& config_path);

}  // namespace pglane::proxy
