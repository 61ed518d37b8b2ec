#pragma once
// One row of the classifier tables: a statement and everything its classification must say.
// Fields left at their defaults are checked too (a plain read must not pin, set session
// state or open a transaction), so each row pins the whole outcome.

#include "routing/classifier.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace classifier_rows {

using pglane::routing::PinReason;
using pglane::routing::RouteHint;
using pglane::routing::TransactionControl;

struct Row {
    std::string_view sql;
    bool read_only;
    std::string_view reason = {};  // expected substring of the reason; empty: not checked
    std::vector<std::string> functions = {};
    TransactionControl transaction = TransactionControl::none;
    bool session_state = false;
    PinReason pin = PinReason::none;
    RouteHint hint = RouteHint::none;
    int statements = 1;
    bool parsed = true;
};

inline void check_row(const Row& row) {
    using pglane::routing::to_string;
    const pglane::routing::Classification c = pglane::routing::classify(row.sql);
    INFO("SQL: " << row.sql);
    INFO("reason: " << c.reason);
    CHECK(c.parsed == row.parsed);
    CHECK(c.read_only == row.read_only);
    if (!row.reason.empty()) CHECK_THAT(c.reason, Catch::Contains(std::string(row.reason)));
    CHECK(c.functions == row.functions);
    CHECK(std::string(to_string(c.transaction)) == to_string(row.transaction));
    CHECK(c.session_state == row.session_state);
    CHECK(std::string(to_string(c.pin)) == to_string(row.pin));
    CHECK(std::string(to_string(c.hint)) == to_string(row.hint));
    CHECK(c.statement_count == row.statements);
}

inline void check_rows(const std::vector<Row>& rows) {
    for (const Row& row : rows) check_row(row);
}

}  // namespace classifier_rows
