// An AutoSession under transaction pooling (pool.mode = transaction): it borrows a server
// connection for each transaction or autocommit unit and gives it back clean. What makes
// the session look like one server connection to its client:
// - startup parameters are applied with set_config() on each borrowed connection whose
//   current ones differ (pooled connections log in with the user and database only);
// - SET values are replayed before the client's statements (ready_server) and undone with
//   RESET ALL before the connection goes back; SQL-level PREPAREd statements deallocated;
// - named protocol-level statements are prepared under pooled names (statement_names.hpp)
//   and stay on the connection for the next client running the same statement;
// - a session holding what cannot move (temporary tables, LISTEN, session advisory locks,
//   WITH HOLD cursors...) keeps its connections until it ends;
// - cancel requests reach only the connection running the client's statement right now.

#include "common/log.hpp"
#include "proxy/auto_session.hpp"
#include "proxy/cancel_registry.hpp"
#include "proxy/sql_text.hpp"
#include "proxy/statement_names.hpp"
#include "routing/node_choice.hpp"

#include <fmt/format.h>

namespace pglane::proxy {

namespace {

// Startup parameters that are not settings: they pick the session or the protocol.
bool is_login_parameter(std::string_view name) {
    return name == "user" || name == "database" || name == "replication" || name == "options" ||
           name.starts_with("_pq_.");
}

// The "options" startup parameter as PostgreSQL splits it: whitespace separates arguments,
// a backslash makes the next character literal.
std::vector<std::string> split_options(std::string_view options) {
    std::vector<std::string> out;
    std::string current;
    bool in_argument = false;
    for (std::size_t i = 0; i < options.size(); ++i) {
        char c = options[i];
        if (c == '\\' && i + 1 < options.size()) {
            current.push_back(options[++i]);
            in_argument = true;
        } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            if (in_argument) out.push_back(std::move(current));
            current.clear();
            in_argument = false;
        } else {
            current.push_back(c);
            in_argument = true;
        }
    }
    if (in_argument) out.push_back(std::move(current));
    return out;
}

}  // namespace

std::optional<Disconnect> AutoSession::prepare_pooled_startup() {
    std::vector<std::pair<std::string, std::string>> settings;
    for (const auto& [name, value] : startup_parameters_) {
        if (name == "replication") {
            return Disconnect{std::string(protocol::sqlstate::feature_not_supported),
                              "pglane: replication connections cannot use transaction pooling", "replication_refused"};
        }
        if (!is_login_parameter(name)) settings.emplace_back(name, value);
    }
    for (const auto& [name, value] : startup_parameters_) {
        if (name != "options") continue;
        // "-c name=value", "-cname=value" and "--name=value" are settings; other backend
        // switches only exist at connection start, which a pooled connection is past.
        std::vector<std::string> arguments = split_options(value);
        for (std::size_t i = 0; i < arguments.size(); ++i) {
            std::string setting;
            if (arguments[i] == "-c" && i + 1 < arguments.size()) setting = arguments[++i];
            else if (arguments[i].starts_with("-c")) setting = arguments[i].substr(2);
            else if (arguments[i].starts_with("--")) setting = arguments[i].substr(2);
            auto equals = setting.find('=');
            if (setting.empty() || equals == std::string::npos || equals == 0) {
                return Disconnect{std::string(protocol::sqlstate::feature_not_supported),
                                  fmt::format("pglane: under transaction pooling the \"options\" startup parameter may "
                                              "only hold -c name=value settings (got \"{}\")",
                                              arguments[i]),
                                  "startup_options_refused"};
            }
            std::string name = setting.substr(0, equals);
            std::replace(name.begin(), name.end(), '-', '_');
            settings.emplace_back(std::move(name), setting.substr(equals + 1));
        }
    }
    startup_settings_.clear();
    for (const auto& [name, value] : settings) {
        startup_settings_ += startup_settings_.empty() ? "SELECT " : ", ";
        startup_settings_ += fmt::format("pg_catalog.set_config({}, {}, false)", quote_literal(name), quote_literal(value));
    }
    return std::nullopt;
}

asio::awaitable<std::optional<Disconnect>> AutoSession::greet_from_pool(const health::Topology& topology,
                                                                        bool& greeted) {
    // A client whose startup parameters an earlier client of the same pool had is greeted
    // with the values that client got: a thousand clients connecting at once do not queue
    // for server connections just to be told the server's version.
    std::optional<std::size_t> node;
    if (kind_ == ListenerKind::ro) {
        auto turn = services_.read_only_turn.fetch_add(1, std::memory_order_relaxed);
        auto candidates = routing::read_only_candidates(topology, turn, services_.config.ro_fallback_to_primary);
        if (!candidates.empty()) node = candidates.front();
    } else {
        node = routing::choose_primary(topology);
    }
    if (!node) co_return std::nullopt;
    const ServerPool::Greeting* parameters = pool_of(*node).greeting(startup_settings_);
    if (!parameters) co_return std::nullopt;
    if (kind_ == ListenerKind::ro) pinned_standby_ = node;
    greeted = true;
    co_return co_await greet_remembered(*parameters, *node);
}

ServerPool& AutoSession::pool_of(std::size_t node) {
    if (pools_.size() <= node) pools_.resize(node + 1, nullptr);
    if (!pools_[node]) pools_[node] = &services_.pools->pool(node, database_, user_);
    return *pools_[node];
}

