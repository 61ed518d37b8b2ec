#include "proxy/startup.hpp"

#include "common/log.hpp"
#include "proxy/cancel_registry.hpp"
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
    auto protocol_error = [&](std::string message) {
        services.counters.add(kind, ListenerCounter::client_protocol_errors_total);
        result.stop = Disconnect{std::string(protocol::sqlstate::protocol_violation), std::move(message), "malformed_startup"};
        return result;
    };
    for (;;) {
        auto frame = co_await read_frame(client, in, true, services.config.limits.max_startup_packet_bytes);
        if (!frame) {
            result.stop = Disconnect::quiet("client_left_during_startup");
            co_return result;
        }
        if (frame->status == protocol::FrameStatus::malformed)
            co_return protocol_error(fmt::format("invalid length of startup packet ({})", frame->length));
        result.packet = protocol::parse_startup(frame->body);
        result.raw.assign(protocol::as_text(in.unread().first(frame->size)));
        in.consume(frame->size);
        switch (result.packet.kind) {
            case protocol::StartupKind::ssl_request:
            case protocol::StartupKind::gssenc_request: {
                // Encryption is declined: clients with sslmode=prefer carry on in plaintext.
                auto [ec, n] = co_await asio::async_write(client, asio::buffer("N", 1), use_nothrow);
                if (ec) {
                    result.stop = Disconnect::quiet("client_left_during_startup");
                    co_return result;
                }
                continue;
            }
            case protocol::StartupKind::cancel_request: {
                const protocol::BackendKey key{result.packet.process_id, result.packet.secret_key};
                co_await forward_cancel(services, kind, key, peer);
                result.cancel_handled = true;
                result.stop = Disconnect::quiet("cancel_request");
                co_return result;
            }
            case protocol::StartupKind::unsupported_version:
                result.stop = Disconnect{std::string(protocol::sqlstate::feature_not_supported), result.packet.error,
                                         "unsupported_protocol"};
                co_return result;
            case protocol::StartupKind::malformed:
                co_return protocol_error(result.packet.error);
            case protocol::StartupKind::startup:
                co_return result;
        }
    }
}

}  // namespace pglane::proxy
