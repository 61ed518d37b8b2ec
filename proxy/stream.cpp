#include "proxy/stream.hpp"

#include "proxy/drained_read.hpp"
#include "proxy/tls.hpp"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <climits>
#include <sys/socket.h>

namespace pglane::proxy {

namespace {

constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

// What an OpenSSL call that did not finish needs before it is tried again: the socket
// readable or writable, or nothing (the connection is over).
enum class Need { read, write, closed, failed };

Need need_of(SSL* ssl, int rc) {
    switch (SSL_get_error(ssl, rc)) {
        case SSL_ERROR_WANT_READ: return Need::read;
        case SSL_ERROR_WANT_WRITE: return Need::write;
        case SSL_ERROR_ZERO_RETURN: return Need::closed;
        default: return Need::failed;
    }
}

StreamSocket::wait_type wait_for(Need need) {
    return need == Need::write ? StreamSocket::wait_write : StreamSocket::wait_read;
}

}  // namespace

Stream::~Stream() { free_tls(); }

void Stream::free_tls() {
    if (ssl_ == nullptr) return;
    SSL_free(ssl_);
    ssl_ = nullptr;
}

std::string_view Stream::tls_version() const { return ssl_ ? SSL_get_version(ssl_) : std::string_view(); }

std::string Stream::channel_binding_data() const {
    if (ssl_ == nullptr) return {};
    X509* certificate = SSL_get_certificate(ssl_);
    if (certificate == nullptr) return {};
    int digest = NID_undef;
    int key_type = NID_undef;
    if (OBJ_find_sigid_algs(X509_get_signature_nid(certificate), &digest, &key_type) != 1) return {};
    if (digest == NID_md5 || digest == NID_sha1) digest = NID_sha256;
    const EVP_MD* md = EVP_get_digestbynid(digest);
    if (md == nullptr) return {};
    unsigned char hash[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    if (X509_digest(certificate, md, hash, &length) != 1) return {};
    return std::string(reinterpret_cast<const char*>(hash), length);
}

std::string Stream::attach_tls(SSL_CTX* context) {
    ERR_clear_error();
    ssl_ = SSL_new(context);
    if (ssl_ == nullptr) return openssl_error("cannot create a TLS session");
    // OpenSSL reads and writes the socket itself; it must never block the worker's thread.
    boost::system::error_code ec;
    socket_.native_non_blocking(true, ec);
    if (!ec && SSL_set_fd(ssl_, socket_.native_handle()) == 1) return {};
    std::string error = ec ? ec.message() : openssl_error("cannot attach the TLS session to the socket");
    close();
    return error;
}

asio::awaitable<std::string> Stream::accept_tls(SSL_CTX* context) {
    if (std::string error = attach_tls(context); !error.empty()) co_return error;
    SSL_set_accept_state(ssl_);
    co_return co_await handshake(true);
}

asio::awaitable<std::string> Stream::connect_tls(SSL_CTX* context, const health::NodeAddress& address) {
    if (std::string error = attach_tls(context); !error.empty()) co_return error;
    SSL_set_connect_state(ssl_);
    boost::system::error_code not_ip;
    (void)asio::ip::make_address(address.host, not_ip);
    const bool ip = !not_ip;
    // Server Name Indication for host names, as libpq sends it (sslsni=1).
    if (!ip) SSL_set_tlsext_host_name(ssl_, address.host.c_str());
    if (address.sslmode == health::SslMode::verify_ca || address.sslmode == health::SslMode::verify_full) {
        SSL_set_verify(ssl_, SSL_VERIFY_PEER, nullptr);
        if (address.sslmode == health::SslMode::verify_full) {
            X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
            X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            const int set = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, address.host.c_str())
                               : X509_VERIFY_PARAM_set1_host(param, address.host.c_str(), 0);
            if (set != 1) {
                close();
                co_return openssl_error("cannot set the host name to verify");
            }
        }
    } else {
        // require and prefer encrypt without checking who answers, as libpq does.
        SSL_set_verify(ssl_, SSL_VERIFY_NONE, nullptr);
    }
    co_return co_await handshake(false);
}

asio::awaitable<std::string> Stream::handshake(bool accepting) {
    for (;;) {
        ERR_clear_error();
        const int rc = SSL_do_handshake(ssl_);
        if (rc == 1) co_return std::string();
        const Need need = need_of(ssl_, rc);
        if (need == Need::read || need == Need::write) {
            auto [ec] = co_await socket_.async_wait(wait_for(need), use_nothrow);
            if (!ec) continue;
            close();
            co_return ec.message();
        }
        std::string why = openssl_error("the connection closed during the TLS handshake");
        const long verified = SSL_get_verify_result(ssl_);
        if (!accepting && verified != X509_V_OK)
            why = std::string("certificate verify failed: ") + X509_verify_cert_error_string(verified);
        close();
        co_return why;
    }
}

asio::awaitable<Stream::Result> Stream::read_some(asio::mutable_buffer buffer) {
    if (!ssl_) return socket_.async_read_some(buffer, use_nothrow);
    return tls_read_some(buffer);
}

asio::awaitable<Stream::Result> Stream::read_some(asio::mutable_buffer buffer, PeerWaits peer_waits) {
    if (ssl_) return tls_read_some(buffer);
    if (queued_byte_reports_ == Reports::unknown)
        queued_byte_reports_ = enable_queued_byte_reports(socket_.native_handle()) ? Reports::on : Reports::unavailable;
    if (queued_byte_reports_ == Reports::unavailable || buffer.size() == 0)
        return socket_.async_read_some(buffer, use_nothrow);
    return async_read_drained(socket_, buffer, peer_waits, use_nothrow);
}

asio::awaitable<Stream::Result> Stream::tls_read_some(asio::mutable_buffer buffer) {
    for (;;) {
        boost::system::error_code ec;
        const std::size_t n = read_now(buffer, ec);
        if (ec != asio::error::would_block) co_return Result{ec, n};
        auto [wait_ec] = co_await socket_.async_wait(read_wants_write_ ? StreamSocket::wait_write : StreamSocket::wait_read,
                                                     use_nothrow);
        if (wait_ec) co_return Result{wait_ec, 0};
    }
}

std::size_t Stream::read_now(asio::mutable_buffer buffer, boost::system::error_code& ec) {
    if (!ssl_) return socket_.read_some(buffer, ec);
    ec = {};
    if (buffer.size() == 0) return 0;
    ERR_clear_error();
    std::size_t n = 0;
    read_wants_write_ = false;
    const int rc = SSL_read_ex(ssl_, buffer.data(), buffer.size(), &n);
    if (rc == 1) return n;
    switch (need_of(ssl_, rc)) {
        case Need::read: ec = asio::error::would_block; break;
        case Need::write:
            read_wants_write_ = true;
            ec = asio::error::would_block;
            break;
        case Need::closed: ec = asio::error::eof; break;
        case Need::failed:
            ERR_clear_error();
            ec = asio::error::connection_reset;
            break;
    }
    return 0;
}

bool Stream::unix_domain() {
    if (family_ < 0) {
        boost::system::error_code ec;
        const auto local = socket_.local_endpoint(ec);
        family_ = ec ? AF_UNSPEC : local.protocol().family();
    }
    return family_ == AF_UNIX;
}

bool Stream::quiet_since_drained() {
    return !ssl_ && queued_byte_reports_ == Reports::on && proxy::quiet_since_drained(socket_);
}

asio::awaitable<Stream::WaitResult> Stream::readable() {
    if (!ssl_) return socket_.async_wait(StreamSocket::wait_read, use_nothrow);
    return tls_readable();
}

asio::awaitable<Stream::WaitResult> Stream::tls_readable() {
    // Decrypted bytes OpenSSL holds would never wake a wait on the socket. (Not
    // SSL_has_pending(): that also counts part of a record, which needs the socket.)
    if (SSL_pending(ssl_) > 0) co_return WaitResult{};
    co_return co_await socket_.async_wait(read_wants_write_ ? StreamSocket::wait_write : StreamSocket::wait_read,
                                          use_nothrow);
}

asio::awaitable<Stream::Result> Stream::tls_write() {
    std::size_t done = 0;
    while (done < tls_out_.size()) {
        if (ssl_ == nullptr) co_return Result{asio::error::bad_descriptor, done};
        ERR_clear_error();
        std::size_t n = 0;
        const int rc = SSL_write_ex(ssl_, tls_out_.data() + done, tls_out_.size() - done, &n);
        if (rc == 1) {
            done += n;
            continue;
        }
        const Need need = need_of(ssl_, rc);
        if (need != Need::read && need != Need::write) {
            ERR_clear_error();
            co_return Result{asio::error::connection_reset, done};
        }
        auto [ec] = co_await socket_.async_wait(wait_for(need), use_nothrow);
        if (ec) co_return Result{ec, done};
    }
    co_return Result{boost::system::error_code{}, done};
}

void Stream::write_now(std::string_view bytes) {
    if (!socket_.is_open() || bytes.empty()) return;
    boost::system::error_code ec;
    socket_.native_non_blocking(true, ec);
    if (!ssl_) {
        socket_.non_blocking(true, ec);
        socket_.write_some(asio::buffer(bytes), ec);
        return;
    }
    ERR_clear_error();
    std::size_t n = 0;
    (void)SSL_write_ex(ssl_, bytes.data(), bytes.size(), &n);
    ERR_clear_error();
}

asio::awaitable<Stream::Result> Stream::finish_write() {
    if (ssl_) co_return co_await tls_write();
    co_return co_await asio::async_write(socket_, rest_, asio::as_tuple(asio::use_awaitable));
}

std::size_t Stream::send_iov(boost::system::error_code& ec) {
    ec = {};
    if (iov_.empty()) return 0;
    if (!socket_.is_open()) {
        ec = asio::error::bad_descriptor;
        return 0;
    }
    msghdr message{};
    message.msg_iov = iov_.data();
    // Past IOV_MAX pieces, the first IOV_MAX go now and the rest through the slow path.
    message.msg_iovlen = std::min<std::size_t>(iov_.size(), IOV_MAX);
    for (;;) {
        const ssize_t n = ::sendmsg(socket_.native_handle(), &message, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n >= 0) return static_cast<std::size_t>(n);
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        ec = boost::system::error_code(errno, asio::error::get_system_category());
        return 0;
    }
}

void Stream::set_non_blocking() {
    boost::system::error_code ignored;
    socket_.non_blocking(true, ignored);
}

void Stream::cancel() {
    boost::system::error_code ignored;
    socket_.cancel(ignored);
}

void Stream::shutdown() {
    boost::system::error_code ignored;
    socket_.shutdown(StreamSocket::shutdown_both, ignored);
}

void Stream::close() {
    if (ssl_ != nullptr && socket_.is_open() && SSL_is_init_finished(ssl_) == 1) {
        // close_notify if the socket takes it now; a peer that reads on sees a clean end.
        ERR_clear_error();
        (void)SSL_shutdown(ssl_);
        ERR_clear_error();
    }
    free_tls();
    boost::system::error_code ignored;
    socket_.shutdown(StreamSocket::shutdown_both, ignored);
    socket_.close(ignored);
}

}  // namespace pglane::proxy
