// What the session layer needs from a statement: transaction control, session state, pins,
// prepared statement names, route hints, pglane's own settings, multi-statement strings and
// syntax errors.

#include "test_classifier_rows.hpp"

#include "routing/classifier.hpp"

using classifier_rows::check_rows;
using classifier_rows::PinReason;
using classifier_rows::RouteHint;
using classifier_rows::Row;
using classifier_rows::TransactionControl;
using pglane::routing::classify;

TEST_CASE("BEGIN starts a read-write transaction unless it says READ ONLY") {
    check_rows({
        {.sql = "BEGIN", .read_only = false, .reason = "BEGIN", .transaction = TransactionControl::begin},
        {.sql = "begin transaction", .read_only = false, .transaction = TransactionControl::begin},
        {.sql = "BEGIN WORK", .read_only = false, .transaction = TransactionControl::begin},
        {.sql = "START TRANSACTION", .read_only = false, .transaction = TransactionControl::begin},
        {.sql = "BEGIN READ WRITE", .read_only = false, .transaction = TransactionControl::begin},
        {.sql = "BEGIN ISOLATION LEVEL SERIALIZABLE", .read_only = false,
         .transaction = TransactionControl::begin},
        {.sql = "BEGIN READ ONLY", .read_only = true, .reason = "BEGIN READ ONLY",
         .transaction = TransactionControl::begin_read_only},
        {.sql = "START TRANSACTION READ ONLY", .read_only = true,
         .transaction = TransactionControl::begin_read_only},
        {.sql = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", .read_only = true,
         .transaction = TransactionControl::begin_read_only},
        // A hot standby cannot run a serializable transaction, read-only or not.
        {.sql = "START TRANSACTION ISOLATION LEVEL SERIALIZABLE READ ONLY DEFERRABLE", .read_only = false,
         .reason = "BEGIN SERIALIZABLE READ ONLY", .transaction = TransactionControl::begin},
        {.sql = "BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY", .read_only = false,
         .transaction = TransactionControl::begin},
        {.sql = "BEGIN READ ONLY ISOLATION LEVEL SERIALIZABLE", .read_only = false,
         .transaction = TransactionControl::begin},
        {.sql = "BEGIN READ ONLY, ISOLATION LEVEL READ COMMITTED", .read_only = true,
         .transaction = TransactionControl::begin_read_only},
    });
    // A later SET TRANSACTION READ ONLY cannot move a serializable transaction to a standby.
    CHECK(classify("BEGIN ISOLATION LEVEL SERIALIZABLE").serializable);
    CHECK(classify("START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY").serializable);
    CHECK(classify("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE").serializable);
    CHECK(classify("SET transaction_isolation = serializable").serializable);
    CHECK_FALSE(classify("BEGIN ISOLATION LEVEL REPEATABLE READ").serializable);
    CHECK_FALSE(classify("BEGIN").serializable);
}

TEST_CASE("transaction ends and savepoints are recognised") {
    check_rows({
        {.sql = "COMMIT", .read_only = true, .transaction = TransactionControl::commit},
        {.sql = "END", .read_only = true, .transaction = TransactionControl::commit},
        {.sql = "COMMIT AND CHAIN", .read_only = true, .transaction = TransactionControl::commit},
        {.sql = "ROLLBACK", .read_only = true, .transaction = TransactionControl::rollback},
        {.sql = "ABORT", .read_only = true, .transaction = TransactionControl::rollback},
        {.sql = "SAVEPOINT a", .read_only = true, .transaction = TransactionControl::savepoint},
        {.sql = "RELEASE SAVEPOINT a", .read_only = true, .transaction = TransactionControl::savepoint},
        {.sql = "RELEASE a", .read_only = true, .transaction = TransactionControl::savepoint},
        {.sql = "ROLLBACK TO SAVEPOINT a", .read_only = true, .transaction = TransactionControl::savepoint},
        {.sql = "ROLLBACK TO a", .read_only = true, .transaction = TransactionControl::savepoint},
        {.sql = "PREPARE TRANSACTION 'x'", .read_only = false,
         .transaction = TransactionControl::prepare_transaction},
        {.sql = "COMMIT PREPARED 'x'", .read_only = false, .transaction = TransactionControl::prepare_transaction},
        {.sql = "ROLLBACK PREPARED 'x'", .read_only = false,
         .transaction = TransactionControl::prepare_transaction},
    });
}

