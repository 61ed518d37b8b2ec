#pragma once
// The configuration file (JSON), parsed and validated once. Errors name the key.

#include "health/settings.hpp"
#include "routing/session_router.hpp"
#include "health/topology.hpp"
#include "proxy/tls.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace pglane::proxy {

/// host:port a listener binds or a client connects to.
struct Endpoint {
    std::string host;
    std::uint16_t port = 0;

    [[nodiscard]] std::string to_string() const;
};

/// The ports users connect to. See ARCHITECTURE.md, "What a user sees".
enum class ListenerKind { rw, ro, auto_ };
inline constexpr std::size_t listener_kind_count = 3;

[[nodiscard]] std::string_view to_string(ListenerKind kind);

struct Limits {
    std::uint32_t max_message_bytes = 1024u * 1024u * 1024u - 1;  // PostgreSQL's own MaxAllocSize
    std::uint32_t max_startup_packet_bytes = 10'000;              // as PostgreSQL's postmaster
    int startup_timeout_ms = 15'000;
    int server_connect_timeout_ms = 5'000;
    // Client sessions admitted at once (0: no limit), over all ports and workers; over a
    // limit the client gets FATAL 53300. See proxy/client_limits.hpp.
    std::uint32_t max_client_connections = 0;
    std::uint32_t max_client_connections_per_user = 0;
    std::map<std::string, std::uint32_t> max_client_connections_by_user;  // overrides per_user
    // Sessions pglane authenticates (0: no limit): closed with FATAL 57P05 after this long
    // idle between statements, 25P03 when idle inside a transaction (or mid-unit, holding a
    // pooled connection), as PostgreSQL's own idle_*_timeout settings do.
    int idle_session_timeout_ms = 0;
    int idle_in_transaction_timeout_ms = 0;
};

/// Server connection pooling for the sessions pglane authenticates ("pool" section).
/// session: a client keeps the server connections it opened until it leaves.
/// transaction: a connection serves a client for one transaction or autocommit unit, then
/// goes back to the pool of its (node, database, user). See proxy/server_pool.hpp.
struct PoolSettings {
    enum class Mode { session, transaction };
    Mode mode = Mode::session;
    int size = 20;                         // server connections per (node, database, user)
    int min_idle = 0;                      // kept open per pool while its node is up
    int max_wait_ms = 60'000;              // a client waiting longer for a connection gets 53300
    int server_lifetime_ms = 3'600'000;    // connections older than this are closed when returned
    int server_idle_timeout_ms = 600'000;  // idle connections past this are closed
};

/// How pglane authenticates clients itself ("auth" section). Absent: rw and ro relay the
/// server's own authentication and the auto port cannot be used.
struct AuthSettings {
    enum class Method { scram_sha_256, md5, trust };
    Method method = Method::scram_sha_256;
    std::string users_file;     // PgBouncer userlist.txt format
    std::string query;          // auth_query: $1 is the user name; returns the stored secret
    std::string query_user;     // who runs `query` on the primary
    std::string query_password;
    std::string query_dbname = "postgres";
};

struct Config {
    std::optional<Endpoint> listen_rw;
    std::optional<Endpoint> listen_ro;
    std::optional<Endpoint> listen_auto;
    /// listen.unix_socket_dir: each port above is also a Unix-domain socket in this directory,
    /// "<dir>/.s.PGSQL.<port>" as PostgreSQL names its own (clients: host=<dir> port=<port>).
    /// Empty: TCP only.
    std::string unix_socket_dir;
    unsigned unix_socket_mode = 0777;   // listen.unix_socket_mode, PostgreSQL's default
    std::string unix_socket_group;      // listen.unix_socket_group; empty: pglane's own group
    std::optional<AuthSettings> auth;
    routing::RoutingPolicy routing;
    std::optional<Endpoint> metrics_listen;
    std::vector<health::NodeAddress> nodes;
    health::Settings health;
    bool ro_fallback_to_primary = true;
    int workers = 0;  // 0: one per core
    int busy_poll_us = 0;  // a worker polls this long before it sleeps (0: it sleeps at once)
    int shutdown_timeout_ms = 30'000;  // SIGTERM: how long transactions may take to finish
    std::string log_level = "info";
    Limits limits;
    PoolSettings pool;
    TlsSettings tls;
    // Users who may connect to the admin console (database "pglane"); empty: no console.
    std::vector<std::string> admin_users;

    [[nodiscard]] const std::optional<Endpoint>& listener(ListenerKind kind) const {
        return kind == ListenerKind::rw ? listen_rw : kind == ListenerKind::ro ? listen_ro : listen_auto;
    }
};

/// A config that cannot be used; what() names the offending key.
class ConfigError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// Parses and validates JSON text. Throws ConfigError.
[[nodiscard]] Config parse_config(const std::string& json_text);

/// Reads and parses a file. Throws ConfigError (also for unreadable files).
[[nodiscard]] Config load_config(const std::string& path);

/// With failover enabled, each standby a built-in promotion could not re-point
/// (health::repoint_hazards); none without. Warnings, not errors: an operator may mean to set
/// their primary_conninfo by hand. Checked at the start, by --check-config and on each reload.
[[nodiscard]] std::vector<std::string> failover_repoint_hazards(const Config& config);

}  // namespace pglane::proxy
