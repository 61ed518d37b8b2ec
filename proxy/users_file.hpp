#pragma once
// The users file (config `auth.users_file`), in PgBouncer's userlist.txt format:
//   "user" "secret"
// one user per line; the secret is a plaintext password, an md5 hash ("md5" + 32 hex) or a
// SCRAM verifier as in pg_authid.rolpassword. A '"' inside a field is written '""'. Blank
// lines and lines starting with ';' or '#' are ignored; as in PgBouncer, anything after the
// second field is ignored too. https://www.pgbouncer.org/config.html#authentication-file-format

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pglane::proxy {

struct UserSecret {
    enum class Kind { plaintext, md5, scram };

    std::string user;
    std::string secret;
    Kind kind = Kind::plaintext;
};

[[nodiscard]] std::string_view to_string(UserSecret::Kind kind);

/// One parsed users file: immutable once loaded (a reload builds a new one), so any thread
/// may read it.
class UsersFile {
public:
    UsersFile() = default;
    explicit UsersFile(std::vector<UserSecret> users) : users_(std::move(users)) {}

    /// The entry for `user` (exact, case-sensitive match as PostgreSQL role names), or null.
    [[nodiscard]] const UserSecret* find(std::string_view user) const;
    [[nodiscard]] const std::vector<UserSecret>& users() const { return users_; }
    [[nodiscard]] std::size_t size() const { return users_.size(); }

private:
    std::vector<UserSecret> users_;
};

/// nullopt + `error` ("line N: ...") on a malformed line or a user listed twice.
[[nodiscard]] std::optional<UsersFile> parse_users_file(std::string_view text, std::string& error);
/// Reads and parses `path`; the error names the file (and the line).
[[nodiscard]] std::optional<UsersFile> load_users_file(const std::string& path, std::string& error);

}  // namespace pglane::proxy
