// Running one unit of an AutoSession on a server: statements the node lacks are prepared
// first (injected Parse/Close messages whose answers the client never sees), responses are
// relayed as they arrive, COPY data flows from the client, and a read refused by a standby
// before anything reached the client is re-run on the primary.

#include "common/log.hpp"
#include "protocol/framing.hpp"
#include "proxy/sql_text.hpp"
#include "proxy/auto_session.hpp"
#include "proxy/cancel_registry.hpp"
#include "proxy/statement_names.hpp"
#include "routing/node_choice.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <fmt/format.h>

#include <algorithm>

namespace pglane::proxy {

void Unit::clear(std::size_t keep_bytes) {
    if (bytes.capacity() > keep_bytes) std::string().swap(bytes);
    else bytes.clear();
    statements.clear();
    executed.clear();
    reply_order.clear();
    needs_statement.clear();
    parses.clear();
    closes.clear();
    sql_prepares.clear();
    sql_executes.clear();
    session_sql.clear();
    reparsed.clear();
    runs_statements = ends_with_flush = describes = per_column_formats = simple = complete = terminate = false;
}


using namespace asio::experimental::awaitable_operators;
using protocol::sqlstate::connection_failure;
using protocol::sqlstate::protocol_violation;

namespace {

constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);
// Session SET statements are replayed on every new server connection; past this many the
// session stays on the primary instead of replaying an ever longer history.
constexpr std::size_t max_replayed_settings = 256;
constexpr std::string_view read_only_transaction = "25006";
constexpr std::string_view feature_not_supported = "0A000";
constexpr std::string_view serialization_failure = "40001";
constexpr std::string_view deadlock_detected = "40P01";

// A server refuses to run a prepared statement whose result columns changed under it
// (DDL since it was prepared): PostgreSQL's plancache raises 0A000 with this message.
bool is_stale_plan(const protocol::ErrorFields& error) {
    return error.sqlstate == feature_not_supported && error.message.find("cached plan must not change result type") !=
                                                          std::string::npos;
}

// What a standby answers to a read its primary would run: a write it cannot run (25006: a
// function that claims to read but writes), what recovery forbids (0A000: unlogged and
// temporary relations, serializable transactions), and a read cancelled by a conflict with
// recovery (40001, or 40P01 for a buffer-pin deadlock; in an autocommit read on a standby
// nothing else raises them). Such a read, refused before any result reached the client, runs
// again on the primary.
bool refused_by_a_standby(const protocol::ErrorFields& error) {
    if (error.sqlstate == feature_not_supported) return !is_stale_plan(error);
    return error.sqlstate == read_only_transaction || error.sqlstate == serialization_failure ||
           error.sqlstate == deadlock_detected;
}


// The unit fails, the session goes on (execute() makes it fatal mid-message). `farewell`:
// the FATAL message the server sent before closing, if it sent one.
Disconnect server_lost(const ServerConnection& server, std::string_view farewell = {}) {
    return Disconnect::unit_error(connection_failure,
                                  fmt::format("pglane: lost the connection to server {}{}{}; if a transaction was open "
                                              "it was rolled back",
                                              server.address().name, farewell.empty() ? "" : ": ", farewell),
                                  "server_lost");
}

// The CommandComplete of a BEGIN inside a unit: pgjdbc sends BEGIN (READ ONLY) together with
// a transaction's first query. Held back like a description, so that a refusal of the query
// can still be retried on the primary unseen.
bool begins_a_transaction(const protocol::Frame& frame) {
    if (frame.tag != 'C') return false;
    const std::string_view tag = protocol::as_text(frame.body);
    return tag == std::string_view("BEGIN\0", 6) || tag == std::string_view("START TRANSACTION\0", 18);
}

bool is_fatal(const protocol::ErrorFields& error) {
    return error.severity == "FATAL" || error.severity == "PANIC";
}

}  // namespace

void AutoSession::point_cancel_at(ServerConnection& server) {
    const protocol::BackendKey key = server.backend_key();
    if (!client_key_ || (cancel_key_ && cancel_key_->process_id == key.process_id &&
                         cancel_key_->secret_key == key.secret_key))
        return;
    const health::NodeAddress& address = server.address();
    services_.cancels.update(*client_key_, CancelTarget{address.host, address.port, address.name, key});
    cancel_key_ = key;
}

