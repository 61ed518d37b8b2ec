// The relay loop of a client session: both directions run concurrently until one side
// ends, the session is fenced, or malformed input arrives. Bytes are forwarded in the
// chunks they arrived in (many messages, one write); only headers are examined on the
// hot path, plus ReadyForQuery to track the transaction status.

#include "common/log.hpp"
#include "protocol/framing.hpp"
#include "proxy/client_session.hpp"
#include "proxy/peer_waits.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <fmt/format.h>

namespace pglane::proxy {

using namespace asio::experimental::awaitable_operators;
using protocol::RelayCursor;
using protocol::sqlstate::connection_failure;
using protocol::sqlstate::protocol_violation;

namespace {
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);
}

asio::awaitable<Disconnect> ClientSession::relay() {
    auto result = co_await (client_to_server() || server_to_client() || wait_for_fence());
    co_return std::visit([](Disconnect& why) { return std::move(why); }, result);
}

asio::awaitable<Disconnect> ClientSession::wait_for_fence() {
    if (!fence_) {
        fence_timer_.expires_at(asio::steady_timer::time_point::max());
        co_await fence_timer_.async_wait(use_nothrow);
    }
    if (fence_) co_return *fence_;
    co_return Disconnect::quiet("cancelled");
}

asio::awaitable<Disconnect> ClientSession::client_to_server() {
    RelayCursor cursor(services_.config.limits.max_message_bytes, client_in_.capacity());
    for (;;) {
        std::size_t forward_from = client_in_.begin();
        std::optional<Disconnect> stop;
        while (!stop) {
            RelayCursor::Step step = cursor.next(client_in_.unread());
            if (step.kind == RelayCursor::Kind::need_more) break;
            if (step.kind == RelayCursor::Kind::malformed) {
                stop = Disconnect{std::string(protocol_violation),
                                  fmt::format("invalid message length {} for message type \"{}\"", step.frame.length,
                                              step.frame.tag),
                                  "malformed_message"};
                break;
            }
            // The first piece of every message carries its header: check the type there.
            if (step.frame.header_known() && !protocol::is_frontend_message(step.frame.tag)) {
                stop = Disconnect{std::string(protocol_violation),
                                  fmt::format("invalid frontend message type {}", int(static_cast<unsigned char>(step.frame.tag))),
                                  "unknown_message_type"};
                break;
            }
            // Each Query, Sync and FunctionCall is owed one ReadyForQuery.
            if (step.frame.header_known() &&
                (step.frame.tag == 'Q' || step.frame.tag == 'S' || step.frame.tag == 'F'))
                ++ready_owed_;
            client_in_.consume(step.bytes);
            if (step.kind == RelayCursor::Kind::message && step.frame.tag == 'X') {
                client_terminated_ = true;
                stop = Disconnect::quiet("client_terminated");
            }
        }
        if (std::size_t n = client_in_.begin() - forward_from; n != 0) {
            Stream::Result written;
            if (!server_.write_at_once(asio::buffer(client_in_.data_at(forward_from), n), written))
                written = co_await server_.finish_write();
            if (std::get<0>(written)) co_return Disconnect{std::string(connection_failure),
                                         fmt::format("pglane: lost the connection to server {}", node_name()),
                                         "server_write_failed"};
        }
        if (stop) {
            if (!stop->sqlstate.empty()) services_.counters.add(kind_, ListenerCounter::client_protocol_errors_total);
            co_return *stop;
        }
        client_in_.compact();
        const ClientWaits waits{&client_in_, !cursor.in_passthrough()};
        auto [ec, n] = co_await client_.read_some(free_buffer(client_in_), waits.hint());
        if (ec) co_return Disconnect::quiet("client_disconnected");
        client_in_.commit(n);
    }
}

asio::awaitable<Disconnect> ClientSession::server_to_client() {
    RelayCursor cursor(services_.config.limits.max_message_bytes, server_in_.capacity());
    for (;;) {
        std::size_t forward_from = server_in_.begin();
        bool malformed = false;
        for (;;) {
            RelayCursor::Step step = cursor.next(server_in_.unread());
            if (step.kind == RelayCursor::Kind::need_more) break;
            if (step.kind == RelayCursor::Kind::malformed) {
                malformed = true;
                break;
            }
            if (step.kind == RelayCursor::Kind::message) {
                last_server_tag_ = step.frame.tag;
                if (step.frame.tag == 'Z') {
                    if (ready_owed_ != 0) --ready_owed_;
                    if (auto status = protocol::read_ready_for_query(step.frame.body)) transaction_ = *status;
                }
            } else if (step.frame.header_known()) {
                last_server_tag_ = step.frame.tag;
            }
            server_in_.consume(step.bytes);
        }
        if (std::size_t n = server_in_.begin() - forward_from; n != 0) {
            Stream::Result written;
            if (!client_.write_at_once(asio::buffer(server_in_.data_at(forward_from), n), written))
                written = co_await client_.finish_write();
            if (std::get<0>(written)) co_return Disconnect::quiet("client_disconnected");
            // Draining: the transaction that held the session open has ended.
            if (drain_ && last_server_tag_ == 'Z' && transaction_ == protocol::TransactionStatus::idle) fence(*drain_);
        }
        if (malformed) {
            co_return Disconnect{std::string(protocol_violation),
                                 fmt::format("pglane: server {} sent a malformed message", node_name()),
                                 "server_malformed"};
        }
        server_in_.compact();
        const ServerAnswered answered{&server_in_, &ready_owed_, !cursor.in_passthrough()};
        auto [ec, n] = co_await server_.read_some(free_buffer(server_in_), answered.hint());
        if (ec) {
            // A server that ended the session with its own FATAL ErrorResponse has said why.
            if (last_server_tag_ == 'E') co_return Disconnect::quiet("server_closed_after_error");
            co_return Disconnect{std::string(connection_failure),
                                 fmt::format("pglane: server {} closed the connection", node_name()),
                                 "server_closed"};
        }
        server_in_.commit(n);
    }
}

}  // namespace pglane::proxy
