#pragma once
// A connection (TCP or Unix-domain) that may carry TLS: what every session reads and writes
// through, to clients and to servers alike. Plaintext costs nothing extra (each call hands
// back Asio's own operation); with TLS, OpenSSL works on the non-blocking socket itself and
// a want-read or want-write becomes an Asio wait, so the readiness-based loops of the
// sessions (wait for readable, then read what is there) work over TLS too. Decrypted bytes
// OpenSSL already holds make the stream readable without waiting on the socket.

#include "health/topology.hpp"

#include <boost/asio.hpp>

#include <algorithm>
#include <string>
#include <string_view>
#include <sys/uio.h>
#include <tuple>
#include <vector>

struct ssl_st;
using SSL = ssl_st;
struct ssl_ctx_st;
using SSL_CTX = ssl_ctx_st;

namespace pglane::proxy {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
/// TCP or Unix-domain: a stream socket of either family (Asio converts a tcp::socket into
/// one by moving it).
using StreamSocket = asio::generic::stream_protocol::socket;

/// What only a session knows, asked by a read on its hot path: whether, after the
/// `received` bytes the read just took, the peer has nothing more it must send before pglane
/// answers (proxy/drained_read.hpp says why a read wants to know). Called inside the read,
/// while the session's coroutine is suspended on it, so `context` is touched by no one else.
struct PeerWaits {
    bool (*check)(const void* context, std::size_t received) = nullptr;
    const void* context = nullptr;

    [[nodiscard]] bool operator()(std::size_t received) const { return check && check(context, received); }
};

/// One connection; owned by one session (or server connection) and touched by its worker
/// thread only. One read and one write may be pending at once, as on a socket.
class Stream {
public:
    using Result = std::tuple<boost::system::error_code, std::size_t>;
    using WaitResult = std::tuple<boost::system::error_code>;

    explicit Stream(StreamSocket socket) : socket_(std::move(socket)) {}
    explicit Stream(const asio::any_io_executor& executor) : socket_(executor) {}
    ~Stream();
    Stream(const Stream&) = delete;
    Stream& operator=(const Stream&) = delete;

    [[nodiscard]] StreamSocket& socket() { return socket_; }
    [[nodiscard]] const StreamSocket& socket() const { return socket_; }
    [[nodiscard]] asio::any_io_executor get_executor() { return socket_.get_executor(); }
    [[nodiscard]] bool is_open() const { return socket_.is_open(); }
    [[nodiscard]] bool encrypted() const { return ssl_ != nullptr; }
    /// Whether the connection is a Unix-domain one (the socket is asked once).
    [[nodiscard]] bool unix_domain();
    /// "TLSv1.3" and the like, empty for plaintext.
    [[nodiscard]] std::string_view tls_version() const;
    /// SCRAM's tls-server-end-point channel binding data on the accepting side: the hash of
    /// pglane's own certificate (RFC 5929: its signature's digest, SHA-256 for MD5 and
    /// SHA-1). Empty for plaintext or a certificate without one (no binding offered then).
    [[nodiscard]] std::string channel_binding_data() const;

    /// The server side of a TLS handshake (a client asked with SSLRequest and got 'S').
    /// An empty string on success, else OpenSSL's reason.
    [[nodiscard]] asio::awaitable<std::string> accept_tls(SSL_CTX* context);
    /// The client side of a TLS handshake with a node (it answered 'S'), verifying its
    /// certificate as `address.sslmode` asks.
    [[nodiscard]] asio::awaitable<std::string> connect_tls(SSL_CTX* context, const health::NodeAddress& address);

