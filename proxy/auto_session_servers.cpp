// Which server an AutoSession unit runs on: opening and preparing connections (replaying
// the session's SET history), the elected primary (waiting for one during a failover),
// standbys chosen round-robin with read-your-writes and staleness checks, and the function
// volatility catalog the routing needs.

#include "common/log.hpp"
#include "health/probe.hpp"
#include "proxy/auto_session.hpp"
#include "proxy/function_catalogs.hpp"
#include "proxy/startup.hpp"
#include "routing/node_choice.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace pglane::proxy {

using protocol::sqlstate::connection_failure;

// ---- servers ----------------------------------------------------------------------------

health::NodeAddress AutoSession::node_address(std::size_t node) const {
    // Slots only ever grow and never change address: any snapshot that has the slot will do.
    return services_.topology()->nodes.at(node).address;
}

ServerConnection* AutoSession::ready_server_now(std::size_t node) {
    if (node >= servers_.size()) return nullptr;
    ServerConnection* server = servers_[node].get();
    if (!server || server->broken() || !server->usable_after_idle() || needs_catch_up(*server)) return nullptr;
    return server;
}

asio::awaitable<std::variant<ServerConnection*, ServerFailure>> AutoSession::ready_server(std::size_t node) {
    if (node >= servers_.size()) servers_.resize(node + 1);
    auto& slot = servers_.at(node);
    // A connection idle since its last unit may have died meanwhile (server restarted or
    // failed over): find out before sending, so the unit goes to a fresh connection instead
    // of failing.
    if (slot && (slot->broken() || !slot->usable_after_idle())) drop_server(node);
    if (!slot && services_.pools) {
        if (auto failure = co_await acquire_server(node)) co_return *failure;
    } else if (!slot) {
        auto server = std::make_unique<ServerConnection>(client_.get_executor(), node, node_address(node),
                                                         services_.config.limits, services_.server_tls());
        if (auto failure = co_await server->open(startup_parameters_, credentials_)) {
            services_.counters.add(node, NodeCounter::server_connect_errors_total);
            log::warn("server_login_failed", {{"session", id_}, {"node", node_address(node).name},
                                              {"sqlstate", failure->sqlstate}, {"error", failure->message}});
            co_return *failure;
        }
        services_.counters.add(node, NodeCounter::sessions_routed_total);
        services_.counters.add(node, NodeCounter::server_connections_active);
        slot = std::move(server);
    }
    // Bring the connection up to date with the session's startup parameters (pooled) and
    // SET history, in one round trip.
    if (std::string catch_up = catch_up_statement(*slot); !catch_up.empty()) {
        HiddenResult result = co_await slot->hidden_query(catch_up);
        if (!result.ok) {
            log::warn("settings_replay_failed", {{"session", id_}, {"node", slot->address().name},
                                                 {"error", result.error.message}});
            slot->mark_broken();
            co_return ServerFailure{std::string(connection_failure),
                                    "pglane: could not apply the session's settings: " + result.error.message};
        }
        slot->applied_startup = startup_settings_;
        slot->settings_applied = settings_.size();
    }
    co_return slot.get();
}

asio::awaitable<std::variant<ServerConnection*, Disconnect>> AutoSession::primary_server(bool wait) {
    // The elected primary may be dead before the health checker has noticed (the gap between
    // a crash and failures_before_down probes): a refused connection then waits for the
    // topology to move on, like a missing primary, within failover.hold_ms.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(services_.config.health.failover.hold_ms);
    asio::steady_timer pause(client_.get_executor());
    for (;;) {
        // Not a ?: around co_await: GCC 12 mishandles temporaries there.
        health::TopologyPtr topology = services_.topology();
        if (wait) topology = co_await await_primary(services_);
        auto primary = routing::choose_primary(*topology);
        if (!primary) {
            services_.counters.add(kind_, ListenerCounter::client_unrouted_total);
            co_return Disconnect::unit_error(connection_failure, routing::describe_unavailable(*topology, true),
                                             "no_primary");
        }
        if (primary_node_ && primary_node_ != primary) follow_new_primary();
        auto ready = co_await ready_server(*primary);
        if (auto* server = std::get_if<ServerConnection*>(&ready)) {
            if (!primary_node_) {
                primary_node_ = primary;
                primary_term_ = topology->primary_term;
            }
            co_return *server;
        }
        const ServerFailure& failure = std::get<ServerFailure>(ready);
        if (failure.sqlstate == protocol::sqlstate::too_many_connections) {
            // The pool stayed full for pool.max_wait_ms: this unit fails, the session goes on.
            co_return Disconnect::unit_error(failure.sqlstate, failure.message, "pool_wait_timeout");
        }
        // 08: the connection failed; 57P: the server is shutting down, crashed or not ready
        // ("terminating connection due to unexpected postmaster exit" from a primary killed
        // while pglane logged in): both mean this primary is going away, not a refusal.
        bool lost = failure.sqlstate.starts_with("08") || failure.sqlstate.starts_with("57P");
        if (!lost || !wait || std::chrono::steady_clock::now() >= deadline) {
            // An authoritative refusal (no such database, role not allowed...) is the client's answer.
            co_return Disconnect{failure.sqlstate, failure.message, lost ? "primary_unreachable" : "server_refused_login",
                                 !lost};
        }
        services_.probe_now();
        pause.expires_after(std::chrono::milliseconds(50));
        co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
    }
}

