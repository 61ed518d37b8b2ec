#include "protocol/scram.hpp"

#include <catch2/catch.hpp>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <string>
#include <vector>

using namespace pglane::protocol::scram;

namespace {

// RFC 7677 section 3: SCRAM-SHA-256 with user "user", password "pencil".
const std::string rfc_client_nonce = "rOprNGfwEbeRWgbNEkqO";
const std::string rfc_server_nonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const std::string rfc_salt_b64 = "W22ZaJ0SNY7soEsUEjb6gQ==";
const std::string rfc_client_first = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const std::string rfc_server_first =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const std::string rfc_client_final =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const std::string rfc_server_final = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

// Made by PostgreSQL 15 itself: SET password_encryption = 'scram-sha-256';
// ALTER ROLE postgres PASSWORD 'pencil-p@ss'; SELECT rolpassword FROM pg_authid ...
const std::string pg_password = "pencil-p@ss";
const std::string pg_verifier =
    "SCRAM-SHA-256$4096:BXY4NLz2pNveZgT7YDZX6g==$maQ9bFo1YkL0PhGwKKG+Gywydg/KzC4bynlx3WpyUXM=:"
    "u0R6gnguGuUC+R1YIK6WBwkh6XZccNQvkPtULmqHUoM=";

std::string hmac(std::string_view key, std::string_view data) {
    unsigned char out[32];
    unsigned int length = 0;
    HMAC(EVP_sha256(), key.data(), int(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
         data.size(), out, &length);
    return {reinterpret_cast<char*>(out), length};
}

/// ClientProof for the RFC salt and iterations, computed independently of ClientExchange.
std::string proof_for(std::string_view password, const std::string& client_first_bare,
                      const std::string& server_first, const std::string& without_proof) {
    unsigned char salted[32];
    auto salt = *base64_decode(rfc_salt_b64);
    PKCS5_PBKDF2_HMAC(password.data(), int(password.size()), reinterpret_cast<const unsigned char*>(salt.data()),
                      int(salt.size()), 4096, EVP_sha256(), 32, salted);
    auto client_key = hmac({reinterpret_cast<char*>(salted), 32}, "Client Key");
    unsigned char stored_key[32];
    SHA256(reinterpret_cast<const unsigned char*>(client_key.data()), client_key.size(), stored_key);
    auto signature = hmac({reinterpret_cast<char*>(stored_key), 32},
                          client_first_bare + "," + server_first + "," + without_proof);
    for (std::size_t i = 0; i < 32; ++i) client_key[i] = char(client_key[i] ^ signature[i]);
    return base64_encode(client_key);
}

Verifier rfc_verifier() { return make_verifier("pencil", *base64_decode(rfc_salt_b64), 4096); }

struct Outcome {
    bool server_accepted = false;
    bool client_accepted = false;
    std::string error;
};

/// Runs one whole exchange between pglane's two sides, stopping at the first error.
Outcome run(ServerExchange& server, ClientExchange& client) {
    Outcome outcome;
    auto server_first = server.client_first(client.client_first(), outcome.error);
    if (!server_first) return outcome;
    auto client_final = client.server_first(*server_first, outcome.error);
    if (!client_final) return outcome;
    auto server_final = server.client_final(*client_final, outcome.error);
    outcome.server_accepted = server_final.has_value();
    if (!server_final) return outcome;
    outcome.client_accepted = client.server_final(*server_final, outcome.error);
    return outcome;
}

/// A server exchange that has answered a valid client-first (with the RFC nonces).
ServerExchange server_after_first(std::string_view gs2 = "n,,") {
    ServerExchange server(rfc_verifier(), rfc_server_nonce);
    std::string error;
    REQUIRE(server.client_first(std::string(gs2) + "n=user,r=" + rfc_client_nonce, error));
    return server;
}

std::string client_final_error(std::string_view message) {
    auto server = server_after_first();
    std::string error;
    auto answer = server.client_final(message, error);
    CHECK_FALSE(answer);
    CHECK_FALSE(server.authenticated());
    return error;
}

}  // namespace

TEST_CASE("the client side reproduces RFC 7677's exchange and accepts its server signature") {
    ClientExchange client(ClientSecret{"pencil", {}, {}}, rfc_client_nonce);
    REQUIRE(client.client_first("user") == rfc_client_first);
    std::string error;
    auto client_final = client.server_first(rfc_server_first, error);
    INFO(error);
    REQUIRE(client_final == rfc_client_final);
    REQUIRE(client.server_final(rfc_server_final, error));
    REQUIRE(client.authenticated());
}

TEST_CASE("the server side accepts RFC 7677's client proof and returns its server signature") {
    ServerExchange server(rfc_verifier(), rfc_server_nonce);
    std::string error;
    REQUIRE(server.client_first(rfc_client_first, error) == rfc_server_first);
    auto server_final = server.client_final(rfc_client_final, error);
    INFO(error);
    REQUIRE(server_final == rfc_server_final);
    REQUIRE(server.authenticated());
    REQUIRE(server.client_key().size() == key_length);
}

TEST_CASE("a verifier made by PostgreSQL parses and formats back to the same text") {
    auto verifier = parse_verifier(pg_verifier);
    REQUIRE(verifier);
    REQUIRE(verifier->iterations == 4096);
    REQUIRE(verifier->salt.size() == 16);
    REQUIRE(format_verifier(*verifier) == pg_verifier);
    REQUIRE(is_verifier(pg_verifier));
}

TEST_CASE("make_verifier reproduces PostgreSQL's verifier from the password and salt") {
    auto verifier = *parse_verifier(pg_verifier);
    REQUIRE(make_verifier(pg_password, verifier.salt, verifier.iterations) == verifier);
}

TEST_CASE("a client with the password and a server with PostgreSQL's verifier authenticate each other") {
    ServerExchange server(*parse_verifier(pg_verifier));
    ClientExchange client(ClientSecret{pg_password, {}, {}});
    auto outcome = run(server, client);
    INFO(outcome.error);
    REQUIRE(outcome.server_accepted);
    REQUIRE(outcome.client_accepted);
    REQUIRE(server.authenticated());
    REQUIRE(client.authenticated());
}

TEST_CASE("the client key recovered from a proof logs in to a server storing the same verifier") {
    auto verifier = *parse_verifier(pg_verifier);
    ServerExchange pglane_front(verifier);
    ClientExchange application(ClientSecret{pg_password, {}, {}});
    REQUIRE(run(pglane_front, application).client_accepted);

    ServerExchange backend(verifier);  // the PostgreSQL server pglane logs in to
    ClientExchange pglane_back(ClientSecret{{}, pglane_front.client_key(), verifier});
    auto outcome = run(backend, pglane_back);
    INFO(outcome.error);
    REQUIRE(outcome.server_accepted);
    REQUIRE(outcome.client_accepted);
}

TEST_CASE("a client key does not log in to a server whose verifier has another salt or iteration count") {
    auto verifier = *parse_verifier(pg_verifier);
    ServerExchange pglane_front(verifier);
    ClientExchange application(ClientSecret{pg_password, {}, {}});
    REQUIRE(run(pglane_front, application).client_accepted);

    auto other_salt = make_verifier(pg_password, "another salt....", 4096);
    auto other_iterations = make_verifier(pg_password, verifier.salt, 4097);
    for (const auto& server_verifier : {other_salt, other_iterations}) {
        ServerExchange backend(server_verifier);
        ClientExchange pglane_back(ClientSecret{{}, pglane_front.client_key(), verifier});
        auto outcome = run(backend, pglane_back);
        REQUIRE_FALSE(outcome.server_accepted);
        REQUIRE(outcome.error.find("salt or iteration count") != std::string::npos);
    }
}

TEST_CASE("a client with neither password nor client key fails with a clear error") {
    ServerExchange server(rfc_verifier());
    ClientExchange client(ClientSecret{});
    auto outcome = run(server, client);
    REQUIRE_FALSE(outcome.server_accepted);
    REQUIRE(outcome.error.find("no password") != std::string::npos);
}

TEST_CASE("a wrong password is refused at the proof and recovers no client key") {
    ServerExchange server(*parse_verifier(pg_verifier));
    ClientExchange client(ClientSecret{"pencil-p@sS", {}, {}});
    auto outcome = run(server, client);
    REQUIRE_FALSE(outcome.server_accepted);
    REQUIRE(outcome.error.find("password authentication failed") != std::string::npos);
    REQUIRE_FALSE(server.authenticated());
    REQUIRE(server.client_key().empty());
}

TEST_CASE("a client-final with a tampered nonce is refused") {
    auto tampered = rfc_client_final;
    tampered[10] = 'X';
    REQUIRE(client_final_error(tampered).find("nonce") != std::string::npos);
}

TEST_CASE("a tampered proof is refused as a wrong password") {
    auto tampered = rfc_client_final;
    tampered[tampered.size() - 3] = tampered[tampered.size() - 3] == 'A' ? 'B' : 'A';
    REQUIRE(client_final_error(tampered).find("password authentication failed") != std::string::npos);
}

TEST_CASE("a malformed client-final fails as a protocol violation, a wrong proof as a wrong password") {
    auto tampered_nonce = rfc_client_final;
    tampered_nonce[10] = 'X';
    auto tampered_proof = rfc_client_final;
    tampered_proof[tampered_proof.size() - 3] = tampered_proof[tampered_proof.size() - 3] == 'A' ? 'B' : 'A';
    std::string error;

    auto malformed = server_after_first();
    CHECK(malformed.failure() == ServerExchange::Failure::none);
    CHECK_FALSE(malformed.client_final(tampered_nonce, error));
    CHECK(malformed.failure() == ServerExchange::Failure::malformed);

    auto wrong = server_after_first();
    CHECK_FALSE(wrong.client_final(tampered_proof, error));
    CHECK(wrong.failure() == ServerExchange::Failure::wrong_proof);

    ServerExchange garbage_first(rfc_verifier());
    CHECK_FALSE(garbage_first.client_first("x,,n=,r=abc", error));
    CHECK(garbage_first.failure() == ServerExchange::Failure::malformed);
}

TEST_CASE("malformed client-first messages are errors") {
    const std::vector<std::string> messages = {
        "",                       // nothing
        "n",                      // header cut short
        "n,",                     // header cut short
        "x,,n=,r=abc",            // unknown channel-binding flag
        "n,,r=abc",               // no user name attribute
        "n,,n=user",              // no nonce
        "n,,n=user,r=",           // empty nonce
        "n,,n=user,r=a b",        // unprintable nonce
        "n,,n=user,x=abc",        // wrong attribute
        "n,a=admin,n=user,r=abc", // authorization identity
        "n,,m=ext,n=user,r=abc",  // mandatory extension
    };
    for (const auto& message : messages) {
        ServerExchange server(rfc_verifier());
        std::string error;
        INFO(message);
        REQUIRE_FALSE(server.client_first(message, error));
        REQUIRE_FALSE(error.empty());
        REQUIRE_FALSE(server.authenticated());
    }
}

TEST_CASE("channel binding p= without SCRAM-SHA-256-PLUS is refused with a clear error") {
    ServerExchange server(rfc_verifier());   // plaintext: no binding data, PLUS not offered
    std::string error;
    REQUIRE_FALSE(server.client_first("p=tls-server-end-point,,n=,r=abc", error));
    REQUIRE(error == "malformed SCRAM message (channel binding requested without SCRAM-SHA-256-PLUS)");
}

TEST_CASE("a client that supports channel binding but did not ask for it (y) is accepted") {
    ServerExchange server(rfc_verifier(), rfc_server_nonce);
    std::string error;
    auto server_first = server.client_first("y,,n=user,r=" + rfc_client_nonce, error);
    REQUIRE(server_first == rfc_server_first);
    auto without_proof = "c=eSws,r=" + rfc_client_nonce + rfc_server_nonce;  // eSws = base64("y,,")
    auto proof = proof_for("pencil", "n=user,r=" + rfc_client_nonce, *server_first, without_proof);
    auto answer = server.client_final(without_proof + ",p=" + proof, error);
    INFO(error);
    REQUIRE(answer);
    REQUIRE(server.authenticated());
}

TEST_CASE("malformed client-final messages are errors") {
    const std::string nonce = "r=" + rfc_client_nonce + rfc_server_nonce;
    const std::string proof = "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const std::vector<std::string> messages = {
        "",
        nonce + "," + proof,                                   // no channel binding
        "c=b!ws," + nonce + "," + proof,                        // bad base64
        "c=eSws," + nonce + "," + proof,                        // binding is "y,," but header was "n,,"
        "c=biws," + proof,                                      // no nonce
        "c=biws," + nonce,                                      // no proof
        "c=biws," + nonce + ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ",   // bad padding
        "c=biws," + nonce + ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7A=",     // proof too short
        "c=biws," + nonce + "," + proof + ",x=trailing",        // garbage after the proof
    };
    for (const auto& message : messages) {
        INFO(message);
        REQUIRE_FALSE(client_final_error(message).empty());
    }
}

