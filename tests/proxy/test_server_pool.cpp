// Transaction pooling's pure parts: pooled statement names and message renaming (bytes in,
// bytes out), the "pool" config section, and the pool's bookkeeping when connections come
// back (kept, handed on, closed) and when nodes go down, without a server.

#include "protocol/messages.hpp"
#include "proxy/config.hpp"
#include "proxy/server_pool.hpp"
#include "proxy/statement_names.hpp"

#include <catch2/catch.hpp>

using namespace pglane;
using namespace pglane::proxy;

namespace {

std::string body_of(const std::string& message) { return message.substr(5); }

std::string parse_message(std::string_view name, std::string_view sql) {
    std::string out;
    protocol::MessageWriter(out, 'P').cstring(name).cstring(sql).i16(1).u32(23);
    return out;
}

const char* pooled_config = R"({
  "listen": { "auto": "127.0.0.1:6432" },
  "nodes": [ { "name": "n0", "host": "127.0.0.1", "port": 1 },
             { "name": "n1", "host": "127.0.0.1", "port": 2 } ],
  "health": { "user": "postgres", "password": "pw" },
  "auth": { "users_file": "/dev/null" },
  "pool": { "mode": "transaction", "size": 4, "min_idle": 1, "max_wait_ms": 250,
            "server_lifetime_ms": 60000, "server_idle_timeout_ms": 30000 }
})";

std::string config_error(const std::string& text) {
    try {
        (void)parse_config(text);
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "no error";
}

std::unique_ptr<ServerConnection> unconnected(asio::io_context& io, const Config& config, std::size_t node) {
    return std::make_unique<ServerConnection>(io.get_executor(), node, config.nodes[node], config.limits, nullptr);
}

}  // namespace

TEST_CASE("pooled statement names depend on the client's name and the definition only") {
    auto a = parse_message("s1", "SELECT $1");
    auto b = parse_message("s1", "SELECT $1 + 1");
    auto c = parse_message("s2", "SELECT $1");
    auto name_a = pooled_statement_name("s1", parse_definition(protocol::as_bytes(body_of(a))));
    REQUIRE(name_a.starts_with("pglane_"));
    REQUIRE(name_a.size() == 7 + 32);
    REQUIRE(name_a == pooled_statement_name("s1", parse_definition(protocol::as_bytes(body_of(a)))));
    REQUIRE(name_a != pooled_statement_name("s1", parse_definition(protocol::as_bytes(body_of(b)))));
    REQUIRE(name_a != pooled_statement_name("s2", parse_definition(protocol::as_bytes(body_of(c)))));
}

TEST_CASE("Parse, Bind, Describe and Close are renamed byte for byte") {
    std::string out;
    auto parse = parse_message("s1", "SELECT $1");
    REQUIRE(append_renamed(out, 'P', protocol::as_bytes(body_of(parse)), "pglane_x"));
    REQUIRE(out == parse_message("pglane_x", "SELECT $1"));

    std::string bind;
    protocol::MessageWriter(bind, 'B').cstring("portal").cstring("s1").i16(0).i16(1).i32(1).raw("7").i16(1).i16(1);
    std::string expected;
    protocol::MessageWriter(expected, 'B').cstring("portal").cstring("pglane_x").i16(0).i16(1).i32(1).raw("7").i16(1).i16(1);
    out.clear();
    REQUIRE(append_renamed(out, 'B', protocol::as_bytes(body_of(bind)), "pglane_x"));
    REQUIRE(out == expected);
    REQUIRE(bind_result_format_count(protocol::as_bytes(body_of(bind))) == 1);

    for (char tag : {'D', 'C'}) {
        std::string message, renamed;
        protocol::MessageWriter(message, tag).u8('S').cstring("s1");
        protocol::MessageWriter(renamed, tag).u8('S').cstring("pglane_x");
        out.clear();
        REQUIRE(append_renamed(out, tag, protocol::as_bytes(body_of(message)), "pglane_x"));
        REQUIRE(out == renamed);
    }
    out.clear();
    REQUIRE_FALSE(append_renamed(out, 'B', protocol::as_bytes(std::string_view("no-nul")), "x"));
    REQUIRE_FALSE(append_renamed(out, 'Q', protocol::as_bytes(std::string_view("x\0", 2)), "x"));
    REQUIRE(out.empty());
}

TEST_CASE("a Parse gets another query text, its name and parameter types kept byte for byte") {
    std::string parse, expected, out;
    protocol::MessageWriter(parse, 'P').cstring("").cstring("DEALLOCATE s1").i16(1).i32(23);
    protocol::MessageWriter(expected, 'P').cstring("").cstring("DEALLOCATE pglane_x").i16(1).i32(23);
    REQUIRE(append_with_query(out, protocol::as_bytes(body_of(parse)), "DEALLOCATE pglane_x"));
    REQUIRE(out == expected);
    out.clear();
    REQUIRE_FALSE(append_with_query(out, protocol::as_bytes(std::string_view("name\0no-nul", 11)), "x"));
    REQUIRE_FALSE(append_with_query(out, protocol::as_bytes(std::string_view("no-nul")), "x"));
    REQUIRE(out.empty());
}