asio::awaitable<std::optional<Disconnect>> AutoSession::fail_unit(Unit& unit, const Disconnect& why) {
    if (fence_) co_return *fence_;   // fenced mid-unit: the session ends with the reason
    if (why.ends_session) co_return why;
    services_.counters.add(kind_, ListenerCounter::unit_errors_total);
    log::info("unit_failed", {{"session", id_}, {"reason", why.reason}, {"message", why.message}});
    if (!deferred_begin_.empty()) {
        // The BEGIN pglane answered never reached a server: no transaction exists anywhere.
        deferred_begin_.clear();
        status_ = protocol::TransactionStatus::idle;
    }
    if (why.reason == "transaction_server_lost" || why.reason == "server_lost") {
        // The transaction died with its connection: the session is outside any transaction now.
        status_ = protocol::TransactionStatus::idle;
        transaction_node_.reset();
        pending_settings_.clear();
    }
    // As a server does after an error: the error at once (a client that sent Flush waits
    // for it), then the rest of the unit skipped up to Sync, which gets ReadyForQuery.
    std::string out;
    protocol::append_error_response(out, "ERROR", why.sqlstate, why.message);
    if (!unit.complete && !unit.terminate) {
        if (!co_await write_client(out)) co_return Disconnect::quiet("client_disconnected");
        out.clear();
    }
    while (!unit.complete && !unit.terminate) {
        Unit rest;
        if (auto stop = co_await read_unit(rest)) co_return stop;
        unit.complete = rest.complete;
        unit.terminate = rest.terminate;
    }
    protocol::append_ready_for_query(out, status_);
    if (!co_await write_client(out)) co_return Disconnect::quiet("client_disconnected");
    co_return std::nullopt;
}

asio::awaitable<std::optional<Disconnect>> AutoSession::run_unit(Unit& unit) {
    auto chosen = co_await choose_server(unit);
    if (auto* why = std::get_if<Disconnect>(&chosen)) co_return co_await fail_unit(unit, *why);
    ServerConnection* server = std::get<ServerConnection*>(chosen);
    bool on_standby = server->node() != elected_primary();
    services_.counters.add(last_reason_);
    services_.counters.add(server->node(), NodeCounter::units_routed_total);
    services_.counters.add(kind_, on_standby ? ListenerCounter::units_to_standby_total : ListenerCounter::units_to_primary_total);
    routing::PinReason pin_before = router_.pin();
    // A read-only transaction's first unit goes with the BEGIN pglane answered: refused by
    // the standby, the two run again on the primary (the standby's transaction rolled back).
    std::string opened_by = deferred_begin_;
    bool may_retry = on_standby && unit.complete && kind_ == ListenerKind::auto_ &&
                     (status_ == protocol::TransactionStatus::idle || !opened_by.empty());
    const bool replan = may_replan(unit);
    auto outcome = co_await execute(unit, *server, may_retry, replan);
    if (auto* why = std::get_if<Disconnect>(&outcome)) co_return co_await fail_unit(unit, *why);
    if (std::get<Outcome>(outcome) == Outcome::replan) {
        // The pooled statement's plan went stale (DDL): prepare it again and run the unit
        // once more. Nothing reached the client and the failed unit ran in its own implicit
        // transaction, so the second run is the only one that counts.
        log::info("statement_prepared_again", {{"session", id_}, {"node", server->address().name}});
        services_.counters.add(kind_, ListenerCounter::statements_replanned_total);
        prepare_again_next_time(unit, *server);
        outcome = co_await execute(unit, *server, false, false);
        if (auto* why = std::get_if<Disconnect>(&outcome)) co_return co_await fail_unit(unit, *why);
    }
    if (std::get<Outcome>(outcome) == Outcome::retry_on_primary) {
        log::info("read_retried_on_primary",
                  {{"session", id_}, {"standby", server->address().name}, {"sqlstate", retry_sqlstate_}});
        services_.counters.add(kind_, ListenerCounter::read_retries_total);
        if (retry_sqlstate_ == feature_not_supported) keep_off_standbys(unit);
        if (!opened_by.empty()) {   // execute() rolled the standby's transaction back
            deferred_begin_ = std::move(opened_by);
            status_ = protocol::TransactionStatus::in_transaction;
        }
        auto primary = co_await primary_server();
        if (auto* why = std::get_if<Disconnect>(&primary)) co_return co_await fail_unit(unit, *why);
        outcome = co_await execute(unit, *std::get<ServerConnection*>(primary), false);
        if (auto* why = std::get_if<Disconnect>(&outcome)) co_return co_await fail_unit(unit, *why);
    }
    if (pin_before == routing::PinReason::none && router_.pin() != routing::PinReason::none) {
        services_.counters.add(kind_, ListenerCounter::session_pins_total);
        if (services_.pools)
            pool_of(server->node()).stats().pins[static_cast<std::size_t>(router_.pin())].fetch_add(1, std::memory_order_relaxed);
        log::info("session_pinned", {{"session", id_}, {"reason", routing::to_string(router_.pin())}});
    }
    co_return std::nullopt;
}

