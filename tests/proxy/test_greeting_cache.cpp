#include "proxy/greeting_cache.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <map>
#include <string>

using pglane::proxy::GreetingCache;
using namespace std::chrono_literals;

namespace {

const GreetingCache::StartupParameters psql_login{
    {"user", "app"}, {"database", "shop"}, {"application_name", "psql"}};

const std::map<std::string, std::string> primary_greeting{
    {"server_version", "15.14"}, {"in_hot_standby", "off"}, {"application_name", "psql"}};

}  // namespace

TEST_CASE("a greeting key covers the node and every startup parameter, in any order") {
    const std::string key = GreetingCache::key("n0", psql_login);
    CHECK(key == GreetingCache::key("n0", {{"application_name", "psql"}, {"database", "shop"}, {"user", "app"}}));
    CHECK(key != GreetingCache::key("n1", psql_login));
    CHECK(key != GreetingCache::key("n0", {{"user", "app"}, {"database", "shop"}}));
    CHECK(key != GreetingCache::key("n0", {{"user", "app"}, {"database", "shop"}, {"application_name", "pgbench"}}));
    // Names and values cannot run into each other.
    CHECK(GreetingCache::key("n0", {{"user", "ab"}, {"database", "c"}}) !=
          GreetingCache::key("n0", {{"user", "a"}, {"database", "bc"}}));
    CHECK(GreetingCache::key("n0", {{"user", "a"}}) != GreetingCache::key("n0a", {}));
}

TEST_CASE("a remembered greeting is found, as the primary gave it, until its time to live passes") {
    GreetingCache cache(60s);
    const auto t0 = GreetingCache::Clock::time_point{} + 1h;
    const std::string key = GreetingCache::key("n0", psql_login);
    CHECK(cache.find(key, t0) == nullptr);
    cache.remember(key, primary_greeting, t0);
    const GreetingCache::Parameters* found = cache.find(key, t0 + 59s);
    REQUIRE(found != nullptr);
    CHECK(*found == GreetingCache::Parameters(primary_greeting.begin(), primary_greeting.end()));
    CHECK(cache.find(GreetingCache::key("n1", psql_login), t0) == nullptr);
    CHECK(cache.find(key, t0 + 60s) == nullptr);
    // A login greeted by the primary again renews it, with what the primary says now.
    auto changed = primary_greeting;
    changed["TimeZone"] = "UTC";
    cache.remember(key, changed, t0 + 61s);
    found = cache.find(key, t0 + 62s);
    REQUIRE(found != nullptr);
    CHECK(found->size() == 4);
}

TEST_CASE("the greeting cache stays bounded: expired entries go first, then all") {
    GreetingCache cache(60s, 3);
    const auto t0 = GreetingCache::Clock::time_point{} + 1h;
    auto key = [](int i) { return GreetingCache::key("n0", {{"user", "u" + std::to_string(i)}}); };
    cache.remember(key(1), primary_greeting, t0);
    cache.remember(key(2), primary_greeting, t0 + 30s);
    cache.remember(key(3), primary_greeting, t0 + 30s);
    // Full: key 1 expired by now and makes room; the others stay.
    cache.remember(key(4), primary_greeting, t0 + 70s);
    CHECK(cache.size() == 3);
    CHECK(cache.find(key(2), t0 + 70s) != nullptr);
    CHECK(cache.find(key(4), t0 + 70s) != nullptr);
    // Full of fresh entries: the cache starts over rather than grow.
    cache.remember(key(5), primary_greeting, t0 + 71s);
    CHECK(cache.size() == 1);
    CHECK(cache.find(key(5), t0 + 71s) != nullptr);
    // Renewing a present key never evicts.
    cache.remember(key(6), primary_greeting, t0 + 72s);
    cache.remember(key(7), primary_greeting, t0 + 72s);
    cache.remember(key(7), primary_greeting, t0 + 73s);
    CHECK(cache.size() == 3);
}
