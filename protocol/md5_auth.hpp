#pragma once
// PostgreSQL's MD5 password authentication, without I/O.
// https://www.postgresql.org/docs/15/auth-password.html
// https://www.postgresql.org/docs/15/protocol-flow.html (AuthenticationMD5Password)
//
// The stored form (pg_authid.rolpassword) is "md5" + hex(md5(password + user)); on the wire
// the client answers a 4-byte salt with "md5" + hex(md5(hex(md5(password + user)) + salt)).
// Like PostgreSQL, a user whose stored secret is a SCRAM verifier cannot use md5: the
// caller should run SCRAM instead (PostgreSQL switches to SCRAM in that case).

#include <string>
#include <string_view>

namespace pglane::protocol::md5 {

/// "md5" + hex(md5(password + user)): what PostgreSQL stores with password_encryption = md5.
[[nodiscard]] std::string password_hash(std::string_view user, std::string_view password);

/// "md5" + hex(md5(<hex part of stored_md5_hash> + salt)): the PasswordMessage payload
/// (without its NUL) a client sends for AuthenticationMD5Password with that salt.
[[nodiscard]] std::string salted_response(std::string_view stored_md5_hash, std::string_view salt4);

/// "md5" + exactly 32 lowercase hex digits, as PostgreSQL recognises a stored md5 hash.
[[nodiscard]] bool is_md5_hash(std::string_view text);

/// Whether `client_response` is right for `salt`, given the stored secret: an md5 hash, or a
/// plaintext password (hashed with `user` first). Constant-time comparison. Always false for
/// an empty secret (PostgreSQL refuses empty passwords) and for a SCRAM verifier.
[[nodiscard]] bool check_response(std::string_view stored, std::string_view user, std::string_view salt,
                                  std::string_view client_response);

}  // namespace pglane::protocol::md5
