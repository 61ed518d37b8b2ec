// The statement table: reads, writes and the tricky ones, each with its full expected
// classification. Session semantics (transactions, SET, pins, prepared statements, hints,
// multi-statement strings, syntax errors) are in test_classifier_session.cpp.

#include "test_classifier_rows.hpp"

using classifier_rows::check_rows;
using classifier_rows::PinReason;
using classifier_rows::Row;

TEST_CASE("plain reads are read-only") {
    check_rows({
        {.sql = "SELECT 1", .read_only = true, .reason = "select"},
        {.sql = "select 1", .read_only = true},
        {.sql = "SELECT * FROM t", .read_only = true},
        {.sql = "SELECT a, b FROM s.t WHERE a = 1", .read_only = true},
        {.sql = "SELECT count(*) FROM t", .read_only = true, .functions = {"count"}},
        {.sql = "SELECT * FROM t JOIN u USING (id)", .read_only = true},
        {.sql = "SELECT * FROM t WHERE id IN (SELECT id FROM u)", .read_only = true},
        {.sql = "SELECT EXISTS (SELECT 1 FROM t)", .read_only = true},
        {.sql = "SELECT 1 UNION SELECT 2", .read_only = true},
        {.sql = "SELECT 1 UNION ALL SELECT 2 INTERSECT SELECT 3", .read_only = true},
        {.sql = "SELECT a FROM t EXCEPT SELECT a FROM u", .read_only = true},
        {.sql = "VALUES (1)", .read_only = true},
        {.sql = "VALUES (1, 'a'), (2, 'b')", .read_only = true},
        {.sql = "TABLE t", .read_only = true},
        {.sql = "TABLE s.t", .read_only = true},
        {.sql = "SELECT * FROM (VALUES (1, 'a')) v(x, y)", .read_only = true},
        {.sql = "WITH x AS (SELECT 1) SELECT * FROM x", .read_only = true},
        {.sql = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT * FROM r",
         .read_only = true},
        {.sql = "SELECT * FROM t ORDER BY a LIMIT 10 OFFSET 5", .read_only = true},
        {.sql = "SELECT a, sum(b) FROM t GROUP BY a HAVING sum(b) > 1", .read_only = true, .functions = {"sum"}},
        {.sql = "SELECT row_number() OVER (PARTITION BY a ORDER BY b) FROM t", .read_only = true,
         .functions = {"row_number"}},
        {.sql = "SELECT now()", .read_only = true, .functions = {"now"}},
        {.sql = "SELECT pg_catalog.now()", .read_only = true, .functions = {"pg_catalog.now"}},
        {.sql = "SELECT current_timestamp, current_user", .read_only = true},
        {.sql = "SELECT CAST(a AS text), b::int FROM t", .read_only = true},
        {.sql = "SELECT CASE WHEN a > 1 THEN 'x' ELSE 'y' END FROM t", .read_only = true},
        {.sql = "SELECT coalesce(a, 0), nullif(b, 1), greatest(a, b) FROM t", .read_only = true},
        {.sql = "SELECT lower(name) FROM users WHERE id = $1", .read_only = true, .functions = {"lower"}},
        {.sql = "SELECT * FROM generate_series(1, 10)", .read_only = true, .functions = {"generate_series"}},
        {.sql = "SELECT * FROM t WHERE a = ANY($1)", .read_only = true},
        {.sql = "SELECT DISTINCT ON (a) a, b FROM t ORDER BY a, b", .read_only = true},
        {.sql = "SELECT * FROM t TABLESAMPLE SYSTEM (10)", .read_only = true},
        {.sql = "SELECT * FROM t t1 LEFT JOIN LATERAL (SELECT * FROM u WHERE u.id = t1.id) x ON true",
         .read_only = true},
        {.sql = "SELECT json_agg(t) FROM t", .read_only = true, .functions = {"json_agg"}},
        {.sql = "SELECT a FROM t FETCH FIRST 3 ROWS ONLY", .read_only = true},
        {.sql = "SELECT sum(a) OVER w FROM t WINDOW w AS (ORDER BY a)", .read_only = true, .functions = {"sum"}},
        {.sql = "SELECT a, b, count(*) FROM t GROUP BY ROLLUP (a, b)", .read_only = true, .functions = {"count"}},
        {.sql = "SELECT ARRAY(SELECT a FROM t)", .read_only = true},
        {.sql = "SELECT x.* FROM (SELECT * FROM (SELECT 1) a) x", .read_only = true},
        {.sql = "SELECT * FROM t WHERE a BETWEEN 1 AND 2 AND b LIKE 'x%' AND c IS NOT NULL", .read_only = true},
        {.sql = "SELECT $1::int + $2", .read_only = true},
        {.sql = "SELECT", .read_only = true},
        {.sql = "SHOW search_path", .read_only = true, .reason = "show"},
        {.sql = "SHOW ALL", .read_only = true, .reason = "show"},
        {.sql = "SHOW TRANSACTION ISOLATION LEVEL", .read_only = true, .reason = "show"},
        {.sql = "show pglane.route", .read_only = true, .reason = "show"},
    });
}

