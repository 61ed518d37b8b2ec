#pragma once
// Facts gathered by one generic walk over a libpg_query protobuf parse tree: every function
// called, locking clauses, statements that modify data, INTO clauses, temporary relations.
// The walk follows the generated protobuf-c descriptors, so it visits every field of every
// node type (including ones added by a later grammar) without a hand-kept list.
// Internal to routing/ (used by classify_statement.cpp).

#include <string>
#include <string_view>
#include <vector>

struct PgQuery__Node;

namespace pglane::routing {

/// What the catalog-independent table says about a function, by its unqualified name.
enum class FunctionKind {
    ordinary,             // the caller checks volatility in pg_proc
    writer,               // writes, assigns an xid, or depends on this node's session
    session_lock,         // takes a session-level advisory lock: pin the session
    session_set_config,   // set_config(name, value, false): session state
};

[[nodiscard]] FunctionKind known_function_kind(std::string_view unqualified_name);

struct ParseTreeFacts {
    std::vector<std::string> functions;   // as written, deduplicated, in text order
    std::string writer_function;          // first function the table calls a writer
    std::string session_lock_function;    // first session-level advisory lock function
    bool session_set_config = false;      // set_config(..., false or not a constant)
    bool sets_transaction_default = false;  // ...of [default_]transaction_read_only or default_transaction_isolation
    const char* locking_clause = nullptr; // "FOR UPDATE", "FOR SHARE", ... (first found)
    int modifying_statements = 0;         // INSERT/UPDATE/DELETE/MERGE nodes, root included
    bool into_clause = false;             // SELECT ... INTO
    bool temporary_relation = false;      // a relation that is TEMP or in pg_temp
};

/// Walks `root` and everything below it. Iterative: parse-tree depth cannot overflow the stack.
[[nodiscard]] ParseTreeFacts collect_facts(const PgQuery__Node* root);

}  // namespace pglane::routing