asio::awaitable<std::optional<ServerFailure>> AutoSession::acquire_server(std::size_t node) {
    ServerPool& pool = pool_of(node);
    auto lent = co_await services_.pools->checkout(pool, credentials_);
    if (auto* failure = std::get_if<ServerFailure>(&lent)) {
        log::warn("pool_checkout_failed", {{"session", id_}, {"node", node_address(node).name},
                                           {"sqlstate", failure->sqlstate}, {"error", failure->message}});
        co_return *failure;
    }
    std::unique_ptr<ServerConnection>& slot = servers_[node];
    slot = std::move(std::get<std::unique_ptr<ServerConnection>>(lent));
    // The last borrower's SETs and SQL-level statements were undone when it gave this back.
    slot->settings_applied = 0;
    co_return std::nullopt;
}

bool AutoSession::needs_catch_up(const ServerConnection& server) const {
    return (services_.pools && server.applied_startup != startup_settings_) || server.settings_applied < settings_.size();
}

std::string AutoSession::catch_up_statement(const ServerConnection& server) const {
    std::string sql;
    if (services_.pools && server.applied_startup != startup_settings_) {
        // Another client's startup parameters are in force: back to the defaults first.
        if (!server.applied_startup.empty()) sql = "RESET ALL;";
        if (!startup_settings_.empty()) sql += startup_settings_ + ";";
    }
    for (std::size_t i = server.settings_applied; i < settings_.size(); ++i) sql += settings_[i] + ";";
    return sql;
}

bool AutoSession::keeps_connections() const {
    // A session that read-write routing pinned to the primary can still share connections;
    // one whose state lives in its server session cannot.
    routing::PinReason pin = router_.pin();
    return pin != routing::PinReason::none && pin != routing::PinReason::session_read_write_default;
}

bool AutoSession::may_replan(const Unit& unit) const {
    // Only a unit that runs alone in its own implicit transaction can be run twice, and only
    // for a client that reads the result's new shape (a Describe, one format rule for every
    // column). Others get the 0A000, as from PostgreSQL itself, and prepare again themselves
    // (asyncpg, for one, does).
    return services_.pools && unit.complete && !unit.needs_statement.empty() && unit.describes &&
           !unit.per_column_formats && status_ == protocol::TransactionStatus::idle && deferred_begin_.empty();
}

asio::awaitable<void> AutoSession::release_servers() {
    if (status_ != protocol::TransactionStatus::idle || !deferred_begin_.empty() || keeps_connections()) co_return;
    bool any = false;
    for (std::size_t node = 0; node < servers_.size(); ++node) {
        if (!servers_[node]) continue;
        any = true;
        co_await give_back(node);
    }
    if (any && client_key_ && cancel_key_) {
        // A cancel arriving now has no statement of this client's to stop.
        services_.cancels.update(*client_key_, CancelTarget{});
        cancel_key_.reset();
    }
}

asio::awaitable<void> AutoSession::give_back_between_units(std::size_t node) {
    // Only what release_servers() would give back at the end of the unit: nothing inside a
    // transaction or of a session whose state lives in its connections.
    if (!services_.pools || !servers_[node] || status_ != protocol::TransactionStatus::idle || !deferred_begin_.empty() ||
        keeps_connections())
        co_return;
    co_await give_back(node);
}

asio::awaitable<void> AutoSession::give_back(std::size_t node) {
    std::unique_ptr<ServerConnection>& slot = servers_[node];
    ServerConnection& server = *slot;
    if (!server.broken() && server.between_units && server.ready_status == protocol::TransactionStatus::idle) {
        std::string reset;
        if (server.settings_applied > 0) reset = "SET SESSION AUTHORIZATION DEFAULT;RESET ALL;";
        for (const auto& [name, version] : server.sql_statements) reset += "DEALLOCATE " + quote_identifier(name) + ";";
        if (!reset.empty()) {
            HiddenResult result = co_await server.hidden_query(reset);
            if (!result.ok) {
                log::warn("pool_reset_failed", {{"session", id_}, {"node", server.address().name},
                                                {"error", result.error.message}});
                server.mark_broken();
            }
            if (server.settings_applied > 0) server.applied_startup.clear();
            server.settings_applied = 0;
            server.sql_statements.clear();
        }
        server.statements.erase("");   // the unnamed statement is this client's alone
        server.drop_pending_async();
    }
    // A connection that is broken, mid-unit or inside a transaction is closed by the pool.
    services_.pools->checkin(pool_of(node), std::move(slot));
}

void AutoSession::drop_server(std::size_t node) {
    std::unique_ptr<ServerConnection>& slot = servers_[node];
    if (!slot) return;
    if (services_.pools) {
        services_.pools->retire(pool_of(node), std::move(slot));
        return;
    }
    services_.counters.add(node, NodeCounter::server_connections_active, -1);
    slot.reset();
}

const std::string& AutoSession::server_name_of(const std::string& client_name) const {
    auto it = statements_.find(client_name);
    return it != statements_.end() ? it->second.server_name : client_name;
}

bool AutoSession::append_client_message(Unit& unit, char tag, protocol::Bytes body, protocol::Bytes raw,
                                        std::string_view client_name) {
    if (!client_name.empty()) {
        auto it = statements_.find(std::string(client_name));
        if (it != statements_.end() && it->second.server_name != client_name)
            return append_renamed(unit.bytes, tag, body, it->second.server_name);
    }
    // Unnamed and unknown statements go as they came ("does not exist" is the server's answer).
    unit.bytes.append(protocol::as_text(raw));
    return true;
}

}  // namespace pglane::proxy
