#include "protocol/scram.hpp"

#include "protocol/messages.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <charconv>
#include <mutex>
#include <unordered_map>
#include <stdexcept>
#include <utility>

namespace pglane::protocol::scram {

namespace {

constexpr std::string_view verifier_prefix = "SCRAM-SHA-256$";

// ---- crypto primitives (OpenSSL); a failure here is not expected life, so it throws ----

std::string sha256(std::string_view data) {
    std::string out(key_length, '\0');
    unsigned int length = 0;
    if (EVP_Digest(data.data(), data.size(), reinterpret_cast<unsigned char*>(out.data()), &length,
                   EVP_sha256(), nullptr) != 1 ||
        length != key_length)
        throw std::runtime_error("SHA-256 failed (OpenSSL)");
    return out;
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
    std::string out(key_length, '\0');
    unsigned int length = 0;
    if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
             reinterpret_cast<const unsigned char*>(data.data()), data.size(),
             reinterpret_cast<unsigned char*>(out.data()), &length) == nullptr ||
        length != key_length)
        throw std::runtime_error("HMAC-SHA-256 failed (OpenSSL)");
    return out;
}

std::string compute_salted_password(std::string_view password, std::string_view salt, int iterations);

// PBKDF2 with 4096 iterations costs about a millisecond of CPU: once per (password, salt,
// iterations) is enough. Every login of a user with a plaintext secret hits the same salt
// (the server's verifier, or the one pglane derived), so a connection storm pays it once.
// Process-wide, bounded; the passwords are in memory (users file) anyway.
class SaltedPasswordMemo {
public:
    std::string get(std::string_view password, std::string_view salt, int iterations) {
        std::string key = std::to_string(iterations) + ':' + std::string(salt) + ':' + std::string(password);
        {
            std::lock_guard lock(mutex_);
            if (auto it = memo_.find(key); it != memo_.end()) return it->second;
        }
        std::string value = compute_salted_password(password, salt, iterations);
        std::lock_guard lock(mutex_);
        if (memo_.size() >= max_entries) memo_.clear();
        memo_.emplace(std::move(key), value);
        return value;
    }

private:
    static constexpr std::size_t max_entries = 4096;
    std::mutex mutex_;
    std::unordered_map<std::string, std::string> memo_;
};

SaltedPasswordMemo& salted_password_memo() {
    static SaltedPasswordMemo memo;
    return memo;
}

std::string salted_password(std::string_view password, std::string_view salt, int iterations) {
    return salted_password_memo().get(password, salt, iterations);
}

// SaltedPassword := Hi(Normalize(password), salt, i), RFC 5802 section 3. Hi is PBKDF2.
std::string compute_salted_password(std::string_view password, std::string_view salt, int iterations) {
    std::string out(key_length, '\0');
    if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                          reinterpret_cast<const unsigned char*>(salt.data()), static_cast<int>(salt.size()),
                          iterations, EVP_sha256(), static_cast<int>(key_length),
                          reinterpret_cast<unsigned char*>(out.data())) != 1)
        throw std::runtime_error("PBKDF2-HMAC-SHA-256 failed (OpenSSL)");
    return out;
}

std::string random_bytes(std::size_t n) {
    std::string out(n, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1)
        throw std::runtime_error("RAND_bytes failed (OpenSSL)");
    return out;
}

std::string xor_bytes(std::string_view a, std::string_view b) {
    std::string out(a);
    for (std::size_t i = 0; i < out.size() && i < b.size(); ++i) out[i] = static_cast<char>(out[i] ^ b[i]);
    return out;
}

bool equal_constant_time(std::string_view a, std::string_view b) {
    return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::optional<int> parse_positive_int(std::string_view text) {
    int value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || value < 1) return std::nullopt;
    return value;
}

// nonce = "r=" c-nonce; printable = %x21-2B / %x2D-7E (RFC 5802 section 7): no ',' nor space.
bool is_printable(std::string_view text) {
    for (char c : text)
        if (c < 0x21 || c > 0x7E || c == ',') return false;
    return !text.empty();
}

// ---- SCRAM attribute lists: "a=value,b=value,..." ----

