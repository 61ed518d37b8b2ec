#include "routing/classify_statement.hpp"

#include "routing/parse_tree_facts.hpp"

#include <pg_query/pg_query.pb-c.h>

#include <cctype>
#include <string>
#include <string_view>

namespace pglane::routing {
namespace {

// DECLARE's option bits, from PostgreSQL's nodes/parsenodes.h (CURSOR_OPT_HOLD).
constexpr int cursor_option_hold = 0x0020;

std::string_view text(const char* value) { return value != nullptr ? std::string_view(value) : std::string_view(); }

/// A statement that was read-only becomes a write, for `reason`. The first reason stays.
void demote(Classification& out, std::string reason) {
    if (!out.read_only) return;
    out.read_only = false;
    out.reason = std::move(reason);
}

void pin(Classification& out, PinReason reason) {
    if (out.pin == PinReason::none) out.pin = reason;
}

/// "CreateTableAsStmt" -> "CREATE TABLE AS": a readable name for any statement type.
std::string statement_name(const PgQuery__Node& statement) {
    if (statement.node_case == PG_QUERY__NODE__NODE_CHECK_POINT_STMT) return "CHECKPOINT";
    if (statement.node_case == PG_QUERY__NODE__NODE_VACUUM_STMT) {
        return statement.vacuum_stmt->is_vacuumcmd ? "VACUUM" : "ANALYZE";
    }
    const ProtobufCFieldDescriptor* field =
        protobuf_c_message_descriptor_get_field(&pg_query__node__descriptor, statement.node_case);
    if (field == nullptr || field->descriptor == nullptr) return "unknown statement";
    std::string_view type = static_cast<const ProtobufCMessageDescriptor*>(field->descriptor)->short_name;
    if (type.ends_with("Stmt")) type.remove_suffix(4);
    std::string name;
    for (std::size_t i = 0; i < type.size(); ++i) {
        const auto c = static_cast<unsigned char>(type[i]);
        if (i > 0 && std::isupper(c) != 0) name += ' ';
        name += static_cast<char>(std::toupper(c));
    }
    return name;
}

/// What the functions called imply, whatever the statement type.
void apply_function_facts(const ParseTreeFacts& facts, Classification& out) {
    out.functions = facts.functions;
    if (!facts.session_lock_function.empty()) {
        pin(out, PinReason::advisory_lock);
        demote(out, "advisory lock " + facts.session_lock_function);
    }
    if (facts.session_set_config) {
        out.session_state = true;
        if (facts.sets_transaction_default) pin(out, PinReason::session_read_write_default);
    }
    if (!facts.writer_function.empty()) demote(out, "volatile function " + facts.writer_function);
}

/// SELECT, VALUES, TABLE and set operations: read-only unless something in the tree writes.
void classify_select(const PgQuery__Node& statement, Classification& out) {
    const ParseTreeFacts facts = collect_facts(&statement);
    out.read_only = true;
    out.reason = "select";
    if (facts.into_clause) {
        demote(out, "SELECT INTO");
        if (facts.temporary_relation) pin(out, PinReason::temporary_table);
    }
    if (facts.locking_clause != nullptr) demote(out, std::string("locking clause ") + facts.locking_clause);
    if (facts.modifying_statements > 0) demote(out, "data-modifying CTE");
    if (facts.temporary_relation) demote(out, "temporary table");
    apply_function_facts(facts, out);
}

/// Any statement without a rule of its own: a write, named after its type.
void classify_other(const PgQuery__Node& statement, Classification& out) {
    const ParseTreeFacts facts = collect_facts(&statement);
    out.read_only = false;
    out.reason = statement_name(statement);
    if (facts.temporary_relation) pin(out, PinReason::temporary_table);
    apply_function_facts(facts, out);
}

std::string lowered(std::string value) {
    for (char& c : value) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return value;
}

/// The value of a DefElem / option as PostgreSQL's defGetBoolean reads it; a missing
/// argument means true (EXPLAIN (ANALYZE) ...).
bool option_is_true(const PgQuery__Node* arg) {
    if (arg == nullptr) return true;
    std::string value;
    if (arg->node_case == PG_QUERY__NODE__NODE_STRING) {
        value = text(arg->string->sval);
    } else if (arg->node_case == PG_QUERY__NODE__NODE_INTEGER) {
        return arg->integer->ival != 0;
    } else if (arg->node_case == PG_QUERY__NODE__NODE_BOOLEAN) {
        return arg->boolean->boolval;
    } else if (arg->node_case == PG_QUERY__NODE__NODE_A_CONST) {
        const PgQuery__AConst& constant = *arg->a_const;
        if (constant.val_case == PG_QUERY__A__CONST__VAL_IVAL) return constant.ival->ival != 0;
        if (constant.val_case == PG_QUERY__A__CONST__VAL_BOOLVAL) return constant.boolval->boolval;
        if (constant.val_case != PG_QUERY__A__CONST__VAL_SVAL) return true;
        value = text(constant.sval->sval);
    } else {
        return true;
    }
    value = lowered(std::move(value));
    return !(value == "false" || value == "off" || value == "0" || value == "f" || value == "no");
}

std::string constant_text(const PgQuery__Node* node) {
    if (node == nullptr || node->node_case != PG_QUERY__NODE__NODE_A_CONST) return {};
    const PgQuery__AConst& constant = *node->a_const;
    switch (constant.val_case) {
    case PG_QUERY__A__CONST__VAL_SVAL: return std::string(text(constant.sval->sval));
    case PG_QUERY__A__CONST__VAL_IVAL: return std::to_string(constant.ival->ival);
    case PG_QUERY__A__CONST__VAL_FVAL: return std::string(text(constant.fval->fval));
    case PG_QUERY__A__CONST__VAL_BOOLVAL: return constant.boolval->boolval ? "true" : "false";
    default: return {};
    }
}

/// The isolation level a constant names is SERIALIZABLE (in any case, as PostgreSQL reads it).
bool names_serializable(const PgQuery__Node* node) {
    return lowered(constant_text(node)) == "serializable";
}

/// The last DefElem named `name` among options, or null.
const PgQuery__DefElem* find_option(PgQuery__Node* const* options, std::size_t count, std::string_view name) {
    const PgQuery__DefElem* found = nullptr;
    for (std::size_t i = 0; i < count; ++i) {
        const PgQuery__Node* option = options[i];
        if (option != nullptr && option->node_case == PG_QUERY__NODE__NODE_DEF_ELEM &&
            text(option->def_elem->defname) == name)
            found = option->def_elem;
    }
    return found;
}

/// Whether `name` is among DefElem options and true.
bool has_true_option(PgQuery__Node* const* options, std::size_t count, std::string_view name) {
    const PgQuery__DefElem* option = find_option(options, count, name);
    return option != nullptr && option_is_true(option->arg);
}

/// Whether transaction options (BEGIN, START TRANSACTION, SET TRANSACTION) ask for
/// ISOLATION LEVEL SERIALIZABLE. A hot standby refuses that ("cannot use serializable mode
/// in a hot standby"), so such a transaction runs on the primary even when READ ONLY.
bool serializable_option(PgQuery__Node* const* options, std::size_t count) {
    const PgQuery__DefElem* option = find_option(options, count, "transaction_isolation");
    return option != nullptr && names_serializable(option->arg);
}

/// SET name = 'serializable' (any case).
bool sets_serializable(const PgQuery__VariableSetStmt& set) {
    return set.kind == PG_QUERY__VARIABLE_SET_KIND__VAR_SET_VALUE && set.n_args == 1 && names_serializable(set.args[0]);
}

/// EXPLAIN without ANALYZE plans and runs nothing (volatile functions are never folded at
/// plan time), so it is read-only whatever it explains. EXPLAIN ANALYZE runs its statement.
void classify_explain(const PgQuery__ExplainStmt& explain, Classification& out) {
    const bool analyze = has_true_option(explain.options, explain.n_options, "analyze");
    if (explain.query != nullptr && explain.query->node_case == PG_QUERY__NODE__NODE_EXECUTE_STMT) {
        out.execute_name = text(explain.query->execute_stmt->name);
    }
    if (analyze && explain.query != nullptr) {
        classify_statement(*explain.query, out);
        out.reason = "EXPLAIN ANALYZE " + out.reason;
        return;
    }
    out.read_only = true;
    out.reason = "explain without analyze";
}

/// COPY ... TO STDOUT reads; COPY FROM writes; COPY TO a server file or program acts on the
/// node's filesystem, so the primary. https://www.postgresql.org/docs/15/sql-copy.html
void classify_copy(const PgQuery__Node& statement, Classification& out) {
    const PgQuery__CopyStmt& copy = *statement.copy_stmt;
    if (copy.query != nullptr) {
        classify_statement(*copy.query, out);  // COPY (INSERT ... RETURNING) TO STDOUT writes
    } else {
        classify_select(statement, out);  // a plain relation: only functions/temp can demote it
    }
    if (out.read_only) out.reason = "COPY TO STDOUT";
    if (copy.is_from) {
        out.read_only = false;
        out.reason = "COPY FROM";
    } else if (copy.is_program || !text(copy.filename).empty()) {
        out.read_only = false;
        out.reason = copy.is_program ? "COPY TO PROGRAM" : "COPY TO a server file";
    }
}

void classify_declare(const PgQuery__DeclareCursorStmt& declare, Classification& out) {
    if (declare.query != nullptr) classify_statement(*declare.query, out);
    if (out.read_only) out.reason = "declare cursor";
    if ((declare.options & cursor_option_hold) != 0) {
        pin(out, PinReason::with_hold_cursor);
        demote(out, "cursor WITH HOLD");
    }
}

void classify_transaction(const PgQuery__TransactionStmt& statement, Classification& out) {
    out.read_only = true;  // ending or marking a transaction writes nothing by itself
    switch (statement.kind) {
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_BEGIN:
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_START:
        out.serializable = serializable_option(statement.options, statement.n_options);
        if (!has_true_option(statement.options, statement.n_options, "transaction_read_only")) {
            out.transaction = TransactionControl::begin;
            out.read_only = false;
            out.reason = "BEGIN";
        } else if (out.serializable) {
            out.transaction = TransactionControl::begin;
            out.read_only = false;
            out.reason = "BEGIN SERIALIZABLE READ ONLY";
        } else {
            out.transaction = TransactionControl::begin_read_only;
            out.reason = "BEGIN READ ONLY";
        }
        return;
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_COMMIT:
        out.transaction = TransactionControl::commit;
        out.reason = "COMMIT";
        return;
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_ROLLBACK:
        out.transaction = TransactionControl::rollback;
        out.reason = "ROLLBACK";
        return;
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_SAVEPOINT:
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_RELEASE:
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_ROLLBACK_TO:
        out.transaction = TransactionControl::savepoint;
        out.reason = "savepoint";
        return;
    default:  // PREPARE TRANSACTION, COMMIT PREPARED, ROLLBACK PREPARED
        out.transaction = TransactionControl::prepare_transaction;
        out.read_only = false;
        out.reason = "two-phase commit";
        return;
    }
}

void classify_pglane_setting(const PgQuery__VariableSetStmt& set, Classification& out) {
    out.read_only = false;
    out.reason = "pglane setting";
    out.pglane_setting_name = std::string(text(set.name));
    if (set.kind == PG_QUERY__VARIABLE_SET_KIND__VAR_SET_VALUE) {
        std::string value;
        for (std::size_t i = 0; i < set.n_args; ++i) value += (i > 0 ? "," : "") + constant_text(set.args[i]);
        out.pglane_setting_value = std::move(value);
    }
}

/// SET / RESET. https://www.postgresql.org/docs/15/sql-set.html
void classify_set(const PgQuery__VariableSetStmt& set, Classification& out) {
    const std::string_view name = text(set.name);
    if (name.starts_with("pglane.")) return classify_pglane_setting(set, out);
    const bool read_only_setting = name == "default_transaction_read_only" || name == "transaction_read_only";
    if (set.kind == PG_QUERY__VARIABLE_SET_KIND__VAR_SET_MULTI && name == "TRANSACTION") {
        const bool serializable = serializable_option(set.args, set.n_args);
        out.serializable = serializable;
        const PgQuery__DefElem* access = find_option(set.args, set.n_args, "transaction_read_only");
        const bool read_only = access != nullptr && option_is_true(access->arg) && !serializable;
        const bool read_write = access != nullptr && !option_is_true(access->arg);
        out.transaction = read_only                     ? TransactionControl::set_transaction_read_only
                          : serializable || read_write ? TransactionControl::set_transaction_primary
                                                        : TransactionControl::other;
        out.read_only = read_only;
        out.reason = read_only ? "SET TRANSACTION READ ONLY" : "SET TRANSACTION";
        return;
    }
    if (name == "transaction_isolation" && sets_serializable(set)) {
        out.transaction = TransactionControl::set_transaction_primary;   // SET TRANSACTION's other spelling
        out.serializable = true;
    }
    if (set.is_local) {  // lasts until the end of the transaction, which stays on one node
        out.read_only = !read_only_setting;
        out.reason = "SET LOCAL";
        return;
    }
    out.read_only = false;
    out.session_state = true;
    const bool is_reset = set.kind == PG_QUERY__VARIABLE_SET_KIND__VAR_RESET ||
                          set.kind == PG_QUERY__VARIABLE_SET_KIND__VAR_RESET_ALL;
    out.reason = is_reset ? "RESET" : "SET";
    if (set.kind == PG_QUERY__VARIABLE_SET_KIND__VAR_SET_MULTI && name == "SESSION CHARACTERISTICS") {
        out.reason = "SET SESSION CHARACTERISTICS";
        pin(out, PinReason::session_read_write_default);
    } else if (read_only_setting && !is_reset) {
        pin(out, PinReason::session_read_write_default);
    } else if (name == "default_transaction_isolation" && sets_serializable(set)) {
        pin(out, PinReason::session_read_write_default);   // no standby runs a serializable transaction
    }
}

void classify_with_parameters(const PgQuery__Node& statement, Classification& out) {
    const ParseTreeFacts facts = collect_facts(&statement);
    out.read_only = true;
    apply_function_facts(facts, out);
    out.parameters_read_only = out.read_only;
    out.read_only = false;
    out.reason = "EXECUTE";
    out.execute_name = text(statement.execute_stmt->name);
}

}  // namespace

void classify_statement(const PgQuery__Node& statement, Classification& out) {
    switch (statement.node_case) {
    case PG_QUERY__NODE__NODE_SELECT_STMT: return classify_select(statement, out);
    case PG_QUERY__NODE__NODE_VARIABLE_SHOW_STMT:
        out.read_only = true;
        out.reason = "show";
        return;
    case PG_QUERY__NODE__NODE_EXPLAIN_STMT: return classify_explain(*statement.explain_stmt, out);
    case PG_QUERY__NODE__NODE_COPY_STMT: return classify_copy(statement, out);
    case PG_QUERY__NODE__NODE_DECLARE_CURSOR_STMT: return classify_declare(*statement.declare_cursor_stmt, out);
    case PG_QUERY__NODE__NODE_TRANSACTION_STMT: return classify_transaction(*statement.transaction_stmt, out);
    case PG_QUERY__NODE__NODE_VARIABLE_SET_STMT: return classify_set(*statement.variable_set_stmt, out);
    case PG_QUERY__NODE__NODE_DISCARD_STMT:
        out.session_state = true;
        out.discard_all = statement.discard_stmt->target == PG_QUERY__DISCARD_MODE__DISCARD_ALL;
        out.reason = out.discard_all ? "DISCARD ALL" : "DISCARD";
        return;
    case PG_QUERY__NODE__NODE_LISTEN_STMT:
        pin(out, PinReason::listen);
        out.reason = "LISTEN";
        return;
    case PG_QUERY__NODE__NODE_LOAD_STMT:  // loads a library into this one backend
        out.session_state = true;
        out.reason = "LOAD";
        return;
    case PG_QUERY__NODE__NODE_PREPARE_STMT: {
        const PgQuery__PrepareStmt& prepare = *statement.prepare_stmt;
        if (prepare.query != nullptr) classify_statement(*prepare.query, out);
        out.prepare_name = text(prepare.name);
        return;
    }
    case PG_QUERY__NODE__NODE_EXECUTE_STMT: return classify_with_parameters(statement, out);
    case PG_QUERY__NODE__NODE_DEALLOCATE_STMT:
        out.deallocate_name = text(statement.deallocate_stmt->name);
        out.deallocate_all = out.deallocate_name.empty();
        out.reason = "DEALLOCATE";
        return;
    default: return classify_other(statement, out);
    }
}

}  // namespace pglane::routing
