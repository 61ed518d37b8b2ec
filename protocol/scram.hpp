#pragma once
// SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, both sides, without I/O:
// pglane authenticating a client (ServerExchange) and pglane logging in to a server
// (ClientExchange). The messages are the SASL payloads only; framing them into
// AuthenticationSASL* / SASLInitialResponse / SASLResponse is the caller's job.
// https://www.postgresql.org/docs/15/sasl-authentication.html
//
// Password normalization: PostgreSQL runs the password through SASLprep (RFC 4013) before
// hashing it, and uses the raw bytes when the password is not valid UTF-8 or contains
// prohibited characters. pglane always uses the raw bytes. That is identical for every
// ASCII password without control characters (SASLprep changes nothing there); it differs
// only for non-ASCII passwords that SASLprep would rewrite (e.g. non-ASCII spaces mapped to
// U+0020, "soft hyphen" and other mapped-to-nothing characters dropped, NFKC compatibility
// forms) or for passwords with ASCII control characters (prohibited, so PostgreSQL keeps
// them raw too, identical again). For those rare passwords a plaintext secret in the users
// file yields a verifier the client's libpq (which also applies SASLprep) will not match;
// storing the SCRAM verifier made by PostgreSQL itself avoids the difference entirely.

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace pglane::protocol::scram {

inline constexpr std::string_view mechanism = "SCRAM-SHA-256";
inline constexpr std::string_view channel_binding_mechanism = "SCRAM-SHA-256-PLUS";

/// The mechanism list of an AuthenticationSASL request (NUL-terminated names, then an empty
/// one) without SCRAM-SHA-256-PLUS, for a proxy that relays the exchange: the client would
/// bind to the proxy's certificate and the server check its own, and a plaintext client
/// refuses a PLUS offer outright. nullopt when the list is malformed.
[[nodiscard]] std::optional<std::string> mechanisms_without_channel_binding(std::span<const std::byte> mechanisms);
inline constexpr int default_iterations = 4096;  // PostgreSQL's scram_iterations default
inline constexpr std::size_t key_length = 32;    // SHA-256 output

/// A SCRAM secret as PostgreSQL stores it in pg_authid.rolpassword. All fields but
/// `iterations` are raw bytes (not base64).
struct Verifier {
    int iterations = 0;
    std::string salt;
    std::string stored_key;
    std::string server_key;

    friend bool operator==(const Verifier&, const Verifier&) = default;
};

/// "SCRAM-SHA-256$<iter>:<salt b64>$<StoredKey b64>:<ServerKey b64>"; nullopt if `text`
/// is anything else (a plaintext password, an md5 hash, a damaged verifier).
[[nodiscard]] std::optional<Verifier> parse_verifier(std::string_view text);
[[nodiscard]] Verifier make_verifier(std::string_view password, std::string_view salt, int iterations);
[[nodiscard]] std::string format_verifier(const Verifier& verifier);
[[nodiscard]] bool is_verifier(std::string_view text);

/// The verifier to authenticate a client against, from a stored secret: the secret itself
/// when it is a verifier; for a plaintext password, one derived with a fresh random salt and
/// `default_iterations` (as PostgreSQL does for plaintext-stored passwords). nullopt for an
/// empty secret (PostgreSQL refuses empty passwords) and for an md5 hash (SCRAM cannot be
/// derived from it; the client must use md5 authentication instead).
[[nodiscard]] std::optional<Verifier> verifier_for_secret(std::string_view secret);

/// A verifier for a user who does not exist, so that the exchange runs to the end and fails
/// at the proof exactly like a wrong password (PostgreSQL's "mock authentication": the
/// answer must not reveal which user names exist). The salt is derived from `user` and a
/// per-process `mock_seed`, so repeated attempts for one name see the same salt.
[[nodiscard]] Verifier mock_verifier(std::string_view user, std::string_view mock_seed);

/// 24 random bytes (RAND_bytes), base64: printable and without ',', as a nonce must be.
[[nodiscard]] std::string random_nonce();
/// 16 random bytes, raw: PostgreSQL's salt length.
[[nodiscard]] std::string random_salt();

[[nodiscard]] std::string base64_encode(std::string_view raw);
/// Strict: only the standard alphabet, length a multiple of 4, '=' only as final padding.
[[nodiscard]] std::optional<std::string> base64_decode(std::string_view text);

/// The channel binding type pglane offers with SCRAM-SHA-256-PLUS over TLS (RFC 5929), as
/// PostgreSQL does: a hash of the server's own certificate.
inline constexpr std::string_view tls_server_end_point = "tls-server-end-point";

/// pglane authenticating a client: one exchange per login attempt. Without channel binding
/// data (plaintext), SCRAM-SHA-256 alone: the gs2 header must be "n,," or "y,," ("y": the
/// client could bind but was not offered it). With it (TLS: the tls-server-end-point hash of
/// pglane's certificate), SCRAM-SHA-256-PLUS is offered too: "p=tls-server-end-point,," binds
/// the exchange to this TLS connection, and "y,," is refused as a downgrade, since the
/// client was offered binding and says it was not. Owned by one client session; not
/// thread-safe.
class ServerExchange {
public:
    explicit ServerExchange(Verifier verifier, std::string server_nonce = random_nonce(),
                            std::string channel_binding_data = {});

    /// The mechanism the client chose in its SASLInitialResponse; nullopt when acceptable,
    /// else why not (PLUS without binding data). Call before client_first().
    [[nodiscard]] std::optional<std::string> choose_mechanism(std::string_view mechanism);

    /// client-first-message -> server-first-message; nullopt + `error` on malformed input.
    [[nodiscard]] std::optional<std::string> client_first(std::string_view message, std::string& error);
    /// client-final-message -> server-final-message ("v=..."); nullopt when the message is
    /// malformed or the proof is wrong (`error` says which; a wrong proof is a wrong password).
    [[nodiscard]] std::optional<std::string> client_final(std::string_view message, std::string& error);

    [[nodiscard]] bool authenticated() const { return state_ == State::authenticated; }

    /// Why the exchange failed: a malformed or out-of-order message is a protocol violation
    /// (PostgreSQL answers 08P01), a well-formed exchange with a wrong proof is a wrong
    /// password (28P01).
    enum class Failure { none, malformed, wrong_proof };
    [[nodiscard]] Failure failure() const { return failure_; }

    /// The client's ClientKey (raw, 32 bytes), recovered from its proof (ClientProof XOR
    /// ClientSignature) after a successful exchange; empty before. With the verifier's
    /// ServerKey it lets pglane log in to servers that store the same verifier (same salt and
    /// iterations) without knowing the password.
    [[nodiscard]] const std::string& client_key() const { return client_key_; }
    [[nodiscard]] const Verifier& verifier() const { return verifier_; }

private:
    enum class State { expecting_client_first, expecting_client_final, authenticated, failed };
    void change_state(State next);
    std::optional<std::string> fail(std::string& error, std::string message, Failure why = Failure::malformed);

    Verifier verifier_;
    std::string server_nonce_;
    State state_ = State::expecting_client_first;
    Failure failure_ = Failure::none;
    std::string channel_binding_data_;     // empty: binding not offered
    bool plus_ = false;                    // the client chose SCRAM-SHA-256-PLUS
    std::string gs2_header_;               // "n,,", "y,," or "p=tls-server-end-point,,", echoed back in c=
    std::string client_first_bare_;
    std::string server_first_;
    std::string nonce_;                    // client nonce + server nonce
    std::string client_key_;
};

/// What pglane logs in to a server with: a password, or (when only a verifier is stored)
/// the ClientKey recovered by a ServerExchange plus that verifier, whose ServerKey checks the
/// server's signature. The second form works only when the server stores the very same
/// verifier (same salt and iterations); ClientExchange checks and fails clearly otherwise.
struct ClientSecret {
    std::string password;
    std::string client_key;
    std::optional<Verifier> verifier;
};

/// pglane logging in to one server connection: one exchange per login. Not thread-safe.
class ClientExchange {
public:
    explicit ClientExchange(ClientSecret secret, std::string client_nonce = random_nonce());

    /// "n,,n=<user>,r=<nonce>". PostgreSQL ignores the SCRAM user name (the startup packet's
    /// counts), so pglane sends it empty as libpq does; `user` exists for RFC test vectors.
    [[nodiscard]] std::string client_first(std::string_view user = {});
    /// server-first-message -> client-final-message; nullopt + `error` when malformed, when
    /// the server's nonce does not extend ours, or when a ClientKey secret does not fit.
    [[nodiscard]] std::optional<std::string> server_first(std::string_view message, std::string& error);
    /// Checks the server's signature; false + `error` when it is wrong, malformed or "e=".
    [[nodiscard]] bool server_final(std::string_view message, std::string& error);

    [[nodiscard]] bool authenticated() const { return state_ == State::authenticated; }

private:
    enum class State { initial, expecting_server_first, expecting_server_final, authenticated, failed };
    void change_state(State next);

    ClientSecret secret_;
    std::string client_nonce_;
    State state_ = State::initial;
    std::string client_first_bare_;
    std::string expected_server_signature_;
};

}  // namespace pglane::protocol::scram
