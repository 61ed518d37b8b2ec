#pragma once
// Statement names on pooled server connections. A connection of a transaction pool serves
// many clients in turn, each with its own prepared statements, and clients reuse the same
// names for different statements ("P_0", "s1"...). pglane prepares a client's named
// statement under a name derived from the client's name and the statement's definition:
// two clients' statements never collide, and the same statement prepared by many clients
// (pgbench, an application's connection pool) is prepared once per server connection.

#include "protocol/bytes.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace pglane::proxy {

/// "pglane_" and 32 hex digits of SHA-256 over the client's name and the Parse message's
/// body after the name (query text and parameter types).
[[nodiscard]] std::string pooled_statement_name(std::string_view client_name, protocol::Bytes definition);

/// Appends a Parse ('P'), Bind ('B'), Describe ('D') or Close ('C') message with the
/// statement name in `body` replaced by `name`. `body` must be well formed (the readers in
/// protocol/messages.hpp accepted it); false otherwise, and nothing is appended.
bool append_renamed(std::string& out, char tag, protocol::Bytes body, std::string_view name);

/// Appends a Parse message with the query text in `body` replaced by `query` (the name and
/// the parameter types as they were). False for a malformed body, and nothing is appended.
bool append_with_query(std::string& out, protocol::Bytes body, std::string_view query);

/// `sql` with the prepared-statement name `from` (as the parser folds an identifier)
/// replaced by `to` wherever it follows EXECUTE, PREPARE or DEALLOCATE [PREPARE]: the SQL
/// statements that name a prepared statement, EXPLAIN EXECUTE and CREATE TABLE AS EXECUTE
/// included. Found with libpg_query's scanner, so names in strings and comments stay.
/// nullopt when nothing was replaced or the scanner rejects `sql`.
[[nodiscard]] std::optional<std::string> rename_sql_statement_name(const std::string& sql, std::string_view from,
                                                                   std::string_view to);

/// A server's ErrorResponse or NoticeResponse body with each pooled statement name in its
/// fields (as quoted in PostgreSQL's messages: `"pglane_` and 32 hex digits`"`) put back as the
/// client knows it. `client_name` maps a pooled name to the client's, empty when unknown (the
/// name is then kept). nullopt when nothing was replaced or the body is malformed.
template <typename ClientName>
[[nodiscard]] std::optional<std::string> with_client_statement_names(protocol::Bytes body, ClientName client_name);

/// How many result-column format codes a Bind body carries (0 or 1: one rule for every
/// column; more: one per column, so the client relies on a known column count); nullopt
/// when the body is malformed.
[[nodiscard]] std::optional<int> bind_result_format_count(protocol::Bytes body);

/// The bytes of a Parse body after the statement name: what a definition is.
[[nodiscard]] protocol::Bytes parse_definition(protocol::Bytes body);

namespace statement_names_detail {
/// Length of the pooled name starting at `text[at]` (`pglane_` + 32 hex digits), or 0.
[[nodiscard]] std::size_t pooled_name_at(std::string_view text, std::size_t at);
}  // namespace statement_names_detail

template <typename ClientName>
std::optional<std::string> with_client_statement_names(protocol::Bytes body, ClientName client_name) {
    const std::string_view fields = protocol::as_text(body);
    if (fields.find("pglane_") == std::string_view::npos) return std::nullopt;
    std::string out;
    bool replaced = false;
    std::size_t at = 0;
    while (at < fields.size() && fields[at] != '\0') {
        const std::size_t end = fields.find('\0', at + 1);
        if (end == std::string_view::npos) return std::nullopt;
        std::string_view value = fields.substr(at + 1, end - at - 1);
        out.push_back(fields[at]);
        for (std::size_t i = 0; i < value.size(); ++i) {
            const std::size_t length = statement_names_detail::pooled_name_at(value, i);
            if (length != 0 && i > 0 && value[i - 1] == '"' && i + length < value.size() && value[i + length] == '"') {
                const std::string client = client_name(value.substr(i, length));
                if (!client.empty()) {
                    out += client;   // PostgreSQL quotes a name as is, embedded quotes included
                    i += length - 1;
                    replaced = true;
                    continue;
                }
            }
            out.push_back(value[i]);
        }
        out.push_back('\0');
        at = end + 1;
    }
    if (at >= fields.size()) return std::nullopt;   // no terminating NUL
    out.push_back('\0');
    if (!replaced) return std::nullopt;
    return out;
}

}  // namespace pglane::proxy