void AutoSession::follow_new_primary() {
    if (!primary_node_) return;
    if (auto& old = servers_[*primary_node_]; old && !old->broken()) old->mark_broken();
    log::info("session_follows_new_primary", {{"session", id_}, {"old", node_address(*primary_node_).name}});
    primary_node_.reset();
}

ServerConnection* AutoSession::held_primary() const {
    if (!primary_node_ || !servers_[*primary_node_] || servers_[*primary_node_]->broken()) return nullptr;
    return servers_[*primary_node_].get();
}

asio::awaitable<ServerConnection*> AutoSession::primary_or_null() {
    auto primary = co_await primary_server(false);
    auto* server = std::get_if<ServerConnection*>(&primary);
    co_return server ? *server : nullptr;
}

asio::awaitable<void> AutoSession::load_function_catalog() {
    catalog_ = services_.catalogs.find(database_);
    if (catalog_) co_return;
    // pg_proc is replicated: any node will do. The primary's is the freshest (a function
    // changed a moment ago), taken when it costs no new backend: under pooling, or when the
    // session holds a primary connection already. Otherwise a standby, as for a read, so that
    // a session that only reads opens no primary connection for this. A stale catalog errs
    // to the primary: a function it lacks is of unknown volatility.
    const bool primary_first = services_.pools || held_primary();
    const routing::RouteDecision any_standby{routing::Destination::standby, "catalog", routing::RouteReason::function};
    ServerConnection* server = nullptr;
    if (primary_first) server = co_await primary_or_null();
    if (!server) server = co_await choose_standby(any_standby);
    if (!server && !primary_first) server = co_await primary_or_null();
    if (!server) co_return;
    HiddenResult result = co_await server->hidden_query(FunctionCatalogs::load_query);
    // Borrowed for this one question: back to its pool before the unit waits for the
    // connection it runs on, which may be another node's. Held, it deadlocks a full pool:
    // sessions holding n1 for the catalog wait for n2, and those holding n2 wait for n1.
    co_await give_back_between_units(server->node());
    if (!result.ok) co_return;
    auto catalog = std::make_shared<routing::FunctionCatalog>();
    for (const auto& row : result.rows) {
        if (row.size() == 3 && row[0] && row[1] && row[2] && !row[2]->empty())
            catalog->add(*row[0], *row[1], (*row[2])[0]);
    }
    catalog_ = catalog;
    services_.catalogs.store(database_, catalog_);
}

asio::awaitable<bool> AutoSession::standby_has_replayed(ServerConnection& standby) {
    if (router_.write_lsn_unknown()) {
        auto primary = co_await primary_server(false);
        auto* server = std::get_if<ServerConnection*>(&primary);
        // Without a primary (a failover in progress) reads keep going to standbys: the write
        // was acknowledged by a synchronous standby, the best bound left.
        if (!server) co_return true;
        HiddenResult lsn = co_await (*server)->hidden_query("SELECT pg_catalog.pg_current_wal_lsn()");
        // Borrowed for this one question: back to its pool before anything else waits.
        co_await give_back_between_units((*server)->node());
        if (!lsn.ok || lsn.rows.empty() || !lsn.rows[0][0]) co_return false;
        auto parsed = health::parse_lsn(*lsn.rows[0][0]);
        if (!parsed) co_return false;
        router_.write_lsn_known(*parsed);
    }
    if (standby.known_replay_lsn >= router_.write_lsn()) co_return true;
    HiddenResult replay = co_await standby.hidden_query("SELECT pg_catalog.pg_last_wal_replay_lsn()");
    if (!replay.ok || replay.rows.empty() || !replay.rows[0][0]) co_return false;
    standby.known_replay_lsn = health::parse_lsn(*replay.rows[0][0]).value_or(0);
    co_return standby.known_replay_lsn >= router_.write_lsn();
}

asio::awaitable<ServerConnection*> AutoSession::choose_standby(const routing::RouteDecision& decision) {
    auto topology = services_.topology();
    // routing.read_balance session: the standby of the session's earlier reads comes first
    // while it is still routable (and has a weight: a standby of weight 0 only stands in),
    // and the rotation moves on only when a session chooses.
    const bool sticky = services_.config.routing.read_balance == routing::ReadBalance::session && read_standby_ &&
                        *read_standby_ < topology->nodes.size() && topology->nodes[*read_standby_].routable_standby() &&
                        topology->nodes[*read_standby_].address.weight > 0;
    const auto turn = sticky ? 0 : services_.read_only_turn.fetch_add(1, std::memory_order_relaxed);
    // choose_standby runs once at a time per session: candidates_ is only its own.
    routing::read_only_candidates(*topology, turn, false, candidates_);
    if (sticky) {
        auto it = std::find(candidates_.begin(), candidates_.end(), *read_standby_);
        if (it != candidates_.end()) std::rotate(candidates_.begin(), it, candidates_.end());
    }
    for (std::size_t node : candidates_) {
        const health::NodeStatus& status = topology->nodes[node];
        if (max_lag_ms_ >= 0 && status.lag_seconds * 1000.0 > max_lag_ms_) continue;
        ServerConnection* server = ready_server_now(node);
        if (!server) {
            auto ready = co_await ready_server(node);
            auto* opened = std::get_if<ServerConnection*>(&ready);
            if (!opened) continue;
            server = *opened;
        }
        if (decision.needs_replay_check && !co_await standby_has_replayed(*server)) {
            // Behind: not used, so not held while the next candidate (or the primary) is
            // waited for. A pooled session never waits holding a connection another waits for.
            co_await give_back_between_units(node);
            continue;
        }
        read_standby_ = node;
        co_return server;
    }
    co_return nullptr;
}

