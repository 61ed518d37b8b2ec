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

namespace {

std::string with_tls(const std::string& tls, const std::string& node_extra = "") {
    return R"({ "listen": { "rw": "127.0.0.1:6433" },
                "nodes": [ { "name": "n0", "host": "db0", "port": 5432 )" + node_extra + R"( },
                           { "name": "n1", "host": "db1", "port": 5432 } ],
                "tls": )" + tls + "}";
}

}  // namespace

TEST_CASE("tls settings: a certificate turns client TLS on, nodes inherit the server sslmode") {
    using pglane::health::SslMode;
    using pglane::proxy::ClientTlsMode;
    auto none = parse_config(valid);
    CHECK(none.tls.mode == ClientTlsMode::disable);
    CHECK(none.nodes[0].sslmode == SslMode::prefer);   // libpq's default
    auto config = parse_config(with_tls(R"({ "cert_file": "/c.pem", "key_file": "/k.pem",
        "server_sslmode": "verify-full", "server_ca_file": "/ca.pem" })", R"(, "sslmode": "disable")"));
    CHECK(config.tls.mode == ClientTlsMode::allow);
    CHECK(config.nodes[0].sslmode == SslMode::disable);
    CHECK(config.nodes[1].sslmode == SslMode::verify_full);
    CHECK(config.nodes[1].ca_file == "/ca.pem");
    auto required = parse_config(with_tls(R"({ "cert_file": "/c.pem", "key_file": "/k.pem", "mode": "require" })"));
    CHECK(required.tls.mode == ClientTlsMode::require);
}

TEST_CASE("tls errors name the key") {
    CHECK(error_of(with_tls(R"({ "cert_file": "/c.pem" })")) ==
          "config key \"tls.key_file\": is needed with the other (certificate and key)");
    CHECK(error_of(with_tls(R"({ "mode": "require" })")) ==
          "config key \"tls.mode\": \"require\" needs tls.cert_file and tls.key_file");
    CHECK(error_of(with_tls(R"({ "mode": "prefer", "cert_file": "/c", "key_file": "/k" })")) ==
          "config key \"tls.mode\": must be one of disable, allow, require");
    CHECK(error_of(with_tls(R"({ "server_sslmode": "verify-full" })")) ==
          "config key \"nodes[0].sslmode\": \"verify-full\" needs tls.server_ca_file (the CA that signed the "
          "servers' certificates)");
    CHECK(error_of(with_tls("{}", R"(, "sslmode": "allow")")) ==
          "config key \"nodes[0].sslmode\": must be one of disable, prefer, require, verify-ca, verify-full");
    CHECK(error_of(with_tls(R"({ "ciphers": "x" })")) == "config key \"tls.ciphers\": unknown key");
}

TEST_CASE("unreadable certificate files are refused naming the key") {
    pglane::proxy::TlsSettings settings;
    settings.cert_file = "/nonexistent/pglane.crt";
    settings.key_file = "/nonexistent/pglane.key";
    settings.mode = pglane::proxy::ClientTlsMode::allow;
    try {
        pglane::proxy::TlsContexts contexts(settings);
        FAIL("no error");
    } catch (const ConfigError& e) {
        CHECK(std::string(e.what()).starts_with("config key \"tls.cert_file\": cannot load \"/nonexistent/pglane.crt\""));
    }
}

TEST_CASE("busy_poll_us is off by default and bounded") {
    CHECK(parse_config(valid).busy_poll_us == 0);
    CHECK(error_of(R"({ "listen": { "rw": "127.0.0.1:6433" }, "nodes": [ { "name": "n0", "host": "h", "port": 5432 } ],
                       "busy_poll_us": 20000 })") == "config key \"busy_poll_us\": must be between 0 and 10000");
}

TEST_CASE("routing.read_balance is per statement by default, or per session") {
    CHECK(parse_config(valid).routing.read_balance == pglane::routing::ReadBalance::statement);
    const std::string head = R"({ "listen": { "rw": "127.0.0.1:6433" }, "nodes": [ { "name": "n0", "host": "h", "port": 5432 } ],
                                  "routing": { "read_balance": )";
    CHECK(parse_config(head + R"("session" } })").routing.read_balance == pglane::routing::ReadBalance::session);
    CHECK(error_of(head + R"("query" } })") ==
          "config key \"routing.read_balance\": must be one of statement, session");
}