TEST_CASE("SET TRANSACTION READ ONLY is recognised; other SET TRANSACTION forms are not reads") {
    check_rows({
        {.sql = "SET TRANSACTION READ ONLY", .read_only = true,
         .transaction = TransactionControl::set_transaction_read_only},
        {.sql = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY", .read_only = true,
         .transaction = TransactionControl::set_transaction_read_only},
        // What no standby runs: a serializable or read-write transaction.
        {.sql = "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY", .read_only = false,
         .transaction = TransactionControl::set_transaction_primary},
        {.sql = "SET TRANSACTION READ ONLY ISOLATION LEVEL SERIALIZABLE DEFERRABLE", .read_only = false,
         .transaction = TransactionControl::set_transaction_primary},
        {.sql = "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", .read_only = false,
         .transaction = TransactionControl::set_transaction_primary},
        {.sql = "SET TRANSACTION READ WRITE", .read_only = false,
         .transaction = TransactionControl::set_transaction_primary},
        {.sql = "SET transaction_isolation = 'serializable'", .read_only = false,
         .transaction = TransactionControl::set_transaction_primary, .session_state = true},
        // The rest of SET TRANSACTION leaves it to the BEGIN.
        {.sql = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", .read_only = false,
         .transaction = TransactionControl::other},
        {.sql = "SET TRANSACTION DEFERRABLE", .read_only = false, .transaction = TransactionControl::other},
    });
}

TEST_CASE("SET and RESET at session level are session state; SET LOCAL is not") {
    check_rows({
        {.sql = "SET search_path TO x", .read_only = false, .reason = "SET", .session_state = true},
        {.sql = "SET search_path = a, b", .read_only = false, .session_state = true},
        {.sql = "SET statement_timeout = '5s'", .read_only = false, .session_state = true},
        {.sql = "SET TIME ZONE 'UTC'", .read_only = false, .session_state = true},
        {.sql = "SET ROLE r", .read_only = false, .session_state = true},
        {.sql = "SET SESSION AUTHORIZATION u", .read_only = false, .session_state = true},
        {.sql = "SET SESSION search_path TO x", .read_only = false, .session_state = true},
        {.sql = "SET app.tenant TO DEFAULT", .read_only = false, .session_state = true},
        {.sql = "RESET search_path", .read_only = false, .reason = "RESET", .session_state = true},
        {.sql = "RESET ROLE", .read_only = false, .session_state = true},
        {.sql = "RESET ALL", .read_only = false, .session_state = true},
        {.sql = "SET LOCAL x = 1", .read_only = true, .reason = "SET LOCAL"},
        {.sql = "SET LOCAL statement_timeout = '1s'", .read_only = true},
        {.sql = "SET LOCAL transaction_read_only = off", .read_only = false},
        {.sql = "LOAD 'auto_explain'", .read_only = false, .session_state = true},
    });
}

TEST_CASE("DISCARD is session state and DISCARD ALL says so") {
    check_rows({
        {.sql = "DISCARD ALL", .read_only = false, .session_state = true},
        {.sql = "DISCARD PLANS", .read_only = false, .session_state = true},
        {.sql = "DISCARD SEQUENCES", .read_only = false, .session_state = true},
        {.sql = "DISCARD TEMP", .read_only = false, .session_state = true},
    });
    CHECK(classify("DISCARD ALL").discard_all);
    CHECK_FALSE(classify("DISCARD TEMP").discard_all);
    CHECK_FALSE(classify("SET search_path TO x").discard_all);
}

