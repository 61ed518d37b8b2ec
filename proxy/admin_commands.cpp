#include "proxy/admin_commands.hpp"

#include "pglane_version.hpp"
#include "protocol/messages.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

namespace pglane::proxy::admin {

namespace {

constexpr std::int32_t text_oid = 25;

std::string lowercase(std::string_view text) {
    std::string out(text);
    std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
    return out;
}

std::vector<std::string> words(std::string_view text) {
    std::vector<std::string> out;
    std::size_t i = 0;
    while (i < text.size()) {
        while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
        std::size_t start = i;
        while (i < text.size() && !std::isspace(static_cast<unsigned char>(text[i]))) ++i;
        if (i > start) out.push_back(lowercase(text.substr(start, i - start)));
    }
    return out;
}

// A /status value as a text column: strings as they are, numbers and booleans as JSON
// writes them, null as SQL NULL.
std::optional<std::string> cell(const nlohmann::json& value) {
    if (value.is_null()) return std::nullopt;
    if (value.is_string()) return value.get<std::string>();
    return value.dump();
}

ResultSet table_of(const nlohmann::json& objects, std::vector<std::string> columns) {
    ResultSet result;
    result.columns = std::move(columns);
    for (const nlohmann::json& object : objects) {
        std::vector<std::string>& row = result.rows.emplace_back();
        for (const std::string& column : result.columns) {
            auto it = object.find(column);
            row.push_back(it == object.end() ? std::string() : cell(*it).value_or(""));
        }
    }
    return result;
}

}  // namespace

ParsedCommand parse_command(std::string_view query) {
    std::string_view text = query;
    while (!text.empty() && (std::isspace(static_cast<unsigned char>(text.back())) || text.back() == ';'))
        text.remove_suffix(1);
    std::vector<std::string> w = words(text);
    if (w.empty()) return {};
    if (w.size() == 1 && w[0] == "pause") return {Command::pause, {}};
    if (w.size() == 1 && w[0] == "resume") return {Command::resume, {}};
    if (w.size() == 1 && w[0] == "reload") return {Command::reload, {}};
    if (w.size() == 2 && w[0] == "show") {
        static constexpr std::pair<std::string_view, Command> shows[] = {
            {"nodes", Command::show_nodes}, {"clients", Command::show_clients}, {"servers", Command::show_servers},
            {"pools", Command::show_pools}, {"stats", Command::show_stats},     {"version", Command::show_version},
            {"help", Command::show_help},
        };
        for (const auto& [name, command] : shows)
            if (w[1] == name) return {command, {}};
    }
    return {std::nullopt, fmt::format("pglane admin console: unknown command \"{}\"; SHOW HELP lists the commands",
                                      std::string(text.substr(0, 200)))};
}

void append_result_set(std::string& out, const ResultSet& result) {
    {
        protocol::MessageWriter row_description(out, 'T');
        row_description.i16(static_cast<std::int16_t>(result.columns.size()));
        for (const std::string& column : result.columns)
            row_description.cstring(column).i32(0).i16(0).i32(text_oid).i16(-1).i32(-1).i16(0);
    }
    for (const auto& row : result.rows) {
        protocol::MessageWriter data_row(out, 'D');
        data_row.i16(static_cast<std::int16_t>(row.size()));
        for (const std::string& value : row) data_row.i32(static_cast<std::int32_t>(value.size())).raw(value);
    }
    protocol::MessageWriter(out, 'C').cstring(result.tag);
}

ResultSet nodes_table(const nlohmann::json& status) {
    return table_of(status.at("nodes"), {"name", "host", "port", "role", "up", "elected_primary", "fenced",
                                         "held_back", "weight", "timeline", "lag_bytes", "lag_seconds",
                                         "streaming", "sync_state", "last_error"});
}

ResultSet pools_table(const nlohmann::json& status) {
    auto pools = status.find("pools");
    return table_of(pools == status.end() ? nlohmann::json::array() : *pools,
                    {"node", "database", "user", "active", "idle", "waiting", "checkouts", "wait_timeouts", "opened",
                     "closed"});
}

ResultSet stats_table(const nlohmann::json& status) {
    ResultSet result;
    result.columns = {"listener"};
    const nlohmann::json& listeners = status.at("listeners");
    if (!listeners.empty())
        for (const auto& [name, value] : listeners.begin()->items()) result.columns.push_back(name);
    for (const auto& [listener, counters] : listeners.items()) {
        std::vector<std::string>& row = result.rows.emplace_back();
        row.push_back(listener);
        for (std::size_t c = 1; c < result.columns.size(); ++c) {
            auto it = counters.find(result.columns[c]);
            row.push_back(it == counters.end() ? std::string() : it->dump());
        }
    }
    return result;
}

ResultSet clients_table(const std::vector<ClientInfo>& clients) {
    ResultSet result;
    result.columns = {"session", "worker", "listener", "user", "database", "client", "tls", "state", "servers",
                      "connected_seconds"};
    for (const ClientInfo& c : clients) {
        result.rows.push_back({std::to_string(c.session), std::to_string(c.worker), c.listener, c.user, c.database,
                               c.client, c.tls, c.state, c.servers, std::to_string(c.connected_seconds)});
    }
    return result;
}

ResultSet servers_table(const std::vector<ServerInfo>& servers) {
    ResultSet result;
    result.columns = {"node", "database", "user", "backend_pid", "worker", "state", "session", "tls"};
    for (const ServerInfo& s : servers) {
        result.rows.push_back({s.node, s.database, s.user, std::to_string(s.backend_pid), std::to_string(s.worker),
                               s.state, s.session ? std::to_string(s.session) : std::string(), s.tls});
    }
    return result;
}

ResultSet help_table() {
    ResultSet result;
    result.columns = {"command", "what it does"};
    result.rows = {
        {"SHOW NODES", "each node: role, up, elected primary, fenced, held back, timeline, lag"},
        {"SHOW CLIENTS", "each client session: port, user, database, address, state, servers held"},
        {"SHOW SERVERS", "each server connection: node, backend pid, lent to a session or idle in its pool"},
        {"SHOW POOLS", "each transaction pool: active, idle, waiting, checkouts"},
        {"SHOW STATS", "counters per port: connections, units routed, errors, retries"},
        {"SHOW VERSION", "pglane's version"},
        {"PAUSE", "new transactions wait; returns once no session is inside one"},
        {"RESUME", "lets waiting transactions run"},
        {"RELOAD", "reads the config file again, as SIGHUP does (what can change live, or nothing)"},
    };
    return result;
}

}  // namespace pglane::proxy::admin
