#include "proxy/config.hpp"

#include <catch2/catch.hpp>

using pglane::proxy::ConfigError;
using pglane::proxy::parse_config;

namespace {

const char* valid = R"({
  "listen": { "rw": "127.0.0.1:6433", "ro": "127.0.0.1:6434" },
  "metrics_listen": "127.0.0.1:9187",
  "nodes": [ { "name": "n0", "host": "127.0.0.1", "port": 15432 },
             { "name": "n1", "host": "127.0.0.1", "port": 15433 } ],
  "health": { "interval_ms": 500, "failures_before_down": 2, "user": "postgres", "password": "pw",
              "dbname": "postgres", "max_lag_bytes": 1024, "max_lag_seconds": 5 }
})";

std::string error_of(const std::string& text) {
    try {
        (void)parse_config(text);
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "no error";
}

}  // namespace

TEST_CASE("a valid config is read with every key") {
    auto config = parse_config(valid);
    REQUIRE(config.listen_rw->host == "127.0.0.1");
    REQUIRE(config.listen_rw->port == 6433);
    REQUIRE(config.listen_ro->port == 6434);
    REQUIRE(config.metrics_listen->port == 9187);
    REQUIRE(config.nodes.size() == 2);
    REQUIRE(config.nodes[1].name == "n1");
    REQUIRE(config.nodes[1].port == 15433);
    REQUIRE(config.health.interval_ms == 500);
    REQUIRE(config.health.failures_before_down == 2);
    REQUIRE(config.health.password == "pw");
    REQUIRE(config.health.max_lag_bytes == 1024);
    REQUIRE(config.health.max_lag_seconds == 5.0);
    REQUIRE(config.ro_fallback_to_primary);
}

TEST_CASE("config errors name the offending key") {
    REQUIRE(error_of("{") .find("not valid JSON") != std::string::npos);
    REQUIRE(error_of(R"({"nodes": [{"name":"n0","host":"h","port":1}]})") == R"(config key "listen": is required (give at least one of listen.rw, listen.ro))");
    REQUIRE(error_of(R"({"listen":{"rw":"h:1"},"nodes":[{"name":"n0","host":"h","port":70000}]})") ==
            R"(config key "nodes[0].port": must be between 1 and 65535)");
    REQUIRE(error_of(R"({"listen":{"rw":"h:1"},"nodes":[{"name":"n0","host":"h","port":1}],"bogus":1})") ==
            R"(config key "bogus": unknown key)");
    REQUIRE(error_of(R"({"listen":{"rw":"h:1"},"nodes":[{"name":"a","host":"h","port":1},{"name":"a","host":"h","port":2}]})") ==
            R"(config key "nodes[1].name": "a" is used twice)");
    REQUIRE(error_of(R"({"listen":{"rw":"nohost"},"nodes":[{"name":"a","host":"h","port":1}]})") ==
            R"(config key "listen.rw": "nohost" is not host:port)");
    REQUIRE(error_of(R"({"listen":{"rw":"h:1"},"nodes":[{"name":"a","host":"h","port":1}],"health":{"interval_ms":"x"}})") ==
            R"(config key "health.interval_ms": must be an integer)");
    REQUIRE(error_of(R"({"listen":{"rw":"h:1"},"nodes":[{"name":"a","host":"h","port":1}],"log_level":"loud"})") ==
            R"(config key "log_level": must be one of debug, info, warn, error)");
    REQUIRE(error_of(R"({"listen":{"rw":"h:1"},"nodes":[]})") == R"(config key "nodes": must be a non-empty array)");
}
