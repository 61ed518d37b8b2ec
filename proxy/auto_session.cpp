#include "proxy/sql_text.hpp"
#include "proxy/auto_session.hpp"

#include "common/log.hpp"
#include "health/probe.hpp"
#include "proxy/admin_console.hpp"
#include "proxy/cancel_registry.hpp"
#include "proxy/client_auth.hpp"
#include "proxy/function_catalogs.hpp"
#include "proxy/greeting_cache.hpp"
#include "proxy/peer_waits.hpp"
#include "proxy/startup.hpp"
#include "proxy/statement_names.hpp"
#include "routing/node_choice.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <fmt/format.h>

namespace pglane::proxy {

using namespace asio::experimental::awaitable_operators;
using protocol::sqlstate::admin_shutdown;
using protocol::sqlstate::connection_failure;
using protocol::sqlstate::protocol_violation;

namespace {

constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);
// Client input starts small (10,000 idle clients) and grows while a client keeps it full
// (up to client_buffer_max_bytes, auto_session.hpp).
constexpr std::size_t client_buffer_bytes = 1024;


constexpr std::size_t max_held_unit_bytes = 1024 * 1024;


routing::Classification unknown_statement(std::string reason) {
    routing::Classification c;
    c.parsed = false;
    c.reason = std::move(reason);
    return c;
}

}  // namespace

AutoSession::AutoSession(StreamSocket client, ListenerKind kind, SessionServices& services)
    : services_(services),
      kind_(kind),
      id_(services.next_session_id++),
      client_(std::move(client)),
      client_in_(client_buffer_bytes),
      peer_(describe_peer(client_.socket())),
      router_(services.config.routing),
      fence_timer_(client_.get_executor()) {
    boost::system::error_code ignored;
    client_.socket().set_option(tcp::no_delay(true), ignored);
    // Reads after a wake-up must never wait: a wake can be a cancellation (fence()).
    client_.set_non_blocking();
    servers_.resize(services_.topology()->nodes.size());   // grows when a reload adds nodes
    services_.registry.add(this);
    services_.counters.add(kind_, ListenerCounter::client_connections_total);
    services_.counters.add(kind_, ListenerCounter::client_connections_active);
}

AutoSession::~AutoSession() {
    services_.registry.remove(this);
    services_.counters.add(kind_, ListenerCounter::client_connections_active, -1);
    for (auto& server : servers_) {
        if (server) services_.counters.add(server->node(), NodeCounter::server_connections_active, -1);
    }
    if (client_key_) services_.cancels.remove(*client_key_);
}

void AutoSession::fence(Disconnect why) {
    if (fence_) return;
    fence_ = std::move(why);
    fence_timer_.cancel();
    // A session inside a unit (a long query, a server that stopped answering, a client that
    // stopped reading) ends now too: its pending reads and writes are aborted, the
    // connections they were on are not lent again, and serve() returns the fence.
    for (auto& server : servers_) {
        if (server) server->stream().cancel();
    }
    client_.cancel();
}

void AutoSession::drain(Disconnect why) {
    if (drain_ || fence_) return;
    drain_ = std::move(why);
    // An idle session notices at once (read_unit), a busy one after its unit.
    fence_timer_.cancel();
    if (waiting_idle_) client_.cancel();
}

void AutoSession::on_topology(const health::Topology& topology) {
    close_removed_nodes(topology);
    if (!primary_node_ || !servers_[*primary_node_]) return;
    if (topology.primary == primary_node_ && topology.primary_term == primary_term_) return;
    routing::PinReason pin = router_.pin();
    bool state_lost = pin == routing::PinReason::temporary_table || pin == routing::PinReason::listen ||
                      pin == routing::PinReason::advisory_lock || pin == routing::PinReason::with_hold_cursor;
    if (!state_lost) {
        // SET values and prepared statements are replayed on the new primary: the session
        // keeps its socket. A unit running on the old primary fails with an error.
        services_.counters.add(kind_, ListenerCounter::sessions_moved_total);
        follow_new_primary();
        return;
    }
    std::string now = topology.primary ? topology.nodes.at(*topology.primary).address.name : std::string("none");
    services_.counters.add(kind_, ListenerCounter::sessions_fenced_total);
    fence({std::string(admin_shutdown),
           fmt::format("pglane: the primary changed ({} is no longer the elected primary; now: {}) and this "
                       "session held state that cannot move ({}); reconnect",
                       node_address(*primary_node_).name, now, routing::to_string(pin)),
           "primary_changed"});
}

void AutoSession::close_removed_nodes(const health::Topology& topology) {
    // An ro session moves off its standby at its next unit (choose_server): the unit path then
    // reads a flag, not the topology.
    if (pinned_standby_ && *pinned_standby_ < topology.nodes.size() && topology.nodes[*pinned_standby_].retired)
        pinned_standby_removed_ = true;
    // Session mode, between units and outside a transaction: the coroutine waits on its
    // client, not on any server, so connections to nodes a reload removed can go now. (Pooled
    // sessions hold none between units; the primary's own change is handled below.)
    if (services_.pools || in_unit_ || status_ != protocol::TransactionStatus::idle || !deferred_begin_.empty()) return;
    for (std::size_t node = 0; node < servers_.size() && node < topology.nodes.size(); ++node) {
        if (!servers_[node] || !topology.nodes[node].retired || node == primary_node_) continue;
        servers_[node]->terminate();
        drop_server(node);
    }
}

std::optional<std::size_t> AutoSession::elected_primary() const {
    return routing::choose_primary(*services_.topology());
}

