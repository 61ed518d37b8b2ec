#include "proxy/sql_text.hpp"
#include "proxy/client_auth.hpp"

#include "common/log.hpp"
#include "protocol/md5_auth.hpp"
#include "protocol/scram.hpp"

#include <openssl/rand.h>

#include <fmt/format.h>

namespace pglane::proxy {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

constexpr std::uint32_t max_auth_message_bytes = 64 * 1024;
using protocol::auth_md5;
using protocol::auth_sasl;
using protocol::auth_sasl_continue;

const std::string& mock_seed() {
    static const std::string seed = protocol::scram::random_nonce();
    return seed;
}

Disconnect password_failed(std::string_view user, std::string why) {
    log::info("client_auth_failed", {{"user", user}, {"reason", why}});
    return {"28P01", fmt::format("password authentication failed for user \"{}\"", user), "auth_failed"};
}

Disconnect protocol_error(std::string why) {
    return {std::string(protocol::sqlstate::protocol_violation), std::move(why), "bad_auth_message"};
}


struct StoredSecret {
    bool found = false;
    std::string secret;
};

asio::awaitable<StoredSecret> lookup_secret(const SecretSources& sources, std::string_view user,
                                            const std::optional<health::NodeAddress>& primary, const Limits& limits,
                                            SSL_CTX* tls) {
    if (std::shared_ptr<const UsersFile> users = sources.users.load()) {
        if (const UserSecret* entry = users->find(user)) co_return StoredSecret{true, entry->secret};
    }
    if (sources.settings.query.empty() || !primary) co_return StoredSecret{};
    std::string sql = sources.settings.query;
    sql.replace(sql.find("$1"), 2, quote_literal(user));
    ServerConnection connection(co_await asio::this_coro::executor, 0, *primary, limits, tls);
    ServerCredentials credentials;
    credentials.password = sources.settings.query_password;
    // Built outside the co_await: GCC 12 miscompiles braced string arrays in coroutine frames.
    std::vector<std::pair<std::string, std::string>> parameters;
    parameters.emplace_back("user", sources.settings.query_user);
    parameters.emplace_back("database", sources.settings.query_dbname);
    parameters.emplace_back("application_name", "pglane-auth-query");
    auto failure = co_await connection.open(parameters, credentials);
    if (failure) {
        log::warn("auth_query_failed", {{"node", primary->name}, {"error", failure->message}});
        co_return StoredSecret{};
    }
    HiddenResult result = co_await connection.hidden_query(sql);
    connection.terminate();
    if (!result.ok) {
        log::warn("auth_query_failed", {{"node", primary->name}, {"error", result.error.message}});
        co_return StoredSecret{};
    }
    if (result.rows.empty() || result.rows[0].empty() || !result.rows[0][0]) co_return StoredSecret{};
    co_return StoredSecret{true, *result.rows[0][0]};
}

/// Reads one PasswordMessage-family message ('p') from the client.
asio::awaitable<std::optional<std::string>> read_password_message(Stream& client, ByteBuffer& in) {
    for (;;) {
        protocol::Frame frame = protocol::frame_message(in.unread(), max_auth_message_bytes);
        if (frame.status == protocol::FrameStatus::malformed) co_return std::nullopt;
        if (frame.status == protocol::FrameStatus::message) {
            if (frame.tag != 'p') co_return std::nullopt;
            std::string body(protocol::as_text(frame.body));
            in.consume(frame.size);
            co_return body;
        }
        if (frame.header_known()) in.reserve_frame(frame.size);
        else in.compact();
        auto [ec, n] = co_await client.read_some(free_buffer(in));
        if (ec) co_return std::nullopt;
        in.commit(n);
    }
}

asio::awaitable<bool> send(Stream& client, const std::string& bytes) {
    auto [ec, n] = co_await client.write(bytes);
    co_return !ec;
}

asio::awaitable<ClientAuthResult> run_md5(Stream& client, ByteBuffer& in, std::string_view user,
                                          const StoredSecret& stored) {
    ClientAuthResult result;
    std::string salt(4, '\0');
    (void)RAND_bytes(reinterpret_cast<unsigned char*>(salt.data()), 4);
    std::string out;
    protocol::append_authentication(out, auth_md5, salt);
    if (!co_await send(client, out)) co_return ClientAuthResult{Disconnect::quiet("client_left_during_auth"), {}};
    auto answer = co_await read_password_message(client, in);
    if (!answer) co_return ClientAuthResult{protocol_error("expected a password response"), {}};
    std::string response = answer->substr(0, answer->find('\0'));
    if (!stored.found || !protocol::md5::check_response(stored.secret, user, salt, response)) {
        result.stop = password_failed(user, stored.found ? "wrong md5 response" : "unknown user");
        co_return result;
    }
    if (protocol::md5::is_md5_hash(stored.secret)) result.credentials.md5_hash = stored.secret;
    else result.credentials.password = stored.secret;
    co_return result;
}

asio::awaitable<ClientAuthResult> run_scram(Stream& client, ByteBuffer& in, std::string_view user,
                                            const StoredSecret& stored) {
    // Over TLS, SCRAM-SHA-256-PLUS binds the exchange to this connection (a client with
    // channel_binding=require insists on it), as PostgreSQL offers it.
    const std::string binding = client.channel_binding_data();
    ClientAuthResult result;
    std::optional<protocol::scram::Verifier> verifier;
    if (stored.found) verifier = protocol::scram::verifier_for_secret(stored.secret);
    // Unknown users (and md5-only secrets) run a mock exchange that fails at the proof, so
    // the answer does not reveal which user names exist.
    bool can_succeed = verifier.has_value();
    protocol::scram::ServerExchange exchange(verifier ? *verifier : protocol::scram::mock_verifier(user, mock_seed()),
                                             protocol::scram::random_nonce(), binding);
    std::string out;
    std::string mechanisms;
    if (!binding.empty()) mechanisms.append(protocol::scram::channel_binding_mechanism).push_back('\0');
    mechanisms.append(protocol::scram::mechanism).push_back('\0');
    mechanisms.push_back('\0');
    protocol::append_authentication(out, auth_sasl, mechanisms);
    if (!co_await send(client, out)) co_return ClientAuthResult{Disconnect::quiet("client_left_during_auth"), {}};
    auto initial = co_await read_password_message(client, in);
    if (!initial) co_return ClientAuthResult{protocol_error("expected SASLInitialResponse"), {}};
    auto sasl_initial = protocol::read_sasl_initial_response(protocol::as_bytes(*initial));
    if (!sasl_initial) co_return ClientAuthResult{protocol_error("malformed SASLInitialResponse"), {}};
    if (auto refused = exchange.choose_mechanism(sasl_initial->mechanism))
        co_return ClientAuthResult{protocol_error("SCRAM: " + *refused), {}};
    std::string error;
    auto server_first = exchange.client_first(sasl_initial->data, error);
    if (!server_first) co_return ClientAuthResult{protocol_error("SCRAM: " + error), {}};
    out.clear();
    protocol::append_authentication(out, auth_sasl_continue, *server_first);
    if (!co_await send(client, out)) co_return ClientAuthResult{Disconnect::quiet("client_left_during_auth"), {}};
    auto final_message = co_await read_password_message(client, in);
    if (!final_message) co_return ClientAuthResult{protocol_error("expected SASLResponse"), {}};
    auto server_final = exchange.client_final(*final_message, error);
    // A malformed client-final is a protocol violation for known and unknown users alike (as
    // PostgreSQL's mock authentication also parses it first); only a wrong proof is 28P01.
    if (!server_final && exchange.failure() == protocol::scram::ServerExchange::Failure::malformed)
        co_return ClientAuthResult{protocol_error("SCRAM: " + error), {}};
    if (!server_final || !can_succeed) {
        result.stop = password_failed(user, !stored.found ? "unknown user" : !can_succeed ? "stored secret is an md5 hash: use auth.method md5" : error);
        co_return result;
    }
    out.clear();
    protocol::append_authentication(out, protocol::auth_sasl_final, *server_final);
    if (!co_await send(client, out)) co_return ClientAuthResult{Disconnect::quiet("client_left_during_auth"), {}};
    if (protocol::scram::is_verifier(stored.secret)) {
        result.credentials.scram.client_key = exchange.client_key();
        result.credentials.scram.verifier = exchange.verifier();
    } else {
        result.credentials.password = stored.secret;
    }
    co_return result;
}

}  // namespace

