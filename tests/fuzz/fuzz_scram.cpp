// Fuzz target: SCRAM-SHA-256 message parsing on both sides, verifiers and base64.
// pglane's ServerExchange reads what any client sends before authentication; its
// ClientExchange reads what a server answers. Neither may crash, accept a malformed message,
// or authenticate without the right proof.
//
// Input: mode byte, then the text. Modes 0-1: two SASL messages separated by the first NUL
// (client-first / client-final, or server-first / server-final); mode 2: a stored verifier;
// mode 3: base64 text; mode 4: a 2-byte length, a SASLInitialResponse body of that length, a
// client-final (the exchange offering SCRAM-SHA-256-PLUS too, as over TLS).

#include "protocol/md5_auth.hpp"
#include "protocol/messages.hpp"
#include "protocol/scram.hpp"
#include "tests/fuzz/fuzz_check.hpp"

#include <algorithm>
#include <string>

using namespace pglane::protocol;
namespace scram = pglane::protocol::scram;

namespace {

constexpr std::string_view server_nonce = "3rfcNHYJY1ZVvWVs7j";
constexpr std::string_view client_nonce = "fyko+d2lbbFgONRv9qkxdawL";

// RFC 7677's test user: password "pencil", this salt, 4096 iterations. Derived once.
const scram::Verifier& known_verifier() {
    static const scram::Verifier verifier =
        scram::make_verifier("pencil", *scram::base64_decode("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096);
    return verifier;
}

std::pair<std::string_view, std::string_view> split_at_nul(std::string_view text) {
    auto nul = text.find('\0');
    if (nul == std::string_view::npos) return {text, {}};
    return {text.substr(0, nul), text.substr(nul + 1)};
}

void server_side(std::string_view first, std::string_view final_message,
                 std::string_view mechanism = scram::mechanism, std::string_view binding = {}) {
    scram::ServerExchange exchange(known_verifier(), std::string(server_nonce), std::string(binding));
    std::string error;
    if (auto refused = exchange.choose_mechanism(mechanism)) {
        FUZZ_CHECK(!refused->empty() && !exchange.client_first(first, error) && !exchange.authenticated());
        return;
    }
    auto server_first = exchange.client_first(first, error);
    FUZZ_CHECK(server_first.has_value() == error.empty());
    if (!server_first) {
        FUZZ_CHECK(!exchange.client_final(final_message, error) && !exchange.authenticated());
        return;
    }
    FUZZ_CHECK(server_first->starts_with("r="));
    auto server_final = exchange.client_final(final_message, error);
    FUZZ_CHECK(server_final.has_value() == exchange.authenticated());
    if (server_final) {
        // Only the right proof gets here: the recovered ClientKey hashes to the StoredKey.
        FUZZ_CHECK(server_final->starts_with("v=") && exchange.client_key().size() == scram::key_length);
    } else {
        FUZZ_CHECK(!error.empty() && exchange.client_key().empty());
    }
}

void client_side(std::string_view server_first, std::string_view server_final) {
    // A ClientKey secret (what pglane holds for a verifier-stored user): no PBKDF2 for any
    // iteration count the input names, so every input runs in microseconds.
    scram::ClientSecret secret;
    secret.client_key = std::string(scram::key_length, '\x42');
    secret.verifier = known_verifier();
    scram::ClientExchange exchange(std::move(secret), std::string(client_nonce));
    FUZZ_CHECK(exchange.client_first() == "n,,n=,r=" + std::string(client_nonce));
    std::string error;
    auto client_final = exchange.server_first(server_first, error);
    if (!client_final) {
        FUZZ_CHECK(!error.empty());
        FUZZ_CHECK(!exchange.server_final(server_final, error) && !exchange.authenticated());
        return;
    }
    FUZZ_CHECK(client_final->starts_with("c=biws,r=" + std::string(client_nonce)));
    bool ok = exchange.server_final(server_final, error);
    FUZZ_CHECK(ok == exchange.authenticated() && ok == error.empty());
}

void verifier_text(std::string_view text) {
    auto verifier = scram::parse_verifier(text);
    FUZZ_CHECK(verifier.has_value() == scram::is_verifier(text));
    if (verifier) {
        FUZZ_CHECK(verifier->iterations > 0 && !verifier->salt.empty());
        FUZZ_CHECK(verifier->stored_key.size() == scram::key_length && verifier->server_key.size() == scram::key_length);
        FUZZ_CHECK(scram::parse_verifier(scram::format_verifier(*verifier)) == verifier);
        FUZZ_CHECK(!md5::is_md5_hash(text));
    }
    // The md5 side of a stored secret: never true for an empty secret or a verifier.
    if (md5::check_response(text, "alice", "salt", "md5" + std::string(32, '0'))) FUZZ_CHECK(!text.empty() && !verifier);
}

void base64_text(std::string_view text) {
    if (auto raw = scram::base64_decode(text)) {
        FUZZ_CHECK(raw->size() <= text.size() / 4 * 3);
        FUZZ_CHECK(scram::base64_decode(scram::base64_encode(*raw)) == raw);
    }
    FUZZ_CHECK(scram::base64_decode(scram::base64_encode(text)) == std::string(text));
}

void sasl_initial_response(std::string_view body, std::string_view final_message) {
    auto initial = read_sasl_initial_response(as_bytes(body));
    if (!initial) return;
    // As over TLS: both mechanisms offered, PLUS bound to a certificate hash.
    server_side(initial->data, final_message, initial->mechanism, "a certificate's hash");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    pglane::fuzz::Input input(data, size);
    const std::uint8_t mode = input.byte() % 5;
    const std::string_view text = input.rest_text();
    switch (mode) {
        case 0: {
            auto [first, final_message] = split_at_nul(text);
            server_side(first, final_message);
            break;
        }
        case 1: {
            auto [first, final_message] = split_at_nul(text);
            client_side(first, final_message);
            break;
        }
        case 2: verifier_text(text); break;
        case 3: base64_text(text); break;
        default: {
            // Two length bytes, then the SASLInitialResponse body, then the client-final.
            std::size_t body_length = input.byte();
            body_length = body_length << 8 | input.byte();
            std::string_view rest = input.rest_text();
            body_length = std::min(body_length, rest.size());
            sasl_initial_response(rest.substr(0, body_length), rest.substr(body_length));
            break;
        }
    }
    return 0;
}