const routing::Classification& AutoSession::classify(std::string_view sql) {
    routing::ClassificationCache& cache = services_.classifications;
    std::uint64_t misses = cache.misses();
    std::uint64_t nanoseconds = cache.parse_nanoseconds();
    const routing::Classification& c = cache.classify(sql);
    if (cache.misses() == misses) {
        services_.counters.add(kind_, ListenerCounter::classification_cache_hits_total);
    } else {
        services_.counters.add(kind_, ListenerCounter::classification_cache_misses_total);
        services_.counters.add(kind_, ListenerCounter::classification_parse_nanoseconds_total,
                               static_cast<std::int64_t>(cache.parse_nanoseconds() - nanoseconds));
    }
    return c;
}

asio::awaitable<bool> AutoSession::write_client(std::string_view bytes) {
    auto [ec, n] = co_await client_.write(bytes);
    co_return !ec;
}

// ---- lifecycle --------------------------------------------------------------------------

// run() stays small: its frame lives as long as the session (10,000 idle clients), so the
// startup deadline and the farewell's timer live in frames of their own.
asio::awaitable<void> AutoSession::run() {
    std::optional<Disconnect> why;
    try {
        asio::awaitable<std::optional<Disconnect>> phase = startup();
        why = co_await within_startup_deadline(std::move(phase), services_, kind_);
        if (!why) why = co_await serve();
    } catch (const std::exception& e) {
        why = Disconnect{std::string(protocol::sqlstate::internal_error), "pglane: internal error", e.what()};
    }
    co_await finish(*why);
}

asio::awaitable<void> AutoSession::finish(Disconnect why_value) {
    const Disconnect* why = &why_value;
    if (!why->sqlstate.empty() && client_.is_open()) {
        std::string error;
        protocol::append_error_response(error, "FATAL", why->sqlstate, why->message);
        asio::steady_timer timer(client_.get_executor());
        timer.expires_after(std::chrono::seconds(1));
        co_await (client_.write(error) || timer.async_wait(use_nothrow));
    }
    // Pooled connections the session leaves clean go back to their pool; the rest close.
    if (services_.pools) co_await release_servers();
    for (std::size_t node = 0; node < servers_.size(); ++node) {
        if (services_.pools && servers_[node]) drop_server(node);
    }
    for (auto& server : servers_) {
        if (server) server->terminate();
    }
    client_.close();
    bool expected = why->sqlstate.empty() && (why->reason == "client_terminated" || why->reason == "cancel_request");
    auto fields = {log::Field{"session", id_},          log::Field{"listener", to_string(kind_)},
                   log::Field{"client", peer_},         log::Field{"user", user_},
                   log::Field{"reason", why->reason},   log::Field{"sqlstate", why->sqlstate.empty() ? "-" : why->sqlstate},
                   log::Field{"message", why->message}};
    log::write(expected ? log::Level::debug : log::Level::info, "session_closed", fields);
}

// A connection that has sent nothing yet waits in this small frame, not in the startup
// reader's or the login's (they cost about 3 KiB more per connection: bench/README.md,
// idle-tcp).
asio::awaitable<std::optional<Disconnect>> AutoSession::startup() {
    if (client_in_.unread().empty()) {
        auto [ec] = co_await client_.readable();
        if (ec) co_return Disconnect::quiet("client_left_during_startup");
    }
    ClientStartup startup = co_await read_client_startup(client_, client_in_, services_, kind_, peer_);
    if (startup.stop) co_return startup.stop;
    co_return co_await login(std::move(startup.packet));
}

asio::awaitable<std::optional<Disconnect>> AutoSession::login(protocol::StartupPacket packet) {
    startup_parameters_ = packet.parameters;
    user_ = std::string(packet.parameter("user"));
    database_ = std::string(packet.parameter("database"));
    if (database_.empty()) database_ = user_;
    if (services_.pools) {
        if (auto refused = prepare_pooled_startup()) co_return refused;
    }
    auto topology = services_.topology();
    std::optional<health::NodeAddress> primary_address;
    if (auto primary = routing::choose_primary(*topology)) primary_address = topology->nodes[*primary].address;
    ClientAuthResult auth = co_await authenticate_client(client_, client_in_, *services_.secrets, user_,
                                                         primary_address, services_.config.limits,
                                                         services_.server_tls());
    if (auth.stop) co_return auth.stop;
    credentials_ = std::move(auth.credentials);
    std::string ok;
    protocol::append_authentication(ok, protocol::auth_ok);
    if (!co_await write_client(ok)) co_return Disconnect::quiet("client_left_during_auth");
    if (services_.admin && database_ == admin::console_database) {
        if (!services_.admin->is_admin(user_)) {
            co_return Disconnect{"42501", fmt::format("pglane: user \"{}\" may not use the admin console (admin.users)", user_),
                                 "not_admin"};
        }
        admin_ = true;
        co_return co_await greet_admin();
    }

    // Without pooling, an auto session whose startup packet the primary greeted lately is
    // greeted as it was then, and connects to the primary when it first needs it.
    bool greeted = false;
    auto stop = co_await greet_from_cache(*topology, greeted);
    if (greeted || stop) co_return stop;

    // Under transaction pooling, a greeting another client of the pool got will do; while
    // one client fetches it, the others wait for it (bounded by the startup deadline).
    struct GreetingFetch {
        ServerPool* pool = nullptr;
        std::string settings;
        ~GreetingFetch() {
            if (pool) pool->end_greeting_fetch(settings);
        }
    } fetch;
    while (services_.pools) {
        stop = co_await greet_from_pool(*topology, greeted);
        if (greeted || stop) co_return stop;
        auto primary = routing::choose_primary(*topology);
        if (kind_ == ListenerKind::ro || !primary) break;
        ServerPool& pool = pool_of(*primary);
        if (pool.begin_greeting_fetch(startup_settings_)) {
            fetch.pool = &pool;
            fetch.settings = startup_settings_;
            break;
        }
        co_await pool.wait_for_greeting(std::chrono::milliseconds(200));
        topology = services_.topology();
    }
    // The greeting (ParameterStatus values) comes from the node the session starts on.
    ServerConnection* first = nullptr;
    if (kind_ == ListenerKind::ro) {
        auto turn = services_.read_only_turn.fetch_add(1, std::memory_order_relaxed);
        for (std::size_t node : routing::read_only_candidates(*topology, turn, services_.config.ro_fallback_to_primary)) {
            auto ready = co_await ready_server(node);
            if (auto* server = std::get_if<ServerConnection*>(&ready)) {
                first = *server;
                pinned_standby_ = node;
                break;
            }
        }
        if (!first) {
            services_.counters.add(kind_, ListenerCounter::client_unrouted_total);
            co_return Disconnect{std::string(connection_failure), routing::describe_unavailable(*topology, false), "no_node"};
        }
    } else {
        // The greeting comes from the primary when it answers now; during a failover an auto
        // session starts on a standby instead (its reads work at once; its first write waits
        // for the new primary), and a rw session waits for the primary.
        auto primary = co_await primary_server(false);
        if (auto* server = std::get_if<ServerConnection*>(&primary)) {
            first = *server;
            remember_greeting(*first);
        }
        if (!first && kind_ == ListenerKind::auto_ && std::get<Disconnect>(primary).ends_session == false) {
            const routing::RouteDecision any_standby{routing::Destination::standby, "greeting", routing::RouteReason::port};
            first = co_await choose_standby(any_standby);
        }
        if (!first && std::get<Disconnect>(primary).ends_session == false) {
            primary = co_await primary_server(true);
            if (auto* server = std::get_if<ServerConnection*>(&primary)) first = *server;
        }
        if (!first) {
            Disconnect why = std::get<Disconnect>(primary);
            why.ends_session = true;  // no session yet to go on with
            co_return why;
        }
    }
    co_return co_await greet(*first);
}