TEST_CASE("EXPLAIN without ANALYZE is read-only whatever it explains") {
    check_rows({
        {.sql = "EXPLAIN SELECT 1", .read_only = true, .reason = "explain without analyze"},
        {.sql = "EXPLAIN (COSTS off) SELECT * FROM t", .read_only = true},
        {.sql = "EXPLAIN INSERT INTO t VALUES (1)", .read_only = true},
        {.sql = "EXPLAIN DELETE FROM t", .read_only = true},
        {.sql = "EXPLAIN (ANALYZE off) SELECT 1", .read_only = true},
        {.sql = "EXPLAIN (ANALYZE false) UPDATE t SET a = 1", .read_only = true},
        {.sql = "EXPLAIN SELECT nextval('s')", .read_only = true},  // planning runs nothing
        {.sql = "EXPLAIN VERBOSE SELECT * FROM t FOR UPDATE", .read_only = true},
    });
}

TEST_CASE("EXPLAIN ANALYZE is classified as the statement it runs") {
    check_rows({
        {.sql = "EXPLAIN ANALYZE SELECT 1", .read_only = true, .reason = "EXPLAIN ANALYZE select"},
        {.sql = "EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM t", .read_only = true},
        {.sql = "EXPLAIN (ANALYZE on) SELECT * FROM t", .read_only = true},
        {.sql = "EXPLAIN ANALYZE INSERT INTO t VALUES (1)", .read_only = false, .reason = "EXPLAIN ANALYZE INSERT"},
        {.sql = "EXPLAIN (ANALYZE true) DELETE FROM t", .read_only = false, .reason = "DELETE"},
        {.sql = "EXPLAIN ANALYZE SELECT nextval('s')", .read_only = false, .reason = "volatile function nextval",
         .functions = {"nextval"}},
        {.sql = "EXPLAIN (ANALYZE) SELECT * FROM t FOR UPDATE", .read_only = false, .reason = "FOR UPDATE"},
        {.sql = "EXPLAIN ANALYZE SELECT my_fn(a) FROM t", .read_only = true, .functions = {"my_fn"}},
    });
}

TEST_CASE("COPY TO STDOUT reads; COPY FROM and COPY to a server file write") {
    check_rows({
        {.sql = "COPY t TO STDOUT", .read_only = true, .reason = "COPY TO STDOUT"},
        {.sql = "COPY t (a, b) TO STDOUT WITH (FORMAT csv)", .read_only = true},
        {.sql = "COPY (SELECT * FROM t WHERE a > 1) TO STDOUT", .read_only = true},
        {.sql = "COPY (SELECT f(a) FROM t) TO STDOUT", .read_only = true, .functions = {"f"}},
        {.sql = "COPY (SELECT * FROM t FOR UPDATE) TO STDOUT", .read_only = false, .reason = "FOR UPDATE"},
        {.sql = "COPY (INSERT INTO t VALUES (1) RETURNING *) TO STDOUT", .read_only = false, .reason = "INSERT"},
        {.sql = "COPY t FROM STDIN", .read_only = false, .reason = "COPY FROM"},
        {.sql = "COPY t (a) FROM STDIN WITH (FORMAT binary)", .read_only = false, .reason = "COPY FROM"},
        {.sql = "COPY t FROM '/tmp/x.csv'", .read_only = false, .reason = "COPY FROM"},
        {.sql = "COPY t TO '/tmp/x.csv'", .read_only = false, .reason = "server file"},
        {.sql = "COPY (SELECT 1) TO PROGRAM 'cat'", .read_only = false, .reason = "PROGRAM"},
    });
}