TEST_CASE("what a session cannot split pins it to the primary") {
    check_rows({
        {.sql = "LISTEN ch", .read_only = false, .reason = "LISTEN", .pin = PinReason::listen},
        {.sql = "CREATE TEMP TABLE x (a int)", .read_only = false, .pin = PinReason::temporary_table},
        {.sql = "CREATE TEMPORARY TABLE x (a int) ON COMMIT DROP", .read_only = false,
         .pin = PinReason::temporary_table},
        {.sql = "CREATE TEMP TABLE x AS SELECT 1", .read_only = false, .pin = PinReason::temporary_table},
        {.sql = "CREATE TABLE pg_temp.x (a int)", .read_only = false, .pin = PinReason::temporary_table},
        {.sql = "CREATE TEMP VIEW v AS SELECT 1", .read_only = false, .pin = PinReason::temporary_table},
        {.sql = "CREATE TEMP SEQUENCE s", .read_only = false, .pin = PinReason::temporary_table},
        {.sql = "SELECT * FROM pg_temp.x", .read_only = false, .reason = "temporary table"},
        {.sql = "DECLARE c CURSOR WITH HOLD FOR SELECT 1", .read_only = false, .reason = "WITH HOLD",
         .pin = PinReason::with_hold_cursor},
        {.sql = "SET default_transaction_read_only = off", .read_only = false, .session_state = true,
         .pin = PinReason::session_read_write_default},
        {.sql = "SET default_transaction_read_only TO on", .read_only = false, .session_state = true,
         .pin = PinReason::session_read_write_default},
        {.sql = "SET transaction_read_only = off", .read_only = false, .session_state = true,
         .pin = PinReason::session_read_write_default},
        {.sql = "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE", .read_only = false,
         .session_state = true, .pin = PinReason::session_read_write_default},
        {.sql = "RESET default_transaction_read_only", .read_only = false, .session_state = true},
        // A standby refuses serializable transactions, so a session defaulting to them stays
        // on the primary; other levels run on standbys.
        {.sql = "SET default_transaction_isolation = 'serializable'", .read_only = false, .session_state = true,
         .pin = PinReason::session_read_write_default},
        {.sql = "SET default_transaction_isolation TO serializable", .read_only = false, .session_state = true,
         .pin = PinReason::session_read_write_default},
        {.sql = "SET SESSION default_transaction_isolation = 'SERIALIZABLE'", .read_only = false,
         .session_state = true, .pin = PinReason::session_read_write_default},
        {.sql = "SET default_transaction_isolation = 'repeatable read'", .read_only = false, .session_state = true},
        {.sql = "SET LOCAL default_transaction_isolation = 'serializable'", .read_only = true},
        {.sql = "RESET default_transaction_isolation", .read_only = false, .session_state = true},
    });
}

TEST_CASE("a cursor without hold is as read-only as its query") {
    check_rows({
        {.sql = "DECLARE c CURSOR FOR SELECT 1", .read_only = true, .reason = "declare cursor"},
        {.sql = "DECLARE c NO SCROLL CURSOR WITHOUT HOLD FOR SELECT * FROM t", .read_only = true},
        {.sql = "DECLARE c SCROLL CURSOR FOR SELECT * FROM t FOR UPDATE", .read_only = false,
         .reason = "FOR UPDATE"},
        {.sql = "DECLARE c CURSOR FOR SELECT nextval('s')", .read_only = false, .functions = {"nextval"}},
        {.sql = "DECLARE c BINARY CURSOR FOR SELECT f(a) FROM t", .read_only = true, .functions = {"f"}},
    });
}

TEST_CASE("PREPARE reports its name and classifies its statement") {
    check_rows({
        {.sql = "PREPARE p AS SELECT 1", .read_only = true},
        {.sql = "PREPARE p (int) AS INSERT INTO t VALUES ($1)", .read_only = false, .reason = "INSERT"},
        {.sql = "PREPARE q AS SELECT nextval('s')", .read_only = false, .functions = {"nextval"}},
        {.sql = "PREPARE r AS SELECT * FROM t WHERE a = $1 FOR UPDATE", .read_only = false},
    });
    CHECK(classify("PREPARE p AS SELECT 1").prepare_name == "p");
    CHECK(classify("PREPARE \"MixedCase\" (int, text) AS SELECT $1, $2").prepare_name == "MixedCase");
    CHECK(classify("SELECT 1").prepare_name.empty());
}