/// Reads one message's attributes front to back, as BodyReader reads a message body.
class AttributeReader {
public:
    explicit AttributeReader(std::string_view message) : message_(message), rest_(message) {}

    /// The value of the next attribute if its name is `name`; nullopt (and nothing consumed)
    /// otherwise.
    std::optional<std::string_view> take(char name) {
        if (rest_.size() < 2 || rest_[0] != name || rest_[1] != '=') return std::nullopt;
        auto end = rest_.find(',');
        auto value = rest_.substr(2, end == std::string_view::npos ? std::string_view::npos : end - 2);
        rest_ = end == std::string_view::npos ? std::string_view{} : rest_.substr(end + 1);
        return value;
    }
    /// Skips one attribute of any name (an extension we do not use).
    void skip() {
        auto end = rest_.find(',');
        rest_ = end == std::string_view::npos ? std::string_view{} : rest_.substr(end + 1);
    }
    [[nodiscard]] char next_name() const { return rest_.empty() ? '\0' : rest_[0]; }
    [[nodiscard]] bool at_end() const { return rest_.empty(); }
    /// Everything consumed so far, without the separating comma.
    [[nodiscard]] std::string_view consumed() const {
        auto n = message_.size() - rest_.size();
        if (n > 0 && !rest_.empty()) --n;
        return message_.substr(0, n);
    }

private:
    std::string_view message_;
    std::string_view rest_;
};

// saslname: ',' and '=' escaped as "=2C" and "=3D" (RFC 5802 section 5.1).
std::string saslname(std::string_view user) {
    std::string out;
    for (char c : user) {
        if (c == ',') out += "=2C";
        else if (c == '=') out += "=3D";
        else out += c;
    }
    return out;
}

std::string missing(char name) { return std::string("malformed SCRAM message (attribute \"") + name + "\" expected)"; }

}  // namespace

// ---- base64 ----

std::string base64_encode(std::string_view raw) {
    std::string out(4 * ((raw.size() + 2) / 3) + 1, '\0');
    auto n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                             reinterpret_cast<const unsigned char*>(raw.data()), static_cast<int>(raw.size()));
    out.resize(static_cast<std::size_t>(n));
    return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
    // EVP_DecodeBlock is lenient (skips whitespace, keeps padding bytes); check strictly first.
    if (text.size() % 4 != 0) return std::nullopt;
    std::size_t padding = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        bool alphabet = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
                        c == '/';
        if (c == '=') {
            if (i + 2 < text.size()) return std::nullopt;  // '=' only in the last two places
            ++padding;
        } else if (!alphabet || padding > 0) {
            return std::nullopt;
        }
    }
    std::string out(text.size() / 4 * 3, '\0');
    auto n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                             reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
    if (n < 0 || static_cast<std::size_t>(n) != out.size()) return std::nullopt;
    out.resize(out.size() - padding);
    return out;
}

// ---- verifiers ----

std::optional<Verifier> parse_verifier(std::string_view text) {
    if (!text.starts_with(verifier_prefix)) return std::nullopt;
    text.remove_prefix(verifier_prefix.size());
    auto dollar = text.find('$');
    if (dollar == std::string_view::npos) return std::nullopt;
    auto iteration_salt = text.substr(0, dollar);
    auto keys = text.substr(dollar + 1);
    auto colon1 = iteration_salt.find(':');
    auto colon2 = keys.find(':');
    if (colon1 == std::string_view::npos || colon2 == std::string_view::npos) return std::nullopt;

    auto iterations = parse_positive_int(iteration_salt.substr(0, colon1));
    auto salt = base64_decode(iteration_salt.substr(colon1 + 1));
    auto stored_key = base64_decode(keys.substr(0, colon2));
    auto server_key = base64_decode(keys.substr(colon2 + 1));
    if (!iterations || !salt || salt->empty() || !stored_key || stored_key->size() != key_length || !server_key ||
        server_key->size() != key_length)
        return std::nullopt;
    return Verifier{*iterations, std::move(*salt), std::move(*stored_key), std::move(*server_key)};
}

Verifier make_verifier(std::string_view password, std::string_view salt, int iterations) {
    auto salted = salted_password(password, salt, iterations);
    return Verifier{iterations, std::string(salt), sha256(hmac_sha256(salted, "Client Key")),
                    hmac_sha256(salted, "Server Key")};
}