bool AutoSession::greets_from_cache() const {
    if (kind_ != ListenerKind::auto_ || services_.pools || !services_.greetings) return false;
    // A replication connection is a walsender on the primary from its first message.
    return std::none_of(startup_parameters_.begin(), startup_parameters_.end(),
                        [](const auto& parameter) { return parameter.first == "replication"; });
}

asio::awaitable<std::optional<Disconnect>> AutoSession::greet_from_cache(const health::Topology& topology,
                                                                         bool& greeted) {
    if (!greets_from_cache()) co_return std::nullopt;
    auto primary = routing::choose_primary(topology);
    if (!primary) co_return std::nullopt;
    const std::string key = GreetingCache::key(topology.nodes[*primary].address.name, startup_parameters_);
    const GreetingCache::Parameters* parameters = services_.greetings->find(key, GreetingCache::Clock::now());
    if (!parameters) co_return std::nullopt;
    greeted = true;
    co_return co_await greet_remembered(*parameters, *primary);
}

asio::awaitable<std::optional<Disconnect>> AutoSession::greet_remembered(const GreetingCache::Parameters& parameters,
                                                                         std::size_t node) {
    // No server runs anything of this client's yet: its cancel key points nowhere until a
    // unit starts (point_cancel_at).
    client_key_ = services_.cancels.add(CancelTarget{});
    std::string out;
    protocol::append_greeting(out, parameters, *client_key_, {"in_hot_standby", in_hot_standby(node)});
    if (!co_await write_client(out)) co_return Disconnect::quiet("client_left_during_startup");
    co_return std::nullopt;
}

void AutoSession::remember_greeting(const ServerConnection& primary) {
    if (!greets_from_cache()) return;
    services_.greetings->remember(GreetingCache::key(primary.address().name, startup_parameters_), primary.parameters(),
                                  GreetingCache::Clock::now());
}

std::string_view AutoSession::in_hot_standby(std::size_t node) const {
    // libpq's target_session_attrs and pgjdbc's targetServerType read it to tell whether they
    // reached a writable server. The auto and rw ports take writes whichever node greeted (a
    // standby while a failover is under way, or a pooled greeting remembered from before a
    // promotion); a ro session reads on `node`, in the role the topology gives it now.
    if (kind_ != ListenerKind::ro) return "off";
    return routing::choose_primary(*services_.topology()) == node ? "off" : "on";
}

asio::awaitable<std::optional<Disconnect>> AutoSession::greet(ServerConnection& server) {
    if (services_.pools) pool_of(server.node()).remember_greeting(startup_settings_, server.parameters());
    const health::NodeAddress& address = server.address();
    client_key_ = services_.cancels.add(CancelTarget{address.host, address.port, address.name, server.backend_key()});
    cancel_key_ = server.backend_key();
    std::string out;
    protocol::append_greeting(out, server.parameters(), *client_key_, {"in_hot_standby", in_hot_standby(server.node())});
    if (!co_await write_client(out)) co_return Disconnect::quiet("client_left_during_startup");
    co_return std::nullopt;
}

// ---- the unit loop ----------------------------------------------------------------------