TEST_CASE("EXECUTE names its prepared statement and is never read-only by itself") {
    check_rows({
        {.sql = "EXECUTE p", .read_only = false, .reason = "EXECUTE"},
        {.sql = "EXECUTE p(1, 'x')", .read_only = false, .reason = "EXECUTE"},
        {.sql = "EXECUTE p(nextval('s'))", .read_only = false, .functions = {"nextval"}},
        {.sql = "EXPLAIN EXECUTE p", .read_only = true},
        {.sql = "EXPLAIN ANALYZE EXECUTE p", .read_only = false},
    });
    const auto plain = classify("EXECUTE p(1, 'x')");
    CHECK(plain.execute_name == "p");
    CHECK(plain.parameters_read_only);
    const auto writing_parameter = classify("EXECUTE p(nextval('s'))");
    CHECK(writing_parameter.execute_name == "p");
    CHECK_FALSE(writing_parameter.parameters_read_only);
    CHECK(classify("EXPLAIN EXECUTE p").execute_name == "p");
    CHECK(classify("EXPLAIN ANALYZE EXECUTE p").execute_name == "p");
}

TEST_CASE("DEALLOCATE names one prepared statement or all of them") {
    const auto one = classify("DEALLOCATE p");
    CHECK_FALSE(one.read_only);
    CHECK(one.deallocate_name == "p");
    CHECK_FALSE(one.deallocate_all);
    const auto prepare_keyword = classify("DEALLOCATE PREPARE p");
    CHECK(prepare_keyword.deallocate_name == "p");
    const auto all = classify("DEALLOCATE ALL");
    CHECK(all.deallocate_name.empty());
    CHECK(all.deallocate_all);
    CHECK_FALSE(classify("SELECT 1").deallocate_all);
}

TEST_CASE("a leading pglane comment steers one statement") {
    check_rows({
        {.sql = "/* pglane: route=primary */ SELECT 1", .read_only = true, .hint = RouteHint::primary},
        {.sql = "/*pglane:route=standby*/SELECT 1", .read_only = true, .hint = RouteHint::standby},
        {.sql = "-- pglane: route=auto\nSELECT 1", .read_only = true, .hint = RouteHint::auto_},
        {.sql = "  /*  pglane :  route =  standby  */\n INSERT INTO t VALUES (1)", .read_only = false,
         .hint = RouteHint::standby},
        {.sql = "/* app=x */ /* pglane: route=primary */ SELECT 1", .read_only = true,
         .hint = RouteHint::primary},
        {.sql = "/* app=x, pglane: route=primary */ SELECT 1", .read_only = true, .hint = RouteHint::primary},
        {.sql = "/* PGLANE: ROUTE=PRIMARY */ SELECT 1", .read_only = true, .hint = RouteHint::primary},
        {.sql = "/* pglane: route='standby' */ SELECT 1", .read_only = true, .hint = RouteHint::standby},
        {.sql = "/* outer /* pglane: route=primary */ */ SELECT 1", .read_only = true,
         .hint = RouteHint::primary},
        {.sql = "SELECT /* pglane: route=primary */ 1", .read_only = true},
        {.sql = "SELECT 1 -- pglane: route=primary", .read_only = true},
        {.sql = "/* pglane: route=nowhere */ SELECT 1", .read_only = true},
        {.sql = "/* other comment */ SELECT 1", .read_only = true},
        {.sql = "/* pglane: route=standby */ SELECT nextval('s')", .read_only = false,
         .functions = {"nextval"}, .hint = RouteHint::standby},
    });
}