TEST_CASE("DML and DDL are writes") {
    check_rows({
        {.sql = "INSERT INTO t VALUES (1)", .read_only = false, .reason = "INSERT"},
        {.sql = "INSERT INTO t SELECT * FROM u", .read_only = false, .reason = "INSERT"},
        {.sql = "INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET a = excluded.a", .read_only = false},
        {.sql = "INSERT INTO t (a) VALUES (now()) RETURNING id", .read_only = false, .functions = {"now"}},
        {.sql = "UPDATE t SET a = 1 WHERE id = 2", .read_only = false, .reason = "UPDATE"},
        {.sql = "UPDATE t SET a = a + 1 FROM u WHERE t.id = u.id", .read_only = false, .reason = "UPDATE"},
        {.sql = "DELETE FROM t WHERE id = 1", .read_only = false, .reason = "DELETE"},
        {.sql = "DELETE FROM t USING u WHERE t.id = u.id RETURNING *", .read_only = false, .reason = "DELETE"},
        {.sql = "MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN UPDATE SET a = u.a "
                "WHEN NOT MATCHED THEN INSERT VALUES (u.id, u.a)",
         .read_only = false, .reason = "MERGE"},
        {.sql = "TRUNCATE t", .read_only = false, .reason = "TRUNCATE"},
        {.sql = "CREATE TABLE t (a int)", .read_only = false, .reason = "CREATE"},
        {.sql = "CREATE UNLOGGED TABLE t (a int)", .read_only = false},
        {.sql = "CREATE TABLE t2 AS SELECT * FROM t", .read_only = false, .reason = "CREATE TABLE AS"},
        {.sql = "CREATE MATERIALIZED VIEW mv AS SELECT 1", .read_only = false},
        {.sql = "REFRESH MATERIALIZED VIEW mv", .read_only = false},
        {.sql = "CREATE INDEX i ON t (a)", .read_only = false, .reason = "INDEX"},
        {.sql = "CREATE INDEX CONCURRENTLY i ON t (lower(a))", .read_only = false, .functions = {"lower"}},
        {.sql = "ALTER TABLE t ADD COLUMN b int DEFAULT next_id()", .read_only = false, .functions = {"next_id"}},
        {.sql = "DROP TABLE IF EXISTS t CASCADE", .read_only = false, .reason = "DROP"},
        {.sql = "CREATE VIEW v AS SELECT * FROM t", .read_only = false, .reason = "VIEW"},
        {.sql = "CREATE SEQUENCE s", .read_only = false},
        {.sql = "ALTER SEQUENCE s RESTART", .read_only = false},
        {.sql = "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'", .read_only = false},
        {.sql = "CREATE SCHEMA s", .read_only = false},
        {.sql = "CREATE EXTENSION pgcrypto", .read_only = false},
        {.sql = "GRANT SELECT ON t TO r", .read_only = false},
        {.sql = "REVOKE ALL ON t FROM r", .read_only = false},
        {.sql = "COMMENT ON TABLE t IS 'x'", .read_only = false},
        {.sql = "ALTER SYSTEM SET work_mem = '1MB'", .read_only = false},
        {.sql = "CALL p(1)", .read_only = false, .reason = "CALL", .functions = {"p"}},
        {.sql = "DO $$BEGIN PERFORM 1; END$$", .read_only = false, .reason = "DO"},
        {.sql = "LOCK TABLE t IN ACCESS EXCLUSIVE MODE", .read_only = false, .reason = "LOCK"},
        {.sql = "LOCK t IN ACCESS SHARE MODE", .read_only = false, .reason = "LOCK"},
        {.sql = "VACUUM t", .read_only = false, .reason = "VACUUM"},
        {.sql = "VACUUM (ANALYZE) t", .read_only = false, .reason = "VACUUM"},
        {.sql = "ANALYZE t", .read_only = false, .reason = "ANALYZE"},
        {.sql = "CHECKPOINT", .read_only = false, .reason = "CHECKPOINT"},
        {.sql = "CLUSTER t", .read_only = false},
        {.sql = "REINDEX TABLE t", .read_only = false},
        {.sql = "NOTIFY ch, 'x'", .read_only = false, .reason = "NOTIFY"},
        {.sql = "UNLISTEN *", .read_only = false, .reason = "UNLISTEN"},
        {.sql = "FETCH 10 FROM c", .read_only = false, .reason = "FETCH"},
        {.sql = "CLOSE c", .read_only = false},
    });
}

