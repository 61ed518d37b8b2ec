// The failover manager's I/O half, on the health thread between rounds: promote the chosen
// standby, wait until a probe shows it primary, then make the cluster one primary with
// synchronous standbys again (slots, quorum, standbys re-pointed). Every statement has a
// deadline; every step is logged. Decisions are failover.cpp's.
// https://www.postgresql.org/docs/15/warm-standby-failover.html

#include "health/checker.hpp"

#include "common/log.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <vector>

namespace pglane::health {
namespace asio = boost::asio;

namespace {

/// Where the standbys of `primary` are pointed: its upstream_host() and port.
[[nodiscard]] std::string upstream_text(const NodeAddress& primary) {
    return fmt::format("{}:{}", primary.upstream_host(), primary.port);
}

}  // namespace

FailoverTracker::Duration HealthChecker::monotonic_now() {
    return std::chrono::duration_cast<FailoverTracker::Duration>(
        std::chrono::steady_clock::now().time_since_epoch());
}

// Slot creation, ALTER SYSTEM and reloads are quick; a node that takes longer is in trouble.
std::chrono::milliseconds HealthChecker::step_timeout() const {
    return std::chrono::milliseconds(std::max(5000, 2 * settings_.probe_timeout_ms()));
}

asio::awaitable<QueryResult> HealthChecker::run_on(std::size_t node, std::string sql,
                                                   std::chrono::milliseconds timeout) {
    // A connection of its own: the node's probe connection keeps its own cadence and deadline.
    NodeProbe connection(io_.get_executor(), state_.current().nodes.at(node).address, settings_);
    failover_query_ = &connection;
    QueryResult result = co_await connection.execute(std::move(sql), timeout);
    failover_query_ = nullptr;
    co_return result;
}

asio::awaitable<void> HealthChecker::fail_over(const FailoverDecision& decision) {
    const std::size_t candidate = *decision.candidate;
    const std::string name = state_.current().nodes[candidate].address.name;
    const std::optional<std::size_t> old_primary = state_.last_primary();
    log::warn("failover_promoting", {{"node", name}, {"reason", decision.reason}});
    // From here on the old primary may have a successor: it must never take writes again,
    // even if it comes back before the promotion is done.
    if (old_primary && *old_primary != candidate) {
        state_.fence(*old_primary, fmt::format("pglane promotes {}", name));
        publish(state_.snapshot());
    }

    std::string error = co_await promote(candidate);
    if (error.empty() && !stopping_) error = co_await wait_until_elected(candidate);
    if (stopping_) co_return;
    if (!error.empty()) {
        log::error("failover_failed", {{"node", name}, {"error", error}});
        state_.record_failover(false, fmt::format("promoting {} failed: {}", name, error));
        failover_tracker_.attempt_failed(monotonic_now());
        publish(state_.snapshot());
        co_return;
    }
    const NodeStatus& promoted = state_.current().nodes[candidate];
    log::info("failover_promoted", {{"node", name},
                                    {"lsn", format_lsn(promoted.current_lsn)},
                                    {"timeline", promoted.timeline}});
    state_.record_failover(true, fmt::format("promoted {}: {}", name, decision.reason));
    publish(state_.snapshot());

    // Every other standby that answers follows the new primary; the old primary and nodes
    // that are down need `rejoin` (pg_rewind) or a later restart with the new settings.
    std::vector<std::size_t> standbys;
    const Topology& topology = state_.current();
    for (std::size_t i = 0; i < topology.nodes.size(); ++i) {
        const NodeStatus& node = topology.nodes[i];
        if (i != candidate && i != old_primary && node.up && node.role == Role::standby) standbys.push_back(i);
    }
    co_await prepare_new_primary(candidate, standbys);
    for (std::size_t standby : standbys) {
        if (stopping_) co_return;
        co_await repoint_standby(standby, candidate);
    }
    if (!stopping_) co_await run_round();
}

asio::awaitable<std::string> HealthChecker::promote(std::size_t candidate) {
    const int wait_seconds = std::max(1, settings_.failover.promote_timeout_ms / 1000);
    // pg_promote(wait => true) returns once the node is out of recovery, or false at the bound.
    // https://www.postgresql.org/docs/15/functions-admin.html#FUNCTIONS-RECOVERY-CONTROL
    const auto timeout = std::chrono::milliseconds(settings_.failover.promote_timeout_ms) + step_timeout();
    QueryResult result =
        co_await run_on(candidate, fmt::format("SELECT pg_promote(true, {})", wait_seconds), timeout);
    if (!result.error.empty()) co_return "pg_promote: " + result.error;
    if (result.rows.size() != 1 || result.rows[0].size() != 1 || result.rows[0][0] != "t") {
        co_return fmt::format("pg_promote did not finish within {} s", wait_seconds);
    }
    co_return std::string{};
}

// Rounds back to back (with a short pause) until the election follows the promotion.
asio::awaitable<std::string> HealthChecker::wait_until_elected(std::size_t candidate) {
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(settings_.failover.promote_timeout_ms);
    const auto pause = std::chrono::milliseconds(std::min(settings_.interval_ms, 200));
    asio::steady_timer timer(io_);
    while (!stopping_) {
        co_await run_round();
        if (state_.current().primary == candidate) co_return std::string{};
        if (std::chrono::steady_clock::now() >= deadline) {
            co_return fmt::format("not elected primary within {} ms (still in recovery or not answering)",
                                  settings_.failover.promote_timeout_ms);
        }
        timer.expires_after(pause);
        (void)co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    co_return std::string("stopping");
}

// A slot per standby (so the new primary keeps the WAL they still need) and the quorum back:
// the remaining standbys and the old primary, so a rejoined old primary counts too; with
// ANY 1 a single re-pointed standby is enough for commits to proceed.
asio::awaitable<void> HealthChecker::prepare_new_primary(std::size_t primary,
                                                         std::span<const std::size_t> standbys) {
    const Topology& topology = state_.current();
    const std::string primary_name = topology.nodes[primary].address.name;
    for (std::size_t standby : standbys) {
        const std::string slot = sql_literal(topology.nodes[standby].address.name);
        QueryResult result = co_await run_on(
            primary,
            fmt::format("SELECT pg_create_physical_replication_slot({0}, true) WHERE NOT EXISTS"
                        " (SELECT 1 FROM pg_replication_slots WHERE slot_name = {0})",
                        slot),
            step_timeout());
        if (!result.error.empty()) {
            log::error("failover_slot_failed", {{"node", primary_name},
                                                {"slot", topology.nodes[standby].address.name},
                                                {"error", result.error}});
        }
        if (stopping_) co_return;
    }
    std::vector<std::string> names;
    for (std::size_t i = 0; i < topology.nodes.size(); ++i) {
        // Nodes a reload removed are no longer part of the cluster pglane manages.
        if (i != primary && !topology.nodes[i].retired) names.push_back(topology.nodes[i].address.name);
    }
    if (names.empty()) co_return;
    const std::string quorum = quorum_standby_names(names);
    // Named, not a braced temporary: GCC 12 mishandles those across co_await.
    const std::vector<std::string> statements{
        fmt::format("ALTER SYSTEM SET synchronous_standby_names = {}", sql_literal(quorum)),
        "SELECT pg_reload_conf()"};
    for (const std::string& sql : statements) {
        QueryResult result = co_await run_on(primary, sql, step_timeout());
        if (!result.error.empty()) {
            log::error("failover_quorum_failed", {{"node", primary_name}, {"error", result.error}});
            co_return;
        }
        if (stopping_) co_return;
    }
    log::info("failover_quorum", {{"node", primary_name}, {"synchronous_standby_names", quorum}});
}

// primary_conninfo keeps everything the standby had (user, password, application_name...)
// but host and port; PostgreSQL 15 restarts the WAL receiver when a reload changes it, and
// recovery_target_timeline = latest follows the new timeline.
asio::awaitable<void> HealthChecker::repoint_standby(std::size_t standby, std::size_t primary) {
    const NodeAddress target = state_.current().nodes[primary].address;
    const std::string name = state_.current().nodes[standby].address.name;
    auto failed = [&](std::string_view step, std::string_view error) {
        log::error("standby_repoint_failed", {{"node", name}, {"step", step}, {"error", error}});
    };
    if (std::string why = unreachable_upstream(state_.current().nodes[standby].address, target); !why.empty()) {
        failed("choose the upstream address", why);
        co_return;
    }
    QueryResult current =
        co_await run_on(standby, "SELECT setting FROM pg_settings WHERE name = 'primary_conninfo'", step_timeout());
    if (!current.error.empty()) {
        failed("read primary_conninfo", current.error);
        co_return;
    }
    if (current.rows.size() != 1 || current.rows[0].empty() || !current.rows[0][0] || current.rows[0][0]->empty()) {
        failed("read primary_conninfo", "not set (or not visible to the health user)");
        co_return;
    }
    std::string parse_error;
    const auto conninfo = repoint_conninfo(*current.rows[0][0], target.upstream_host(), target.port, parse_error);
    if (!conninfo) {
        failed("parse primary_conninfo", parse_error);
        co_return;
    }

    const std::vector<std::string> statements{
        fmt::format("ALTER SYSTEM SET primary_conninfo = {}", sql_literal(*conninfo)),
        fmt::format("ALTER SYSTEM SET primary_slot_name = {}", sql_literal(name)),
        "SELECT pg_reload_conf()"};
    for (const std::string& sql : statements) {
        if (stopping_) co_return;
        QueryResult result = co_await run_on(standby, sql, step_timeout());
        if (!result.error.empty()) {
            failed(sql.substr(0, sql.find(" = ")), result.error);
            co_return;
        }
    }
    log::info("standby_repointed", {{"node", name}, {"upstream", upstream_text(target)}});
}

}  // namespace pglane::health