TEST_CASE("SET pglane.* is answered by pglane, never sent to a server") {
    const auto route = classify("SET pglane.route = 'standby'");
    CHECK(route.pglane_setting_name == std::optional<std::string>("pglane.route"));
    CHECK(route.pglane_setting_value == std::optional<std::string>("standby"));
    CHECK_FALSE(route.session_state);
    CHECK_FALSE(route.read_only);
    CHECK(route.reason == "pglane setting");

    const auto bare = classify("set pglane.route to standby");
    CHECK(bare.pglane_setting_value == std::optional<std::string>("standby"));
    // PRIMARY is a reserved word: unquoted it is a syntax error, as it is on a server.
    CHECK_FALSE(classify("SET pglane.route = primary").parsed);

    const auto lag = classify("SET pglane.max_lag_ms = 100");
    CHECK(lag.pglane_setting_name == std::optional<std::string>("pglane.max_lag_ms"));
    CHECK(lag.pglane_setting_value == std::optional<std::string>("100"));

    const auto reset = classify("RESET pglane.route");
    CHECK(reset.pglane_setting_name == std::optional<std::string>("pglane.route"));
    CHECK_FALSE(reset.pglane_setting_value.has_value());

    const auto to_default = classify("SET pglane.route TO DEFAULT");
    CHECK(to_default.pglane_setting_name == std::optional<std::string>("pglane.route"));
    CHECK_FALSE(to_default.pglane_setting_value.has_value());

    CHECK_FALSE(classify("SET search_path TO x").pglane_setting_name.has_value());
    CHECK_FALSE(classify("SET pglanex.route = 'a'").pglane_setting_name.has_value());
}

TEST_CASE("multi-statement strings are read-only only if every statement is") {
    check_rows({
        {.sql = "SELECT 1; SELECT 2", .read_only = true, .reason = "multi-statement", .statements = 2},
        {.sql = "SELECT 1;\nSELECT 2;\n", .read_only = true, .statements = 2},
        {.sql = "SELECT 1; INSERT INTO t VALUES (1)", .read_only = false, .reason = "multi-statement: INSERT",
         .statements = 2},
        {.sql = "INSERT INTO t VALUES (1); SELECT 1", .read_only = false, .reason = "INSERT", .statements = 2},
        {.sql = "BEGIN; SELECT 1; COMMIT", .read_only = false, .transaction = TransactionControl::begin,
         .statements = 3},
        {.sql = "BEGIN READ ONLY; SELECT 1; COMMIT", .read_only = true,
         .transaction = TransactionControl::begin_read_only, .statements = 3},
        {.sql = "SELECT 1; SELECT nextval('s')", .read_only = false, .reason = "nextval",
         .functions = {"nextval"}, .statements = 2},
        {.sql = "SET search_path TO x; SELECT 1", .read_only = false, .session_state = true, .statements = 2},
        {.sql = "SELECT 1; LISTEN ch", .read_only = false, .pin = PinReason::listen, .statements = 2},
        {.sql = "SELECT f(1); SELECT g(2); SELECT f(3)", .read_only = true, .functions = {"f", "g"},
         .statements = 3},
        {.sql = "/* pglane: route=primary */ SELECT 1; SELECT 2", .read_only = true, .hint = RouteHint::primary,
         .statements = 2},
    });
}

TEST_CASE("an empty string or only comments is an empty query") {
    check_rows({
        {.sql = "", .read_only = true, .reason = "empty query", .statements = 0},
        {.sql = "   \n\t", .read_only = true, .statements = 0},
        {.sql = "-- only a comment", .read_only = true, .statements = 0},
        {.sql = ";", .read_only = true, .statements = 0},
    });
}

TEST_CASE("unparseable text goes to the primary with the parser's message") {
    check_rows({
        {.sql = "SELEC 1", .read_only = false, .reason = "unparseable: syntax error", .statements = 0,
         .parsed = false},
        {.sql = "SELECT * FROM", .read_only = false, .reason = "unparseable", .statements = 0, .parsed = false},
        {.sql = "SELECT 1; SELEC 2", .read_only = false, .reason = "unparseable", .statements = 0,
         .parsed = false},
        {.sql = "INSERT INTO", .read_only = false, .reason = "unparseable", .statements = 0, .parsed = false},
        {.sql = "SELECT (1", .read_only = false, .reason = "unparseable", .statements = 0, .parsed = false},
        {.sql = "SELECT 'unterminated", .read_only = false, .reason = "unterminated quoted string",
         .statements = 0, .parsed = false},
        {.sql = "/* unterminated comment SELECT 1", .read_only = false, .reason = "unparseable", .statements = 0,
         .parsed = false},
        {.sql = std::string_view("SELECT 1\0; DELETE FROM t", 24), .read_only = false, .reason = "zero byte",
         .statements = 0, .parsed = false},
        {.sql = "\x01\x02 garbage", .read_only = false, .reason = "unparseable", .statements = 0,
         .parsed = false},
    });
}