asio::awaitable<ClientAuthResult> authenticate_client(Stream& client, ByteBuffer& in, const SecretSources& sources,
                                                      std::string_view user, std::optional<health::NodeAddress> primary,
                                                      const Limits& limits, SSL_CTX* tls) {
    StoredSecret stored = co_await lookup_secret(sources, user, primary, limits, tls);
    switch (sources.settings.method) {
        case AuthSettings::Method::trust: {
            ClientAuthResult result;
            if (stored.found) {
                if (protocol::scram::is_verifier(stored.secret)) {
                    // Without the client's proof there is no ClientKey: servers must trust pglane.
                } else if (protocol::md5::is_md5_hash(stored.secret)) {
                    result.credentials.md5_hash = stored.secret;
                } else {
                    result.credentials.password = stored.secret;
                }
            }
            co_return result;
        }
        case AuthSettings::Method::md5:
            // As PostgreSQL does: a SCRAM-stored secret is checked with SCRAM even under md5.
            if (stored.found && protocol::scram::is_verifier(stored.secret)) co_return co_await run_scram(client, in, user, stored);
            co_return co_await run_md5(client, in, user, stored);
        case AuthSettings::Method::scram_sha_256:
            co_return co_await run_scram(client, in, user, stored);
    }
    co_return ClientAuthResult{};
}

}  // namespace pglane::proxy