void AutoSession::keep_off_standbys(const Unit& unit) {
    // What a standby cannot run by its very text (an unlogged or temporary table: 0A000) is
    // remembered in the worker's classification cache: that statement, and every statement
    // of its shape, goes to the primary from now on without a refused attempt first. Only a
    // unit of one statement (besides a BEGIN, as pgjdbc sends one with a read-only
    // transaction's first query) says which statement it was.
    static constexpr std::string_view why = "a standby refused it (0A000)";
    const auto statements = std::count_if(unit.executed.begin(), unit.executed.end(), [](const auto& c) {
        return c.transaction == routing::TransactionControl::none;
    });
    if (statements != 1) return;
    if (unit.simple) {
        if (auto sql = protocol::read_query(protocol::as_bytes(unit.bytes).subspan(5)))
            services_.classifications.mark_not_for_standbys(*sql, why);
        return;
    }
    const std::string* name = nullptr;   // the one statement name the unit Parses and Binds
    for (const auto* names : {&unit.parses, &unit.needs_statement}) {
        for (const std::string& n : *names) {
            if (name && *name != n) return;
            name = &n;
        }
    }
    if (!name) return;
    auto it = statements_.find(*name);
    if (it == statements_.end()) return;
    it->second.classification.read_only = false;
    it->second.classification.reason.assign(why);
    services_.classifications.mark_not_for_standbys(it->second.query, why);
}

asio::awaitable<bool> AutoSession::prepare_sql_statements(const Unit& unit, ServerConnection& server) {
    for (const std::string& name : unit.sql_prepares) {
        if (!server.sql_statements.contains(name)) continue;
        // The node still holds an older definition under this name: drop it first.
        // Named, not a temporary inside co_await: GCC 12 mishandles such temporaries.
        const std::string deallocate = "DEALLOCATE " + quote_identifier(name);
        (void)co_await server.hidden_query(deallocate);
        if (server.broken()) co_return false;
        server.sql_statements.erase(name);
    }
    for (const std::string& name : unit.sql_executes) {
        auto it = sql_statements_.find(name);
        auto held = server.sql_statements.find(name);
        if (it == sql_statements_.end()) {
            // The session dropped it (Close, DEALLOCATE on another node) after this node
            // PREPAREd it: the node drops its copy too, or the name would still run here.
            if (held == server.sql_statements.end()) continue;
            const std::string deallocate = "DEALLOCATE " + quote_identifier(name);
            (void)co_await server.hidden_query(deallocate);
            if (server.broken()) co_return false;
            server.sql_statements.erase(held);
            continue;
        }
        if (held != server.sql_statements.end() && held->second == it->second.version) continue;
        if (held != server.sql_statements.end()) {
            const std::string deallocate = "DEALLOCATE " + quote_identifier(name);
            (void)co_await server.hidden_query(deallocate);
            server.sql_statements.erase(name);
        }
        HiddenResult prepared = co_await server.hidden_query(it->second.definition);
        if (server.broken()) co_return false;
        if (prepared.ok) server.sql_statements[name] = it->second.version;
    }
    co_return true;
}

