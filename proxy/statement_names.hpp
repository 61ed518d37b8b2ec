#pragma once
// Statement names on pooled server connections. A connection of a transaction pool serves
// many clients in turn, each with its own prepared statements, and clients reuse the same
// names for different statements ("P_0", "s1"...). pglane prepares a client's named
// statement under a name derived from the client's name and the statement's definition:
// two clients' statements never collide, and the same statement prepared by many clients
// (pgbench, an application's connection pool) is prepared once per server connection.

#include "protocol/bytes.hpp"

#include <functional>
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

/// A server's ErrorResponse body with each pooled statement name in its fields (as quoted in
/// PostgreSQL's messages: `"pglane_` and 32 hex digits`"`) put back as the client knows it.
/// `client_name` maps a pooled name to the client's, empty when unknown (the name is then
/// kept). nullopt when nothing was replaced or the body is malformed.
[[nodiscard]] std::optional<std::string> with_client_statement_names(
    protocol::Bytes body, const std::function<std::string(std::string_view)>& client_name);

/// How many result-column format codes a Bind body carries (0 or 1: one rule for every
/// column; more: one per column, so the client relies on a known column count); nullopt
/// when the body is malformed.
[[nodiscard]] std::optional<int> bind_result_format_count(protocol::Bytes body);

/// The bytes of a Parse body after the statement name: what a definition is.
[[nodiscard]] protocol::Bytes parse_definition(protocol::Bytes body);

}  // namespace pglane::proxy