TEST_CASE("nodes[].weight is 1 by default, 0 to 1000 when given") {
    CHECK(parse_config(valid).nodes[1].weight == 1);
    const std::string head = R"({ "listen": { "rw": "127.0.0.1:6433" },
                                  "nodes": [ { "name": "n0", "host": "h", "port": 5432 },
                                             { "name": "n1", "host": "h", "port": 5433, "weight": )";
    CHECK(parse_config(head + "3 } ] }").nodes[1].weight == 3);
    CHECK(parse_config(head + "0 } ] }").nodes[1].weight == 0);
    CHECK(error_of(head + "-1 } ] }") == "config key \"nodes[1].weight\": must be between 0 and 1000");
    CHECK(error_of(head + "1.5 } ] }") == "config key \"nodes[1].weight\": must be an integer");
}

TEST_CASE("listen.unix_socket_dir: a socket directory for every port, with a mode") {
    const auto with_listen = [](const std::string& extra) {
        return R"({ "listen": { "rw": "127.0.0.1:6433", "auto": "127.0.0.1:6432" )" + extra +
               R"( }, "auth": { "users_file": "/dev/null" }, "nodes": [ { "name": "n0", "host": "/run/postgresql", "port": 5432 } ] })";
    };
    auto plain = parse_config(with_listen(""));
    CHECK(plain.unix_socket_dir.empty());
    CHECK(plain.nodes[0].on_unix_socket());
    CHECK(plain.nodes[0].unix_socket_path() == "/run/postgresql/.s.PGSQL.5432");
    auto config = parse_config(with_listen(R"(, "unix_socket_dir": "/run/pglane", "unix_socket_mode": "0770")"));
    CHECK(config.unix_socket_dir == "/run/pglane");
    CHECK(config.unix_socket_mode == 0770);
    CHECK(parse_config(with_listen(R"(, "unix_socket_dir": "/run/pglane")")).unix_socket_mode == 0777);
    CHECK(error_of(with_listen(R"(, "unix_socket_dir": "run/pglane")")) ==
          R"(config key "listen.unix_socket_dir": must be an absolute path)");
    CHECK(error_of(with_listen(R"(, "unix_socket_dir": "/)" + std::string(92, 'd') + R"(")")) ==
          R"(config key "listen.unix_socket_dir": is too long for a socket path (at most 92 bytes))");
    CHECK(error_of(with_listen(R"(, "unix_socket_dir": "/)" + std::string(91, 'd') + R"(")")) == "no error");
    CHECK(error_of(with_listen(R"(, "unix_socket_dir": "/run/pglane", "unix_socket_mode": "0980")")) ==
          R"(config key "listen.unix_socket_mode": "0980" is not an octal mode such as "0770")");
    CHECK(error_of(with_listen(R"(, "unix_socket_mode": "0700")")) ==
          R"(config key "listen.unix_socket_mode": needs listen.unix_socket_dir)");
    CHECK(parse_config(with_listen(R"(, "unix_socket_dir": "/run/pglane", "unix_socket_group": "app")"))
              .unix_socket_group == "app");
    CHECK(error_of(with_listen(R"(, "unix_socket_group": "app")")) ==
          R"(config key "listen.unix_socket_group": needs listen.unix_socket_dir)");
}

TEST_CASE("nodes[].replication_host: what the standbys are pointed at, not part of the node's identity") {
    const auto with_node = [](const std::string& extra) {
        return R"({ "listen": { "rw": "127.0.0.1:6433" },
                    "nodes": [ { "name": "n0", "host": "/run/postgresql", "port": 5432 )" + extra + R"( } ] })";
    };
    auto config = parse_config(with_node(R"(, "replication_host": "10.0.0.10")"));
    CHECK(config.nodes[0].replication_host == "10.0.0.10");
    CHECK(config.nodes[0].upstream_host() == "10.0.0.10");
    const auto plain = parse_config(with_node(""));
    CHECK(plain.nodes[0].upstream_host() == "/run/postgresql");
    CHECK(plain.nodes[0] == config.nodes[0]);   // a reload changes it in place, as a weight
    CHECK(error_of(with_node(R"(, "replication_host": "")")) ==
          R"(config key "nodes[0].replication_host": must not be empty (leave it out to use host))");
}
