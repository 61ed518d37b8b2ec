#pragma once
// The shape of a statement: its text with every numeric and string literal replaced by a
// parameter ($1, $2, ...). Statements that differ only in their literals (pgbench's
// `... WHERE aid = 12345`, an ORM's inlined values) share one shape, so the classification
// cache answers them without a parse. This is a lexical pass only: the classification of a
// shape still comes from the real parser, and the cache uses it only when the literals
// cannot matter (see ClassificationCache).

#include <optional>
#include <string>
#include <string_view>

namespace pglane::routing {

/// The shape of `sql`, or nullopt when there is no literal to mask or the text uses
/// something this pass does not model (parameters or dollar quotes, prefixed strings such
/// as E'' or B'', backslashes inside strings, unterminated quotes or comments): such text is
/// classified as it is.
[[nodiscard]] std::optional<std::string> mask_literals(std::string_view sql);

/// The same into `shape`, which keeps its storage from call to call: false (and `shape`
/// unspecified) where the other returns nullopt.
[[nodiscard]] bool mask_literals(std::string_view sql, std::string& shape);

}  // namespace pglane::routing
