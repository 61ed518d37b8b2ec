#pragma once
// Guards that keep a client's statement from exhausting a worker's stack. libpg_query turns
// the tree into protobuf recursively, and protobuf-c unpacks it recursively, both without a
// depth check: `SELECT 1 + 1 + ... + 1` with tens of thousands of terms (left-associative
// chains are not bounded by the grammar's own 10,000-level stack) crashes the process.
// Statements that could nest that deeply are refused before parsing and go to the primary.

#include <cstddef>
#include <cstdint>
#include <string>

namespace pglane::routing {

/// Largest tree depth (estimated from the tokens) a statement may have to be parsed.
inline constexpr std::size_t max_estimated_depth = 1000;

/// Largest nesting of protobuf messages unpacked from libpg_query's output.
inline constexpr std::size_t max_message_nesting = 2000;

/// True when `sql` (NUL-terminated) could build a tree deeper than max_estimated_depth.
/// Short statements cannot, so only long ones pay for a scan (pg_query_scan, iterative).
[[nodiscard]] bool may_nest_too_deeply(const std::string& sql);

/// The deepest nesting of messages in a packed libpg_query ParseResult, read iteratively;
/// stops counting past `limit`. Returns SIZE_MAX when the bytes are malformed.
[[nodiscard]] std::size_t message_nesting(const std::uint8_t* data, std::size_t length, std::size_t limit);

}  // namespace pglane::routing
