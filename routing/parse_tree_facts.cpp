#include "routing/parse_tree_facts.hpp"

#include <pg_query/pg_query.pb-c.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>

namespace pglane::routing {
namespace {

// Functions that must run on the primary whatever pg_proc says about them: they write, take
// an xid, or act on this node or this session (currval/lastval read the session's own
// nextval; cancel/terminate address a backend pid on one node).
// https://www.postgresql.org/docs/15/functions-admin.html
constexpr std::string_view writer_names[] = {
    "nextval", "setval", "currval", "lastval", "pg_notify", "pg_promote",
    "txid_current", "pg_current_xact_id", "pg_switch_wal", "pg_cancel_backend",
    "pg_terminate_backend", "pg_reload_conf", "pg_rotate_logfile", "pg_backup_start",
    "pg_backup_stop", "pg_start_backup", "pg_stop_backup", "pg_logical_emit_message",
    "pg_export_snapshot", "pg_import_system_collations", "pg_drop_replication_slot",
    "pg_replication_slot_advance", "pg_log_backend_memory_contexts", "pg_wal_replay_pause",
    "pg_wal_replay_resume", "loread", "lowrite",
};

constexpr std::string_view writer_prefixes[] = {
    "lo_", "pg_stat_reset", "pg_replication_origin_", "pg_create_", "pg_copy_",
    "pg_advisory_unlock", "pg_advisory_xact_", "pg_try_advisory_xact_", "dblink_exec",
};

// Session-level advisory locks outlive the statement and the transaction.
constexpr std::string_view session_lock_names[] = {
    "pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
};

bool contains(std::span<const std::string_view> names, std::string_view name) {
    return std::find(names.begin(), names.end(), name) != names.end();
}

std::string lower(std::string_view text) {
    std::string out(text);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c); });
    return out;
}

const char* locking_strength_name(PgQuery__LockClauseStrength strength) {
    switch (strength) {
    case PG_QUERY__LOCK_CLAUSE_STRENGTH__LCS_FORKEYSHARE: return "FOR KEY SHARE";
    case PG_QUERY__LOCK_CLAUSE_STRENGTH__LCS_FORSHARE: return "FOR SHARE";
    case PG_QUERY__LOCK_CLAUSE_STRENGTH__LCS_FORNOKEYUPDATE: return "FOR NO KEY UPDATE";
    case PG_QUERY__LOCK_CLAUSE_STRENGTH__LCS_FORUPDATE: return "FOR UPDATE";
    default: return "FOR UPDATE";
    }
}

const PgQuery__AConst* as_constant(const PgQuery__Node* node) {
    if (node == nullptr || node->node_case != PG_QUERY__NODE__NODE_A_CONST) return nullptr;
    return node->a_const;
}

/// set_config's third argument: true only for a constant that PostgreSQL reads as true.
/// Anything else (false, NULL, a parameter, an expression) counts as session-level.
bool is_local_set_config(const PgQuery__FuncCall& call) {
    if (call.n_args < 3) return false;
    const PgQuery__AConst* is_local = as_constant(call.args[2]);
    if (is_local == nullptr || is_local->isnull) return false;
    switch (is_local->val_case) {
    case PG_QUERY__A__CONST__VAL_BOOLVAL: return is_local->boolval->boolval;
    case PG_QUERY__A__CONST__VAL_IVAL: return is_local->ival->ival != 0;
    case PG_QUERY__A__CONST__VAL_SVAL: {
        const std::string text = lower(is_local->sval->sval);
        return text == "true" || text == "t" || text == "on" || text == "yes" || text == "1";
    }
    default: return false;
    }
}

/// A transaction default a standby may not honour: read-write, or (whatever the value, which
/// need not be a constant) the default isolation level, as SERIALIZABLE is refused there.
bool names_transaction_default(const PgQuery__FuncCall& call) {
    if (call.n_args < 1) return false;
    const PgQuery__AConst* name = as_constant(call.args[0]);
    if (name == nullptr || name->val_case != PG_QUERY__A__CONST__VAL_SVAL) return false;
    const std::string setting = lower(name->sval->sval);
    return setting == "default_transaction_read_only" || setting == "transaction_read_only" ||
           setting == "default_transaction_isolation";
}

std::string qualified_name(const PgQuery__FuncCall& call) {
    std::string name;
    for (std::size_t i = 0; i < call.n_funcname; ++i) {
        const PgQuery__Node* part = call.funcname[i];
        if (part == nullptr || part->node_case != PG_QUERY__NODE__NODE_STRING) continue;
        if (!name.empty()) name += '.';
        name += part->string->sval;
    }
    return name;
}

