#include "routing/classification_cache.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <thread>
#include <vector>

using pglane::routing::Classification;
using pglane::routing::ClassificationCache;

TEST_CASE("the first classification of a text misses and repeats hit") {
    ClassificationCache cache;
    const auto& first = cache.classify("SELECT 1");
    CHECK(first.read_only);
    CHECK(cache.misses() == 1);
    CHECK(cache.hits() == 0);
    const auto& again = cache.classify("SELECT 1");
    CHECK(again.read_only);
    CHECK(cache.misses() == 1);
    CHECK(cache.hits() == 1);
    CHECK(cache.size() == 1);
}

TEST_CASE("the cache keys on the exact text, whitespace included") {
    ClassificationCache cache;
    (void)cache.classify("SELECT a");
    (void)cache.classify("SELECT  a");
    (void)cache.classify("select a");
    CHECK(cache.misses() == 3);
    CHECK(cache.hits() == 0);
    CHECK(cache.size() == 3);
}

TEST_CASE("a cached classification carries every field") {
    ClassificationCache cache;
    (void)cache.classify("SELECT nextval('s')");
    const auto& hit = cache.classify("SELECT nextval('s')");
    CHECK(cache.hits() == 1);
    CHECK_FALSE(hit.read_only);
    CHECK(hit.reason == "volatile function nextval");
    CHECK(hit.functions == std::vector<std::string>{"nextval"});
}

TEST_CASE("the cache holds at most max_entries and evicts the least recently used") {
    ClassificationCache cache(3);
    (void)cache.classify("SELECT a");
    (void)cache.classify("SELECT b");
    (void)cache.classify("SELECT c");
    (void)cache.classify("SELECT a");  // hit: now the most recent
    (void)cache.classify("SELECT d");  // evicts SELECT b
    CHECK(cache.size() == 3);
    CHECK(cache.hits() == 1);
    CHECK(cache.misses() == 4);

    (void)cache.classify("SELECT a");
    CHECK(cache.hits() == 2);  // survived: it was used recently
    (void)cache.classify("SELECT b");
    CHECK(cache.misses() == 5);  // was evicted
    CHECK(cache.size() == 3);
}

TEST_CASE("thousands of distinct statements never grow the cache past its bound") {
    ClassificationCache cache(100);
    for (int i = 0; i < 2000; ++i) (void)cache.classify("SELECT c" + std::to_string(i));
    CHECK(cache.size() == 100);
    CHECK(cache.misses() == 2000);
}

TEST_CASE("statements differing only in literals share one parse") {
    ClassificationCache cache;
    for (int i = 0; i < 100; ++i)
        CHECK(cache.classify("SELECT abalance FROM pgbench_accounts WHERE aid = " + std::to_string(i)).read_only);
    CHECK(cache.misses() == 1);
    CHECK(cache.hits() == 99);
    CHECK(cache.size() == 1);
    CHECK_FALSE(cache.classify("UPDATE pgbench_accounts SET abalance = 5 WHERE aid = 7").read_only);
    CHECK(cache.classify("SELECT * FROM t WHERE name = 'x' AND id = 3").read_only);
    CHECK(cache.classify("SELECT * FROM t WHERE name = 'it''s' AND id = 4").read_only);
    CHECK(cache.misses() == 3);
}

TEST_CASE("literals that matter are never shared through a shape") {
    ClassificationCache cache;
    // The value of a pglane setting is the whole point of the statement.
    CHECK(cache.classify("SET pglane.route = 'primary'").pglane_setting_value == "primary");
    CHECK(cache.classify("SET pglane.route = 'standby'").pglane_setting_value == "standby");
    // set_config's third argument decides whether the setting outlives the transaction.
    CHECK(cache.classify("SELECT set_config('a.b', 'c', false)").session_state);
    // Advisory lock keys pin; two keys are two statements.
    CHECK(cache.classify("SELECT pg_advisory_lock(1)").pin != pglane::routing::PinReason::none);
    CHECK(cache.classify("SELECT pg_advisory_lock(2)").pin != pglane::routing::PinReason::none);
}

TEST_CASE("the cache holds at most max_bytes") {
    ClassificationCache cache(1000, 4096);
    const std::string padding(300, 'x');
    for (int i = 0; i < 50; ++i) (void)cache.classify("SELECT '" + padding + "', " + std::to_string(i));
    CHECK(cache.bytes() <= 4096);
    CHECK(cache.size() < 50);
    CHECK(cache.size() >= 1);
}

TEST_CASE("a statement longer than the per-statement bound is classified but not cached") {
    ClassificationCache cache(16, 1 << 20, 32);
    const std::string long_select = "SELECT 1 AS a_rather_long_column_name_to_pass_the_bound";
    CHECK(cache.classify(long_select).read_only);
    CHECK(cache.classify(long_select).read_only);
    CHECK(cache.misses() == 2);
    CHECK(cache.hits() == 0);
    CHECK(cache.size() == 0);
    CHECK_FALSE(cache.classify("INSERT INTO some_table_with_a_long_name VALUES (1)").read_only);
}

TEST_CASE("parse time accumulates on misses only") {
    ClassificationCache cache;
    CHECK(cache.parse_nanoseconds() == 0);
    (void)cache.classify("SELECT * FROM t WHERE a = 1");
    const auto after_miss = cache.parse_nanoseconds();
    CHECK(after_miss > 0);
    for (int i = 0; i < 10; ++i) (void)cache.classify("SELECT * FROM t WHERE a = 1");
    CHECK(cache.parse_nanoseconds() == after_miss);
}

TEST_CASE("unparseable statements are cached too") {
    ClassificationCache cache;
    CHECK_FALSE(cache.classify("SELEC 1").parsed);
    CHECK_FALSE(cache.classify("SELEC 1").parsed);
    CHECK(cache.hits() == 1);
}

TEST_CASE("classification works from several threads at once, one cache per thread") {
    // libpg_query keeps its memory contexts thread-local; this would crash or corrupt otherwise.
    std::vector<std::thread> workers;
    std::vector<int> wrong(4, 0);
    for (int w = 0; w < 4; ++w) {
        workers.emplace_back([w, &wrong] {
            ClassificationCache cache(64);
            for (int i = 0; i < 500; ++i) {
                const std::string read = "SELECT a FROM t WHERE id = " + std::to_string(i * 4 + w);
                const std::string write = "UPDATE t SET a = " + std::to_string(i) + " WHERE id = 1";
                if (!cache.classify(read).read_only) ++wrong[w];
                if (cache.classify(write).read_only) ++wrong[w];
            }
        });
    }
    for (auto& worker : workers) worker.join();
    CHECK(wrong == std::vector<int>(4, 0));
}

TEST_CASE("a statement a standby refused stays off the standbys, with every statement of its shape") {
    ClassificationCache cache;
    REQUIRE(cache.classify("SELECT x FROM cache_table WHERE k = 1").read_only);
    REQUIRE(cache.classify("SELECT 1").read_only);
    CHECK(cache.mark_not_for_standbys("SELECT x FROM cache_table WHERE k = 1", "refused by a standby (0A000)"));
    const Classification& again = cache.classify("SELECT x FROM cache_table WHERE k = 1");
    CHECK_FALSE(again.read_only);
    CHECK(again.reason == "refused by a standby (0A000)");
    CHECK_FALSE(cache.classify("SELECT x FROM cache_table WHERE k = 42").read_only);   // same shape
    CHECK(cache.classify("SELECT 1").read_only);                                       // others stay
    CHECK_FALSE(cache.mark_not_for_standbys("SELECT y FROM never_classified", "x"));
    CHECK(cache.misses() == 2);
}
