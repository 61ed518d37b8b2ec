#include "proxy/startup.hpp"

#include "common/log.hpp"
#include "protocol/startup_phase.hpp"
#include "proxy/cancel_registry.hpp"
#include "proxy/client_limits.hpp"
#include "proxy/net.hpp"
#include "routing/node_choice.hpp"

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
    tcp::socket server(co_await asio::this_coro::executor);
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

asio::awaitable<std::optional<protocol::Frame>> read_frame(tcp::socket& socket, ByteBuffer& in, bool startup,
                                                           std::uint32_t max) {
    for (;;) {
        protocol::Frame frame = startup ? protocol::frame_startup(in.unread(), max) : protocol::frame_message(in.unread(), max);
        if (frame.status != protocol::FrameStatus::need_more) co_return frame;
        if (frame.header_known()) in.reserve_frame(frame.size);
        else in.compact();
        auto [ec, n] = co_await socket.async_read_some(free_buffer(in), use_nothrow);
        if (ec) co_return std::nullopt;
        in.commit(n);
    }
}

asio::awaitable<ClientStartup> read_client_startup(tcp::socket& client, ByteBuffer& in, SessionServices& services,
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
            auto [ec, n] = co_await client.async_read_some(free_buffer(in), use_nothrow);
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
            case protocol::StartupAction::decline_encryption: {
                // Encryption is declined: clients with sslmode=prefer carry on in plaintext.
                auto [ec, n] = co_await asio::async_write(client, asio::buffer("N", 1), use_nothrow);
                if (ec) {
                    result.stop = Disconnect::quiet("client_left_during_startup");
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
                // Client limits are checked once the user is named, before any server is asked.
                result.stop = admit_client(services, kind, client.native_handle(), result.packet.parameter("user"), peer);
                co_return result;
            case protocol::StartupAction::need_more:
                co_return result;
        }
    }
}

}  // namespace pglane::proxy