std::string format_verifier(const Verifier& verifier) {
    return std::string(verifier_prefix) + std::to_string(verifier.iterations) + ":" + base64_encode(verifier.salt) +
           "$" + base64_encode(verifier.stored_key) + ":" + base64_encode(verifier.server_key);
}

bool is_verifier(std::string_view text) { return parse_verifier(text).has_value(); }

std::optional<Verifier> verifier_for_secret(std::string_view secret) {
    if (auto verifier = parse_verifier(secret)) return verifier;
    // An md5 hash: "md5" + 32 lowercase hex digits, as PostgreSQL recognises it.
    bool md5_hash = secret.size() == 35 && secret.starts_with("md5") &&
                    secret.find_first_not_of("0123456789abcdef", 3) == std::string_view::npos;
    if (secret.empty() || md5_hash) return std::nullopt;
    // One salt per plaintext secret for the life of the process, as a stored verifier has:
    // the derived verifier (and its PBKDF2) is then computed once, not at every login.
    static std::mutex mutex;
    static std::unordered_map<std::string, Verifier> derived;
    std::lock_guard lock(mutex);
    auto it = derived.find(std::string(secret));
    if (it != derived.end()) return it->second;
    if (derived.size() >= 4096) derived.clear();
    return derived.emplace(std::string(secret), make_verifier(secret, random_salt(), default_iterations)).first->second;
}

Verifier mock_verifier(std::string_view user, std::string_view mock_seed) {
    auto salt = sha256(std::string(user) + std::string(mock_seed)).substr(0, 16);
    // Random keys: no proof can hash to them, so the exchange always fails at the proof.
    return Verifier{default_iterations, std::move(salt), random_bytes(key_length), random_bytes(key_length)};
}

std::string random_nonce() { return base64_encode(random_bytes(24)); }
std::string random_salt() { return random_bytes(16); }

// ---- ServerExchange ----

ServerExchange::ServerExchange(Verifier verifier, std::string server_nonce, std::string channel_binding_data)
    : verifier_(std::move(verifier)),
      server_nonce_(std::move(server_nonce)),
      channel_binding_data_(std::move(channel_binding_data)) {}

std::optional<std::string> ServerExchange::choose_mechanism(std::string_view mechanism) {
    if (mechanism == scram::mechanism) return std::nullopt;
    if (mechanism == channel_binding_mechanism && !channel_binding_data_.empty()) {
        plus_ = true;
        return std::nullopt;
    }
    std::string error;
    (void)fail(error, "unsupported SASL mechanism \"" + std::string(mechanism) + "\"");
    return error;
}

void ServerExchange::change_state(State next) {
    bool legal = next == State::failed ||
                 (state_ == State::expecting_client_first && next == State::expecting_client_final) ||
                 (state_ == State::expecting_client_final && next == State::authenticated);
    if (!legal) throw std::logic_error("SCRAM server exchange: illegal state change");
    state_ = next;
}

std::optional<std::string> ServerExchange::fail(std::string& error, std::string message, Failure why) {
    error = std::move(message);
    state_ = State::failed;
    failure_ = why;
    return std::nullopt;
}