asio::awaitable<Disconnect> AutoSession::serve() {
    if (admin_) co_return co_await serve_admin();
    for (;;) {
        in_unit_ = false;
        if (fence_) co_return *fence_;
        if (drain_ && status_ == protocol::TransactionStatus::idle && deferred_begin_.empty()) co_return *drain_;
        if (services_.pools) co_await release_servers();
        client_in_.shrink_to(client_buffer_max_bytes);
        if (server_out_.capacity() > client_buffer_max_bytes) std::string().swap(server_out_);
        Unit& unit = unit_;
        unit.clear(client_buffer_max_bytes);
        if (auto stop = co_await read_unit(unit)) co_return *stop;
        if (unit.terminate && unit.bytes.empty()) {
            client_terminated_ = true;
            co_return Disconnect::quiet("client_terminated");
        }
        if (skip_until_sync_) {
            if (unit.terminate) {
                client_terminated_ = true;
                co_return Disconnect::quiet("client_terminated");
            }
            if (!unit.complete) continue;
            skip_until_sync_ = false;
            std::string ready;
            protocol::append_ready_for_query(ready, status_);
            if (!co_await write_client(ready)) co_return Disconnect::quiet("client_disconnected");
            continue;
        }
        if (services_.admin && status_ == protocol::TransactionStatus::idle && deferred_begin_.empty() &&
            services_.admin->paused.load(std::memory_order_relaxed)) {
            // PAUSE (admin console): the next transaction waits (pooled: holding no connection).
            if (auto stop = co_await wait_while_paused()) co_return *stop;
        }
        in_unit_ = true;
        if (const OwnAnswer own = own_answer(unit); own != OwnAnswer::none) {
            bool answered = false;
            switch (own) {
                case OwnAnswer::pglane_setting: answered = co_await answer_pglane_setting(unit); break;
                case OwnAnswer::deallocate: answered = co_await answer_deallocate(unit); break;
                case OwnAnswer::lone_begin: answered = co_await defer_begin(unit); break;
                case OwnAnswer::none: break;
            }
            if (answered) continue;
        }
        if (auto stop = co_await run_unit(unit)) co_return *stop;   // fail_unit prefers a fence
        if (unit.terminate) {
            client_terminated_ = true;
            co_return Disconnect::quiet("client_terminated");
        }
    }
}

asio::awaitable<std::optional<Disconnect>> AutoSession::read_unit(Unit& unit) {
    for (;;) {
        while (true) {
            protocol::Frame frame = protocol::frame_message(client_in_.unread(), services_.config.limits.max_message_bytes);
            if (frame.status == protocol::FrameStatus::malformed) co_return malformed_message(frame);
            if (frame.status == protocol::FrameStatus::need_more) {
                if (frame.header_known()) client_in_.reserve_frame(frame.size);
                break;
            }
            protocol::Bytes raw = client_in_.unread().first(frame.size);
            if (auto stop = take_client_message(unit, frame.tag, frame.body, raw)) co_return stop;
            client_in_.consume(frame.size);
            if (unit.complete || unit.terminate) co_return std::nullopt;
            if (frame.tag == 'H') co_return std::nullopt;  // Flush: the client waits for results now
            // A unit is held until Sync only up to a bound; past it, it goes to the primary
            // and the rest streams after it (a client that never syncs costs no memory).
            if (unit.bytes.size() > max_held_unit_bytes) co_return std::nullopt;
        }
        client_in_.compact();
        // Wait for the client, or for the session to be fenced or drained while it is idle.
        // A LISTENing session also waits for notifications from its primary. The fence timer
        // doubles as the idle timeout: it expires, where fencing cancels it. Without an idle
        // limit the client's socket is waited on alone (fence() and drain() cancel that
        // wait): an idle session then holds one pending operation, not a parallel group.
        const bool in_transaction = status_ != protocol::TransactionStatus::idle || !unit.bytes.empty();
        const int idle_limit_ms = in_transaction ? services_.config.limits.idle_in_transaction_timeout_ms
                                                 : services_.config.limits.idle_session_timeout_ms;
        if (idle_limit_ms > 0) fence_timer_.expires_after(std::chrono::milliseconds(idle_limit_ms));
        else fence_timer_.expires_at(asio::steady_timer::time_point::max());
        ServerConnection* listening = router_.pin() == routing::PinReason::listen ? held_primary() : nullptr;
        std::variant<std::tuple<boost::system::error_code>, std::tuple<boost::system::error_code>> result;
        bool read_already = false;
        if (listening) {
            auto three = co_await (client_.readable() ||
                                   fence_timer_.async_wait(use_nothrow) ||
                                   listening->stream().readable());
            if (three.index() == 2) {
                if (auto stop = co_await relay_notifications(*listening)) co_return stop;
                continue;
            }
            if (three.index() == 0) result.emplace<0>(std::get<0>(three));
            else result.emplace<1>(std::get<1>(three));
        } else if (idle_limit_ms > 0) {
            result = co_await (client_.readable() ||
                               fence_timer_.async_wait(use_nothrow));
        } else {
            // Alone, the wait is the read itself: one that ends at a Query or Sync lets the next
            // wait without a speculative recv, where an async_wait re-arms the socket
            // (an epoll_ctl) every time. Cancelled by fence() or drain(), it took nothing.
            waiting_idle_ = true;
            const ClientWaits waits{&client_in_, true};
            auto [ec, n] = co_await client_.read_some(free_buffer(client_in_), waits.hint());
            waiting_idle_ = false;
            if (!ec) {
                client_in_.commit(n);
                client_in_.grow_when_full(client_buffer_max_bytes);
                read_already = true;
            }
            result.emplace<0>(ec);
        }
        if (fence_) co_return *fence_;
        if (drain_ && !in_transaction && deferred_begin_.empty()) co_return *drain_;
        if (result.index() == 1 && !std::get<0>(std::get<1>(result))) {
            services_.counters.add(kind_, ListenerCounter::idle_timeouts_total);
            if (in_transaction) {
                co_return Disconnect{"25P03",
                                     fmt::format("terminating connection due to idle-in-transaction timeout ({} ms, "
                                                 "pglane limits.idle_in_transaction_timeout_ms)",
                                                 idle_limit_ms),
                                     "idle_in_transaction_timeout"};
            }
            co_return Disconnect{"57P05",
                                 fmt::format("terminating connection due to idle-session timeout ({} ms, pglane "
                                             "limits.idle_session_timeout_ms)",
                                             idle_limit_ms),
                                 "idle_session_timeout"};
        }
        if (result.index() == 0 && std::get<0>(std::get<0>(result)) == asio::error::operation_aborted)
            continue;   // a drain woke a session inside a transaction: it may finish
        if (result.index() == 0 && std::get<0>(std::get<0>(result))) co_return Disconnect::quiet("client_disconnected");
        // Woken by the timer (a drain while in a transaction): nothing to read; a read now
        // would block the worker's thread until the client sends something.
        if (result.index() == 1) continue;
        if (!read_already && !read_client_now()) co_return Disconnect::quiet("client_disconnected");
    }
}