void note_function_call(const PgQuery__FuncCall& call, ParseTreeFacts& facts) {
    std::string name = qualified_name(call);
    const auto dot = name.rfind('.');
    const std::string_view unqualified =
        dot == std::string::npos ? std::string_view(name) : std::string_view(name).substr(dot + 1);
    switch (known_function_kind(unqualified)) {
    case FunctionKind::ordinary: break;
    case FunctionKind::writer:
        if (facts.writer_function.empty()) facts.writer_function = name;
        break;
    case FunctionKind::session_lock:
        if (facts.session_lock_function.empty()) facts.session_lock_function = name;
        break;
    case FunctionKind::session_set_config:
        if (facts.writer_function.empty()) facts.writer_function = name;
        if (!is_local_set_config(call)) {
            facts.session_set_config = true;
            facts.sets_transaction_default = facts.sets_transaction_default || names_transaction_default(call);
        }
        break;
    }
    if (std::find(facts.functions.begin(), facts.functions.end(), name) == facts.functions.end()) {
        facts.functions.push_back(std::move(name));
    }
}

bool is_temporary(const PgQuery__RangeVar& relation) {
    const std::string_view persistence = relation.relpersistence ? relation.relpersistence : "";
    const std::string_view schema = relation.schemaname ? relation.schemaname : "";
    return persistence == "t" || schema.starts_with("pg_temp");
}

/// Records what one message says by itself; children are visited by the walk.
void note_message(const ProtobufCMessage* message, ParseTreeFacts& facts) {
    const ProtobufCMessageDescriptor* type = message->descriptor;
    if (type == &pg_query__func_call__descriptor) {
        note_function_call(*reinterpret_cast<const PgQuery__FuncCall*>(message), facts);
    } else if (type == &pg_query__locking_clause__descriptor) {
        if (facts.locking_clause == nullptr) {
            facts.locking_clause =
                locking_strength_name(reinterpret_cast<const PgQuery__LockingClause*>(message)->strength);
        }
    } else if (type == &pg_query__insert_stmt__descriptor || type == &pg_query__update_stmt__descriptor ||
               type == &pg_query__delete_stmt__descriptor || type == &pg_query__merge_stmt__descriptor) {
        ++facts.modifying_statements;
    } else if (type == &pg_query__into_clause__descriptor) {
        facts.into_clause = true;
    } else if (type == &pg_query__range_var__descriptor) {
        facts.temporary_relation =
            facts.temporary_relation || is_temporary(*reinterpret_cast<const PgQuery__RangeVar*>(message));
    }
}

const ProtobufCMessage* message_at(const ProtobufCMessage* message, unsigned offset) {
    return *reinterpret_cast<const ProtobufCMessage* const*>(reinterpret_cast<const std::byte*>(message) + offset);
}

/// Pushes the message-typed children of `message` so that they pop in field order.
void push_children(const ProtobufCMessage* message, std::vector<const ProtobufCMessage*>& stack) {
    const ProtobufCMessageDescriptor* type = message->descriptor;
    const auto* base = reinterpret_cast<const std::byte*>(message);
    if (type == &pg_query__node__descriptor) {
        // Node is one big oneof (~240 members): jump straight to the member that is set.
        const auto& node = *reinterpret_cast<const PgQuery__Node*>(message);
        const ProtobufCFieldDescriptor* field = protobuf_c_message_descriptor_get_field(type, node.node_case);
        if (field != nullptr && field->type == PROTOBUF_C_TYPE_MESSAGE) {
            if (const ProtobufCMessage* child = message_at(message, field->offset)) stack.push_back(child);
        }
        return;
    }
    for (unsigned i = type->n_fields; i-- > 0;) {
        const ProtobufCFieldDescriptor& field = type->fields[i];
        if (field.type != PROTOBUF_C_TYPE_MESSAGE) continue;
        if ((field.flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0 &&
            *reinterpret_cast<const std::uint32_t*>(base + field.quantifier_offset) != field.id) {
            continue;  // another member of the oneof is set; this pointer aliases it
        }
        if (field.label == PROTOBUF_C_LABEL_REPEATED) {
            const std::size_t count = *reinterpret_cast<const std::size_t*>(base + field.quantifier_offset);
            const auto* items = *reinterpret_cast<const ProtobufCMessage* const* const*>(base + field.offset);
            for (std::size_t k = count; k-- > 0;) {
                if (items[k] != nullptr) stack.push_back(items[k]);
            }
        } else if (const ProtobufCMessage* child = message_at(message, field.offset)) {
            stack.push_back(child);
        }
    }
}

}  // namespace

FunctionKind known_function_kind(std::string_view unqualified_name) {
    if (unqualified_name == "set_config") return FunctionKind::session_set_config;
    if (contains(session_lock_names, unqualified_name)) return FunctionKind::session_lock;
    if (contains(writer_names, unqualified_name)) return FunctionKind::writer;
    for (std::string_view prefix : writer_prefixes) {
        if (unqualified_name.starts_with(prefix)) return FunctionKind::writer;
    }
    return FunctionKind::ordinary;
}

ParseTreeFacts collect_facts(const PgQuery__Node* root) {
    ParseTreeFacts facts;
    if (root == nullptr) return facts;
    std::vector<const ProtobufCMessage*> stack;
    stack.reserve(64);
    stack.push_back(&root->base);
    while (!stack.empty()) {
        const ProtobufCMessage* message = stack.back();
        stack.pop_back();
        note_message(message, facts);
        push_children(message, stack);
    }
    return facts;
}

}  // namespace pglane::routing
