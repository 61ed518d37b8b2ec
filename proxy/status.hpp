#pragma once
// What /metrics (Prometheus text format) and /status (JSON) say. Pure: built from a
// topology snapshot and summed counters, so tests can check the text directly.

#include "health/topology.hpp"
#include "proxy/counters.hpp"

#include <nlohmann/json.hpp>

#include <string>

namespace pglane::proxy {

/// https://prometheus.io/docs/instrumenting/exposition_formats/
[[nodiscard]] std::string render_metrics(const health::Topology& topology, const CounterTotals& totals);

[[nodiscard]] nlohmann::json render_status(const health::Topology& topology, const CounterTotals& totals);

}  // namespace pglane::proxy