Disconnect AutoSession::malformed_message(const protocol::Frame& frame) {
    services_.counters.add(kind_, ListenerCounter::client_protocol_errors_total);
    return Disconnect{std::string(protocol_violation),
                      fmt::format("invalid message length {} for message type \"{}\"", frame.length, frame.tag),
                      "malformed_message"};
}

bool AutoSession::read_client_now() {
    boost::system::error_code ec;
    std::size_t n = client_.read_now(free_buffer(client_in_), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) return true;
    if (ec) return false;
    client_in_.commit(n);
    client_in_.grow_when_full(client_buffer_max_bytes);
    return true;
}

asio::awaitable<std::optional<Disconnect>> AutoSession::relay_notifications(ServerConnection& server) {
    if (!co_await server.read_more()) {
        co_return Disconnect{std::string(connection_failure),
                             fmt::format("pglane: lost the connection to {} this LISTENing session is on",
                                         server.address().name),
                             "listen_server_lost"};
    }
    // Between units a server only sends asynchronous messages: NotificationResponse,
    // NoticeResponse, ParameterStatus (and a FATAL ErrorResponse before it closes).
    std::string out;
    for (;;) {
        protocol::Frame frame = protocol::frame_message(server.in().unread(), services_.config.limits.max_message_bytes);
        if (frame.status != protocol::FrameStatus::message) break;
        out.append(protocol::as_text(server.in().unread().first(frame.size)));
        server.in().consume(frame.size);
    }
    if (!out.empty() && !co_await write_client(out)) co_return Disconnect::quiet("client_disconnected");
    co_return std::nullopt;
}

