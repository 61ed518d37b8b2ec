#include "proxy/sql_text.hpp"
#include "proxy/client_session.hpp"

#include "common/log.hpp"
#include "protocol/framing.hpp"
#include "protocol/scram.hpp"
#include "proxy/cancel_registry.hpp"
#include "proxy/net.hpp"
#include "proxy/startup.hpp"
#include "routing/node_choice.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <fmt/format.h>

namespace pglane::proxy {

using namespace asio::experimental::awaitable_operators;
using protocol::sqlstate::admin_shutdown;
using protocol::sqlstate::connection_failure;
using protocol::sqlstate::protocol_violation;

namespace {

// Relay buffers: big enough that typical result sets move in few reads, small enough that
// thousands of idle sessions stay cheap. Larger messages stream through (RelayCursor).
constexpr std::size_t relay_buffer_bytes = 16 * 1024;
// Until the relay starts, a session holds small buffers (they grow for a larger startup or
// authentication message), the server's only once a server is connected: an accepted socket
// that never finishes its startup costs little.
constexpr std::size_t startup_buffer_bytes = 512;
// Server messages during authentication are small; a bound keeps a broken server from
// making pglane allocate without limit.
constexpr std::uint32_t max_auth_message_bytes = 1024 * 1024;

constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);


}  // namespace

ClientSession::ClientSession(StreamSocket client, ListenerKind kind, SessionServices& services)
    : services_(services),
      kind_(kind),
      id_(services.next_session_id++),
      client_(std::move(client)),
      server_(client_.get_executor()),
      client_in_(startup_buffer_bytes),
      server_in_(0),
      peer_(describe_peer(client_.socket())),
      fence_timer_(client_.get_executor()) {
    boost::system::error_code ignored;
    client_.socket().set_option(tcp::no_delay(true), ignored);
    services_.registry.add(this);
    services_.counters.add(kind_, ListenerCounter::client_connections_total);
    services_.counters.add(kind_, ListenerCounter::client_connections_active);
}

ClientSession::~ClientSession() {
    services_.registry.remove(this);
    services_.counters.add(kind_, ListenerCounter::client_connections_active, -1);
    if (server_connected_ && node_) services_.counters.add(*node_, NodeCounter::server_connections_active, -1);
    if (client_key_) services_.cancels.remove(*client_key_);
}

SSL_CTX* SessionServices::server_tls() const { return tls ? tls->server_facing() : nullptr; }

std::string ClientSession::node_name() const { return node_ ? node_address_.name : "-"; }

asio::awaitable<void> ClientSession::run() {
    std::optional<Disconnect> why;
    try {
        asio::awaitable<std::optional<Disconnect>> phase = startup();
        why = co_await within_startup_deadline(std::move(phase), services_, kind_);
        if (!why) {
            client_in_.reserve_frame(relay_buffer_bytes);
            server_in_.reserve_frame(relay_buffer_bytes);
            why = co_await relay();
        }
    } catch (const std::exception& e) {
        why = Disconnect{std::string(protocol::sqlstate::internal_error), "pglane: internal error", e.what()};
    }
    co_await finish(*why);
}

void ClientSession::fence(Disconnect why) {
    if (fence_) return;
    fence_ = std::move(why);
    fence_timer_.cancel();
}

void ClientSession::describe(int worker, std::vector<admin::ClientInfo>& clients,
                             std::vector<admin::ServerInfo>&) const {
    // A relayed session: the server authenticated it, pglane only knows where it goes.
    admin::ClientInfo& info = clients.emplace_back();
    info.session = id_;
    info.worker = worker;
    info.listener = std::string(to_string(kind_));
    info.client = peer_;
    info.tls = client_.tls_version();
    info.state = transaction_ == protocol::TransactionStatus::idle ? "idle" : "idle in transaction";
    info.servers = server_connected_ ? node_address_.name : std::string();
}

