#include "proxy/tls.hpp"

#include "proxy/config.hpp"

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

namespace pglane::proxy {

namespace {

SslContextPtr new_context(const SSL_METHOD* method) {
    SslContextPtr context(SSL_CTX_new(method), SSL_CTX_free);
    if (!context) throw ConfigError(openssl_error("cannot create an OpenSSL context"));
    // TLS 1.2 is the oldest PostgreSQL 15 accepts by default (ssl_min_protocol_version).
    SSL_CTX_set_min_proto_version(context.get(), TLS1_2_VERSION);
    // Partial writes, and retries from wherever the rest of the data is now: the streams
    // write from buffers that move between tries (proxy/stream.hpp).
    SSL_CTX_set_mode(context.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                        SSL_MODE_RELEASE_BUFFERS);
    return context;
}

}  // namespace

std::string_view to_string(ClientTlsMode mode) {
    switch (mode) {
        case ClientTlsMode::disable: return "disable";
        case ClientTlsMode::allow: return "allow";
        case ClientTlsMode::require: return "require";
    }
    return "disable";
}

std::string openssl_error(std::string_view fallback) {
    unsigned long code = ERR_get_error();
    unsigned long last = code;
    while (code != 0) {
        last = code;
        code = ERR_get_error();
    }
    if (last == 0) return std::string(fallback);
    char text[256];
    ERR_error_string_n(last, text, sizeof text);
    return text;
}

SslContextPtr make_client_facing_context(const TlsSettings& settings) {
    SslContextPtr context = new_context(TLS_server_method());
    SSL_CTX* raw = context.get();
    if (SSL_CTX_use_certificate_chain_file(raw, settings.cert_file.c_str()) != 1)
        throw ConfigError(fmt::format("config key \"tls.cert_file\": cannot load \"{}\": {}", settings.cert_file,
                                      openssl_error("unreadable certificate")));
    if (SSL_CTX_use_PrivateKey_file(raw, settings.key_file.c_str(), SSL_FILETYPE_PEM) != 1)
        throw ConfigError(fmt::format("config key \"tls.key_file\": cannot load \"{}\": {}", settings.key_file,
                                      openssl_error("unreadable private key")));
    if (SSL_CTX_check_private_key(raw) != 1)
        throw ConfigError(fmt::format("config key \"tls.key_file\": \"{}\" does not match tls.cert_file: {}",
                                      settings.key_file, openssl_error("mismatched key")));
    // No session resumption, as PostgreSQL: a session is one long connection, and tickets
    // would cost a write per handshake for nothing.
    SSL_CTX_set_num_tickets(raw, 0);
    SSL_CTX_set_options(raw, SSL_OP_NO_TICKET | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_session_cache_mode(raw, SSL_SESS_CACHE_OFF);
    return context;
}

SslContextPtr make_server_facing_context(const TlsSettings& settings) {
    SslContextPtr context = new_context(TLS_client_method());
    if (!settings.server_ca_file.empty() &&
        SSL_CTX_load_verify_locations(context.get(), settings.server_ca_file.c_str(), nullptr) != 1)
        throw ConfigError(fmt::format("config key \"tls.server_ca_file\": cannot load \"{}\": {}",
                                      settings.server_ca_file, openssl_error("unreadable CA file")));
    SSL_CTX_set_session_cache_mode(context.get(), SSL_SESS_CACHE_OFF);
    return context;
}

TlsContexts::TlsContexts(const TlsSettings& settings)
    : mode_(settings.mode), server_facing_(make_server_facing_context(settings)) {
    if (mode_ != ClientTlsMode::disable) client_facing_.store(make_client_facing_context(settings));
}

std::string TlsContexts::reload_certificates(const TlsSettings& settings) {
    if (mode_ == ClientTlsMode::disable) return {};
    try {
        client_facing_.store(make_client_facing_context(settings));
    } catch (const ConfigError& e) {
        return e.what();
    }
    return {};
}

}  // namespace pglane::proxy