std::string AutoSession::injections(const Unit& unit, ServerConnection& server) {
    std::string out;
    std::vector<std::string_view> closed;
    // Names here are as servers know them (PreparedStatement::server_name).
    auto close = [&](std::string_view name) {
        if (name.empty() || !server.statements.contains(std::string(name))) return;
        if (std::find(closed.begin(), closed.end(), name) != closed.end()) return;
        protocol::MessageWriter(out, 'C').u8('S').cstring(name);
        close_replies_.push_back(true);
        closed.push_back(name);
    };
    std::vector<std::string_view> injected;
    for (const std::string& name : unit.needs_statement) {
        // A statement this unit DEALLOCATEs and then Parses anew: the DEALLOCATE wants the old one.
        const PreparedStatement* wanted = nullptr;
        for (const Unit::Reparsed& again : unit.reparsed)
            if (again.name == name) wanted = &again.dropped;
        if (!wanted) {
            auto it = statements_.find(name);
            if (it == statements_.end()) continue;   // the server answers "does not exist", as it should
            wanted = &it->second;
        }
        const std::string& server_name = wanted->server_name;
        auto held = server.statements.find(server_name);
        if (held != server.statements.end() && held->second == wanted->version) continue;
        if (std::find(injected.begin(), injected.end(), server_name) != injected.end()) continue;
        close(server_name);
        out += wanted->definition;
        parse_replies_.push_back(true);
        injected.push_back(server_name);
    }
    for (const std::string& name : unit.parses) close(server_name_of(name));
    if (unit.simple && !out.empty()) {
        // A Query cannot follow a Parse without a Sync between them (after an error the
        // server would skip the Query too): these answers end at a ReadyForQuery of their
        // own, and the relay drops them, errors included.
        protocol::append_sync(out);
        parse_replies_.clear();
        close_replies_.clear();
        ++swallow_until_ready_;
        injected_syncs_ = 1;
    }
    return out;
}

void AutoSession::prepare_again_next_time(const Unit& unit, ServerConnection& server) {
    // Version 0 matches no definition: the next unit that needs one of these statements
    // closes and prepares it again on this server.
    for (const std::string& name : unit.needs_statement)
        if (auto held = server.statements.find(server_name_of(name)); held != server.statements.end()) held->second = 0;
}

void AutoSession::expect_replies(const Unit& unit) {
    for (char tag : unit.reply_order) (tag == 'P' ? parse_replies_ : close_replies_).push_back(false);
}

void AutoSession::track_sent(const Unit& unit, ServerConnection& server) {
    for (const std::string& name : unit.needs_statement) {
        if (auto it = statements_.find(name); it != statements_.end())
            server.statements[it->second.server_name] = it->second.version;
    }
    for (const std::string& name : unit.parses) {
        if (auto it = statements_.find(name); it != statements_.end())
            server.statements[it->second.server_name] = it->second.version;
    }
    for (const std::string& name : unit.closes) {
        server.statements.erase(name);
        server.sql_statements.erase(name);   // a Close drops whatever holds the name
    }
}

