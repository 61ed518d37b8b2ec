#include "routing/classifier.hpp"

#include "routing/classify_statement.hpp"
#include "routing/parse_limits.hpp"

#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>

#include <algorithm>
#include <cctype>
#include <memory>

namespace pglane::routing {
namespace {

/// Owns libpg_query's protobuf parse result and its unpacked tree.
class ParseTree {
public:
    explicit ParseTree(const std::string& sql) : raw_(pg_query_parse_protobuf(sql.c_str())) {
        if (raw_.error != nullptr) return;
        const auto* bytes = reinterpret_cast<const uint8_t*>(raw_.parse_tree.data);
        if (message_nesting(bytes, raw_.parse_tree.len, max_message_nesting) > max_message_nesting) {
            too_deep_ = true;  // protobuf-c would recurse once per level
            return;
        }
        tree_ = pg_query__parse_result__unpack(nullptr, raw_.parse_tree.len, bytes);
    }
    ~ParseTree() {
        if (tree_ != nullptr) pg_query__parse_result__free_unpacked(tree_, nullptr);
        pg_query_free_protobuf_parse_result(raw_);
    }
    ParseTree(const ParseTree&) = delete;
    ParseTree& operator=(const ParseTree&) = delete;

    [[nodiscard]] const PgQuery__ParseResult* tree() const { return tree_; }
    [[nodiscard]] std::string error() const {
        if (raw_.error != nullptr && raw_.error->message != nullptr) return raw_.error->message;
        if (too_deep_) return "statement nested too deeply to classify";
        return "the parse tree could not be decoded";
    }

private:
    PgQueryProtobufParseResult raw_;
    PgQuery__ParseResult* tree_ = nullptr;
    bool too_deep_ = false;
};

Classification unparseable(std::string message) {
    Classification out;
    out.reason = "unparseable: " + message;
    return out;
}

/// Folds one statement of a multi-statement string into the whole: read-only only if every
/// statement is; the first transaction control, pin and names win; functions are unioned.
void merge(Classification& whole, Classification&& part) {
    if (whole.read_only && !part.read_only) {
        whole.read_only = false;
        whole.reason = std::move(part.reason);
    }
    for (std::string& function : part.functions) {
        if (std::find(whole.functions.begin(), whole.functions.end(), function) == whole.functions.end()) {
            whole.functions.push_back(std::move(function));
        }
    }
    if (whole.transaction == TransactionControl::none) whole.transaction = part.transaction;
    whole.session_state = whole.session_state || part.session_state;
    whole.discard_all = whole.discard_all || part.discard_all;
    whole.serializable = whole.serializable || part.serializable;
    if (whole.pin == PinReason::none) whole.pin = part.pin;
    if (whole.prepare_name.empty()) whole.prepare_name = std::move(part.prepare_name);
    if (whole.execute_name.empty()) {
        whole.execute_name = std::move(part.execute_name);
        whole.parameters_read_only = part.parameters_read_only;
    }
    if (whole.deallocate_name.empty()) whole.deallocate_name = std::move(part.deallocate_name);
    whole.deallocate_all = whole.deallocate_all || part.deallocate_all;
    if (!whole.pglane_setting_name) {
        whole.pglane_setting_name = std::move(part.pglane_setting_name);
        whole.pglane_setting_value = std::move(part.pglane_setting_value);
    }
}

Classification classify_tree(const PgQuery__ParseResult& tree) {
    Classification whole;
    whole.parsed = true;
    whole.read_only = true;
    whole.reason = "empty query";
    for (std::size_t i = 0; i < tree.n_stmts; ++i) {
        const PgQuery__RawStmt* raw = tree.stmts[i];
        if (raw == nullptr || raw->stmt == nullptr) continue;
        Classification part;
        classify_statement(*raw->stmt, part);
        if (whole.statement_count == 0) {
            whole = std::move(part);
            whole.parsed = true;
        } else {
            merge(whole, std::move(part));
        }
        ++whole.statement_count;
    }
    if (whole.statement_count > 1) whole.reason = "multi-statement: " + whole.reason;
    return whole;
}

// --- the route hint: comments are not in the parse tree, so scan the leading ones ---

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::string_view skip_spaces(std::string_view text) {
    while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
    return text;
}

bool consume(std::string_view& text, std::string_view word) {
    text = skip_spaces(text);
    if (text.size() < word.size()) return false;
    for (std::size_t i = 0; i < word.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(text[i])) != word[i]) return false;
    }
    text.remove_prefix(word.size());
    return true;
}

