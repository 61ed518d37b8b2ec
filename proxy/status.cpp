#include "proxy/status.hpp"

#include "pglane_version.hpp"

#include <fmt/format.h>

namespace pglane::proxy {

namespace {

// Node gauges from the topology, declared once: name, help, value.
struct NodeGauge {
    std::string_view name;
    std::string_view help;
    double (*value)(const health::NodeStatus&);
};

constexpr NodeGauge node_gauges[] = {
    {"node_up", "1 when the node answers health probes", [](const health::NodeStatus& n) { return n.up ? 1.0 : 0.0; }},
    {"node_is_primary", "1 when the node reports it is not in recovery",
     [](const health::NodeStatus& n) { return n.role == health::Role::primary ? 1.0 : 0.0; }},
    {"node_is_standby", "1 when the node reports it is in recovery",
     [](const health::NodeStatus& n) { return n.role == health::Role::standby ? 1.0 : 0.0; }},
    {"node_timeline", "WAL timeline the node is on", [](const health::NodeStatus& n) { return double(n.timeline); }},
    {"node_lag_bytes", "Replay lag of a standby behind the elected primary, in bytes",
     [](const health::NodeStatus& n) { return double(n.lag_bytes); }},
    {"node_lag_seconds", "Replay lag of a standby, in seconds (0 when caught up)",
     [](const health::NodeStatus& n) { return n.lag_seconds; }},
    {"node_held_back", "1 when a lagging standby is kept out of routing",
     [](const health::NodeStatus& n) { return n.held_back ? 1.0 : 0.0; }},
    {"node_fenced", "1 when the node claims to be primary but is not the elected one",
     [](const health::NodeStatus& n) { return n.fenced ? 1.0 : 0.0; }},
    {"node_replay_paused", "1 when WAL replay is paused on the standby",
     [](const health::NodeStatus& n) { return n.replay_paused ? 1.0 : 0.0; }},
    {"node_probe_duration_seconds", "Duration of the last health probe",
     [](const health::NodeStatus& n) { return n.probe_seconds; }},
    {"node_probes_failed_total", "Health probes that failed",
     [](const health::NodeStatus& n) { return double(n.probes_failed); }},
    {"node_streaming", "1 when the standby's WAL receiver is streaming",
     [](const health::NodeStatus& n) { return n.streaming ? 1.0 : 0.0; }},
    {"node_synchronous", "1 when the primary last reported the standby as synchronous (sync or quorum)",
     [](const health::NodeStatus& n) { return n.sync_state == "sync" || n.sync_state == "quorum" ? 1.0 : 0.0; }},
};

void header(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
    fmt::format_to(std::back_inserter(out), "# HELP pglane_{} {}\n# TYPE pglane_{} {}\n", name, help, name, type);
}

}  // namespace

std::string render_metrics(const health::Topology& topology, const CounterTotals& totals) {
    std::string out;
    out.reserve(8192);
    header(out, "build_info", "gauge", "pglane version");
    fmt::format_to(std::back_inserter(out), "pglane_build_info{{version=\"{}\"}} 1\n", pglane::version);
    for (const NodeGauge& gauge : node_gauges) {
        header(out, gauge.name, gauge.name.ends_with("_total") ? "counter" : "gauge", gauge.help);
        for (const health::NodeStatus& node : topology.nodes) {
            if (node.retired) continue;
            fmt::format_to(std::back_inserter(out), "pglane_{}{{node=\"{}\"}} {}\n", gauge.name, node.address.name,
                           gauge.value(node));
        }
    }
    header(out, "primary_term", "gauge", "Increments each time the elected primary changes");
    fmt::format_to(std::back_inserter(out), "pglane_primary_term {}\n", topology.primary_term);
    header(out, "split_brain", "gauge", "1 when more than one node claims to be primary");
    fmt::format_to(std::back_inserter(out), "pglane_split_brain {}\n", topology.split_brain ? 1 : 0);
    header(out, "failovers_total", "counter", "Promotions pglane performed (built-in failover)");
    fmt::format_to(std::back_inserter(out), "pglane_failovers_total {}\n", topology.failovers);
    header(out, "failover_failures_total", "counter", "Promotions pglane attempted that failed");
    fmt::format_to(std::back_inserter(out), "pglane_failover_failures_total {}\n", topology.failover_failures);
    for (std::size_t c = 0; c < listener_counter_count; ++c) {
        const CounterInfo& info = listener_counter_info[c];
        header(out, info.name, info.type, info.help);
        for (std::size_t k = 0; k < listener_kind_count; ++k) {
            fmt::format_to(std::back_inserter(out), "pglane_{}{{listener=\"{}\"}} {}\n", info.name,
                           to_string(static_cast<ListenerKind>(k)), static_cast<std::int64_t>(totals.listener[k][c]));
        }
    }
    for (std::size_t c = 0; c < node_counter_count; ++c) {
        const CounterInfo& info = node_counter_info[c];
        header(out, info.name, info.type, info.help);
        for (std::size_t n = 0; n < topology.nodes.size() && n < totals.node.size(); ++n) {
            if (topology.nodes[n].retired) continue;
            fmt::format_to(std::back_inserter(out), "pglane_{}{{node=\"{}\"}} {}\n", info.name,
                           topology.nodes[n].address.name, static_cast<std::int64_t>(totals.node[n][c]));
        }
    }
    header(out, "units_routed_by_reason_total", "counter", "Statement units routed, by why they went where they went");
    for (std::size_t r = 0; r < route_reason_count; ++r) {
        fmt::format_to(std::back_inserter(out), "pglane_units_routed_by_reason_total{{reason=\"{}\"}} {}\n",
                       routing::to_string(static_cast<routing::RouteReason>(r)), totals.route_reasons[r]);
    }
    return out;
}

nlohmann::json render_status(const health::Topology& topology, const CounterTotals& totals) {
    nlohmann::json nodes = nlohmann::json::array();
    for (std::size_t i = 0; i < topology.nodes.size(); ++i) {
        const health::NodeStatus& n = topology.nodes[i];
        if (n.retired) continue;   // removed by a reload
        nlohmann::json node = {
            {"name", n.address.name},       {"host", n.address.host},
            {"port", n.address.port},       {"up", n.up},
            {"sslmode", health::to_string(n.address.sslmode)},
            {"weight", n.address.weight},
            {"role", health::to_string(n.role)},
            {"elected_primary", topology.primary == i},
            {"timeline", n.timeline},       {"current_lsn", n.current_lsn},
            {"receive_lsn", n.receive_lsn}, {"replay_lsn", n.replay_lsn},
            {"lag_bytes", n.lag_bytes},     {"lag_seconds", n.lag_seconds},
            {"replay_paused", n.replay_paused},
            {"held_back", n.held_back},     {"fenced", n.fenced},
            {"wal_receiver", n.wal_receiver}, {"upstream", n.upstream},
            {"streaming", n.streaming},     {"sync_state", n.sync_state},
            {"probe_seconds", n.probe_seconds},
            {"probes_ok", n.probes_ok},     {"probes_failed", n.probes_failed},
            {"last_error", n.last_error},
        };
        if (i < totals.node.size()) {
            for (std::size_t c = 0; c < node_counter_count; ++c)
                node[std::string(node_counter_info[c].name)] = static_cast<std::int64_t>(totals.node[i][c]);
        }
        nodes.push_back(std::move(node));
    }
    nlohmann::json listeners = nlohmann::json::object();
    for (std::size_t k = 0; k < listener_kind_count; ++k) {
        nlohmann::json counters = nlohmann::json::object();
        for (std::size_t c = 0; c < listener_counter_count; ++c)
            counters[std::string(listener_counter_info[c].name)] = static_cast<std::int64_t>(totals.listener[k][c]);
        listeners[std::string(to_string(static_cast<ListenerKind>(k)))] = std::move(counters);
    }
    return {
        {"version", pglane::version},
        {"topology_version", topology.version},
        {"primary", topology.primary ? nlohmann::json(topology.nodes[*topology.primary].address.name) : nlohmann::json()},
        {"primary_term", topology.primary_term},
        {"split_brain", topology.split_brain},
        {"failovers", topology.failovers},
        {"failover_failures", topology.failover_failures},
        {"last_failover", topology.last_failover},
        {"nodes", std::move(nodes)},
        {"listeners", std::move(listeners)},
    };
}

}  // namespace pglane::proxy