TEST_CASE("extensions before the proof are skipped and covered by the proof") {
    auto without_proof = "c=biws,r=" + rfc_client_nonce + rfc_server_nonce + ",x=ext";
    auto proof = proof_for("pencil", "n=user,r=" + rfc_client_nonce, rfc_server_first, without_proof);
    auto server = server_after_first();
    std::string error;
    REQUIRE(server.client_final(without_proof + ",p=" + proof, error));
    // The RFC's proof was made without the extension, so it no longer matches.
    REQUIRE(client_final_error("c=biws,r=" + rfc_client_nonce + rfc_server_nonce +
                               ",x=ext,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
                .find("password authentication failed") != std::string::npos);
}

TEST_CASE("messages out of order are errors, not crashes") {
    ServerExchange server(rfc_verifier());
    std::string error;
    REQUIRE_FALSE(server.client_final(rfc_client_final, error));
    REQUIRE_FALSE(error.empty());

    ClientExchange client(ClientSecret{"pencil", {}, {}}, rfc_client_nonce);
    REQUIRE_FALSE(client.server_first(rfc_server_first, error));
    REQUIRE_FALSE(client.server_final(rfc_server_final, error));
}

TEST_CASE("a server-first whose nonce does not extend the client's is refused") {
    for (const auto& message : {std::string("r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"),
                                "r=" + rfc_client_nonce + ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"}) {
        ClientExchange client(ClientSecret{"pencil", {}, {}}, rfc_client_nonce);
        (void)client.client_first();
        std::string error;
        REQUIRE_FALSE(client.server_first(message, error));
        REQUIRE(error.find("nonce") != std::string::npos);
    }
}

TEST_CASE("malformed server-first messages are errors") {
    const std::string nonce = "r=" + rfc_client_nonce + rfc_server_nonce;
    const std::vector<std::string> messages = {
        "",
        "m=ext," + nonce + ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        nonce + ",i=4096",
        nonce + ",s=W22ZaJ0SNY7soEsUEjb6gQ=",
        nonce + ",s=,i=4096",
        nonce + ",s=W22ZaJ0SNY7soEsUEjb6gQ==",
        nonce + ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0",
        nonce + ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-1",
        nonce + ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=99999999999",
        nonce + ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096x",
    };
    for (const auto& message : messages) {
        ClientExchange client(ClientSecret{"pencil", {}, {}}, rfc_client_nonce);
        (void)client.client_first();
        std::string error;
        INFO(message);
        REQUIRE_FALSE(client.server_first(message, error));
        REQUIRE_FALSE(error.empty());
    }
}

TEST_CASE("a server-final with a wrong signature is rejected") {
    auto answer_with = [](const std::string& server_final, std::string& error) {
        ClientExchange client(ClientSecret{"pencil", {}, {}}, rfc_client_nonce);
        (void)client.client_first("user");
        REQUIRE(client.server_first(rfc_server_first, error));
        bool accepted = client.server_final(server_final, error);
        REQUIRE(client.authenticated() == accepted);
        return accepted;
    };
    std::string error;
    REQUIRE_FALSE(answer_with("v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", error));
    REQUIRE(error.find("incorrect server signature") != std::string::npos);
    REQUIRE_FALSE(answer_with("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4", error));  // bad base64
    REQUIRE_FALSE(answer_with("x=abcd", error));
    REQUIRE_FALSE(answer_with("", error));
    REQUIRE_FALSE(answer_with("e=invalid-proof", error));
    REQUIRE(error.find("invalid-proof") != std::string::npos);
}

TEST_CASE("a plaintext secret yields one derived verifier per process that the password matches") {
    auto first = verifier_for_secret("pencil");
    auto second = verifier_for_secret("pencil");
    auto other = verifier_for_secret("crayon");
    REQUIRE(first);
    REQUIRE(second);
    REQUIRE(other);
    REQUIRE(first->iterations == default_iterations);
    REQUIRE(first->salt.size() == 16);
    REQUIRE(*first == *second);             // PBKDF2 paid once, not at every login
    REQUIRE(first->salt != other->salt);    // each secret its own random salt
    REQUIRE(make_verifier("pencil", first->salt, first->iterations) == *first);
}

TEST_CASE("a stored verifier is used as it is, and empty or md5 secrets give no verifier") {
    REQUIRE(verifier_for_secret(pg_verifier) == parse_verifier(pg_verifier));
    REQUIRE_FALSE(verifier_for_secret(""));
    REQUIRE_FALSE(verifier_for_secret("md52aea419619857e8a27f0f7aa641db0c6"));
}

TEST_CASE("a mock verifier fails like a wrong password and keeps a stable salt per user") {
    ServerExchange server(mock_verifier("nobody", "seed"));
    ClientExchange client(ClientSecret{"anything", {}, {}});
    auto outcome = run(server, client);
    REQUIRE_FALSE(outcome.server_accepted);
    REQUIRE(outcome.error.find("password authentication failed") != std::string::npos);
    REQUIRE(mock_verifier("nobody", "seed").salt == mock_verifier("nobody", "seed").salt);
    REQUIRE(mock_verifier("nobody", "seed").salt != mock_verifier("somebody", "seed").salt);
}

TEST_CASE("damaged or foreign secrets are not verifiers") {
    const std::vector<std::string> texts = {
        "",
        "pencil",
        "md52aea419619857e8a27f0f7aa641db0c6",
        "SCRAM-SHA-256$",
        "SCRAM-SHA-256$4096:BXY4NLz2pNveZgT7YDZX6g==",
        "SCRAM-SHA-256$0:BXY4NLz2pNveZgT7YDZX6g==$maQ9bFo1YkL0PhGwKKG+Gywydg/KzC4bynlx3WpyUXM=:"
        "u0R6gnguGuUC+R1YIK6WBwkh6XZccNQvkPtULmqHUoM=",
        "SCRAM-SHA-256$4096:BXY4NLz2pNveZgT7YDZX6g==$maQ9bFo1YkL0PhGwKKG+Gywydg/KzC4bynlx3WpyUXM=:u0R6gngu",
        "SCRAM-SHA-256$4096:BXY4NLz2pNveZgT7YDZX6g=$maQ9bFo1YkL0PhGwKKG+Gywydg/KzC4bynlx3WpyUXM=:"
        "u0R6gnguGuUC+R1YIK6WBwkh6XZccNQvkPtULmqHUoM=",
        "SCRAM-SHA-1$4096:BXY4NLz2pNveZgT7YDZX6g==$maQ9bFo1YkL0PhGwKKG+Gywydg/KzC4bynlx3WpyUXM=:"
        "u0R6gnguGuUC+R1YIK6WBwkh6XZccNQvkPtULmqHUoM=",
    };
    for (const auto& text : texts) {
        INFO(text);
        REQUIRE_FALSE(is_verifier(text));
    }
}

TEST_CASE("base64 decoding is strict and round-trips every length") {
    for (std::size_t n = 0; n < 8; ++n) {
        std::string raw(n, '\xfb');
        REQUIRE(base64_decode(base64_encode(raw)) == raw);
    }
    REQUIRE(base64_decode("biws") == "n,,");
    REQUIRE_FALSE(base64_decode("biw"));
    REQUIRE_FALSE(base64_decode("bi ws"));
    REQUIRE_FALSE(base64_decode("b=ws"));
    REQUIRE_FALSE(base64_decode("b===="));
    REQUIRE_FALSE(base64_decode("bi-_"));
}

TEST_CASE("random nonces are printable, without commas, and differ") {
    auto a = random_nonce();
    auto b = random_nonce();
    REQUIRE(a.size() == 32);
    REQUIRE(a != b);
    REQUIRE(a.find(',') == std::string::npos);
}

TEST_CASE("a relayed SASL offer loses SCRAM-SHA-256-PLUS and keeps the rest in order") {
    using namespace std::string_literals;
    auto bytes = [](const std::string& text) { return std::as_bytes(std::span(text.data(), text.size())); };
    const std::string offered = "SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0"s;
    CHECK(mechanisms_without_channel_binding(bytes(offered)) == "SCRAM-SHA-256\0\0"s);
    const std::string plain = "SCRAM-SHA-256\0\0"s;
    CHECK(mechanisms_without_channel_binding(bytes(plain)) == plain);
    // Unterminated lists are malformed, not guessed at.
    CHECK_FALSE(mechanisms_without_channel_binding(bytes("SCRAM-SHA-256\0"s)));
    CHECK_FALSE(mechanisms_without_channel_binding(bytes("SCRAM-SHA-256"s)));
}

namespace {

const std::string cb_header = "p=tls-server-end-point,,";
const std::string cb_data = std::string("\x01\x02 a certificate hash \xfe\xff", 24);

/// A SCRAM-SHA-256-PLUS exchange over a connection whose binding data is `cb_data`, the
/// client binding to `client_sees`; the server's error, empty when it accepted.
std::string bound_exchange(const std::string& client_sees) {
    ServerExchange server(rfc_verifier(), rfc_server_nonce, cb_data);
    REQUIRE_FALSE(server.choose_mechanism("SCRAM-SHA-256-PLUS"));
    std::string error;
    const std::string bare = "n=user,r=" + rfc_client_nonce;
    auto server_first = server.client_first(cb_header + bare, error);
    REQUIRE(server_first);
    const std::string without_proof = "c=" + base64_encode(cb_header + client_sees) + ",r=" + rfc_client_nonce +
                                       rfc_server_nonce;
    auto server_final = server.client_final(
        without_proof + ",p=" + proof_for("pencil", bare, *server_first, without_proof), error);
    CHECK(server_final.has_value() == server.authenticated());
    return server_final ? std::string() : error;
}

}  // namespace

TEST_CASE("SCRAM-SHA-256-PLUS binds the exchange to the TLS connection pglane's certificate hash names") {
    CHECK(bound_exchange(cb_data).empty());
    CHECK(bound_exchange("another certificate's hash") == "SCRAM channel binding check failed");
}

TEST_CASE("with binding offered, a client saying it was not (y) is refused as a downgrade") {
    ServerExchange server(rfc_verifier(), rfc_server_nonce, cb_data);
    REQUIRE_FALSE(server.choose_mechanism("SCRAM-SHA-256"));
    std::string error;
    CHECK_FALSE(server.client_first("y,,n=user,r=" + rfc_client_nonce, error));
    CHECK(error.find("channel binding negotiation error") != std::string::npos);
    ServerExchange plain_client(rfc_verifier(), rfc_server_nonce, cb_data);
    REQUIRE_FALSE(plain_client.choose_mechanism("SCRAM-SHA-256"));
    CHECK(plain_client.client_first("n,,n=user,r=" + rfc_client_nonce, error));   // a client that cannot bind
}

TEST_CASE("PLUS needs binding data and a p= header, and p= needs PLUS") {
    ServerExchange plaintext(rfc_verifier(), rfc_server_nonce);
    CHECK(plaintext.choose_mechanism("SCRAM-SHA-256-PLUS") == "unsupported SASL mechanism \"SCRAM-SHA-256-PLUS\"");
    ServerExchange no_header(rfc_verifier(), rfc_server_nonce, cb_data);
    REQUIRE_FALSE(no_header.choose_mechanism("SCRAM-SHA-256-PLUS"));
    std::string error;
    CHECK_FALSE(no_header.client_first("n,,n=user,r=" + rfc_client_nonce, error));
    CHECK(error == "malformed SCRAM message (SCRAM-SHA-256-PLUS without channel binding)");
    ServerExchange other_type(rfc_verifier(), rfc_server_nonce, cb_data);
    REQUIRE_FALSE(other_type.choose_mechanism("SCRAM-SHA-256-PLUS"));
    CHECK_FALSE(other_type.client_first("p=tls-unique,,n=user,r=" + rfc_client_nonce, error));
    CHECK(error.find("unsupported SCRAM channel-binding type") != std::string::npos);
}