asio::awaitable<std::variant<ServerConnection*, Disconnect>> AutoSession::choose_server(const Unit& unit) {
    last_reason_ = routing::RouteReason::port;
    if (!deferred_begin_.empty()) {
        last_reason_ = routing::RouteReason::transaction;
        // After BEGIN READ ONLY the first statement keeps the transaction on a standby unless
        // it makes it read-write or serializable, or is known not to run there (a write, or
        // a statement a standby refused before: keep_off_standbys). SETs and other SET
        // TRANSACTION forms run on a standby.
        const routing::Classification* first = unit.statements.empty() ? nullptr : &unit.statements.front();
        const bool stays_read_only = first == nullptr ||
                                     (first->transaction != routing::TransactionControl::set_transaction_primary &&
                                      (first->read_only || first->session_state ||
                                       first->transaction == routing::TransactionControl::other));
        const bool read_only =
            !deferred_serializable_ &&
            (deferred_read_only_ ? stays_read_only
                                 : first && first->transaction == routing::TransactionControl::set_transaction_read_only);
        if (read_only) {
            const routing::RouteDecision decision =
                router_.read_only_transaction(deferred_read_only_ ? "BEGIN READ ONLY" : "SET TRANSACTION READ ONLY");
            if (decision.destination == routing::Destination::standby) {
                ServerConnection* standby = co_await choose_standby(decision);
                if (standby) co_return standby;
            }
        }
        co_return co_await primary_server();
    }
    if (transaction_node_ && status_ != protocol::TransactionStatus::idle) {
        last_reason_ = routing::RouteReason::transaction;
        auto& server = servers_[*transaction_node_];
        if (server && !server->broken()) co_return server.get();
        // Never reopen: a new connection would run the rest outside the transaction.
        co_return Disconnect::unit_error(connection_failure,
                                         fmt::format("pglane: the connection to {} was lost in the middle of a "
                                                     "transaction; the transaction was rolled back, retry it",
                                                     node_address(*transaction_node_).name),
                                         "transaction_server_lost");
    }
    if (pinned_standby_) {
        // A node a reload removed (on_topology says so) is left for another standby here,
        // between units.
        if (std::exchange(pinned_standby_removed_, false)) {
            drop_server(*pinned_standby_);
        } else {
            auto ready = co_await ready_server(*pinned_standby_);
            if (auto* server = std::get_if<ServerConnection*>(&ready)) co_return *server;
        }
        const routing::RouteDecision any_standby{routing::Destination::standby, "ro port", routing::RouteReason::port};
        if (ServerConnection* other = co_await choose_standby(any_standby)) {
            pinned_standby_ = other->node();
            co_return other;
        }
        co_return Disconnect::unit_error(connection_failure, "pglane: no standby is available", "standby_lost");
    }
    if (kind_ == ListenerKind::rw) co_return co_await primary_server();
    if (!unit.complete) {
        // The client waits for results before the rest of this unit (Flush) or the unit is
        // too large to hold: what follows up to Sync is not known yet, so only the primary
        // can be right for it.
        last_reason_ = routing::RouteReason::write;
        co_return co_await primary_server();
    }
    bool calls_functions = false;
    for (const auto& c : unit.statements) calls_functions = calls_functions || !c.functions.empty();
    if (calls_functions && !catalog_) co_await load_function_catalog();
    routed_.clear();
    for (const auto& c : unit.statements) routed_.push_back(&c);
    routing::RouteDecision decision = router_.route(routed_, catalog_.get(), false);
    last_reason_ = decision.category;
    if (decision.destination == routing::Destination::standby) {
        if (ServerConnection* standby = co_await choose_standby(decision)) {
            if (log::level() <= log::Level::debug)
                log::debug("routed", {{"session", id_}, {"node", standby->address().name}, {"reason", decision.reason}});
            co_return standby;
        }
        decision.reason = decision.needs_replay_check ? "read-your-writes: standbys behind" : "no eligible standby";
        last_reason_ = decision.needs_replay_check ? routing::RouteReason::read_your_writes : routing::RouteReason::no_standby;
    }
    if (log::level() <= log::Level::debug)
        log::debug("routed", {{"session", id_}, {"node", "primary"}, {"reason", decision.reason}});
    co_return co_await primary_server();
}

}  // namespace pglane::proxy
