#pragma once
// The built-in failover manager's pure half (failover.enabled): whether to promote, whom,
// and the text of what it changes on the nodes. No I/O and no clock: time comes in as
// durations, so tests drive it with sequences of snapshots. The I/O half (pg_promote,
// re-pointing the standbys) is HealthChecker's, in checker_failover.cpp.

#include "health/settings.hpp"
#include "health/topology.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pglane::health {

enum class FailoverAction { none, promote };

/// What decide_failover() says. `reason` explains a promotion or a refusal; it is empty
/// while there is simply nothing to do (a primary is elected, or not down long enough).
struct FailoverDecision {
    FailoverAction act = FailoverAction::none;
    std::optional<std::size_t> candidate;  // node index, when act == promote
    std::string reason;
    bool refused = false;                  // act == none because promoting would be unsafe

    [[nodiscard]] bool promote() const { return act == FailoverAction::promote; }
};

/// One decision. `last_primary`: the node elected last (its address is what a standby's WAL
/// receiver would still stream from if it is alive); `primary_down_for`: how long no
/// primary has answered. Rules (issue 6):
///   - never while a node is elected primary, nor before failover.after_ms;
///   - refuse while any up standby streams from a node that is not an up standby (the old
///     primary, or an upstream pglane does not know): the primary is alive, only pglane's
///     path to it is broken; refuse too when a standby's receiver is hidden from the
///     health user ("unknown"), and when no standby is up;
///   - the candidate is the up standby that answered its last probe with the most WAL
///     received (lag hold-back does not matter), ties to a synchronous standby as last seen
///     on the primary, then config order;
///   - refuse when the candidate has less WAL than some standby was last seen to have
///     flushed: promoting it would drop commits that standby acknowledged.
[[nodiscard]] FailoverDecision decide_failover(const Topology& topology,
                                               std::optional<std::size_t> last_primary,
                                               std::chrono::milliseconds primary_down_for,
                                               const FailoverSettings& settings);

/// Follows the outage across rounds for decide_failover: when it began, the backoff after a
/// failed attempt, and which refusal was already logged (once per episode). Health thread
/// only; `now` is any monotonic time (tests pass plain durations).
class FailoverTracker {
public:
    using Duration = std::chrono::milliseconds;

    explicit FailoverTracker(FailoverSettings settings) : settings_(settings) {}

    /// Folds one published snapshot in and decides. Logs failover_refused when a refusal's
    /// reason differs from the last one logged in this outage.
    [[nodiscard]] FailoverDecision on_round(const Topology& topology,
                                            std::optional<std::size_t> last_primary, Duration now);

    /// A promotion failed at `now`: the next attempt waits failover.after_ms.
    void attempt_failed(Duration now);

private:
    FailoverSettings settings_;
    std::optional<Duration> outage_started_;
    std::optional<Duration> retry_not_before_;
    std::string logged_refusal_;
};

/// `conninfo` (a standby's primary_conninfo) with host and port replaced and hostaddr
/// dropped, everything else kept (user, password, application_name...). Parsed with libpq's
/// PQconninfoParse; nullopt with `error` set when it does not parse.
[[nodiscard]] std::optional<std::string> repoint_conninfo(std::string_view conninfo,
                                                          std::string_view host, std::uint16_t port,
                                                          std::string& error);

/// Why `standby` cannot be re-pointed at `primary`'s upstream_host(), or empty when it can. A
/// host-local address (a Unix-domain socket's directory, a loopback address, "localhost")
/// names pglane's host; a standby pglane reaches at another address may be elsewhere, where
/// that address would name the standby's own host.
[[nodiscard]] std::string unreachable_upstream(const NodeAddress& standby, const NodeAddress& primary);

/// What unreachable_upstream would refuse for every node that may be promoted and every other
/// node, known before any failover: one line per pair ("if n1 is promoted: ..."), in the
/// nodes' order. `--check-config` prints them and the start logs them, when pglane promotes.
[[nodiscard]] std::vector<std::string> repoint_hazards(std::span<const NodeAddress> nodes);

/// 'ANY 1 (a, b, "C-d")' over `names` (double-quoted where a bare name would not match).
[[nodiscard]] std::string quorum_standby_names(std::span<const std::string> names);

/// An LSN as PostgreSQL writes it ("16/B374D848").
[[nodiscard]] std::string format_lsn(std::uint64_t lsn);

/// A SQL string literal (E'...' form, so it means the same whatever
/// standard_conforming_strings says).
[[nodiscard]] std::string sql_literal(std::string_view value);

}  // namespace pglane::health