// client-first-message = gs2-header client-first-message-bare (RFC 5802 section 7)
// gs2-header = gs2-cbind-flag "," [ authzid ] ","
std::optional<std::string> ServerExchange::client_first(std::string_view message, std::string& error) {
    if (state_ != State::expecting_client_first) return fail(error, "unexpected SCRAM client-first-message");
    std::size_t header_length = 3;
    if (message.starts_with("p=")) {
        const std::string expected = "p=" + std::string(tls_server_end_point) + ",";
        if (!plus_)
            return fail(error, "malformed SCRAM message (channel binding requested without SCRAM-SHA-256-PLUS)");
        if (!message.starts_with(expected))
            return fail(error, "unsupported SCRAM channel-binding type (pglane offers tls-server-end-point)");
        header_length = expected.size() + 1;
    } else if (plus_) {
        return fail(error, "malformed SCRAM message (SCRAM-SHA-256-PLUS without channel binding)");
    } else if (message.starts_with("y,") && !channel_binding_data_.empty()) {
        // Offered binding, the client says it was not: something between removed the offer.
        return fail(error, "SCRAM channel binding negotiation error: the client supports channel binding and "
                           "thinks pglane does not, but pglane offered it");
    } else if (!message.starts_with("n,") && !message.starts_with("y,")) {
        return fail(error, "malformed SCRAM message (unexpected channel-binding flag)");
    }
    if (message.size() < header_length) return fail(error, "malformed SCRAM message (incomplete gs2 header)");
    if (message[header_length - 1] != ',')
        return fail(error, "client uses authorization identity, but it is not supported");
    gs2_header_ = std::string(message.substr(0, header_length));

    auto bare = message.substr(header_length);
    AttributeReader reader(bare);
    if (reader.next_name() == 'm') return fail(error, "client requires an unsupported SCRAM extension");
    // The user name is ignored, as PostgreSQL does: the startup packet's user counts.
    if (!reader.take('n')) return fail(error, missing('n'));
    auto client_nonce = reader.take('r');
    if (!client_nonce) return fail(error, missing('r'));
    if (!is_printable(*client_nonce)) return fail(error, "malformed SCRAM message (invalid client nonce)");
    // Any further attributes are extensions; ignored as PostgreSQL ignores them.

    client_first_bare_ = std::string(bare);
    nonce_ = std::string(*client_nonce) + server_nonce_;
    server_first_ = "r=" + nonce_ + ",s=" + base64_encode(verifier_.salt) + ",i=" + std::to_string(verifier_.iterations);
    change_state(State::expecting_client_final);
    return server_first_;
}

// client-final-message = channel-binding "," nonce ["," extensions] "," proof
std::optional<std::string> ServerExchange::client_final(std::string_view message, std::string& error) {
    if (state_ != State::expecting_client_final) return fail(error, "unexpected SCRAM client-final-message");
    AttributeReader reader(message);
    auto channel_binding = reader.take('c');
    if (!channel_binding) return fail(error, missing('c'));
    auto binding = base64_decode(*channel_binding);
    if (!binding) return fail(error, "malformed SCRAM message (invalid channel binding data)");
    const std::string expected_binding = plus_ ? gs2_header_ + channel_binding_data_ : gs2_header_;
    if (*binding != expected_binding) return fail(error, "SCRAM channel binding check failed");
    auto nonce = reader.take('r');
    if (!nonce) return fail(error, missing('r'));
    if (*nonce != nonce_) return fail(error, "SCRAM nonce mismatch (the client-final nonce is not the one agreed)");
    while (!reader.at_end() && reader.next_name() != 'p') reader.skip();
    auto without_proof = reader.consumed();
    auto proof_text = reader.take('p');
    if (!proof_text) return fail(error, missing('p'));
    if (!reader.at_end()) return fail(error, "malformed SCRAM message (garbage after the proof)");
    auto proof = base64_decode(*proof_text);
    if (!proof || proof->size() != key_length) return fail(error, "malformed SCRAM message (invalid proof)");

    auto auth_message = client_first_bare_ + "," + server_first_ + "," + std::string(without_proof);
    auto client_key = xor_bytes(*proof, hmac_sha256(verifier_.stored_key, auth_message));
    if (!equal_constant_time(sha256(client_key), verifier_.stored_key))
        return fail(error, "password authentication failed (SCRAM proof does not match)", Failure::wrong_proof);

    client_key_ = std::move(client_key);
    change_state(State::authenticated);
    return "v=" + base64_encode(hmac_sha256(verifier_.server_key, auth_message));
}

// ---- ClientExchange ----

ClientExchange::ClientExchange(ClientSecret secret, std::string client_nonce)
    : secret_(std::move(secret)), client_nonce_(std::move(client_nonce)) {}

void ClientExchange::change_state(State next) {
    bool legal = next == State::failed || (state_ == State::initial && next == State::expecting_server_first) ||
                 (state_ == State::expecting_server_first && next == State::expecting_server_final) ||
                 (state_ == State::expecting_server_final && next == State::authenticated);
    if (!legal) throw std::logic_error("SCRAM client exchange: illegal state change");
    state_ = next;
}