std::optional<Disconnect> AutoSession::take_client_message(Unit& unit, char tag, protocol::Bytes body,
                                                           protocol::Bytes raw) {
    auto malformed = [&](std::string_view what) {
        services_.counters.add(kind_, ListenerCounter::client_protocol_errors_total);
        return Disconnect{std::string(protocol_violation), fmt::format("malformed {} message", what), "malformed_message"};
    };
    if (!protocol::is_frontend_message(tag) || tag == 'p') {
        services_.counters.add(kind_, ListenerCounter::client_protocol_errors_total);
        return Disconnect{std::string(protocol_violation),
                          fmt::format("invalid frontend message type {}", int(static_cast<unsigned char>(tag))),
                          "unknown_message_type"};
    }
    // Pooled connections know a client's named statements by pooled names: Parse, Bind,
    // Describe and Close are appended renamed (append_client_message), the rest as received.
    const bool renames = services_.pools && (tag == 'P' || tag == 'B' || tag == 'D' || tag == 'C');
    unit.ends_with_flush = tag == 'H';
    if (tag == 'Q' || tag == 'B' || tag == 'E' || tag == 'F' || tag == 'd' || tag == 'c' || tag == 'f')
        unit.runs_statements = true;
    if (!renames) unit.bytes.append(protocol::as_text(raw));
    switch (tag) {
        case 'Q': {
            auto sql = protocol::read_query(body);
            if (!sql) return malformed("Query");
            unit.simple = true;
            unit.complete = true;
            const std::size_t first_new = unit.statements.size();
            const routing::Classification& c = classify(*sql);
            if (!c.prepare_name.empty()) {
                unit.sql_prepares.push_back(c.prepare_name);
                // A name the client Parsed is taken: the node gets that statement, and
                // refuses the PREPARE (42P05) as PostgreSQL does.
                need_protocol_statement(unit, c.prepare_name);
            }
            if (!c.execute_name.empty()) {
                unit.sql_executes.push_back(c.execute_name);
                if (auto it = sql_statements_.find(c.execute_name); it != sql_statements_.end()) {
                    unit.statements.push_back(it->second.classification);
                } else if (auto parsed = statements_.find(c.execute_name); parsed != statements_.end()) {
                    // EXECUTE of a statement the client Parsed: one namespace holds both.
                    unit.statements.push_back(parsed->second.classification);
                    need_protocol_statement(unit, c.execute_name);
                } else {
                    unit.statements.push_back(unknown_statement("EXECUTE of an unknown statement"));
                }
                // The EXECUTE's own parameters may call functions (EXECUTE p(nextval('s'))):
                // route them as a statement of their own.
                if (c.session_state || !c.parameters_read_only || !c.functions.empty()) {
                    routing::Classification parameters = c;
                    parameters.read_only = c.parameters_read_only && !c.session_state;
                    unit.statements.push_back(std::move(parameters));
                }
            } else {
                unit.statements.push_back(c);
                need_deallocated_statement(unit, c);
            }
            if (services_.pools) name_parsed_statements_for_pool(unit, raw, *sql, c);
            unit.executed.insert(unit.executed.end(), unit.statements.begin() + static_cast<std::ptrdiff_t>(first_new),
                                 unit.statements.end());
            if (c.session_state) unit.session_sql.emplace_back(*sql);
            return std::nullopt;
        }
        case 'P': {
            auto parse = protocol::read_parse(body);
            if (!parse) return malformed("Parse");
            const routing::Classification& c = classify(parse->query);
            // A pooled connection knows a Parsed statement by its pooled name: DEALLOCATE
            // goes there under that name (its Bind makes sure the node holds it).
            std::string deallocate_renamed;
            if (services_.pools && !c.deallocate_name.empty() && !sql_statements_.contains(c.deallocate_name)) {
                if (auto held = statements_.find(c.deallocate_name);
                    held != statements_.end() && held->second.server_name != c.deallocate_name) {
                    if (!append_with_query(deallocate_renamed, body, "DEALLOCATE " + quote_identifier(held->second.server_name)))
                        return malformed("Parse");
                    raw = protocol::as_bytes(deallocate_renamed);
                    body = raw.subspan(5);
                    parse = protocol::read_parse(body);
                    if (!parse) return malformed("Parse");
                }
            }
            if (!parse->statement.empty() && !statements_.contains(std::string(parse->statement)) &&
                sql_statements_.contains(std::string(parse->statement))) {
                // SQL PREPARE holds this name: PostgreSQL refuses the Parse (42P05). The node
                // gets the PREPAREd statement, then this Parse under the client's name.
                unit.sql_executes.emplace_back(parse->statement);
                if (renames) unit.bytes.append(protocol::as_text(raw));
                unit.statements.push_back(c);
                unit.reply_order.push_back('P');
                return std::nullopt;
            }
            const bool parsed_here =
                std::find(unit.parses.begin(), unit.parses.end(), parse->statement) != unit.parses.end();
            // A DEALLOCATE earlier in this unit frees the name before this Parse runs (psycopg 3
            // and others evict from their statement cache in the pipeline that prepares anew).
            auto held = parse->statement.empty() ? statements_.end() : statements_.find(std::string(parse->statement));
            std::optional<PreparedStatement> dropped;
            if (held != statements_.end() &&
                std::any_of(unit.executed.begin(), unit.executed.end(), [&](const routing::Classification& e) {
                    return e.deallocate_all || e.deallocate_name == parse->statement;
                })) {
                dropped = std::move(held->second);
                statements_.erase(held);
                held = statements_.end();
            }
            if (held != statements_.end()) {
                // The session holds this name already: PostgreSQL refuses the Parse (42P05) and
                // the statement stays as it was. The server says so itself: it gets the
                // session's definition first (unless this unit Parsed it already), then this
                // Parse under the same server name.
                if (!parsed_here) unit.needs_statement.emplace_back(parse->statement);
                if (renames && !append_renamed(unit.bytes, 'P', body, held->second.server_name)) return malformed("Parse");
                unit.statements.push_back(held->second.classification);
                unit.reply_order.push_back('P');
                return std::nullopt;
            }
            PreparedStatement& statement = statements_[std::string(parse->statement)];
            statement.query.assign(parse->query);
            statement.classification = c;
            if (services_.pools && !parse->statement.empty()) {
                // The pooled name stands for this very definition: one version of it exists.
                statement.server_name = pooled_statement_name(parse->statement, parse_definition(body));
                statement.definition.clear();
                if (!append_renamed(statement.definition, 'P', body, statement.server_name)) return malformed("Parse");
                statement.version = 1;
                unit.bytes += statement.definition;
            } else {
                statement.server_name.assign(parse->statement);
                statement.definition.assign(protocol::as_text(raw));
                statement.version = next_version_++;
                if (renames) unit.bytes.append(protocol::as_text(raw));
            }
            if (dropped) unit.reparsed.push_back({std::string(parse->statement), std::move(*dropped), statement});
            unit.parses.emplace_back(parse->statement);
            unit.statements.push_back(c);   // routes the unit; it runs (and SETs count) when Bound
            unit.reply_order.push_back('P');
            return std::nullopt;
        }
        case 'B':
        case 'D': {
            std::string_view name;
            if (tag == 'B') {
                auto bind = protocol::read_bind(body);
                if (!bind) return malformed("Bind");
                name = bind->statement;
            } else {
                auto describe = protocol::read_describe(body);
                if (!describe) return malformed("Describe");
                if (describe->target != 'S') {
                    unit.describes = true;
                    if (renames) unit.bytes.append(protocol::as_text(raw));
                    return std::nullopt;
                }
                name = describe->name;
            }
            if (renames && !append_client_message(unit, tag, body, raw, name))
                return malformed(tag == 'B' ? "Bind" : "Describe");
            if (tag == 'D') unit.describes = true;
            if (tag == 'B' && services_.pools && bind_result_format_count(body).value_or(2) > 1)
                unit.per_column_formats = true;
            bool parsed_here = std::find(unit.parses.begin(), unit.parses.end(), name) != unit.parses.end();
            auto it = statements_.find(std::string(name));
            if (it == statements_.end() && !parsed_here && !name.empty()) {
                // A statement SQL PREPARE made (one namespace holds both), or no statement
                // at all: the node gets the PREPARE replayed, or loses a copy the session
                // dropped since, so that it answers 26000 as it should.
                unit.sql_executes.emplace_back(name);
                if (tag == 'B') {
                    auto prepared = sql_statements_.find(std::string(name));
                    unit.statements.push_back(prepared != sql_statements_.end()
                                                  ? prepared->second.classification
                                                  : unknown_statement("Bind of an unknown statement"));
                    unit.executed.push_back(unit.statements.back());
                }
                return std::nullopt;
            }
            if (!parsed_here) unit.needs_statement.emplace_back(name);
            if (tag == 'B') {
                unit.statements.push_back(it != statements_.end() ? it->second.classification
                                                                  : unknown_statement("Bind of an unknown statement"));
                unit.executed.push_back(unit.statements.back());
                if (it != statements_.end() && it->second.classification.session_state)
                    unit.session_sql.push_back(it->second.query);
                need_deallocated_statement(unit, unit.executed.back());
            }
            return std::nullopt;
        }
        case 'C': {
            auto close = protocol::read_close(body);
            if (!close) return malformed("Close");
            if (renames && !append_client_message(unit, tag, body, raw, close->target == 'S' ? close->name : ""))
                return malformed("Close");
            if (close->target == 'S') {
                const std::string name(close->name);
                unit.closes.push_back(server_name_of(name));
                // Close drops a statement SQL PREPARE made too, when the client has not
                // Parsed one of that name (other nodes' copies go when the name is next used).
                if (statements_.erase(name) == 0) sql_statements_.erase(name);
            }
            unit.reply_order.push_back('C');  // portal or statement: both answer CloseComplete
            return std::nullopt;
        }
        case 'S':
            unit.complete = true;
            return std::nullopt;
        case 'F':
            unit.statements.push_back(unknown_statement("function call message"));
            unit.executed.push_back(unit.statements.back());
            unit.complete = true;
            return std::nullopt;
        case 'X':
            unit.bytes.resize(unit.bytes.size() - raw.size());  // pglane says goodbye to servers itself
            unit.terminate = true;
            return std::nullopt;
        default:
            return std::nullopt;  // Execute, Flush, stray Copy messages: routed with their unit
    }
}