TEST_CASE("SQL that names a prepared statement gets the pooled name instead") {
    const std::string to = "pglane_ab";
    CHECK(rename_sql_statement_name("EXECUTE s1(1, 'x')", "s1", to) == "EXECUTE \"pglane_ab\"(1, 'x')");
    CHECK(rename_sql_statement_name("execute S1", "s1", to) == "execute \"pglane_ab\"");
    CHECK(rename_sql_statement_name("EXECUTE \"S1\"", "S1", to) == "EXECUTE \"pglane_ab\"");
    CHECK(rename_sql_statement_name("EXECUTE \"a\"\"b\"", "a\"b", to) == "EXECUTE \"pglane_ab\"");
    CHECK(rename_sql_statement_name("PREPARE s1 AS SELECT 1", "s1", to) == "PREPARE \"pglane_ab\" AS SELECT 1");
    CHECK(rename_sql_statement_name("DEALLOCATE PREPARE s1", "s1", to) == "DEALLOCATE PREPARE \"pglane_ab\"");
    CHECK(rename_sql_statement_name("EXPLAIN EXECUTE s1(2)", "s1", to) == "EXPLAIN EXECUTE \"pglane_ab\"(2)");
    CHECK(rename_sql_statement_name("SELECT 1; EXECUTE s1; EXECUTE s2; EXECUTE /* c */ s1", "s1", to) ==
          "SELECT 1; EXECUTE \"pglane_ab\"; EXECUTE s2; EXECUTE /* c */ \"pglane_ab\"");
    // Nothing to rename: another name, a quoted name of other case, a name in a string or a
    // comment, statements where the word after the keyword is not a statement name.
    CHECK_FALSE(rename_sql_statement_name("EXECUTE s2", "s1", to));
    CHECK_FALSE(rename_sql_statement_name("EXECUTE \"S1\"", "s1", to));
    CHECK_FALSE(rename_sql_statement_name("SELECT 'EXECUTE s1' -- EXECUTE s1", "s1", to));
    CHECK_FALSE(rename_sql_statement_name("PREPARE TRANSACTION 'transaction'", "transaction", to));
    CHECK_FALSE(rename_sql_statement_name("GRANT EXECUTE ON FUNCTION f() TO PUBLIC", "on", to));
    CHECK_FALSE(rename_sql_statement_name("DEALLOCATE ALL", "all", to));
    CHECK_FALSE(rename_sql_statement_name("EXECUTE U&\"s1\"", "s1", to));
    CHECK_FALSE(rename_sql_statement_name("EXECUTE 'unterminated", "s1", to));
}

TEST_CASE("pooled statement names in a server's error are put back as the client knows them") {
    const std::string pooled = "pglane_0123456789abcdef0123456789abcdef";
    auto client_name = [&](std::string_view name) { return name == pooled ? std::string("by_parse") : std::string(); };
    auto error = [](std::string_view message) {
        std::string body;
        for (std::string_view field : {std::string_view("SERROR"), std::string_view("C42P05")}) body.append(field).push_back('\0');
        body.push_back('M');
        body.append(message).push_back('\0');
        body.push_back('\0');
        return body;
    };
    const std::string held = error("prepared statement \"" + pooled + "\" already exists");
    CHECK(with_client_statement_names(protocol::as_bytes(held), client_name) ==
          error("prepared statement \"by_parse\" already exists"));
    // Unknown pooled names, unquoted ones, shorter look-alikes and other errors stay as they are.
    const std::string other = "pglane_ffffffffffffffffffffffffffffffff";
    CHECK_FALSE(with_client_statement_names(protocol::as_bytes(error("prepared statement \"" + other + "\" does not exist")), client_name));
    CHECK_FALSE(with_client_statement_names(protocol::as_bytes(error("see " + pooled)), client_name));
    CHECK_FALSE(with_client_statement_names(protocol::as_bytes(error("\"pglane_0123\" is short")), client_name));
    CHECK_FALSE(with_client_statement_names(protocol::as_bytes(error("relation \"t\" does not exist")), client_name));
    // A body without its terminating NUL is left alone.
    const std::string cut = held.substr(0, held.size() - 1);
    CHECK_FALSE(with_client_statement_names(protocol::as_bytes(cut), client_name));
}

TEST_CASE("a Bind's result format count is read past its parameters") {
    std::string per_column;
    protocol::MessageWriter(per_column, 'B').cstring("").cstring("s").i16(2).i16(1).i16(0).i16(2).i32(-1).i32(3).raw("abc")
        .i16(3).i16(1).i16(1).i16(1);
    REQUIRE(bind_result_format_count(protocol::as_bytes(body_of(per_column))) == 3);
    std::string truncated = body_of(per_column).substr(0, 12);
    REQUIRE_FALSE(bind_result_format_count(protocol::as_bytes(truncated)).has_value());
}

