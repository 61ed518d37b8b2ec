#include "proxy/startup.hpp"

#include "common/log.hpp"
#include "protocol/startup_phase.hpp"
#include "proxy/cancel_registry.hpp"
#include "proxy/client_limits.hpp"
#include "proxy/net.hpp"
#include "routing/node_choice.hpp"

#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/this_coro.hpp>
#include <fmt/format.h>

namespace pglane::proxy {

namespace {

constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

asio::awaitable<void> forward_cancel(SessionServices& services, ListenerKind kind, protocol::BackendKey key,
                                     const std::string& peer) {
    services.counters.add(kind, ListenerCounter::cancel_requests_total);
    auto target = services.cancels.find(key);
    if (!target) {
        log::info("cancel_request_unmatched", {{"client", peer}, {"process_id", key.process_id}});
        co_return;
    }
    if (target->port == 0) {
        // A pooled session between statements: no server is running anything of its own.
        log::info("cancel_request_idle", {{"client", peer}, {"process_id", key.process_id}});
        co_return;
    }
    StreamSocket server(co_await asio::this_coro::executor);
    // A named local, not a braced temporary: GCC 12 destroys a braced temporary bound to a
    // reference parameter inside a co_await expression twice (free(): invalid size).
    const health::NodeAddress address{target->node, target->host, target->port};
    std::string error = co_await connect_with_deadline(
        server, address, std::chrono::milliseconds(services.config.limits.server_connect_timeout_ms));
    bool sent = false;
    if (error.empty()) {
        std::string packet;
        protocol::append_cancel_request(packet, target->server_key);
        auto [ec, n] = co_await asio::async_write(server, asio::buffer(packet), use_nothrow);
        sent = !ec;
        if (ec) error = ec.message();
    }
    boost::system::error_code ignored;
    server.close(ignored);
    if (sent) services.counters.add(kind, ListenerCounter::cancel_requests_forwarded_total);
    log::info("cancel_request_forwarded", {{"client", peer}, {"node", target->node}, {"sent", sent}, {"error", error}});
}

// SSLRequest: 'S' and a TLS handshake when pglane has a certificate (tls.mode allow or
// require), 'N' otherwise, on a Unix-domain socket (as PostgreSQL answers there) and for
// GSSENCRequest: the client then goes on in plaintext (or gives up, if it insists on
// encryption).
asio::awaitable<std::optional<Disconnect>> answer_encryption_request(Stream& client, ByteBuffer& in,
                                                                     SessionServices& services, ListenerKind kind,
                                                                     protocol::StartupKind request) {
    SslContextPtr context;
    if (request == protocol::StartupKind::ssl_request && services.tls && !client.unix_domain())
        context = services.tls->client_facing();
    if (context && !in.unread().empty()) {
        // Bytes sent after SSLRequest, before the answer, would be taken as if they had come
        // through TLS (CVE-2021-23214): refuse them, as PostgreSQL does.
        services.counters.add(kind, ListenerCounter::client_protocol_errors_total);
        co_return Disconnect{std::string(protocol::sqlstate::protocol_violation),
                             "received unencrypted data after SSL request", "data_after_ssl_request"};
    }
    const char answer = context ? 'S' : 'N';
    auto [ec, n] = co_await client.write(std::string_view(&answer, 1));
    if (ec) co_return Disconnect::quiet("client_left_during_startup");
    if (!context) co_return std::nullopt;
    std::string error = co_await client.accept_tls(context.get());
    if (!error.empty()) {
        services.counters.add(kind, ListenerCounter::client_tls_handshake_errors_total);
        co_return Disconnect{{}, std::move(error), "tls_handshake_failed"};
    }
    services.counters.add(kind, ListenerCounter::client_tls_connections_total);
    co_return std::nullopt;
}

}  // namespace

asio::awaitable<health::TopologyPtr> await_primary(SessionServices& services) {
    // Bounded polling: a promotion takes seconds, a 25 ms step costs nothing meanwhile.
    constexpr auto step = std::chrono::milliseconds(25);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(services.config.health.failover.hold_ms);
    health::TopologyPtr topology = services.topology();
    asio::steady_timer timer(co_await asio::this_coro::executor);
    while (!routing::choose_primary(*topology) && std::chrono::steady_clock::now() < deadline) {
        timer.expires_after(step);
        co_await timer.async_wait(use_nothrow);
        topology = services.topology();
    }
    co_return topology;
}

asio::awaitable<std::optional<protocol::Frame>> read_frame(Stream& stream, ByteBuffer& in, bool startup,
                                                           std::uint32_t max) {
    for (;;) {
        protocol::Frame frame = startup ? protocol::frame_startup(in.unread(), max) : protocol::frame_message(in.unread(), max);
        if (frame.status != protocol::FrameStatus::need_more) co_return frame;
        if (frame.header_known()) in.reserve_frame(frame.size);
        else in.compact();
        auto [ec, n] = co_await stream.read_some(free_buffer(in));
        if (ec) co_return std::nullopt;
        in.commit(n);
    }
}

asio::awaitable<std::optional<Disconnect>> within_startup_deadline(asio::awaitable<std::optional<Disconnect>> phase,
                                                                   SessionServices& services, ListenerKind kind) {
    const auto executor = co_await asio::this_coro::executor;
    asio::steady_timer deadline(executor);
    deadline.expires_after(
        std::chrono::milliseconds(services.config.limits.startup_timeout_ms + services.config.health.failover.hold_ms));
    // A parallel group of the phase and the timer's own operation, not `phase ||
    // deadline.async_wait()`: that operator runs each side as a coroutine of its own, about
    // 1.5 KiB more for every connection still in startup (bench/README.md, idle-tcp).
    auto [order, failure, why, timer_ec] =
        co_await asio::experimental::make_parallel_group(asio::co_spawn(executor, std::move(phase), asio::deferred),
                                                         deadline.async_wait(asio::deferred))
            .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
    if (order[0] == 0) {
        if (failure) std::rethrow_exception(failure);
        co_return std::move(why);
    }
    services.counters.add(kind, ListenerCounter::client_startup_timeouts_total);
    co_return Disconnect{std::string(protocol::sqlstate::cannot_connect_now),
                         "pglane: startup did not complete in time (limits.startup_timeout_ms)", "startup_timeout"};
}

asio::awaitable<ClientStartup> read_client_startup(Stream& client, ByteBuffer& in, SessionServices& services,
                                                   ListenerKind kind, const std::string& peer) {
    ClientStartup result;
    // What to do with each packet is decided by protocol::StartupPhase (pure, fuzzed); this
    // loop only reads, answers and forwards.
    protocol::StartupPhase phase(services.config.limits.max_startup_packet_bytes);
    for (;;) {
        protocol::StartupStep step = phase.next(in.unread());
        if (step.action == protocol::StartupAction::need_more) {
            if (step.frame_size != 0) in.reserve_frame(step.frame_size);
            else in.compact();
            auto [ec, n] = co_await client.read_some(free_buffer(in));
            if (ec) {
                result.stop = Disconnect::quiet("client_left_during_startup");
                co_return result;
            }
            in.commit(n);
            continue;
        }
        result.packet = std::move(step.packet);
        if (step.action == protocol::StartupAction::start_session)
            result.raw.assign(protocol::as_text(in.unread().first(step.bytes)));
        in.consume(step.bytes);
        switch (step.action) {
            case protocol::StartupAction::encryption_request: {
                if (auto stop = co_await answer_encryption_request(client, in, services, kind, result.packet.kind)) {
                    result.stop = std::move(stop);
                    co_return result;
                }
                continue;
            }
            case protocol::StartupAction::forward_cancel: {
                const protocol::BackendKey key{result.packet.process_id, result.packet.secret_key};
                co_await forward_cancel(services, kind, key, peer);
                result.cancel_handled = true;
                result.stop = Disconnect::quiet("cancel_request");
                co_return result;
            }
            case protocol::StartupAction::refuse:
                if (step.sqlstate == protocol::sqlstate::protocol_violation)
                    services.counters.add(kind, ListenerCounter::client_protocol_errors_total);
                result.stop = Disconnect{std::string(step.sqlstate), std::move(step.message), std::string(step.reason)};
                co_return result;
            case protocol::StartupAction::start_session:
                // A Unix-domain client is on this host: tls.mode require, like a hostssl line
                // of pg_hba.conf, is about the network.
                if (!client.encrypted() && services.tls && services.tls->mode() == ClientTlsMode::require &&
                    !client.unix_domain()) {
                    services.counters.add(kind, ListenerCounter::client_tls_refused_total);
                    result.stop = Disconnect{"28000",
                                             fmt::format("pglane: connections to this port must use TLS (tls.mode is "
                                                         "require); connect with sslmode=require or stronger "
                                                         "(user \"{}\")",
                                                         result.packet.parameter("user")),
                                             "tls_required"};
                    co_return result;
                }
                // Client limits are checked once the user is named, before any server is asked.
                result.stop = admit_client(services, kind, client.socket().native_handle(),
                                           result.packet.parameter("user"), peer);
                co_return result;
            case protocol::StartupAction::need_more:
                co_return result;
        }
    }
}

}  // namespace pglane::proxy