TEST_CASE("functions that write or depend on the session make a SELECT a write") {
    check_rows({
        {.sql = "SELECT nextval('s')", .read_only = false, .reason = "volatile function nextval",
         .functions = {"nextval"}},
        {.sql = "SELECT currval('s')", .read_only = false, .reason = "currval", .functions = {"currval"}},
        {.sql = "SELECT lastval()", .read_only = false, .functions = {"lastval"}},
        {.sql = "SELECT setval('s', 10)", .read_only = false, .functions = {"setval"}},
        {.sql = "SELECT * FROM nextval('s')", .read_only = false, .functions = {"nextval"}},
        {.sql = "SELECT pg_catalog.nextval('s')", .read_only = false,
         .reason = "volatile function pg_catalog.nextval", .functions = {"pg_catalog.nextval"}},
        {.sql = "SELECT id, nextval('s') FROM t WHERE a IN (SELECT a FROM u)", .read_only = false,
         .functions = {"nextval"}},
        {.sql = "SELECT * FROM t WHERE a = (SELECT nextval('s'))", .read_only = false, .functions = {"nextval"}},
        {.sql = "SELECT pg_notify('ch', 'x')", .read_only = false, .functions = {"pg_notify"}},
        {.sql = "SELECT txid_current()", .read_only = false, .functions = {"txid_current"}},
        {.sql = "SELECT pg_current_xact_id()", .read_only = false, .functions = {"pg_current_xact_id"}},
        {.sql = "SELECT lo_create(0)", .read_only = false, .functions = {"lo_create"}},
        {.sql = "SELECT pg_terminate_backend(123)", .read_only = false, .functions = {"pg_terminate_backend"}},
        {.sql = "SELECT pg_switch_wal()", .read_only = false, .functions = {"pg_switch_wal"}},
        {.sql = "SELECT pg_stat_reset()", .read_only = false, .functions = {"pg_stat_reset"}},
        {.sql = "SELECT pg_sleep(1)", .read_only = true, .functions = {"pg_sleep"}},  // pg_proc decides
    });
}

TEST_CASE("advisory locks: session-level ones pin, transaction-level ones only write") {
    check_rows({
        {.sql = "SELECT pg_advisory_lock(1)", .read_only = false, .reason = "advisory lock pg_advisory_lock",
         .functions = {"pg_advisory_lock"}, .pin = PinReason::advisory_lock},
        {.sql = "SELECT pg_try_advisory_lock(1, 2)", .read_only = false, .functions = {"pg_try_advisory_lock"},
         .pin = PinReason::advisory_lock},
        {.sql = "SELECT pg_advisory_lock_shared(1)", .read_only = false,
         .functions = {"pg_advisory_lock_shared"}, .pin = PinReason::advisory_lock},
        {.sql = "SELECT pg_advisory_xact_lock(1)", .read_only = false,
         .reason = "volatile function pg_advisory_xact_lock", .functions = {"pg_advisory_xact_lock"}},
        {.sql = "SELECT pg_try_advisory_xact_lock(1)", .read_only = false,
         .functions = {"pg_try_advisory_xact_lock"}},
        {.sql = "SELECT pg_advisory_unlock(1)", .read_only = false, .functions = {"pg_advisory_unlock"}},
        {.sql = "SELECT pg_advisory_unlock_all()", .read_only = false, .functions = {"pg_advisory_unlock_all"}},
    });
}

