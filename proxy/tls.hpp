#pragma once
// TLS settings and the OpenSSL contexts built from them: one for clients connecting to
// pglane (tls.cert_file, tls.key_file; reloadable so certificates can be renewed without a
// restart) and one for pglane's own connections to servers (tls.server_ca_file).
// https://www.postgresql.org/docs/15/protocol-flow.html#id-1.10.6.7.12 (SSL session encryption)

#include "health/topology.hpp"

#include <atomic>
#include <memory>
#include <string>

struct ssl_ctx_st;
using SSL_CTX = ssl_ctx_st;

namespace pglane::proxy {

/// What pglane does with a client's SSLRequest ("tls.mode").
/// disable: answers 'N'; allow: TLS for clients that ask, plaintext for the others;
/// require: TLS for clients that ask, FATAL 28000 for a plaintext StartupMessage.
enum class ClientTlsMode { disable, allow, require };

struct TlsSettings {
    std::string cert_file;
    std::string key_file;
    ClientTlsMode mode = ClientTlsMode::disable;   // allow when a certificate is given
    std::string server_ca_file;                    // verifies servers (verify-ca, verify-full)
    health::SslMode server_sslmode = health::SslMode::prefer;  // nodes[].sslmode overrides it
};

[[nodiscard]] std::string_view to_string(ClientTlsMode mode);

/// A shared OpenSSL context; SSL objects made from it keep it alive themselves.
using SslContextPtr = std::shared_ptr<SSL_CTX>;

/// Builds the context clients handshake with; throws ConfigError naming the tls key when a
/// file cannot be read or the key does not match the certificate.
[[nodiscard]] SslContextPtr make_client_facing_context(const TlsSettings& settings);

/// Builds the context pglane connects to servers with. The CA file (when given) verifies
/// servers for sslmode verify-ca and verify-full; throws ConfigError when it cannot be read.
[[nodiscard]] SslContextPtr make_server_facing_context(const TlsSettings& settings);

/// The contexts every worker uses, built once at startup. The client-facing one can be
/// replaced at run time (SIGHUP reloads the certificate files); sessions take the current
/// one when a client asks for TLS. Shared by all threads.
class TlsContexts {
public:
    explicit TlsContexts(const TlsSettings& settings);

    /// Null when client TLS is disabled.
    [[nodiscard]] SslContextPtr client_facing() const { return client_facing_.load(); }
    [[nodiscard]] SSL_CTX* server_facing() const { return server_facing_.get(); }
    [[nodiscard]] ClientTlsMode mode() const { return mode_; }

    /// Reads the certificate and key files again; an empty string on success, else why the
    /// old context stays.
    [[nodiscard]] std::string reload_certificates(const TlsSettings& settings);

private:
    ClientTlsMode mode_;
    std::atomic<SslContextPtr> client_facing_;
    SslContextPtr server_facing_;
};

/// The last OpenSSL error queued on this thread as text (and the queue emptied).
[[nodiscard]] std::string openssl_error(std::string_view fallback);

}  // namespace pglane::proxy
