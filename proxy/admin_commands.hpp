#pragma once
// The admin console (a client connecting to the virtual database "pglane" as one of
// admin.users): its commands, and the result sets it answers them with. Pure (text in,
// bytes out), so unit tests check the commands and the wire bytes directly.
//
//   SHOW NODES | CLIENTS | SERVERS | POOLS | STATS | VERSION | HELP,  PAUSE,  RESUME,  RELOAD

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pglane::proxy::admin {

/// The database name that reaches the console instead of a server.
inline constexpr std::string_view console_database = "pglane";

enum class Command {
    show_nodes, show_clients, show_servers, show_pools, show_stats, show_version, show_help, pause, resume, reload
};

struct ParsedCommand {
    std::optional<Command> command;   // empty: `error` says why (42601), or the query was empty
    std::string error;
};

/// One command per query, case-insensitive, an optional trailing semicolon.
[[nodiscard]] ParsedCommand parse_command(std::string_view query);

/// A result set of text columns, as psql prints it.
struct ResultSet {
    std::vector<std::string> columns;
    std::vector<std::vector<std::string>> rows;
    std::string tag = "SHOW";   // CommandComplete
};

/// RowDescription, a DataRow per row, CommandComplete with `tag`.
void append_result_set(std::string& out, const ResultSet& result);

/// One client session, as its worker describes it.
struct ClientInfo {
    std::uint64_t session = 0;
    int worker = 0;
    std::string listener;
    std::string user;
    std::string database;
    std::string client;       // address:port
    std::string tls;          // the TLS version ("TLSv1.3"), empty for plaintext
    std::string state;        // idle | active | idle in transaction | paused
    std::string servers;      // nodes it holds connections to, comma-separated
    std::int64_t connected_seconds = 0;
};

/// One server connection: lent to a session, or idle in its pool.
struct ServerInfo {
    std::string node;
    std::string database;
    std::string user;
    std::uint32_t backend_pid = 0;
    int worker = 0;
    std::string state;        // idle in pool | in use
    std::uint64_t session = 0;  // 0: in the pool
    std::string tls;          // the TLS version, empty for plaintext
};

/// Views of the /status document (render_status with "pools" added).
[[nodiscard]] ResultSet nodes_table(const nlohmann::json& status);
[[nodiscard]] ResultSet pools_table(const nlohmann::json& status);
[[nodiscard]] ResultSet stats_table(const nlohmann::json& status);
[[nodiscard]] ResultSet clients_table(const std::vector<ClientInfo>& clients);
[[nodiscard]] ResultSet servers_table(const std::vector<ServerInfo>& servers);
[[nodiscard]] ResultSet help_table();

}  // namespace pglane::proxy::admin