TEST_CASE("set_config is a write, and session state unless its third argument is true") {
    check_rows({
        {.sql = "SELECT set_config('a.b','c',false)", .read_only = false, .reason = "set_config",
         .functions = {"set_config"}, .session_state = true},
        {.sql = "SELECT set_config('a.b','c',true)", .read_only = false, .functions = {"set_config"}},
        {.sql = "SELECT set_config('a.b', 'c', 'on')", .read_only = false, .functions = {"set_config"}},
        {.sql = "SELECT set_config('a.b','c',$1)", .read_only = false, .functions = {"set_config"},
         .session_state = true},
        {.sql = "SELECT set_config('search_path', 'x', 0 = 1)", .read_only = false, .functions = {"set_config"},
         .session_state = true},
        {.sql = "SELECT set_config('default_transaction_read_only', 'off', false)", .read_only = false,
         .functions = {"set_config"}, .session_state = true, .pin = PinReason::session_read_write_default},
        {.sql = "SELECT set_config('default_transaction_isolation', $1, false)", .read_only = false,
         .functions = {"set_config"}, .session_state = true, .pin = PinReason::session_read_write_default},
    });
}

TEST_CASE("user functions are listed for the caller's volatility check") {
    check_rows({
        {.sql = "SELECT my_func(1)", .read_only = true, .functions = {"my_func"}},
        {.sql = "SELECT public.my_func(a) FROM t", .read_only = true, .functions = {"public.my_func"}},
        {.sql = "SELECT \"MyFunc\"(1)", .read_only = true, .functions = {"MyFunc"}},
        {.sql = "SELECT MY_FUNC(1)", .read_only = true, .functions = {"my_func"}},
        {.sql = "SELECT f(g(h(1)))", .read_only = true, .functions = {"f", "g", "h"}},
        {.sql = "SELECT f(1), f(2), F(3)", .read_only = true, .functions = {"f"}},
        {.sql = "SELECT * FROM t WHERE a = my_func(b) ORDER BY other_fn(c)", .read_only = true,
         .functions = {"my_func", "other_fn"}},
        {.sql = "SELECT * FROM my_srf(1) AS x", .read_only = true, .functions = {"my_srf"}},
        {.sql = "SELECT * FROM t WHERE EXISTS (SELECT 1 FROM u WHERE check_fn(u.a))", .read_only = true,
         .functions = {"check_fn"}},
        {.sql = "WITH x AS (SELECT cte_fn()) SELECT * FROM x", .read_only = true, .functions = {"cte_fn"}},
        {.sql = "SELECT count(*) FILTER (WHERE is_ok(a)) FROM t", .read_only = true,
         .functions = {"count", "is_ok"}},
        {.sql = "SELECT * FROM t JOIN u ON join_fn(t.a, u.a)", .read_only = true, .functions = {"join_fn"}},
        {.sql = "SELECT 1 UNION SELECT right_fn()", .read_only = true, .functions = {"right_fn"}},
        {.sql = "VALUES (values_fn())", .read_only = true, .functions = {"values_fn"}},
        {.sql = "SELECT * FROM t LIMIT limit_fn()", .read_only = true, .functions = {"limit_fn"}},
        {.sql = "SELECT a FROM t GROUP BY a HAVING having_fn(a)", .read_only = true, .functions = {"having_fn"}},
        {.sql = "SELECT ARRAY[array_fn()]", .read_only = true, .functions = {"array_fn"}},
    });
}

TEST_CASE("locking clauses anywhere make a SELECT a write") {
    check_rows({
        {.sql = "SELECT * FROM t FOR UPDATE", .read_only = false, .reason = "locking clause FOR UPDATE"},
        {.sql = "SELECT * FROM t FOR NO KEY UPDATE", .read_only = false, .reason = "FOR NO KEY UPDATE"},
        {.sql = "SELECT * FROM t FOR SHARE", .read_only = false, .reason = "locking clause FOR SHARE"},
        {.sql = "SELECT * FROM t FOR KEY SHARE", .read_only = false, .reason = "FOR KEY SHARE"},
        {.sql = "SELECT * FROM t FOR UPDATE SKIP LOCKED", .read_only = false, .reason = "FOR UPDATE"},
        {.sql = "SELECT * FROM t, u FOR UPDATE OF t NOWAIT", .read_only = false, .reason = "FOR UPDATE"},
        {.sql = "SELECT * FROM (SELECT * FROM t FOR SHARE) x", .read_only = false, .reason = "FOR SHARE"},
        {.sql = "SELECT * FROM t WHERE id IN (SELECT id FROM u FOR UPDATE)", .read_only = false,
         .reason = "FOR UPDATE"},
        {.sql = "WITH x AS (SELECT * FROM t FOR UPDATE) SELECT * FROM x", .read_only = false,
         .reason = "FOR UPDATE"},
        {.sql = "SELECT (SELECT a FROM t LIMIT 1 FOR UPDATE)", .read_only = false, .reason = "FOR UPDATE"},
    });
}