asio::awaitable<std::variant<AutoSession::Outcome, Disconnect>> AutoSession::execute(Unit& unit, ServerConnection& server,
                                                                                     bool may_retry, bool may_replan) {
    parse_replies_.clear();
    close_replies_.clear();
    unit_failed_ = false;
    retry_sqlstate_.clear();
    client_parses_completed_ = 0;
    // Only this unit's stream can hold a deferred BEGIN's answers: a unit that failed
    // before they came must not make this one's disappear.
    swallow_until_ready_ = 0;
    injected_syncs_ = 0;
    injection_failed_ = false;
    injection_error_.clear();
    protocol::TransactionStatus before = status_;
    // Most units have no SQL PREPARE or EXECUTE: they skip the coroutine (and its frame).
    const bool sql_prepared = unit.sql_prepares.empty() && unit.sql_executes.empty();
    if (!sql_prepared && !co_await prepare_sql_statements(unit, server)) {
        if (may_retry) co_return Outcome::retry_on_primary;
        co_return server_lost(server);
    }
    point_cancel_at(server);
    if (std::string pending = server.take_pending_async(); !pending.empty()) {
        if (!co_await write_client(pending)) co_return Disconnect::quiet("client_disconnected");
    }
    // Under pooling, a unit that only prepares and describes statements (Parse, Describe,
    // Flush: asyncpg's prepare) is ended with a Sync of pglane's own, so the connection is
    // not held while the client thinks; what it sends next is a unit of its own.
    const bool sync_at_flush = services_.pools && !unit.complete && !unit.terminate && unit.ends_with_flush &&
                               !unit.runs_statements && status_ == protocol::TransactionStatus::idle &&
                               deferred_begin_.empty();
    std::string& out = server_out_;
    out.clear();
    if (!deferred_begin_.empty()) {
        out.swap(deferred_begin_);
        deferred_begin_.clear();
        swallow_until_ready_ = 1;
        before = protocol::TransactionStatus::idle;
    }
    if (!unit.needs_statement.empty() || !unit.parses.empty()) out += injections(unit, server);
    out += unit.bytes;
    if (sync_at_flush) protocol::append_sync(out);
    expect_replies(unit);
    track_sent(unit, server);
    server.between_units = false;
    bool sent = false;
    if (!server.write_at_once(out, sent)) sent = co_await server.finish_write();
    if (!sent) {
        if (may_retry) co_return Outcome::retry_on_primary;
        co_return server_lost(server);
    }
    protocol::RelayCursor cursor(services_.config.limits.max_message_bytes, server.in().capacity());
    bool forwarded_any = false;
    bool retrying = false;
    bool holding = may_retry || may_replan;
    bool replanning = false;
    std::string& held = held_descriptions_;  // descriptions kept back while a retry is still possible
    held.clear();
    bool copy_in = false;
    std::string farewell;   // a FATAL the server sent: its connection ends, the session does not
    std::vector<asio::const_buffer>& pieces = client_pieces_;
    for (;;) {
        // 1. Relay what the server has sent, minus the answers to pglane's own messages.
        ByteBuffer& in = server.in();
        pieces.clear();
        renamed_errors_.clear();
        std::size_t span_start = in.begin();
        bool done = false;
        while (!done) {
            protocol::RelayCursor::Step step = cursor.next(in.unread());
            if (step.kind == protocol::RelayCursor::Kind::need_more) break;
            if (step.kind == protocol::RelayCursor::Kind::malformed) {
                server.mark_broken();
                co_return Disconnect{std::string(protocol_violation),
                                     fmt::format("pglane: server {} sent a malformed message", server.address().name),
                                     "server_malformed"};
            }
            if (step.kind == protocol::RelayCursor::Kind::message && swallow_until_ready_ > 0 &&
                (step.frame.tag != 'E' || swallow_until_ready_ <= injected_syncs_)) {
                // The deferred BEGIN's CommandComplete and ReadyForQuery: the client had them.
                // Then the answers to statements pglane put on the node ahead of a Query: a
                // failed one is kept, to stand for the Query's "does not exist" (26000).
                if (step.frame.tag == 'E') {
                    injection_failed_ = true;
                    if (injection_error_.empty()) injection_error_ = protocol::as_text(in.unread().first(step.bytes));
                    log::info("statement_injection_failed", {{"session", id_}, {"node", server.address().name}});
                }
                if (step.frame.tag == 'Z') --swallow_until_ready_;
                if (in.begin() > span_start) pieces.emplace_back(in.data_at(span_start), in.begin() - span_start);
                in.consume(step.bytes);
                span_start = in.begin();
                continue;
            }
            bool swallow = retrying;
            if (holding) {
                // Descriptions come before a statement runs: keep them back until a result
                // shows the standby accepted it, so a refusal can still be retried unseen.
                bool description = step.kind == protocol::RelayCursor::Kind::message &&
                                   (std::string_view("12tTnS").find(step.frame.tag) != std::string_view::npos ||
                                    begins_a_transaction(step.frame));
                bool refusal = step.kind == protocol::RelayCursor::Kind::message && step.frame.tag == 'E';
                if (description) {
                    bool injected_answer = false;
                    if (step.frame.tag == '1' && !parse_replies_.empty()) {
                        injected_answer = parse_replies_.front();
                        parse_replies_.pop_front();
                        if (!injected_answer) ++client_parses_completed_;
                    }
                    if (!injected_answer) held.append(protocol::as_text(in.unread().first(step.bytes)));
                    if (in.begin() > span_start) pieces.emplace_back(in.data_at(span_start), in.begin() - span_start);
                    in.consume(step.bytes);
                    span_start = in.begin();
                    continue;
                }
                if (!refusal) {
                    holding = false;
                    if (in.begin() > span_start) pieces.emplace_back(in.data_at(span_start), in.begin() - span_start);
                    span_start = in.begin();
                    if (!held.empty()) pieces.emplace_back(held.data(), held.size());
                }
            }
            if (step.kind == protocol::RelayCursor::Kind::message) {
                char tag = step.frame.tag;
                if (tag == '1' && !parse_replies_.empty()) {
                    if (!parse_replies_.front()) ++client_parses_completed_;
                    swallow = swallow || parse_replies_.front();
                    parse_replies_.pop_front();
                } else if (tag == '3' && !close_replies_.empty()) {
                    swallow = swallow || close_replies_.front();
                    close_replies_.pop_front();
                } else if (tag == 'E') {
                    auto fields = protocol::read_error_fields(step.frame.body);
                    const bool fatal = fields && is_fatal(*fields);
                    unit_failed_ = unit_failed_ || !fatal;
                    if (fatal) {
                        // The server is closing this connection (terminated, shut down, timed
                        // out) and its EOF follows. Relayed, it would tell the client its own
                        // session is over; it gets pglane's 08006 with the reason instead.
                        farewell = fields->message;
                        swallow = true;
                    } else if (may_retry && !forwarded_any && fields && refused_by_a_standby(*fields)) {
                        retry_sqlstate_ = fields->sqlstate;
                        retrying = true;
                        swallow = true;
                        held.clear();
                    } else if (may_replan && !forwarded_any && fields && is_stale_plan(*fields)) {
                        retrying = true;
                        replanning = true;
                        swallow = true;
                        held.clear();
                    } else if (holding) {
                        holding = false;
                        if (!held.empty()) pieces.emplace_back(held.data(), held.size());
                    }
                    if (!swallow && !injection_error_.empty() && fields &&
                        fields->sqlstate == protocol::sqlstate::invalid_sql_statement_name) {
                        // The statement pglane could not bring to this node: the client gets
                        // why (PostgreSQL's EXECUTE would say the same when it replans), not
                        // that the name is unknown.
                        if (in.begin() > span_start) pieces.emplace_back(in.data_at(span_start), in.begin() - span_start);
                        pieces.emplace_back(injection_error_.data(), injection_error_.size());
                        in.consume(step.bytes);
                        span_start = in.begin();
                        forwarded_any = true;
                        continue;
                    }
                    if (!swallow && services_.pools) {
                        // A pooled server names the client's statements by their pooled names
                        // ("prepared statement ... already exists"): the client reads its own.
                        auto named = with_client_statement_names(
                            step.frame.body, [&](std::string_view pooled) { return client_statement_name(pooled); });
                        if (named) {
                            if (in.begin() > span_start) pieces.emplace_back(in.data_at(span_start), in.begin() - span_start);
                            std::string& renamed = renamed_errors_.emplace_back();
                            protocol::MessageWriter(renamed, 'E').raw(*named);
                            pieces.emplace_back(renamed.data(), renamed.size());
                            in.consume(step.bytes);
                            span_start = in.begin();
                            forwarded_any = true;
                            continue;
                        }
                    }
                } else if (tag == 'G') {
                    copy_in = true;
                } else if (tag == 'Z') {
                    if (auto status = protocol::read_ready_for_query(step.frame.body)) {
                        status_ = *status;
                        server.ready_status = *status;
                    }
                    done = unit.complete || sync_at_flush;
                    if (sync_at_flush) swallow = true;  // the client sent no Sync: no ReadyForQuery
                    // After an error the server skipped to Sync: no more answers are coming.
                    parse_replies_.clear();
                    close_replies_.clear();
                }
            }
            if (swallow) {
                if (in.begin() > span_start) pieces.emplace_back(in.data_at(span_start), in.begin() - span_start);
                in.consume(step.bytes);
                span_start = in.begin();
            } else {
                in.consume(step.bytes);
                forwarded_any = true;
            }
        }
        if (in.begin() > span_start) pieces.emplace_back(in.data_at(span_start), in.begin() - span_start);
        if (!pieces.empty()) {
            Stream::Result written;
            if (!client_.write_at_once(std::span<const asio::const_buffer>(pieces), written))
                written = co_await client_.finish_write();
            if (std::get<0>(written)) co_return Disconnect::quiet("client_disconnected");
        }
        if (done) {
            server.between_units = true;
            if (sync_at_flush) skip_until_sync_ = unit_failed_;
            if (retrying) {
                // The unit opened a transaction there (a BEGIN in it, or the deferred one):
                // it ends before the unit runs again.
                if (status_ != protocol::TransactionStatus::idle && !server.broken()) {
                    HiddenResult rolled_back = co_await server.hidden_query("ROLLBACK");
                    if (!rolled_back.ok) server.mark_broken();
                }
                status_ = before;
                co_return replanning ? Outcome::replan : Outcome::retry_on_primary;
            }
            after_unit(unit, server, before);
            co_return Outcome::done;
        }
        // 2. Messages the client adds to an open unit (after Flush) or COPY data.
        bool client_turn = (!unit.complete && !sync_at_flush) || copy_in;
        if (client_turn) {
            if (auto stop = co_await forward_more_client_messages(unit, server, copy_in)) co_return *stop;
        }
        // 3. Wait for more from the server (and the client, when it is its turn).
        if (client_turn) {
            auto ready = co_await (server.stream().readable() ||
                                   client_.readable());
            if (fence_) {
                server.mark_broken();   // mid-unit: never lent again
                co_return *fence_;
            }
            if (ready.index() == 1) {
                if (!read_client_now()) co_return Disconnect::quiet("client_disconnected");
                continue;
            }
        }
        // What the server still owes: the ReadyForQuery of each Sync pglane added, then the
        // unit's own (none when it ends at a Flush: the server answers and waits unseen).
        const std::size_t owed = !cursor.in_passthrough() && (unit.complete || sync_at_flush)
                                     ? static_cast<std::size_t>(swallow_until_ready_) + 1
                                     : 0;
        if (!co_await server.read_more(owed)) {
            if (may_retry && !forwarded_any) co_return Outcome::retry_on_primary;
            Disconnect why = server_lost(server, farewell);
            // Half a message reached the client, or it is still sending the unit: no way to
            // put the stream back in order but to end the session.
            why.ends_session = cursor.in_passthrough() || copy_in;
            co_return why;
        }
    }
}

