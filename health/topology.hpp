#pragma once
// The cluster as pglane last saw it: an immutable snapshot published by the health
// checker and read (without locks) by every worker when it routes a session.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pglane::health {

enum class Role { unknown, primary, standby };

[[nodiscard]] std::string_view to_string(Role role);

/// How pglane's connections to a node use TLS, with libpq's sslmode meanings: prefer
/// encrypts when the server offers it, require insists without checking the certificate,
/// verify-ca checks it against the CA file, verify-full also checks the host name.
enum class SslMode { disable, prefer, require, verify_ca, verify_full };

[[nodiscard]] std::string_view to_string(SslMode mode);

/// Where a node listens, how pglane reaches it, and its share of reads. Owned by the config;
/// copied into every snapshot. Two equal addresses are the same node (a reload keeps its
/// slot): equality leaves out `weight`, which a reload changes in place.
struct NodeAddress {
    NodeAddress() = default;
    NodeAddress(std::string name_, std::string host_, std::uint16_t port_, SslMode sslmode_ = SslMode::prefer,
                std::string ca_file_ = {})
        : name(std::move(name_)), host(std::move(host_)), port(port_), sslmode(sslmode_), ca_file(std::move(ca_file_)) {}

    std::string name;
    std::string host;
    std::uint16_t port = 0;
    SslMode sslmode = SslMode::prefer;
    std::string ca_file;   // tls.server_ca_file: verifies the node for verify-ca/verify-full
    /// As a standby, its share of reads relative to the other standbys (nodes[].weight);
    /// 0: reads only when no standby with a weight can take them.
    std::uint32_t weight = 1;
    /// nodes[].replication_host: the host the other nodes reach this one at, written into
    /// their primary_conninfo when it becomes the primary; empty: `host`. For a node pglane
    /// reaches by its Unix-domain socket or a loopback address. Like `weight`, not part of
    /// the node's identity: a reload changes it in place.
    std::string replication_host;

    /// The host the other nodes replicate from when this node is the primary.
    [[nodiscard]] const std::string& upstream_host() const {
        return replication_host.empty() ? host : replication_host;
    }

    /// Whether `host` names the directory of a Unix-domain socket rather than a host (libpq's
    /// convention: it starts with '/', or with '@' for Linux's abstract namespace).
    [[nodiscard]] bool on_unix_socket() const { return !host.empty() && (host.front() == '/' || host.front() == '@'); }
    /// Where a node on_unix_socket() listens: "<host>/.s.PGSQL.<port>", as PostgreSQL names it.
    [[nodiscard]] std::string unix_socket_path() const { return host + "/.s.PGSQL." + std::to_string(port); }

    [[nodiscard]] bool operator==(const NodeAddress& other) const {
        return name == other.name && host == other.host && port == other.port && sslmode == other.sslmode &&
               ca_file == other.ca_file;
    }
};

/// The highest nodes[].weight: weights are ratios, and small ones keep a rotation short.
inline constexpr std::uint32_t max_node_weight = 1000;

/// Nodes have stable indices ("slots") for the life of the process: sessions, pools and
/// counters key on them. A node removed by a reload keeps its slot, retired; an added one
/// takes a new slot (or its old one back). This bounds the slots a process ever uses.
inline constexpr std::size_t max_node_slots = 64;

/// One node as of the latest probe round. Plain data, safe to read from any thread.
struct NodeStatus {
    NodeAddress address;
    bool up = false;              // reachable (fewer than failures_before_down failures in a row)
    Role role = Role::unknown;    // from pg_is_in_recovery() of the last successful probe
    std::uint32_t timeline = 0;
    std::uint64_t current_lsn = 0;  // primary: pg_current_wal_lsn()
    std::uint64_t receive_lsn = 0;  // standby: pg_last_wal_receive_lsn()
    std::uint64_t replay_lsn = 0;   // standby: pg_last_wal_replay_lsn()
    std::uint64_t lag_bytes = 0;    // standby: elected primary's current LSN minus replay LSN
    double lag_seconds = 0;         // standby: time since the last replayed commit, 0 when caught up
    bool replay_paused = false;
    bool held_back = false;       // standby lagging: not routed to until it catches up
    bool fenced = false;          // claims to be primary but is not the elected one, or lost
                                  // the primary role to another node and is not back in recovery
    // Standby: its WAL receiver (pg_stat_wal_receiver) as of the last successful probe.
    std::string wal_receiver;     // status ("streaming", "stopping"...; "unknown" when the health
                                  // user may not see it; empty when no receiver runs)
    std::string upstream;         // "sender_host:sender_port" the receiver is connected to
    bool streaming = false;       // wal_receiver == "streaming"
    // This node in the elected primary's pg_stat_replication (matched by application_name =
    // node name), as last seen: kept while the primary does not answer, so failover can use it.
    std::string sync_state;       // "sync", "quorum", "potential", "async"; empty: not connected
    std::uint64_t primary_seen_flush_lsn = 0;  // its flush_lsn there
    int consecutive_failures = 0;
    double probe_seconds = 0;     // duration of the last probe
    std::uint64_t probes_ok = 0;
    std::uint64_t probes_failed = 0;
    std::string last_error;
    bool retired = false;         // removed from the configuration by a reload: never probed
                                  // or routed to, left out of /status and /metrics

    [[nodiscard]] bool routable_standby() const {
        return up && role == Role::standby && !held_back;
    }
};

/// A whole-cluster snapshot. `primary` is the elected primary (the only node writes may
/// reach); `primary_term` changes every time the elected primary changes, so a session
/// pinned to a primary can tell it has been replaced even if the same node comes back.
struct Topology {
    std::uint64_t version = 0;
    std::vector<NodeStatus> nodes;
    std::optional<std::size_t> primary;
    std::uint64_t primary_term = 0;
    bool split_brain = false;     // more than one node claims to be primary right now
    // The built-in failover manager (failover.enabled).
    std::uint64_t failovers = 0;          // promotions pglane performed
    std::uint64_t failover_failures = 0;  // promotions pglane attempted that failed
    std::string last_failover;            // one line on the last attempt, empty before any
};

using TopologyPtr = std::shared_ptr<const Topology>;

}  // namespace pglane::health