TEST_CASE("data-modifying CTEs make a SELECT a write at any depth") {
    check_rows({
        {.sql = "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", .read_only = false,
         .reason = "data-modifying CTE"},
        {.sql = "WITH x AS (INSERT INTO t VALUES (1) RETURNING id) SELECT id FROM x", .read_only = false,
         .reason = "data-modifying CTE"},
        {.sql = "WITH x AS (UPDATE t SET a = 1 RETURNING *) SELECT count(*) FROM x", .read_only = false,
         .reason = "data-modifying CTE", .functions = {"count"}},
        {.sql = "WITH a AS (SELECT 1), b AS (WITH c AS (DELETE FROM t RETURNING *) SELECT * FROM c) "
                "SELECT * FROM b",
         .read_only = false, .reason = "data-modifying CTE"},
        {.sql = "SELECT * FROM (WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d) s", .read_only = false,
         .reason = "data-modifying CTE"},
        // The PG 15 grammar accepts MERGE in WITH (the server's analyzer rejects it later).
        {.sql = "WITH m AS (MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN DELETE) SELECT 1",
         .read_only = false, .reason = "data-modifying CTE"},
    });
}

TEST_CASE("SELECT INTO creates a table") {
    check_rows({
        {.sql = "SELECT * INTO newt FROM t", .read_only = false, .reason = "SELECT INTO"},
        {.sql = "SELECT a, b INTO UNLOGGED newt FROM t WHERE a > 1", .read_only = false, .reason = "SELECT INTO"},
        {.sql = "SELECT * INTO TEMP newt FROM t", .read_only = false, .reason = "SELECT INTO",
         .pin = PinReason::temporary_table},
        {.sql = "SELECT * INTO TEMPORARY TABLE newt FROM t", .read_only = false,
         .pin = PinReason::temporary_table},
    });
}

TEST_CASE("comments, literals and odd whitespace do not change the classification") {
    check_rows({
        {.sql = "  \n\tSELECT\n1  ", .read_only = true},
        {.sql = "SELECT/**/1", .read_only = true},
        {.sql = "-- comment\nSELECT 1", .read_only = true},
        {.sql = "/* nested /* comment */ still */ SELECT 1", .read_only = true},
        {.sql = "SELECT 1 -- trailing", .read_only = true},
        {.sql = "SELECT 1; -- trailing comment", .read_only = true},
        {.sql = "/* INSERT INTO t VALUES (1) */ SELECT 1", .read_only = true},
        {.sql = "SELECT 1 /* ; DELETE FROM t */", .read_only = true},
        {.sql = "sElEcT * FrOm t", .read_only = true},
        {.sql = "SELECT\t*\r\nFROM\tt\r\nWHERE\ta=1", .read_only = true},
        {.sql = "SELECT 'it''s; DELETE FROM t'", .read_only = true},
        {.sql = "SELECT $$; DELETE FROM t$$", .read_only = true},
        {.sql = "SELECT $tag$ '; DELETE FROM t $tag$", .read_only = true},
        {.sql = R"(SELECT E'\'; DELETE FROM t')", .read_only = true},
        {.sql = "SELECT 'nextval(''s'')'", .read_only = true},
        {.sql = "SELECT \"insert\", \"for update\" FROM \"delete\"", .read_only = true},
        {.sql = "SELECT 1 AS \"FOR UPDATE\"", .read_only = true},
        {.sql = "SELECT * FROM t WHERE name = 'INSERT INTO x'", .read_only = true},
        {.sql = "(SELECT 1)", .read_only = true},
        {.sql = "((SELECT 1) UNION (SELECT 2))", .read_only = true},
        {.sql = ";SELECT 1;", .read_only = true},
        {.sql = "SELECT 'héllo', 'ünïcode ✓'", .read_only = true},
    });
}