asio::awaitable<std::optional<Disconnect>> AutoSession::forward_more_client_messages(Unit& unit, ServerConnection& server,
                                                                                    bool& copy_in) {
    client_in_.compact();
    std::string out;
    for (;;) {
        protocol::Frame frame = protocol::frame_message(client_in_.unread(), services_.config.limits.max_message_bytes);
        if (frame.status == protocol::FrameStatus::malformed) co_return malformed_message(frame);
        if (frame.status == protocol::FrameStatus::need_more) {
            if (frame.header_known()) client_in_.reserve_frame(frame.size);
            break;
        }
        protocol::Bytes raw = client_in_.unread().first(frame.size);
        if (copy_in) {
            out.append(protocol::as_text(raw));
            if (frame.tag == 'c' || frame.tag == 'f') {
                copy_in = false;
                // A COPY started by the extended protocol ends at the client's next Sync
                // (the server ignored the one sent with the Execute).
                if (!unit.simple) unit.complete = false;
            }
        } else {
            Unit more;
            if (auto stop = take_client_message(more, frame.tag, frame.body, raw)) co_return stop;
            if (more.terminate) {
                client_terminated_ = true;
                unit.terminate = true;
            }
            out += injections(more, server);
            out += more.bytes;
            expect_replies(more);
            track_sent(more, server);
            for (auto& c : more.statements) unit.statements.push_back(std::move(c));
            for (auto& c : more.executed) unit.executed.push_back(std::move(c));
            for (auto& s : more.session_sql) unit.session_sql.push_back(std::move(s));
            for (auto& name : more.parses) unit.parses.push_back(std::move(name));   // in the order sent
            unit.complete = unit.complete || more.complete;
        }
        client_in_.consume(frame.size);
        if (unit.complete && !copy_in) break;
    }
    if (!out.empty() && !co_await server.write(out)) co_return server_lost(server);
    co_return std::nullopt;
}