TEST_CASE("the pool section is read, and transaction pooling needs pglane's own auth") {
    Config config = parse_config(pooled_config);
    REQUIRE(config.pool.mode == PoolSettings::Mode::transaction);
    REQUIRE(config.pool.size == 4);
    REQUIRE(config.pool.min_idle == 1);
    REQUIRE(config.pool.max_wait_ms == 250);
    REQUIRE(config.pool.server_lifetime_ms == 60000);
    REQUIRE(config.pool.server_idle_timeout_ms == 30000);
    std::string text = pooled_config;
    REQUIRE_THAT(config_error(std::string(text).replace(text.find("\"transaction\""), 13, "\"statement\"")),
                 Catch::Contains("pool.mode"));
    REQUIRE_THAT(config_error(std::string(text).replace(text.find("\"min_idle\": 1"), 13, "\"min_idle\": 9")),
                 Catch::Contains("pool.min_idle"));
    std::string no_auth = text;
    no_auth.erase(no_auth.find("\"auth\""), std::string_view(R"("auth": { "users_file": "/dev/null" },)").size());
    REQUIRE_THAT(config_error(no_auth), Catch::Contains("needs an \\\"auth\\\" section") || Catch::Contains("auth"));
}

TEST_CASE("returned connections are kept, handed on or closed") {
    Config config = parse_config(pooled_config);
    asio::io_context io;
    Counters counters(config.nodes.size());
    PoolStatsRegistry registry;
    ServerPools pools(io.get_executor(), config, counters, registry, 1, nullptr);
    ServerPool& pool = pools.pool(0, "db", "user");
    PoolStats& stats = pool.stats();

    // As if lent: checkin counts one fewer active.
    stats.active = 3;
    pools.checkin(pool, unconnected(io, config, 0));
    REQUIRE(stats.idle == 1);
    REQUIRE(stats.active == 2);
    REQUIRE(stats.closed == 0);

    auto mid_unit = unconnected(io, config, 0);
    mid_unit->between_units = false;
    pools.checkin(pool, std::move(mid_unit));
    auto in_transaction = unconnected(io, config, 0);
    in_transaction->ready_status = protocol::TransactionStatus::in_transaction;
    pools.checkin(pool, std::move(in_transaction));
    REQUIRE(stats.idle == 1);
    REQUIRE(stats.closed == 2);
    REQUIRE(stats.active == 0);

    // A node that goes down loses its idle connections, and returns to it are closed.
    health::Topology topology;
    topology.nodes.resize(2);
    topology.nodes[0].up = false;
    topology.nodes[1].up = true;
    pools.on_topology(topology);
    REQUIRE(stats.idle == 0);
    REQUIRE(stats.closed == 3);
    stats.active = 1;
    pools.checkin(pool, unconnected(io, config, 0));
    REQUIRE(stats.idle == 0);
    REQUIRE(stats.closed == 4);

    // Back up: returns are kept again. A fenced node is closed like a down one.
    topology.nodes[0].up = true;
    pools.on_topology(topology);
    stats.active = 1;
    pools.checkin(pool, unconnected(io, config, 0));
    REQUIRE(stats.idle == 1);
    topology.nodes[0].fenced = true;
    pools.on_topology(topology);
    REQUIRE(stats.idle == 0);

    const std::string metrics = registry.render_metrics();
    REQUIRE_THAT(metrics, Catch::Contains("pglane_pool_server_connections_closed_total{node=\"n0\",database=\"db\",user=\"user\"} 5"));
    REQUIRE_THAT(metrics, Catch::Contains("pglane_pool_wait_seconds_bucket{node=\"n0\",database=\"db\",user=\"user\",le=\"+Inf\"} 0"));
}

TEST_CASE("a greeting is remembered per startup parameters, and bounded") {
    Config config = parse_config(pooled_config);
    asio::io_context io;
    Counters counters(config.nodes.size());
    PoolStatsRegistry registry;
    ServerPools pools(io.get_executor(), config, counters, registry, 1, nullptr);
    ServerPool& pool = pools.pool(1, "db", "user");
    REQUIRE(pool.greeting("SELECT a") == nullptr);
    REQUIRE(pool.begin_greeting_fetch("SELECT a"));
    REQUIRE_FALSE(pool.begin_greeting_fetch("SELECT a"));
    pool.remember_greeting("SELECT a", {{"server_version", "15.18"}, {"application_name", "a"}});
    REQUIRE(pool.begin_greeting_fetch("SELECT a"));  // remembering ends the fetch
    pool.end_greeting_fetch("SELECT a");
    REQUIRE(pool.greeting("SELECT a")->size() == 2);
    for (int i = 0; i < 100; ++i) pool.remember_greeting("SELECT " + std::to_string(i), {});
    REQUIRE(pool.greeting("SELECT 99") != nullptr);
    REQUIRE(pool.greeting("SELECT a") == nullptr);
}