void AutoSession::need_deallocated_statement(Unit& unit, const routing::Classification& c) {
    // A statement lives on the nodes that ran it, so a DEALLOCATE a server runs (one of
    // several statements in a Query, or sent with the extended protocol: psycopg 3 evicting
    // from its statement cache) gets the statement onto the unit's node first, as an
    // EXECUTE or a Bind of it would. A protocol-level statement is brought by a Parse ahead
    // of the unit, which a Query cannot follow; a lone DEALLOCATE Query is answered by
    // pglane (answer_deallocate). Unknown names stay unknown: the server answers 26000.
    const std::string& name = c.deallocate_name;
    if (name.empty()) return;
    if (sql_statements_.contains(name)) {
        unit.sql_executes.push_back(name);
    } else if (unit.simple) {
        need_protocol_statement(unit, name);
    } else if (statements_.contains(name) &&
               std::find(unit.parses.begin(), unit.parses.end(), name) == unit.parses.end()) {
        unit.needs_statement.push_back(name);
    }
}

void AutoSession::need_protocol_statement(Unit& unit, const std::string& name) {
    // A Query that names a statement the client Parsed (EXECUTE, DEALLOCATE, a PREPARE of
    // the same name) gets it onto the unit's node first: injections() sends its Parse with
    // a Sync of pglane's own ahead of the Query, whose answers the client never sees. Under
    // pooling the server knows it by its pooled name, which the Query is then sent with
    // (name_parsed_statements_for_pool).
    if (!statements_.contains(name)) return;
    if (std::find(unit.needs_statement.begin(), unit.needs_statement.end(), name) != unit.needs_statement.end()) return;
    unit.needs_statement.push_back(name);
}

void AutoSession::name_parsed_statements_for_pool(Unit& unit, protocol::Bytes raw, std::string_view sql,
                                                  const routing::Classification& c) {
    // The Query, appended to the unit as received, is sent with the pooled names instead.
    // A PREPARE of a Parsed statement's name is then refused (42P05) as on a server of the
    // client's own, though the message names the pooled statement.
    std::optional<std::string> renamed;
    for (const std::string* name : {&c.execute_name, &c.prepare_name, &c.deallocate_name}) {
        if (name->empty() || sql_statements_.contains(*name)) continue;
        auto held = statements_.find(*name);
        if (held == statements_.end()) continue;
        const std::string text = renamed ? *renamed : std::string(sql);
        if (auto again = rename_sql_statement_name(text, *name, held->second.server_name)) renamed = std::move(again);
    }
    if (!renamed) return;
    unit.bytes.resize(unit.bytes.size() - raw.size());
    protocol::MessageWriter(unit.bytes, 'Q').cstring(*renamed);
}

std::string AutoSession::client_statement_name(std::string_view pooled) const {
    for (const auto& [name, statement] : statements_)
        if (statement.server_name == pooled) return name;
    return {};
}

AutoSession::OwnAnswer AutoSession::own_answer(const Unit& unit) const {
    // In a failed transaction the server answers (25P02), as it would to any of these.
    if (unit.simple && unit.statements.size() == 1 && status_ != protocol::TransactionStatus::failed) {
        const routing::Classification& c = unit.statements.front();
        if (c.statement_count == 1 && c.pglane_setting_name) return OwnAnswer::pglane_setting;
        if (c.statement_count == 1 && (!c.deallocate_name.empty() || c.deallocate_all)) return OwnAnswer::deallocate;
    }
    if (kind_ == ListenerKind::auto_ && unit.executed.size() == 1 && unit.complete &&
        status_ == protocol::TransactionStatus::idle && deferred_begin_.empty()) {
        const routing::Classification& c = unit.executed.front();
        if ((c.transaction == routing::TransactionControl::begin ||
             c.transaction == routing::TransactionControl::begin_read_only) &&
            c.statement_count == 1)
            return OwnAnswer::lone_begin;
    }
    return OwnAnswer::none;
}

asio::awaitable<bool> AutoSession::defer_begin(const Unit& unit) {
    // A lone BEGIN is answered by pglane and sent later with the transaction's first
    // statement, which decides where it runs: after BEGIN, SET TRANSACTION READ ONLY makes it
    // a standby's (unless the BEGIN said SERIALIZABLE); after BEGIN READ ONLY, SET
    // TRANSACTION READ WRITE or ISOLATION LEVEL SERIALIZABLE makes it the primary's.
    // own_answer() found the unit to be a lone BEGIN.
    const routing::Classification& c = unit.executed.front();
    const bool read_only = c.transaction == routing::TransactionControl::begin_read_only;
    std::string out;
    if (!answer_lone_begin(unit, out)) co_return false;
    deferred_begin_ = unit.bytes;
    deferred_read_only_ = read_only;
    deferred_serializable_ = c.serializable;
    status_ = protocol::TransactionStatus::in_transaction;
    protocol::append_ready_for_query(out, status_);
    (void)co_await write_client(out);
    co_return true;
}