void ClientSession::drain(Disconnect why) {
    // Between transactions (the server's last word a ReadyForQuery saying idle), or not yet
    // on a server: now. Otherwise at the ReadyForQuery that ends the transaction.
    bool idle = !server_connected_ || (last_server_tag_ == 'Z' && transaction_ == protocol::TransactionStatus::idle);
    if (idle) fence(std::move(why));
    else drain_ = std::move(why);
}

void ClientSession::on_topology(const health::Topology& topology) {
    if (node_ && *node_ < topology.nodes.size() && topology.nodes[*node_].retired && !drain_ && !fence_) {
        // A reload removed the node this relayed session is on: it ends between transactions.
        drain({std::string(admin_shutdown),
               fmt::format("pglane: node {} was removed from the configuration; reconnect", node_address_.name),
               "node_removed"});
        return;
    }
    if (!pinned_to_primary_ || !node_) return;
    if (topology.primary == node_ && topology.primary_term == primary_term_) return;
    std::string now = topology.primary ? topology.nodes.at(*topology.primary).address.name : std::string("none");
    services_.counters.add(kind_, ListenerCounter::sessions_fenced_total);
    fence({std::string(admin_shutdown),
           fmt::format("pglane: the primary changed ({} is no longer the elected primary; now: {}); "
                       "reconnect to reach the new primary",
                       node_address_.name, now),
           "primary_changed"});
}

// ---- startup phase ----------------------------------------------------------------------

// A connection that has sent nothing yet waits at the top of this frame, before the startup
// reader's frame exists (bench/README.md, idle-tcp).
asio::awaitable<std::optional<Disconnect>> ClientSession::startup() {
    if (client_in_.unread().empty()) {
        auto [ec] = co_await client_.readable();
        if (ec) co_return Disconnect::quiet("client_left_during_startup");
    }
    std::string startup_packet;
    bool cancel_handled = false;
    if (auto why = co_await read_startup_packet(startup_packet, cancel_handled)) co_return why;
    if (cancel_handled) co_return Disconnect::quiet("cancel_request");
    if (auto why = co_await connect_with_hold()) co_return why;
    if (!co_await write_all(server_, startup_packet)) {
        co_return Disconnect{std::string(connection_failure),
                             fmt::format("pglane: could not send the startup packet to {}", node_name()),
                             "server_write_failed"};
    }
    co_return co_await relay_authentication();
}

asio::awaitable<std::optional<Disconnect>> ClientSession::read_startup_packet(std::string& startup_packet,
                                                                              bool& cancel_handled) {
    ClientStartup startup = co_await read_client_startup(client_, client_in_, services_, kind_, peer_);
    cancel_handled = startup.cancel_handled;
    if (startup.stop) co_return startup.stop;
    startup_packet = std::move(startup.raw);
    co_return std::nullopt;
}

asio::awaitable<std::optional<Disconnect>> ClientSession::connect_with_hold() {
    if (kind_ != ListenerKind::rw) co_return co_await connect_to_node(*services_.topology());
    // A rw session waits for a primary (failover.hold_ms), also when the elected one refuses
    // connections before the health checker has noticed it is gone.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(services_.config.health.failover.hold_ms);
    asio::steady_timer pause(client_.get_executor());
    for (;;) {
        health::TopologyPtr topology = co_await await_primary(services_);
        std::optional<Disconnect> why = co_await connect_to_node(*topology);
        if (!why || why->reason != "server_connect_failed" || std::chrono::steady_clock::now() >= deadline) co_return why;
        services_.probe_now();
        pause.expires_after(std::chrono::milliseconds(50));
        co_await pause.async_wait(use_nothrow);
    }
}

