#include "proxy/users_file.hpp"

#include "common/text_file.hpp"
#include "protocol/md5_auth.hpp"
#include "protocol/scram.hpp"

#include <unordered_map>

namespace pglane::proxy {

namespace {

bool is_blank(char c) { return c == ' ' || c == '\t'; }

std::string_view skip_blanks(std::string_view text) {
    while (!text.empty() && is_blank(text.front())) text.remove_prefix(1);
    return text;
}

/// One double-quoted field at the start of `line` ('""' is a literal '"'); advances `line`
/// past it. nullopt when the line does not start with '"' or the quote is never closed.
std::optional<std::string> take_quoted(std::string_view& line) {
    if (line.empty() || line.front() != '"') return std::nullopt;
    std::string value;
    for (std::size_t i = 1; i < line.size(); ++i) {
        if (line[i] != '"') {
            value += line[i];
        } else if (i + 1 < line.size() && line[i + 1] == '"') {
            value += '"';
            ++i;
        } else {
            line.remove_prefix(i + 1);
            return value;
        }
    }
    return std::nullopt;
}

UserSecret::Kind kind_of(std::string_view secret) {
    if (protocol::scram::is_verifier(secret)) return UserSecret::Kind::scram;
    if (protocol::md5::is_md5_hash(secret)) return UserSecret::Kind::md5;
    return UserSecret::Kind::plaintext;
}

/// One non-comment line -> its entry, or an error message (without the line number).
std::optional<UserSecret> parse_line(std::string_view line, std::string& error) {
    auto user = take_quoted(line);
    if (!user) {
        error = "expected a double-quoted user name";
        return std::nullopt;
    }
    if (user->empty()) {
        error = "empty user name";
        return std::nullopt;
    }
    if (line.empty() || !is_blank(line.front())) {
        error = "expected whitespace and a double-quoted secret after the user name";
        return std::nullopt;
    }
    line = skip_blanks(line);
    auto secret = take_quoted(line);
    if (!secret) {
        error = "expected a double-quoted secret after the user name (is a quote missing?)";
        return std::nullopt;
    }
    // A secret that claims to be a SCRAM verifier but does not parse is a damaged copy, not
    // a password: refuse it rather than accept its text as a plaintext password.
    if (secret->starts_with("SCRAM-SHA-256$") && !protocol::scram::is_verifier(*secret)) {
        error = "malformed SCRAM verifier for user \"" + *user + "\"";
        return std::nullopt;
    }
    auto kind = kind_of(*secret);
    return UserSecret{std::move(*user), std::move(*secret), kind};
}

}  // namespace

std::string_view to_string(UserSecret::Kind kind) {
    switch (kind) {
        case UserSecret::Kind::plaintext: return "plaintext";
        case UserSecret::Kind::md5: return "md5";
        case UserSecret::Kind::scram: return "scram";
    }
    return "unknown";
}

const UserSecret* UsersFile::find(std::string_view user) const {
    for (const auto& entry : users_)
        if (entry.user == user) return &entry;
    return nullptr;
}

std::optional<UsersFile> parse_users_file(std::string_view text, std::string& error) {
    std::vector<UserSecret> users;
    std::unordered_map<std::string, std::size_t> line_of_user;
    std::size_t line_number = 0;
    while (!text.empty()) {
        ++line_number;
        auto end = text.find('\n');
        auto line = text.substr(0, end);
        text = end == std::string_view::npos ? std::string_view{} : text.substr(end + 1);
        if (line.ends_with('\r')) line.remove_suffix(1);
        line = skip_blanks(line);
        if (line.empty() || line.front() == ';' || line.front() == '#') continue;

        std::string line_error;
        auto entry = parse_line(line, line_error);
        if (!entry) {
            error = "line " + std::to_string(line_number) + ": " + line_error;
            return std::nullopt;
        }
        auto [previous, inserted] = line_of_user.emplace(entry->user, line_number);
        if (!inserted) {
            error = "line " + std::to_string(line_number) + ": user \"" + entry->user + "\" is already listed on line " +
                    std::to_string(previous->second);
            return std::nullopt;
        }
        users.push_back(std::move(*entry));
    }
    return UsersFile(std::move(users));
}

std::optional<UsersFile> load_users_file(const std::string& path, std::string& error) {
    const auto contents = read_text_file(path);
    if (!contents) {
        error = "cannot read users file " + path;
        return std::nullopt;
    }
    auto users = parse_users_file(*contents, error);
    if (!users) error = path + ": " + error;
    return users;
}

}  // namespace pglane::proxy