bool AutoSession::answer_lone_begin(const Unit& unit, std::string& out) const {
    // What a server answers to the unit up to its ReadyForQuery: a Query, or the extended
    // protocol as libpq's PQsendQueryParams sends it (psycopg 3 outside autocommit): Parse,
    // Bind, Describe and Execute of the unnamed statement and portal, then Sync.
    if (unit.simple) {
        protocol::MessageWriter(out, 'C').cstring("BEGIN");
        return true;
    }
    protocol::Bytes rest = protocol::as_bytes(unit.bytes);
    while (!rest.empty()) {
        protocol::Frame frame = protocol::frame_message(rest, services_.config.limits.max_message_bytes);
        if (frame.status != protocol::FrameStatus::message) return false;
        switch (frame.tag) {
            case 'P': {
                auto parse = protocol::read_parse(frame.body);
                if (!parse || !parse->statement.empty()) return false;
                protocol::MessageWriter(out, '1');
                break;
            }
            case 'B': {
                auto bind = protocol::read_bind(frame.body);
                if (!bind || !bind->portal.empty() || !bind->statement.empty()) return false;
                protocol::MessageWriter(out, '2');
                break;
            }
            case 'D': {
                auto describe = protocol::read_describe(frame.body);
                if (!describe || describe->target != 'P' || !describe->name.empty()) return false;
                protocol::MessageWriter(out, 'n');
                break;
            }
            case 'E': {
                auto execute = protocol::read_execute(frame.body);
                if (!execute || !execute->portal.empty()) return false;
                protocol::MessageWriter(out, 'C').cstring("BEGIN");
                break;
            }
            case 'S': break;   // its ReadyForQuery is the caller's
            default: return false;
        }
        rest = rest.subspan(frame.size);
    }
    return true;
}

asio::awaitable<bool> AutoSession::answer_deallocate(const Unit& unit) {
    // A statement PREPAREd through pglane lives on whichever nodes ran it: DEALLOCATE it on
    // each of them. Unknown names go to a server, which answers 26000 as it should.
    // own_answer() found the unit to be one DEALLOCATE.
    const routing::Classification& c = unit.statements.front();
    if (!c.deallocate_all && !sql_statements_.contains(c.deallocate_name)) {
        // SQL and protocol-level statements share one namespace: DEALLOCATE also drops a
        // statement the client Parsed, on every node that holds it. (Pooled names stand for
        // one definition each: copies on pooled connections are harmless and stay.)
        auto held = statements_.find(c.deallocate_name);
        if (held == statements_.end()) co_return false;
        const std::string server_name = held->second.server_name;
        statements_.erase(held);
        if (!services_.pools) {
            const std::string sql = "DEALLOCATE " + quote_identifier(server_name);
            for (auto& server : servers_) {
                if (!server || server->broken() || !server->statements.contains(server_name)) continue;
                (void)co_await server->hidden_query(sql);
                server->statements.erase(server_name);
            }
        }
    } else {
        for (auto& server : servers_) {
            if (!server || server->broken()) continue;
            if (c.deallocate_all ? server->sql_statements.empty() : !server->sql_statements.contains(c.deallocate_name))
                continue;
            const std::string sql = c.deallocate_all ? std::string("DEALLOCATE ALL")
                                                     : "DEALLOCATE " + quote_identifier(c.deallocate_name);
            (void)co_await server->hidden_query(sql);
            if (c.deallocate_all) {
                server->sql_statements.clear();
                server->statements.clear();  // DEALLOCATE ALL drops protocol-level statements too
            } else {
                server->sql_statements.erase(c.deallocate_name);
            }
        }
        if (c.deallocate_all) {
            sql_statements_.clear();
            statements_.clear();
        } else {
            sql_statements_.erase(c.deallocate_name);
        }
    }
    std::string out;
    protocol::MessageWriter(out, 'C').cstring(c.deallocate_all ? "DEALLOCATE ALL" : "DEALLOCATE");
    protocol::append_ready_for_query(out, status_);
    (void)co_await write_client(out);
    co_return true;
}

asio::awaitable<bool> AutoSession::answer_pglane_setting(const Unit& unit) {
    // own_answer() found the unit to be one SET of a pglane.* setting.
    const routing::Classification& c = unit.statements.front();
    std::string out;
    bool ok = true;
    if (*c.pglane_setting_name == "pglane.route") {
        ok = router_.set_route(c.pglane_setting_value);
    } else if (*c.pglane_setting_name == "pglane.max_lag_ms") {
        try {
            max_lag_ms_ = c.pglane_setting_value ? std::stoi(*c.pglane_setting_value) : -1;
        } catch (const std::exception&) {
            ok = false;
        }
    } else {
        ok = false;
    }
    if (ok) {
        protocol::MessageWriter(out, 'C').cstring(c.pglane_setting_value ? "SET" : "RESET");
    } else {
        protocol::append_error_response(out, "ERROR", "22023",
                                        fmt::format("invalid value for parameter \"{}\"", *c.pglane_setting_name));
    }
    protocol::append_ready_for_query(out, status_);
    (void)co_await write_client(out);
    co_return true;
}

asio::awaitable<void> serve_authenticated_client(StreamSocket socket, ListenerKind kind, SessionServices& services) {
    AutoSession session(std::move(socket), kind, services);
    co_await session.run();
}

}  // namespace pglane::proxy
