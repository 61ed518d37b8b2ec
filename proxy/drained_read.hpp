#pragma once
// A plaintext read that tells Asio's reactor when the socket is empty and the peer waits for
// pglane, so that the socket's next read waits for data without trying a recv first.
//
// Why: Boost 1.81's epoll reactor registers a socket once, edge-triggered, and starts every
// read with a "speculative" recv. It skips that recv only after a read it performed reported
// the socket "done and exhausted", which its own stream read says only at EOF. On a
// request/response stream the speculative recv nearly always finds nothing: one wasted
// system call per message relayed (bench/README.md, "The hot path, again").
//
// When may a read say "exhausted"? Only when nothing a later read must see is still queued
// without an edge to come for it. Three things can be queued:
// - data: the recv asks the kernel how many bytes it left (TCP_INQ; SO_INQ on a Unix-domain
//   socket, Linux 6.17 and later); "exhausted" needs 0. Bytes that arrive later are a new
//   edge, which wakes the queued read.
// - a FIN: TCP_INQ reports 1 while one is queued, so a read that takes the peer's last bytes
//   together with its FIN does not say "exhausted", and the next read sees EOF.
// - an RST, or a Unix-domain peer's close: neither sets such a flag. When the peer's last
//   bytes and its RST (or close) come in one edge, a read that says "exhausted" would wait
//   for an edge that never comes. So the caller adds what only the protocol knows: the read
//   may say "exhausted" only when the peer now waits for pglane (a client after a Query or
//   Sync, a server after its last owed ReadyForQuery). pglane's next move on that socket is
//   then a write, which meets the RST or the closed socket. (The check of an idle server
//   connection, ServerConnection::usable_after_idle, does not: it trusts
//   quiet_since_drained below, which cannot see them.)
//
// This reaches into asio::detail (the reactor, its operation type and a socket's
// implementation), which Boost 1.81 on Debian 12 is pinned to; the static_assert below
// stops the build if the reactor is not the epoll one this was written against.

#include "proxy/stream.hpp"

#include <boost/asio.hpp>

#include <cerrno>
#include <cstring>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <type_traits>
#include <utility>

namespace pglane::proxy {

/// SO_INQ (Linux 6.17): a Unix-domain stream socket's TCP_INQ. Debian 12's headers predate
/// it; the number is asm-generic's, which x86-64 and arm64 use. An older kernel refuses it.
#ifdef SO_INQ
inline constexpr int unix_queued_bytes_option = SO_INQ;
#else
inline constexpr int unix_queued_bytes_option = 84;
#endif

/// Asks the kernel to report, with every recvmsg, how many bytes it left queued: TCP_INQ
/// (Linux 4.18) on TCP, SO_INQ on a Unix-domain socket. False when it cannot (an older
/// kernel, another family).
inline bool enable_queued_byte_reports(int descriptor) {
    int on = 1;
    return ::setsockopt(descriptor, IPPROTO_TCP, TCP_INQ, &on, sizeof on) == 0 ||
           ::setsockopt(descriptor, SOL_SOCKET, unix_queued_bytes_option, &on, sizeof on) == 0;
}

namespace drained_read_detail {

namespace asio = boost::asio;
namespace ad = boost::asio::detail;
using tcp = asio::ip::tcp;

static_assert(std::is_same_v<ad::reactor, ad::epoll_reactor>,
              "drained_read is written for Asio's epoll reactor (no io_uring, no select)");

/// One recvmsg per attempt: done when it read something, failed or saw EOF; "exhausted"
/// when the kernel left nothing queued and the peer waits for pglane.
template <typename Handler, typename IoExecutor>
class DrainedReadOp : public ad::reactor_op {
public:
    BOOST_ASIO_DEFINE_HANDLER_PTR(DrainedReadOp);

    DrainedReadOp(int descriptor, asio::mutable_buffer buffer, PeerWaits peer_waits, Handler& handler,
                  const IoExecutor& io_executor)
        : ad::reactor_op(boost::system::error_code(), &DrainedReadOp::do_perform, &DrainedReadOp::do_complete),
          descriptor_(descriptor), buffer_(buffer), peer_waits_(peer_waits), handler_(std::move(handler)),
          work_(handler_, io_executor) {}

    static status do_perform(ad::reactor_op* base) {
        auto* op = static_cast<DrainedReadOp*>(base);
        for (;;) {
            iovec piece{op->buffer_.data(), op->buffer_.size()};
            alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
            msghdr message{};
            message.msg_iov = &piece;
            message.msg_iovlen = 1;
            message.msg_control = control;
            message.msg_controllen = sizeof control;
            const ssize_t n = ::recvmsg(op->descriptor_, &message, 0);
            if (n > 0) {
                op->ec_ = {};
                op->bytes_transferred_ = static_cast<std::size_t>(n);
                int queued = -1;   // unknown unless the kernel says
                for (cmsghdr* c = CMSG_FIRSTHDR(&message); c; c = CMSG_NXTHDR(&message, c)) {
                    if ((c->cmsg_level == SOL_TCP && c->cmsg_type == TCP_CM_INQ) ||
                        (c->cmsg_level == SOL_SOCKET && c->cmsg_type == unix_queued_bytes_option))
                        std::memcpy(&queued, CMSG_DATA(c), sizeof queued);
                }
                return queued == 0 && op->peer_waits_(op->bytes_transferred_) ? done_and_exhausted : done;
            }
            op->bytes_transferred_ = 0;
            if (n == 0) {
                op->ec_ = asio::error::eof;
                return done_and_exhausted;
            }
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return not_done;
            op->ec_ = boost::system::error_code(errno, asio::error::get_system_category());
            return done;
        }
    }

