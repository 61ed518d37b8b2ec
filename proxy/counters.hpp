#pragma once
// Every counter pglane exports, declared once: each list entry yields the enum value, the
// Prometheus name and help text, and the /status JSON key. Workers count into their own
// Counters (relaxed atomics, no sharing on the hot path); a scrape sums them.

#include "proxy/config.hpp"
#include "routing/session_router.hpp"

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string_view>

namespace pglane::proxy {

// X(name, prometheus type, help)
#define PGLANE_LISTENER_COUNTERS(X)                                                                       \
    X(client_connections_total, "counter", "Client connections accepted on the listener")                 \
    X(client_connections_active, "gauge", "Client connections open now on the listener")                  \
    X(client_protocol_errors_total, "counter", "Clients disconnected for malformed protocol input (08P01)") \
    X(client_unrouted_total, "counter", "Clients refused because no node could serve them")               \
    X(client_startup_timeouts_total, "counter", "Clients dropped for not completing startup in time")     \
    X(client_tls_connections_total, "counter", "Client connections that completed a TLS handshake")       \
    X(client_tls_handshake_errors_total, "counter", "Client TLS handshakes that failed")                  \
    X(client_tls_refused_total, "counter", "Plaintext clients refused (28000): tls.mode is require")      \
    X(idle_timeouts_total, "counter", "Sessions closed by limits.idle_session_timeout_ms or idle_in_transaction_timeout_ms") \
    X(clients_over_max_connections_total, "counter", "Clients refused (53300): limits.max_client_connections reached") \
    X(clients_over_user_connections_total, "counter", "Clients refused (53300): their user's connection limit reached") \
    X(sessions_fenced_total, "counter", "Sessions closed because their primary stopped being elected")    \
    X(sessions_moved_total, "counter", "Sessions that kept their socket and moved to a new primary")      \
    X(unit_errors_total, "counter", "Statement units answered with an error by pglane (no primary, lost transaction)") \
    X(cancel_requests_total, "counter", "CancelRequests received")                                        \
    X(cancel_requests_forwarded_total, "counter", "CancelRequests that matched a session and were forwarded")   \
    X(units_to_primary_total, "counter", "Statement units (a Query, or messages up to Sync) run on the primary")  \
    X(units_to_standby_total, "counter", "Statement units run on a standby")                                     \
    X(read_retries_total, "counter", "Reads refused by a standby and run again on the primary")                 \
    X(statements_replanned_total, "counter", "Pooled prepared statements prepared again after DDL changed their result (0A000) and run again") \
    X(session_pins_total, "counter", "Sessions pinned to the primary (temp tables, LISTEN, advisory locks...)") \
    X(classification_cache_hits_total, "counter", "Statements classified from the cache")                      \
    X(classification_cache_misses_total, "counter", "Statements parsed with libpg_query")                      \
    X(classification_parse_nanoseconds_total, "counter", "Time spent parsing statements, in nanoseconds")

#define PGLANE_NODE_COUNTERS(X)                                                                           \
    X(sessions_routed_total, "counter", "Client sessions routed to the node")                             \
    X(server_connect_errors_total, "counter", "Failed attempts to open a server connection to the node")  \
    X(server_connections_active, "gauge", "Server connections open now to the node")                     \
    X(units_routed_total, "counter", "Statement units run on the node")

#define PGLANE_COUNTER_ENUM(name, type, help) name,
enum class ListenerCounter : std::size_t { PGLANE_LISTENER_COUNTERS(PGLANE_COUNTER_ENUM) count };
enum class NodeCounter : std::size_t { PGLANE_NODE_COUNTERS(PGLANE_COUNTER_ENUM) count };
#undef PGLANE_COUNTER_ENUM

struct CounterInfo {
    std::string_view name;
    std::string_view type;
    std::string_view help;
};

#define PGLANE_COUNTER_INFO(name, type, help) CounterInfo{#name, type, help},
inline constexpr std::array listener_counter_info{PGLANE_LISTENER_COUNTERS(PGLANE_COUNTER_INFO)};
inline constexpr std::array node_counter_info{PGLANE_NODE_COUNTERS(PGLANE_COUNTER_INFO)};
#undef PGLANE_COUNTER_INFO

inline constexpr std::size_t listener_counter_count = static_cast<std::size_t>(ListenerCounter::count);
inline constexpr std::size_t node_counter_count = static_cast<std::size_t>(NodeCounter::count);

/// Counter values summed over workers.
inline constexpr std::size_t route_reason_count = static_cast<std::size_t>(routing::RouteReason::count);

struct CounterTotals {
    std::array<std::array<std::uint64_t, listener_counter_count>, listener_kind_count> listener{};
    std::vector<std::array<std::uint64_t, node_counter_count>> node;
    std::array<std::uint64_t, route_reason_count> route_reasons{};
};

/// One worker's counters. Written by that worker's thread, read by the metrics thread.
class Counters {
public:
    explicit Counters(std::size_t node_count);

    void add(ListenerKind kind, ListenerCounter counter, std::int64_t delta = 1) {
        listener_[static_cast<std::size_t>(kind)][static_cast<std::size_t>(counter)].fetch_add(
            static_cast<std::uint64_t>(delta), std::memory_order_relaxed);
    }
    void add(std::size_t node, NodeCounter counter, std::int64_t delta = 1) {
        if (node >= node_count_) return;
        nodes_[node][static_cast<std::size_t>(counter)].fetch_add(static_cast<std::uint64_t>(delta),
                                                                 std::memory_order_relaxed);
    }

    void add(routing::RouteReason reason) {
        route_reasons_[static_cast<std::size_t>(reason)].fetch_add(1, std::memory_order_relaxed);
    }

    /// Adds this worker's values into `totals` (sized for the node count by the caller).
    void sum_into(CounterTotals& totals) const;

private:
    using ListenerRow = std::array<std::atomic<std::uint64_t>, listener_counter_count>;
    using NodeRow = std::array<std::atomic<std::uint64_t>, node_counter_count>;
    std::array<ListenerRow, listener_kind_count> listener_{};
    std::size_t node_count_;
    std::unique_ptr<NodeRow[]> nodes_;
    std::array<std::atomic<std::uint64_t>, route_reason_count> route_reasons_{};
};

}  // namespace pglane::proxy