/// "pglane: route=primary" anywhere in one comment's text.
RouteHint hint_in_comment(std::string_view comment) {
    for (std::size_t at = 0; at < comment.size(); ++at) {
        std::string_view rest = comment.substr(at);
        if (!consume(rest, "pglane") || !consume(rest, ":") || !consume(rest, "route") || !consume(rest, "=")) {
            continue;
        }
        rest = skip_spaces(rest);
        if (!rest.empty() && (rest.front() == '\'' || rest.front() == '"')) rest.remove_prefix(1);
        std::string value;
        while (!rest.empty() && (std::isalpha(static_cast<unsigned char>(rest.front())) != 0 || rest.front() == '_')) {
            value += static_cast<char>(std::tolower(static_cast<unsigned char>(rest.front())));
            rest.remove_prefix(1);
        }
        if (value == "primary") return RouteHint::primary;
        if (value == "standby") return RouteHint::standby;
        if (value == "auto") return RouteHint::auto_;
    }
    return RouteHint::none;
}

/// Length of the block comment at the start of `text` (PostgreSQL nests them), or npos
/// when it is not closed.
std::size_t block_comment_length(std::string_view text) {
    int depth = 0;
    for (std::size_t i = 0; i + 1 < text.size(); ++i) {
        if (text[i] == '/' && text[i + 1] == '*') {
            ++depth;
            ++i;
        } else if (text[i] == '*' && text[i + 1] == '/') {
            ++i;
            if (--depth == 0) return i + 1;
        }
    }
    return std::string_view::npos;
}

}  // namespace

RouteHint leading_route_hint(std::string_view sql) {
    for (;;) {
        sql = skip_spaces(sql);
        std::string_view comment;
        if (sql.starts_with("--")) {
            const std::size_t end = sql.find('\n');
            comment = sql.substr(2, end == std::string_view::npos ? std::string_view::npos : end - 2);
            sql.remove_prefix(end == std::string_view::npos ? sql.size() : end + 1);
        } else if (sql.starts_with("/*")) {
            const std::size_t length = block_comment_length(sql);
            if (length == std::string_view::npos) return RouteHint::none;
            comment = sql.substr(2, length - 4);
            sql.remove_prefix(length);
        } else {
            return RouteHint::none;  // the first token: hints after it do not count
        }
        if (const RouteHint hint = hint_in_comment(comment); hint != RouteHint::none) return hint;
    }
}

Classification classify(std::string_view sql) {
    if (sql.find('\0') != std::string_view::npos) return unparseable("the statement contains a zero byte");
    const std::string text(sql);
    if (may_nest_too_deeply(text)) return unparseable("statement nested too deeply to classify");
    const ParseTree parse(text);
    if (parse.tree() == nullptr) return unparseable(parse.error());
    Classification out = classify_tree(*parse.tree());
    out.hint = leading_route_hint(sql);
    return out;
}

const char* to_string(TransactionControl transaction) {
    switch (transaction) {
    case TransactionControl::none: return "none";
    case TransactionControl::begin: return "begin";
    case TransactionControl::begin_read_only: return "begin_read_only";
    case TransactionControl::commit: return "commit";
    case TransactionControl::rollback: return "rollback";
    case TransactionControl::savepoint: return "savepoint";
    case TransactionControl::set_transaction_read_only: return "set_transaction_read_only";
    case TransactionControl::set_transaction_primary: return "set_transaction_primary";
    case TransactionControl::prepare_transaction: return "prepare_transaction";
    case TransactionControl::other: return "other";
    }
    return "unknown";
}

const char* to_string(PinReason pin) {
    switch (pin) {
    case PinReason::none: return "none";
    case PinReason::temporary_table: return "temporary_table";
    case PinReason::listen: return "listen";
    case PinReason::advisory_lock: return "advisory_lock";
    case PinReason::with_hold_cursor: return "with_hold_cursor";
    case PinReason::session_read_write_default: return "session_read_write_default";
    case PinReason::other: return "other";
    }
    return "unknown";
}

const char* to_string(RouteHint hint) {
    switch (hint) {
    case RouteHint::none: return "none";
    case RouteHint::primary: return "primary";
    case RouteHint::standby: return "standby";
    case RouteHint::auto_: return "auto";
    }
    return "unknown";
}

}  // namespace pglane::routing
