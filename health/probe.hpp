#pragma once
// One node's health probe: a persistent libpq connection driven without blocking on the
// health thread's io_context, and the pure parsing of what the probe query returns.

#include "health/cluster_state.hpp"
#include "health/settings.hpp"
#include "health/topology.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

struct pg_conn;

namespace pglane::health {

/// The probe's single statement: one row whatever the node's role (columns in
/// ProbeColumn order). See https://www.postgresql.org/docs/15/functions-admin.html
[[nodiscard]] std::string_view probe_sql();

/// Column order of probe_sql()'s row.
enum class ProbeColumn : std::size_t {
    in_recovery, current_lsn, receive_lsn, replay_lsn, replay_lag_seconds, replay_paused,
    timeline, wal_receiver_status, sender_host, sender_port, replication, count
};

/// A primary's pg_stat_replication as the probe aggregates it into one text column: one
/// line per WAL sender, "application_name TAB sync_state TAB flush_lsn" (flush_lsn may be
/// empty). PostgreSQL keeps application_name printable ASCII, so TAB and LF cannot occur.
/// nullopt when malformed.
[[nodiscard]] std::optional<std::vector<ReplicationPeer>> parse_replication(std::string_view text);

/// One text value per column; nullopt is SQL NULL.
using ProbeRow = std::vector<std::optional<std::string>>;

/// 'X/Y' (two hex halves of a pg_lsn) to a 64-bit position; nullopt when malformed.
[[nodiscard]] std::optional<std::uint64_t> parse_lsn(std::string_view text);

/// The probe row as an Observation (ok = true), or a failed Observation naming the bad
/// column. probe_seconds is left for the caller to fill.
[[nodiscard]] Observation parse_probe_row(std::span<const std::optional<std::string>> row);

/// libpq keyword=value connection string for a node; `hostaddr` (already resolved) spares
/// libpq a blocking getaddrinfo. Values are quoted per libpq's rules.
[[nodiscard]] std::string connection_string(const NodeAddress& node, const Settings& settings,
                                            std::string_view hostaddr = {});

/// What execute() returns: the rows of the last result that had any, or why it failed.
struct QueryResult {
    std::string error;             // empty on success
    std::vector<ProbeRow> rows;
};

/// Owns one persistent libpq connection to one node and the Asio descriptor that watches
/// its socket. Only the health thread's io_context touches it, one probe() or execute() at
/// a time.
class NodeProbe {
public:
    NodeProbe(boost::asio::any_io_executor executor, NodeAddress node, Settings settings);
    ~NodeProbe();
    NodeProbe(const NodeProbe&) = delete;
    NodeProbe& operator=(const NodeProbe&) = delete;

    /// Runs the probe query, (re)connecting if needed, within settings.probe_timeout_ms.
    /// Expected failures (refused, timeout, broken connection) come back as !ok.
    [[nodiscard]] boost::asio::awaitable<Observation> probe();

    /// Runs one SQL statement within `timeout`, connecting if needed. Never retried (the
    /// failover manager's statements are not all idempotent); errors come back as values.
    [[nodiscard]] boost::asio::awaitable<QueryResult> execute(std::string sql,
                                                              std::chrono::milliseconds timeout);

    /// Makes the probe in flight (if any) fail now; used by shutdown. Health thread only.
    void abort();

    /// Closes the connection (a new probe reconnects).
    void close();

    [[nodiscard]] const NodeAddress& address() const { return node_; }

private:
    using Clock = std::chrono::steady_clock;
    struct Resolve;

    // The steps below return the reason they failed, or an empty string on success.
    [[nodiscard]] boost::asio::awaitable<std::string> run_query(const std::string& sql,
                                                                std::vector<ProbeRow>& rows);
    [[nodiscard]] boost::asio::awaitable<std::string> connect();
    [[nodiscard]] boost::asio::awaitable<std::string> resolve(std::string& hostaddr);
    [[nodiscard]] boost::asio::awaitable<std::string> send_query(const std::string& sql);
    [[nodiscard]] boost::asio::awaitable<std::string> read_rows(std::vector<ProbeRow>& rows);
    [[nodiscard]] boost::asio::awaitable<std::string> wait(bool for_write);
    [[nodiscard]] std::string watch_socket(bool reregister);
    [[nodiscard]] std::string deadline_error() const;
    [[nodiscard]] std::string libpq_error() const;
    void arm_deadline(std::chrono::milliseconds timeout);

    boost::asio::any_io_executor executor_;
    NodeAddress node_;
    Settings settings_;
    pg_conn* connection_ = nullptr;
    boost::asio::posix::stream_descriptor socket_;
    boost::asio::steady_timer deadline_;
    std::shared_ptr<Resolve> pending_resolve_;
    Clock::time_point deadline_at_{};
    std::chrono::milliseconds timeout_{0};  // of the operation in flight, for its error text
    std::uint64_t probe_generation_ = 0;  // tells a stale deadline callback from a live one
    bool timed_out_ = false;
    bool aborted_ = false;
};

}  // namespace pglane::health
