#include "proxy/status_table.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <stdexcept>
#include <vector>

namespace pglane::proxy {

namespace {

using nlohmann::json;

template <typename T>
T value_or(const json& object, const char* key, T fallback) {
    auto it = object.find(key);
    if (it == object.end() || it->is_null()) return fallback;
    try {
        return it->get<T>();
    } catch (const json::exception&) {
        return fallback;
    }
}

// Where reads and writes may go, as the health checker decided: the elected primary takes
// writes, an up standby that is not held back takes reads (see NodeStatus::routable_standby).
std::string routing_of(const json& node) {
    if (!value_or(node, "up", false)) return "-";
    if (value_or(node, "fenced", false)) return "FENCED";
    if (value_or(node, "elected_primary", false)) return "writes";
    std::string role = value_or<std::string>(node, "role", "unknown");
    if (role == "standby") return value_or(node, "held_back", false) ? "HELD BACK" : "reads";
    return "-";
}

std::string notes_of(const json& node) {
    std::vector<std::string> notes;
    bool up = value_or(node, "up", false);
    std::string role = value_or<std::string>(node, "role", "unknown");
    if (up && role == "standby") {
        if (value_or(node, "replay_paused", false)) notes.emplace_back("replay paused");
        std::string receiver = value_or<std::string>(node, "wal_receiver", "");
        if (receiver.empty()) notes.emplace_back("no WAL receiver");
        else if (receiver != "streaming" && receiver != "unknown") notes.push_back("WAL receiver " + receiver);
        std::string sync = value_or<std::string>(node, "sync_state", "");
        if (sync == "sync" || sync == "quorum") notes.push_back(sync);
    }
    if (!up) {
        std::string error = value_or<std::string>(node, "last_error", "");
        std::replace(error.begin(), error.end(), '\n', ' ');
        if (error.size() > 60) {
            error.resize(57);
            error += "...";
        }
        if (!error.empty()) notes.push_back(error);
    }
    std::string out;
    for (const auto& note : notes) out += (out.empty() ? "" : ", ") + note;
    return out;
}

std::string summary_of(const json& status) {
    std::string primary = "NONE (writes refused)";
    if (auto it = status.find("primary"); it != status.end() && it->is_string())
        primary = fmt::format("{} (term {})", it->get<std::string>(), value_or<std::uint64_t>(status, "primary_term", 0));
    std::uint64_t clients = 0;
    std::string per_port;
    if (auto listeners = status.find("listeners"); listeners != status.end() && listeners->is_object()) {
        for (const char* port : {"rw", "ro", "auto"}) {
            auto it = listeners->find(port);
            if (it == listeners->end()) continue;
            auto active = value_or<std::int64_t>(*it, "client_connections_active", 0);
            clients += static_cast<std::uint64_t>(std::max<std::int64_t>(active, 0));
            per_port += fmt::format("{}{} {}", per_port.empty() ? "" : ", ", port, active);
        }
    }
    std::string line = fmt::format("pglane {}  primary: {}  clients: {} ({})  failovers: {}",
                                   value_or<std::string>(status, "version", "?"), primary, clients, per_port,
                                   value_or<std::uint64_t>(status, "failovers", 0));
    if (value_or(status, "split_brain", false)) line += "  SPLIT BRAIN: more than one node claims to be primary";
    line += '\n';
    std::string last_failover = value_or<std::string>(status, "last_failover", "");
    if (!last_failover.empty()) line += "last failover: " + last_failover + '\n';
    return line;
}

}  // namespace

std::string human_bytes(std::uint64_t bytes) {
    if (bytes < 1024) return fmt::format("{} B", bytes);
    constexpr std::array units{"KiB", "MiB", "GiB", "TiB", "PiB"};
    double value = static_cast<double>(bytes) / 1024;
    std::size_t unit = 0;
    while (value >= 1024 && unit + 1 < units.size()) {
        value /= 1024;
        ++unit;
    }
    return fmt::format("{:.1f} {}", value, units[unit]);
}

std::string render_status_table(const json& status) {
    if (!status.is_object() || !status.contains("nodes") || !status["nodes"].is_array())
        throw std::runtime_error("not a pglane /status document (no \"nodes\" array)");
    using Row = std::array<std::string, 9>;
    std::vector<Row> rows;
    rows.push_back({"NODE", "ROLE", "STATE", "TIMELINE", "LAG", "LAG TIME", "ROUTING", "CONNS", "NOTES"});
    for (const json& node : status["nodes"]) {
        bool up = value_or(node, "up", false);
        std::string role = value_or<std::string>(node, "role", "unknown");
        auto timeline = value_or<std::uint64_t>(node, "timeline", 0);
        bool lag_applies = up && role == "standby";
        rows.push_back({
            value_or<std::string>(node, "name", "?"),
            role,
            up ? "up" : "DOWN",
            timeline > 0 ? std::to_string(timeline) : "-",
            lag_applies ? human_bytes(value_or<std::uint64_t>(node, "lag_bytes", 0)) : "-",
            lag_applies ? fmt::format("{:.1f} s", value_or(node, "lag_seconds", 0.0)) : "-",
            routing_of(node),
            std::to_string(value_or<std::int64_t>(node, "server_connections_active", 0)),
            notes_of(node),
        });
    }
    std::array<std::size_t, 9> width{};
    for (const Row& row : rows)
        for (std::size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
    std::string out = summary_of(status);
    for (const Row& row : rows) {
        std::string line;
        for (std::size_t c = 0; c < row.size(); ++c) {
            // Numbers right-aligned (timeline, lag, connections), words left-aligned.
            bool numeric = c == 3 || c == 4 || c == 5 || c == 7;
            line += numeric ? fmt::format("{:>{}}", row[c], width[c]) : fmt::format("{:<{}}", row[c], width[c]);
            line += "  ";
        }
        while (!line.empty() && line.back() == ' ') line.pop_back();
        out += line + '\n';
    }
    return out;
}

}  // namespace pglane::proxy
