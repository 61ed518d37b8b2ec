#include "routing/literal_mask.hpp"

#include <catch2/catch.hpp>

using pglane::routing::mask_literals;

TEST_CASE("numbers and strings become numbered parameters") {
    REQUIRE(mask_literals("SELECT abalance FROM pgbench_accounts WHERE aid = 12345;") ==
            "SELECT abalance FROM pgbench_accounts WHERE aid = $1;");
    REQUIRE(mask_literals("SELECT * FROM t WHERE a = 'x' AND b > 1.5e3 AND c < .5") ==
            "SELECT * FROM t WHERE a = $1 AND b > $2 AND c < $3");
    REQUIRE(mask_literals("SELECT 'it''s'") == "SELECT $1");
}

TEST_CASE("digits inside names, quoted identifiers and comments are kept") {
    REQUIRE(mask_literals("SELECT col2 FROM t1 WHERE \"x 1\" = 3 -- 42\n") == "SELECT col2 FROM t1 WHERE \"x 1\" = $1 -- 42\n");
    REQUIRE(mask_literals("/* pglane: route=primary */ SELECT 7") == "/* pglane: route=primary */ SELECT $1");
    REQUIRE(mask_literals("SELECT /* a /* nested */ 1 */ 2") == "SELECT /* a /* nested */ 1 */ $1");
}

TEST_CASE("text without literals has no shape of its own") {
    REQUIRE_FALSE(mask_literals("SELECT a FROM t").has_value());
}

TEST_CASE("what the pass does not model is left alone") {
    REQUIRE_FALSE(mask_literals("SELECT $1 + 2").has_value());            // parameters already
    REQUIRE_FALSE(mask_literals("SELECT $$a$$, 1").has_value());          // dollar quotes
    REQUIRE_FALSE(mask_literals("SELECT E'a\\nb', 1").has_value());       // escape strings
    REQUIRE_FALSE(mask_literals("SELECT X'1F'").has_value());             // bit strings
    REQUIRE_FALSE(mask_literals("SELECT 'a\\b'").has_value());            // backslash in a string
    REQUIRE_FALSE(mask_literals("SELECT 'unterminated").has_value());
    REQUIRE_FALSE(mask_literals("SELECT 1 /* open").has_value());
    REQUIRE_FALSE(mask_literals("SELECT 0x1F").has_value());
}

TEST_CASE("a shape written into a reused buffer holds that statement's shape alone") {
    std::string shape = "left over from a longer statement before, longer than the next";
    REQUIRE(mask_literals("SELECT 1", shape));
    REQUIRE(shape == "SELECT $1");
    REQUIRE(mask_literals("SELECT abalance FROM pgbench_accounts WHERE aid = 7", shape));
    REQUIRE(shape == "SELECT abalance FROM pgbench_accounts WHERE aid = $1");
    REQUIRE_FALSE(mask_literals("SELECT a FROM t", shape));
    REQUIRE(mask_literals("SELECT 'x', 2, 3.5", shape));
    REQUIRE(shape == "SELECT $1, $2, $3");
}