    static void do_complete(void* owner, ad::operation* base, const boost::system::error_code& /*ec*/,
                            std::size_t /*bytes_transferred*/) {
        auto* op = static_cast<DrainedReadOp*>(base);
        ptr p = {ad::addressof(op->handler_), op, op};
        ad::handler_work<Handler, IoExecutor> work(std::move(op->work_));
        // The handler moves out before the operation's memory is freed: it may own that memory.
        ad::binder2<Handler, boost::system::error_code, std::size_t> handler(op->handler_, op->ec_,
                                                                            op->bytes_transferred_);
        p.h = ad::addressof(handler.handler_);
        p.reset();
        if (owner) {
            ad::fenced_block fence(ad::fenced_block::half);
            work.complete(handler, handler.handler_);
        }
    }

private:
    int descriptor_;
    asio::mutable_buffer buffer_;
    PeerWaits peer_waits_;
    Handler handler_;
    ad::handler_work<Handler, IoExecutor> work_;
};

/// Per-operation cancellation (what `a || b` of awaitable operators uses): takes the queued
/// read off the reactor, which completes it with operation_aborted.
class Cancellation {
public:
    Cancellation(ad::reactor* reactor, ad::reactor::per_descriptor_data* data, int descriptor)
        : reactor_(reactor), data_(data), descriptor_(descriptor) {}
    void operator()(asio::cancellation_type_t type) {
        if (!!(type & (asio::cancellation_type::terminal | asio::cancellation_type::partial |
                       asio::cancellation_type::total)))
            reactor_->cancel_ops_by_key(descriptor_, *data_, ad::reactor::read_op, this);
    }

private:
    ad::reactor* reactor_;
    ad::reactor::per_descriptor_data* data_;
    int descriptor_;
};

/// The socket's reactor-side state, a protected member of basic_socket, reached through a
/// pointer to member named in a derived class (the one way C++ allows without a cast).
template <typename Socket>
struct SocketAccess : Socket {
    static auto& implementation(Socket& socket) {
        return (socket.*(&SocketAccess::impl_)).get_implementation();
    }
};

using DescriptorState = ad::epoll_reactor::descriptor_state;

template <typename Socket>
[[nodiscard]] DescriptorState* descriptor_state(Socket& socket) {
    return SocketAccess<Socket>::implementation(socket).reactor_data_;
}

bool next_read_tries_first(DescriptorState* state);
bool quiet_since_drained(DescriptorState* state);

struct Initiate {
    template <typename Handler, typename Socket>
    void operator()(Handler&& handler, Socket* socket, asio::mutable_buffer buffer, PeerWaits peer_waits) const {
        using Op = DrainedReadOp<std::decay_t<Handler>, typename Socket::executor_type>;
        auto& impl = SocketAccess<Socket>::implementation(*socket);
        auto& reactor = asio::use_service<ad::reactor>(asio::query(socket->get_executor(), asio::execution::context));
        const bool is_continuation = ::boost_asio_handler_cont_helpers::is_continuation(handler);
        auto slot = asio::get_associated_cancellation_slot(handler);
        typename Op::ptr p = {ad::addressof(handler), Op::ptr::allocate(handler), nullptr};
        p.p = new (p.v) Op(impl.socket_, buffer, peer_waits, handler, socket->get_executor());
        if (slot.is_connected())
            p.p->cancellation_key_ = &slot.template emplace<Cancellation>(&reactor, &impl.reactor_data_, impl.socket_);
        // The recv must never block the worker: the descriptor is made non-blocking once,
        // as Asio's own reads do.
        if ((impl.state_ & ad::socket_ops::non_blocking) == 0 &&
            !ad::socket_ops::set_internal_non_blocking(impl.socket_, impl.state_, true, p.p->ec_)) {
            reactor.post_immediate_completion(p.p, is_continuation);
        } else {
            reactor.start_op(ad::reactor::read_op, impl.socket_, impl.reactor_data_, p.p, is_continuation, true);
        }
        p.v = p.p = nullptr;
    }
};

}  // namespace drained_read_detail

/// Whether the socket's next read starts with a recv: false only after a read said
/// "exhausted" and the reactor has taken no edge for the socket since.
template <typename Socket>
bool next_read_tries_first(Socket& socket) {
    return drained_read_detail::next_read_tries_first(drained_read_detail::descriptor_state(socket));
}

/// True when nothing can have arrived on `socket` since a drained read emptied it (said
/// "exhausted"): the reactor has had no edge for it since, neither handled nor collected by
/// its last poll and still queued. What arrived after that poll is not seen: the caller
/// answers for that window (ServerConnection::usable_after_idle says how). False for a
/// socket that is not registered with the reactor.
template <typename Socket>
bool quiet_since_drained(Socket& socket) {
    return drained_read_detail::quiet_since_drained(drained_read_detail::descriptor_state(socket));
}

/// Reads what is there from a plaintext stream socket, waiting for at least one byte; completes
/// with (error_code, bytes) like async_read_some. The socket must have had
/// enable_queued_byte_reports(). A read that empties the socket while `peer_waits` holds
/// lets the next one wait without a speculative recv (see the top of this file). An empty
/// buffer is not allowed (it would read as EOF).
template <typename Socket, typename CompletionToken>
auto async_read_drained(Socket& socket, boost::asio::mutable_buffer buffer, PeerWaits peer_waits,
                        CompletionToken&& token) {
    return boost::asio::async_initiate<CompletionToken, void(boost::system::error_code, std::size_t)>(
        drained_read_detail::Initiate{}, token, &socket, buffer, peer_waits);
}

}  // namespace pglane::proxy