asio::awaitable<std::optional<Disconnect>> ClientSession::connect_to_node(const health::Topology& topology) {
    std::vector<std::size_t> candidates;
    if (kind_ == ListenerKind::rw) {
        if (auto primary = routing::choose_primary(topology)) candidates.push_back(*primary);
    } else {
        auto turn = services_.read_only_turn.fetch_add(1, std::memory_order_relaxed);
        candidates = routing::read_only_candidates(topology, turn, services_.config.ro_fallback_to_primary);
    }
    if (candidates.empty()) {
        services_.counters.add(kind_, ListenerCounter::client_unrouted_total);
        co_return Disconnect{std::string(connection_failure),
                             routing::describe_unavailable(topology, kind_ == ListenerKind::rw), "no_node"};
    }
    std::string failures;
    for (std::size_t index : candidates) {
        const health::NodeStatus& node = topology.nodes.at(index);
        if (co_await open_server_connection(node)) {
            node_ = index;
            node_address_ = node.address;
            pinned_to_primary_ = topology.primary == index;
            primary_term_ = topology.primary_term;
            server_connected_ = true;
            services_.counters.add(index, NodeCounter::sessions_routed_total);
            services_.counters.add(index, NodeCounter::server_connections_active);
            // A rw session must be fenced if the primary changed while it connected.
            if (kind_ == ListenerKind::rw) on_topology(*services_.topology());
            co_return std::nullopt;
        }
        services_.counters.add(index, NodeCounter::server_connect_errors_total);
        failures += (failures.empty() ? "" : ", ") + node.address.name;
    }
    services_.counters.add(kind_, ListenerCounter::client_unrouted_total);
    co_return Disconnect{std::string(connection_failure),
                         fmt::format("pglane: could not connect to {} (tried: {})",
                                     kind_ == ListenerKind::rw ? "the primary" : "any standby or the primary", failures),
                         "server_connect_failed"};
}

asio::awaitable<bool> ClientSession::open_server_connection(const health::NodeStatus& node) {
    server_.close();   // a failed attempt at another node
    std::string error = co_await connect_to_server(server_, node.address, services_.server_tls(),
                                                 std::chrono::milliseconds(services_.config.limits.server_connect_timeout_ms));
    if (!error.empty()) {
        log::warn("server_connect_failed", {{"session", id_}, {"node", node.address.name}, {"error", error}});
        co_return false;
    }
    server_in_.reserve_frame(startup_buffer_bytes);
    co_return true;
}

asio::awaitable<std::optional<Disconnect>> ClientSession::relay_authentication() {
    std::string& out = scratch_;
    for (;;) {
        out.clear();
        auto frame = co_await read_frame(server_, server_in_, false, max_auth_message_bytes);
        if (!frame || frame->status == protocol::FrameStatus::malformed) {
            co_return Disconnect{std::string(connection_failure),
                                 fmt::format("pglane: server {} closed the connection during authentication",
                                             node_name()),
                                 "server_lost_during_auth"};
        }
        char tag = frame->tag;
        std::optional<protocol::AuthenticationRequest> auth;
        if (tag == 'K') {
            auto key = protocol::read_backend_key_data(frame->body);
            if (!key) co_return Disconnect{std::string(protocol_violation), "pglane: malformed BackendKeyData", "bad_key"};
            client_key_ = services_.cancels.add(CancelTarget{node_address_.host, node_address_.port, node_address_.name, *key});
            protocol::append_backend_key_data(out, *client_key_);
        } else if (tag == 'R' && (auth = protocol::read_authentication(frame->body)) && auth->code == protocol::auth_sasl) {
            // SCRAM passes through pglane, channel binding cannot (the client would bind to
            // pglane's certificate, the server check its own): offer the client the rest.
            auto mechanisms = protocol::scram::mechanisms_without_channel_binding(auth->data);
            if (!mechanisms) {
                co_return Disconnect{std::string(protocol_violation),
                                     fmt::format("pglane: server {} sent a malformed SASL mechanism list", node_name()),
                                     "server_malformed"};
            }
            protocol::append_authentication(out, protocol::auth_sasl, *mechanisms);
        } else {
            out.append(protocol::as_text(server_in_.unread().first(frame->size)));
            if (tag == 'R') auth = protocol::read_authentication(frame->body);
        }
        server_in_.consume(frame->size);
        if (!co_await write_all(client_, out)) co_return Disconnect::quiet("client_left_during_auth");
        if (tag == 'E') co_return Disconnect::quiet("server_refused_session");
        if (tag == 'Z') co_return std::nullopt;
        // Any authentication request other than Ok and SASLFinal awaits the client's answer.
        if (auth && auth->code != protocol::auth_ok && auth->code != protocol::auth_sasl_final) {
            auto answer = co_await read_frame(client_, client_in_, false, max_auth_message_bytes);
            if (!answer) co_return Disconnect::quiet("client_left_during_auth");
            if (answer->status == protocol::FrameStatus::malformed || answer->tag != 'p') {
                services_.counters.add(kind_, ListenerCounter::client_protocol_errors_total);
                co_return Disconnect{std::string(protocol_violation),
                                     "expected a password response during authentication", "bad_auth_response"};
            }
            std::string_view raw = protocol::as_text(client_in_.unread().first(answer->size));
            bool sent = co_await write_all(server_, raw);
            client_in_.consume(answer->size);
            if (!sent) co_return Disconnect{std::string(connection_failure), "pglane: server lost during authentication",
                                            "server_lost_during_auth"};
        }
    }
}