// ---- what a finished unit did to the session --------------------------------------------

void AutoSession::after_unit(const Unit& unit, ServerConnection& server, protocol::TransactionStatus before) {
    routed_.clear();
    for (const auto& c : unit.executed) routed_.push_back(&c);
    router_.completed(routed_, server.node() == elected_primary());
    transaction_node_ = status_ != protocol::TransactionStatus::idle ? std::optional(server.node()) : std::nullopt;
    if (unit_failed_) {
        // After an error the server skipped the rest of the unit up to Sync: a Parse sent
        // there may or may not have run. Version 0 matches no definition, so the next use
        // closes and prepares the statement again.
        for (const std::string& name : unit.parses)
            if (auto held = server.statements.find(server_name_of(name)); held != server.statements.end()) held->second = 0;
        // The client's Parses answered by ParseComplete ran; the server skipped the rest, so
        // those statements do not exist (a Bind of one gets 26000, a new Parse of the name
        // succeeds), as on a server of its own.
        for (std::size_t i = client_parses_completed_; i < unit.parses.size(); ++i) statements_.erase(unit.parses[i]);
    }
    if (unit_failed_ || injection_failed_) prepare_again_next_time(unit, server);
    remember_settings(unit, server, before);
    remember_sql_statements(unit, server);
    if (router_.pin() != routing::PinReason::none && server.node() != elected_primary()) {
        // A pin that happened on a standby (e.g. LISTEN) cannot be honoured on the primary.
        log::warn("pinned_on_standby", {{"session", id_}, {"node", server.address().name}});
    }
}