    /// Reads what is there, waiting for at least one byte.
    [[nodiscard]] asio::awaitable<Result> read_some(asio::mutable_buffer buffer);
    /// The same on the hot path of a session: in plaintext, a read that empties the socket
    /// while `peer_waits` says the peer now waits for pglane spares the socket's next read
    /// its speculative recv (proxy/drained_read.hpp says when that is safe).
    [[nodiscard]] asio::awaitable<Result> read_some(asio::mutable_buffer buffer, PeerWaits peer_waits);
    /// Reads what is there without waiting; would_block when nothing is. Needs a
    /// non-blocking socket (set_non_blocking()).
    std::size_t read_now(asio::mutable_buffer buffer, boost::system::error_code& ec);
    /// True when nothing can have arrived since a read_some() with `peer_waits` emptied the
    /// socket, as far as the reactor's last poll knows (proxy/drained_read.hpp,
    /// quiet_since_drained). Always false with TLS, or where drained reads are unavailable.
    [[nodiscard]] bool quiet_since_drained();
    /// Completes when read_now() has something to return (at once when TLS already holds
    /// decrypted bytes).
    [[nodiscard]] asio::awaitable<WaitResult> readable();
    /// Writes all of `buffers` (one TLS write for all of them). In plaintext, what the
    /// socket takes at once is sent right here (one sendmsg): most writes end there, without
    /// an operation's trip through the scheduler and the reactor poll that comes with it.
    /// Only a rest the socket did not take waits for it to drain. `buffers` is taken by
    /// value (the coroutine keeps it): pass a span, not a vector.
    template <typename ConstBufferSequence>
    [[nodiscard]] asio::awaitable<Result> write_buffers(ConstBufferSequence buffers) {
        Result first;
        if (write_at_once(buffers, first)) co_return first;
        auto [ec, n] = co_await finish_write();
        co_return Result{ec, std::get<1>(first) + n};
    }
    /// write_buffers() without its coroutine, for the hot path: true when the write is over
    /// (all of `buffers` sent, or failed: `result` says which). False: finish_write() sends
    /// the rest (in TLS, all of it), and `result` counts what went already.
    template <typename ConstBufferSequence>
    [[nodiscard]] bool write_at_once(const ConstBufferSequence& buffers, Result& result) {
        if (!ssl_) {
            boost::system::error_code ec;
            const std::size_t sent = send_now(buffers, ec);
            result = Result{ec, sent};
            if (ec || sent == asio::buffer_size(buffers)) return true;
            rest_after(buffers, sent);
            return false;
        }
        tls_out_.clear();
        for (auto it = asio::buffer_sequence_begin(buffers); it != asio::buffer_sequence_end(buffers); ++it)
            tls_out_.append(static_cast<const char*>(asio::const_buffer(*it).data()), asio::const_buffer(*it).size());
        result = Result{};
        return false;
    }
    /// The part of a write that write_at_once() left.
    [[nodiscard]] asio::awaitable<Result> finish_write();
    [[nodiscard]] asio::awaitable<Result> write(std::string_view bytes) { return write_buffers(asio::buffer(bytes)); }
    /// Writes what the socket takes now, without waiting: a last word (Terminate) before close.
    void write_now(std::string_view bytes);

    /// Makes reads through read_now() return would_block instead of waiting.
    void set_non_blocking();
    void cancel();
    /// Closes the connection (with a TLS close_notify when the socket takes it now).
    void close();
    void shutdown();

private:
    [[nodiscard]] std::string attach_tls(SSL_CTX* context);
    [[nodiscard]] asio::awaitable<std::string> handshake(bool accepting);
    [[nodiscard]] asio::awaitable<Result> tls_read_some(asio::mutable_buffer buffer);
    [[nodiscard]] asio::awaitable<WaitResult> tls_readable();
    [[nodiscard]] asio::awaitable<Result> tls_write();
    void free_tls();
    /// One non-blocking sendmsg of as much of `buffers` as the socket takes now (0 and no
    /// error when it takes nothing).
    template <typename ConstBufferSequence>
    std::size_t send_now(const ConstBufferSequence& buffers, boost::system::error_code& ec) {
        iov_.clear();
        for (auto it = asio::buffer_sequence_begin(buffers); it != asio::buffer_sequence_end(buffers); ++it) {
            const asio::const_buffer piece(*it);
            if (piece.size() != 0) iov_.push_back({const_cast<void*>(piece.data()), piece.size()});
        }
        return send_iov(ec);
    }
    std::size_t send_iov(boost::system::error_code& ec);
    /// rest_ = what of `buffers` follows its first `skip` bytes.
    template <typename ConstBufferSequence>
    void rest_after(const ConstBufferSequence& buffers, std::size_t skip) {
        rest_.clear();
        for (auto it = asio::buffer_sequence_begin(buffers); it != asio::buffer_sequence_end(buffers); ++it) {
            asio::const_buffer piece(*it);
            const std::size_t dropped = std::min(skip, piece.size());
            skip -= dropped;
            piece += dropped;
            if (piece.size() != 0) rest_.push_back(piece);
        }
    }

    StreamSocket socket_;
    /// Whether the socket reports the bytes a recvmsg left (TCP_INQ, SO_INQ), asked at the
    /// first read that needs it.
    enum class Reports : unsigned char { unknown, on, unavailable };
    Reports queued_byte_reports_ = Reports::unknown;
    int family_ = -1;   // the socket's address family, once unix_domain() asked
    SSL* ssl_ = nullptr;
    // What the last TLS read needs before it can go on: the socket readable (usually) or
    // writable (OpenSSL has a record of its own to send first).
    bool read_wants_write_ = false;
    std::string tls_out_;
    std::vector<iovec> iov_;                // send_now's scratch, kept between writes
    std::vector<asio::const_buffer> rest_;  // what a partial send_now left
};

}  // namespace pglane::proxy