std::string ClientExchange::client_first(std::string_view user) {
    change_state(State::expecting_server_first);
    client_first_bare_ = "n=" + saslname(user) + ",r=" + client_nonce_;
    return "n,," + client_first_bare_;
}

// server-first-message = [reserved-mext ","] nonce "," salt "," iteration-count ["," extensions]
std::optional<std::string> ClientExchange::server_first(std::string_view message, std::string& error) {
    auto fail = [&](std::string text) -> std::optional<std::string> {
        error = std::move(text);
        state_ = State::failed;
        return std::nullopt;
    };
    if (state_ != State::expecting_server_first) return fail("unexpected SCRAM server-first-message");
    AttributeReader reader(message);
    if (reader.next_name() == 'm') return fail("server requires an unsupported SCRAM extension");
    auto nonce = reader.take('r');
    if (!nonce) return fail(missing('r'));
    if (!nonce->starts_with(client_nonce_) || nonce->size() == client_nonce_.size() || !is_printable(*nonce))
        return fail("invalid SCRAM response (the server's nonce does not extend the client's)");
    auto salt_text = reader.take('s');
    if (!salt_text) return fail(missing('s'));
    auto salt = base64_decode(*salt_text);
    if (!salt || salt->empty()) return fail("malformed SCRAM message (invalid salt)");
    auto iteration_text = reader.take('i');
    if (!iteration_text) return fail(missing('i'));
    auto iterations = parse_positive_int(*iteration_text);
    if (!iterations) return fail("malformed SCRAM message (invalid iteration count)");

    std::string client_key;
    std::string server_key;
    if (!secret_.password.empty()) {
        auto salted = salted_password(secret_.password, *salt, *iterations);
        client_key = hmac_sha256(salted, "Client Key");
        server_key = hmac_sha256(salted, "Server Key");
    } else if (secret_.client_key.size() == key_length && secret_.verifier) {
        // A recovered ClientKey is bound to one salt and iteration count: the server must
        // store the same verifier as the one the client authenticated against.
        if (secret_.verifier->salt != *salt || secret_.verifier->iterations != *iterations)
            return fail("the server's SCRAM verifier differs from pglane's (other salt or iteration count): "
                        "store the same verifier on every server, or give pglane the plaintext password");
        client_key = secret_.client_key;
        server_key = secret_.verifier->server_key;
    } else {
        return fail("no password or SCRAM client key to log in to the server with");
    }

    auto without_proof = "c=biws,r=" + std::string(*nonce);  // biws = base64("n,,")
    auto auth_message = client_first_bare_ + "," + std::string(message) + "," + without_proof;
    auto proof = xor_bytes(client_key, hmac_sha256(sha256(client_key), auth_message));
    expected_server_signature_ = hmac_sha256(server_key, auth_message);
    change_state(State::expecting_server_final);
    return without_proof + ",p=" + base64_encode(proof);
}

// server-final-message = (server-error / verifier) ["," extensions]
bool ClientExchange::server_final(std::string_view message, std::string& error) {
    auto fail = [&](std::string text) {
        error = std::move(text);
        state_ = State::failed;
        return false;
    };
    if (state_ != State::expecting_server_final) return fail("unexpected SCRAM server-final-message");
    AttributeReader reader(message);
    if (auto server_error = reader.take('e')) return fail("the server rejected SCRAM authentication: " + std::string(*server_error));
    auto signature_text = reader.take('v');
    if (!signature_text) return fail(missing('v'));
    auto signature = base64_decode(*signature_text);
    if (!signature) return fail("malformed SCRAM message (invalid server signature)");
    if (!equal_constant_time(*signature, expected_server_signature_))
        return fail("incorrect server signature: the server does not know the password's verifier");
    change_state(State::authenticated);
    return true;
}

std::optional<std::string> mechanisms_without_channel_binding(std::span<const std::byte> mechanisms) {
    BodyReader list(mechanisms);
    std::string kept;
    for (std::string_view name = list.cstring(); !list.failed(); name = list.cstring()) {
        if (name.empty()) {
            kept.push_back('\0');
            return kept;
        }
        if (name == channel_binding_mechanism) continue;
        kept.append(name);
        kept.push_back('\0');
    }
    return std::nullopt;
}

}  // namespace pglane::protocol::scram
