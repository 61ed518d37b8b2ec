#pragma once
// One parsed statement -> its Classification. Internal to routing/classifier.cpp, which
// parses, splits and merges; this file knows the statement types.

#include "routing/classifier.hpp"

struct PgQuery__Node;

namespace pglane::routing {

/// Classifies one raw statement from the parse tree. `parsed` and `statement_count` are left
/// for the caller to set.
void classify_statement(const PgQuery__Node& statement, Classification& out);

}  // namespace pglane::routing