void AutoSession::remember_settings(const Unit& unit, ServerConnection& server, protocol::TransactionStatus before) {
    bool discard_all = std::any_of(unit.executed.begin(), unit.executed.end(),
                                   [](const routing::Classification& c) { return c.discard_all; });
    if (discard_all && !unit_failed_) {
        settings_.clear();
        pending_settings_.clear();
        statements_.clear();
        sql_statements_.clear();
        for (auto& other : servers_) {
            if (other && other.get() != &server) other->mark_broken();  // reopened fresh when needed
        }
        server.settings_applied = 0;
        server.statements.clear();
        server.sql_statements.clear();
        return;
    }
    bool in_transaction = status_ != protocol::TransactionStatus::idle;
    if (in_transaction && std::any_of(unit.executed.begin(), unit.executed.end(), [](const routing::Classification& c) {
            return c.transaction == routing::TransactionControl::savepoint;
        }))
        savepoint_in_transaction_ = true;
    if (!unit.session_sql.empty() && !unit_failed_) {
        bool only_settings = std::all_of(unit.executed.begin(), unit.executed.end(), [](const routing::Classification& c) {
            return c.session_state || (c.parsed && c.read_only && c.functions.empty());
        });
        // A SET sharing a Query string with a write cannot be replayed without the write.
        if (!only_settings) router_.pin(routing::PinReason::other);
        auto& target = in_transaction || before != protocol::TransactionStatus::idle ? pending_settings_ : settings_;
        target.insert(target.end(), unit.session_sql.begin(), unit.session_sql.end());
        if (&target == &settings_) server.settings_applied = settings_.size();
    }
    if (!in_transaction && !pending_settings_.empty()) {
        // The transaction ended: its SETs stand only if it committed.
        bool committed = !unit_failed_ && before == protocol::TransactionStatus::in_transaction &&
                         std::any_of(unit.executed.begin(), unit.executed.end(), [](const routing::Classification& c) {
                             return c.transaction == routing::TransactionControl::commit;
                         });
        // A ROLLBACK TO SAVEPOINT may have undone some of them: pglane does not model
        // savepoints, so such a session keeps its SETs on the primary only.
        if (committed && savepoint_in_transaction_) {
            committed = false;
            router_.pin(routing::PinReason::other);
        }
        if (committed) {
            settings_.insert(settings_.end(), pending_settings_.begin(), pending_settings_.end());
            server.settings_applied = settings_.size();
        }
        pending_settings_.clear();
    }
    if (!in_transaction) savepoint_in_transaction_ = false;
    if (settings_.size() > max_replayed_settings) router_.pin(routing::PinReason::other);
}

void AutoSession::remember_sql_statements(const Unit& unit, ServerConnection& server) {
    if (unit_failed_) return;
    for (const auto& c : unit.executed) {   // a Parse of a DEALLOCATE alone drops nothing
        if (c.deallocate_all) {
            // DEALLOCATE ALL drops protocol-level statements too.
            sql_statements_.clear();
            server.sql_statements.clear();
            statements_.clear();
            server.statements.clear();
        } else if (!c.deallocate_name.empty()) {
            sql_statements_.erase(c.deallocate_name);
            server.sql_statements.erase(c.deallocate_name);
            // SQL and protocol-level statements share one namespace: a DEALLOCATE that
            // succeeded may have dropped a statement the client Parsed.
            if (auto it = statements_.find(c.deallocate_name); it != statements_.end()) {
                server.statements.erase(it->second.server_name);
                statements_.erase(it);
            }
        }
    }
    // What the unit Parsed after such a DEALLOCATE is held from now on, on this server too.
    for (const Unit::Reparsed& again : unit.reparsed) {
        server.statements.erase(again.dropped.server_name);
        server.statements[again.statement.server_name] = again.statement.version;
        statements_[again.name] = again.statement;
    }
    if (unit.sql_prepares.empty()) return;
    if (!unit.simple || unit.statements.size() != 1 || unit.statements.front().statement_count != 1) {
        router_.pin(routing::PinReason::other);  // a PREPARE inside a longer string cannot be replayed alone
        return;
    }
    const routing::Classification& c = unit.statements.front();
    auto query = protocol::read_query(protocol::as_bytes(unit.bytes).subspan(5));
    PreparedStatement& statement = sql_statements_[c.prepare_name];
    statement.definition = query ? std::string(*query) : std::string();
    statement.version = next_version_++;
    statement.classification = c;
    server.sql_statements[c.prepare_name] = statement.version;
}

}  // namespace pglane::proxy
