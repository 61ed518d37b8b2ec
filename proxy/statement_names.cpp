#include "proxy/statement_names.hpp"

#include "protocol/messages.hpp"
#include "proxy/sql_text.hpp"

#include <openssl/evp.h>
#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>

#include <algorithm>
#include <array>

namespace pglane::proxy {

namespace {

// The length of a NUL-terminated string at the front of `bytes`, or npos.
std::size_t cstring_length(protocol::Bytes bytes) {
    auto nul = std::find(bytes.begin(), bytes.end(), std::byte{0});
    if (nul == bytes.end()) return std::string_view::npos;
    return static_cast<std::size_t>(nul - bytes.begin());
}

}  // namespace

protocol::Bytes parse_definition(protocol::Bytes body) {
    std::size_t name = cstring_length(body);
    if (name == std::string_view::npos) return {};
    return body.subspan(name + 1);
}

namespace {

// A pooled name: this prefix, then the first bytes of a SHA-256 digest in lower-case hex.
constexpr std::string_view pooled_prefix = "pglane_";
constexpr std::size_t pooled_digest_bytes = 16;
constexpr std::size_t pooled_name_length = pooled_prefix.size() + 2 * pooled_digest_bytes;

/// Whether a pooled name starts at `text[at]`.
bool pooled_name_at(std::string_view text, std::size_t at) {
    if (text.size() < at + pooled_name_length || text.substr(at, pooled_prefix.size()) != pooled_prefix) return false;
    return std::all_of(text.begin() + static_cast<std::ptrdiff_t>(at + pooled_prefix.size()),
                       text.begin() + static_cast<std::ptrdiff_t>(at + pooled_name_length),
                       [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

}  // namespace

std::string pooled_statement_name(std::string_view client_name, protocol::Bytes definition) {
    std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
    unsigned int length = 0;
    EVP_MD_CTX* context = EVP_MD_CTX_new();
    EVP_DigestInit_ex(context, EVP_sha256(), nullptr);
    EVP_DigestUpdate(context, client_name.data(), client_name.size());
    const unsigned char separator = 0;
    EVP_DigestUpdate(context, &separator, 1);
    EVP_DigestUpdate(context, definition.data(), definition.size());
    EVP_DigestFinal_ex(context, digest.data(), &length);
    EVP_MD_CTX_free(context);
    static constexpr char hex[] = "0123456789abcdef";
    std::string name(pooled_prefix);
    for (std::size_t i = 0; i < pooled_digest_bytes && i < length; ++i) {
        name.push_back(hex[digest[i] >> 4]);
        name.push_back(hex[digest[i] & 0x0f]);
    }
    return name;
}

bool append_renamed(std::string& out, char tag, protocol::Bytes body, std::string_view name) {
    // Where the statement name starts in the body, per message type.
    std::size_t at = 0;
    if (tag == 'B') {
        std::size_t portal = cstring_length(body);
        if (portal == std::string_view::npos) return false;
        at = portal + 1;
    } else if (tag == 'D' || tag == 'C') {
        if (body.empty()) return false;
        at = 1;
    } else if (tag != 'P') {
        return false;
    }
    std::size_t old = cstring_length(body.subspan(std::min(at, body.size())));
    if (at > body.size() || old == std::string_view::npos) return false;
    protocol::MessageWriter(out, tag)
        .raw(protocol::as_text(body.first(at)))
        .cstring(name)
        .raw(protocol::as_text(body.subspan(at + old + 1)));
    return true;
}

bool append_with_query(std::string& out, protocol::Bytes body, std::string_view query) {
    std::size_t name = cstring_length(body);
    if (name == std::string_view::npos) return false;
    std::size_t old = cstring_length(body.subspan(name + 1));
    if (old == std::string_view::npos) return false;
    protocol::MessageWriter(out, 'P')
        .raw(protocol::as_text(body.first(name + 1)))
        .cstring(query)
        .raw(protocol::as_text(body.subspan(name + 1 + old + 1)));
    return true;
}

namespace {

/// The name an identifier token spells, folded as the parser folds it: a quoted one as
/// written (doubled quotes undone), an unquoted one in ASCII lower case. nullopt for forms
/// that never equal a name pglane tracks unfolded (U&"..." escapes).
std::optional<std::string> folded_identifier(std::string_view token) {
    if (token.empty()) return std::nullopt;
    std::string name;
    if (token.front() == '"') {
        if (token.size() < 2 || token.back() != '"') return std::nullopt;
        for (std::size_t i = 1; i + 1 < token.size(); ++i) {
            name += token[i];
            if (token[i] == '"') ++i;   // "" stands for one quote
        }
        return name;
    }
    if (token.size() > 1 && (token[0] == 'U' || token[0] == 'u') && token[1] == '&') return std::nullopt;
    for (char ch : token) name += (ch >= 'A' && ch <= 'Z') ? static_cast<char>(ch - 'A' + 'a') : ch;
    return name;
}

}  // namespace

std::optional<std::string> rename_sql_statement_name(const std::string& sql, std::string_view from, std::string_view to) {
    PgQueryScanResult scan = pg_query_scan(sql.c_str());
    std::optional<std::string> renamed;
    if (scan.error == nullptr) {
        PgQuery__ScanResult* tokens = pg_query__scan_result__unpack(
            nullptr, scan.pbuf.len, reinterpret_cast<const std::uint8_t*>(scan.pbuf.data));
        if (tokens != nullptr) {
            std::string out;
            std::size_t copied = 0;
            for (std::size_t i = 0; i + 1 < tokens->n_tokens; ++i) {
                const PgQuery__Token keyword = tokens->tokens[i]->token;
                if (keyword != PG_QUERY__TOKEN__EXECUTE && keyword != PG_QUERY__TOKEN__PREPARE &&
                    keyword != PG_QUERY__TOKEN__DEALLOCATE)
                    continue;
                // The scanner reports comments as tokens of their own.
                auto next = [&](std::size_t from_token) {
                    std::size_t at = from_token + 1;
                    while (at < tokens->n_tokens && (tokens->tokens[at]->token == PG_QUERY__TOKEN__SQL_COMMENT ||
                                                     tokens->tokens[at]->token == PG_QUERY__TOKEN__C_COMMENT))
                        ++at;
                    return at;
                };
                std::size_t at = next(i);
                if (at < tokens->n_tokens && keyword == PG_QUERY__TOKEN__DEALLOCATE &&
                    tokens->tokens[at]->token == PG_QUERY__TOKEN__PREPARE)
                    at = next(at);
                if (at >= tokens->n_tokens) break;
                const PgQuery__ScanToken& name = *tokens->tokens[at];
                // Not a statement name: PREPARE TRANSACTION, EXECUTE FUNCTION/PROCEDURE of a
                // trigger, GRANT EXECUTE ON, DEALLOCATE ALL.
                switch (name.token) {
                    case PG_QUERY__TOKEN__TRANSACTION: case PG_QUERY__TOKEN__FUNCTION:
                    case PG_QUERY__TOKEN__PROCEDURE: case PG_QUERY__TOKEN__ON: case PG_QUERY__TOKEN__ALL:
                        continue;
                    default: break;
                }
                const auto start = static_cast<std::size_t>(name.start);
                const auto end = static_cast<std::size_t>(name.end);
                if (start < copied || end > sql.size() || start > end) continue;
                if (folded_identifier(std::string_view(sql).substr(start, end - start)) != from) continue;
                out.append(sql, copied, start - copied);
                out += quote_identifier(to);
                copied = end;
            }
            if (copied != 0) {
                out.append(sql, copied, std::string::npos);
                renamed = std::move(out);
            }
            pg_query__scan_result__free_unpacked(tokens, nullptr);
        }
    }
    pg_query_free_scan_result(scan);
    return renamed;
}

std::optional<std::string> with_client_statement_names(
    protocol::Bytes body, const std::function<std::string(std::string_view)>& client_name) {
    const std::string_view fields = protocol::as_text(body);
    if (fields.find(pooled_prefix) == std::string_view::npos) return std::nullopt;
    std::string out;
    bool replaced = false;
    std::size_t at = 0;
    while (at < fields.size() && fields[at] != '\0') {
        const std::size_t end = fields.find('\0', at + 1);
        if (end == std::string_view::npos) return std::nullopt;
        const std::string_view value = fields.substr(at + 1, end - at - 1);
        out.push_back(fields[at]);
        for (std::size_t i = 0; i < value.size(); ++i) {
            if (i > 0 && value[i - 1] == '"' && pooled_name_at(value, i) && i + pooled_name_length < value.size() &&
                value[i + pooled_name_length] == '"') {
                const std::string client = client_name(value.substr(i, pooled_name_length));
                if (!client.empty()) {
                    out += client;   // PostgreSQL quotes a name as is, embedded quotes included
                    i += pooled_name_length - 1;
                    replaced = true;
                    continue;
                }
            }
            out.push_back(value[i]);
        }
        out.push_back('\0');
        at = end + 1;
    }
    if (at >= fields.size() || !replaced) return std::nullopt;   // no terminating NUL, or nothing to do
    out.push_back('\0');
    return out;
}

std::optional<int> bind_result_format_count(protocol::Bytes body) {
    protocol::BodyReader reader(body);
    (void)reader.cstring();  // portal
    (void)reader.cstring();  // statement
    std::int16_t formats = reader.i16();
    for (int i = 0; i < formats && !reader.failed(); ++i) (void)reader.i16();
    std::int16_t parameters = reader.i16();
    for (int i = 0; i < parameters && !reader.failed(); ++i) {
        std::int32_t length = reader.i32();
        if (length > 0) (void)reader.bytes(static_cast<std::size_t>(length));
    }
    std::int16_t results = reader.i16();
    if (reader.failed() || formats < 0 || parameters < 0 || results < 0) return std::nullopt;
    return results;
}

}  // namespace pglane::proxy