// ---- helpers ----------------------------------------------------------------------------

asio::awaitable<bool> ClientSession::write_all(Stream& stream, std::string_view bytes) {
    auto [ec, n] = co_await stream.write(bytes);
    co_return !ec;
}

asio::awaitable<void> ClientSession::finish(const Disconnect& why) {
    if (!why.sqlstate.empty() && client_.is_open()) {
        std::string error;
        protocol::append_error_response(error, "FATAL", why.sqlstate, why.message);
        asio::steady_timer timer(client_.get_executor());
        timer.expires_after(std::chrono::seconds(1));
        co_await (client_.write(error) || timer.async_wait(use_nothrow));
    }
    if (server_connected_ && server_.is_open() && !client_terminated_) {
        // Say goodbye so the server ends the session cleanly instead of logging a lost client.
        std::string terminate;
        protocol::append_terminate(terminate);
        server_.write_now(terminate);
    }
    server_.close();
    client_.close();
    bool expected = why.sqlstate.empty() && (why.reason == "client_terminated" || why.reason == "cancel_request");
    auto fields = {log::Field{"session", id_},
                   log::Field{"listener", to_string(kind_)},
                   log::Field{"client", peer_},
                   log::Field{"node", node_name()},
                   log::Field{"reason", why.reason},
                   log::Field{"sqlstate", why.sqlstate.empty() ? "-" : why.sqlstate},
                   log::Field{"message", why.message}};
    if (expected) {
        if (log::level() <= log::Level::debug) log::write(log::Level::debug, "session_closed", fields);
    } else {
        log::write(log::Level::info, "session_closed", fields);
    }
}

// ---- registry ---------------------------------------------------------------------------

void SessionRegistry::on_topology(const health::Topology& topology) {
    // Copy first: fencing never erases synchronously, but keep iteration independent anyway.
    std::vector<FenceableSession*> sessions(sessions_.begin(), sessions_.end());
    for (FenceableSession* session : sessions) session->on_topology(topology);
}

void SessionRegistry::drain_all(const Disconnect& why) {
    std::vector<FenceableSession*> sessions(sessions_.begin(), sessions_.end());
    for (FenceableSession* session : sessions) session->drain(why);
}

void SessionRegistry::describe(int worker, std::vector<admin::ClientInfo>& clients,
                               std::vector<admin::ServerInfo>& servers) const {
    for (const FenceableSession* session : sessions_) session->describe(worker, clients, servers);
}

void SessionRegistry::close_all(const Disconnect& why) {
    std::vector<FenceableSession*> sessions(sessions_.begin(), sessions_.end());
    for (FenceableSession* session : sessions) session->fence(why);
}

asio::awaitable<void> serve_client(StreamSocket socket, ListenerKind kind, SessionServices& services) {
    ClientSession session(std::move(socket), kind, services);
    co_await session.run();
}

}  // namespace pglane::proxy
