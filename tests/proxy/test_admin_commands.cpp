#include "proxy/admin_commands.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace pglane::proxy::admin;

TEST_CASE("admin commands: one per query, any case, an optional semicolon") {
    CHECK(parse_command("SHOW NODES").command == Command::show_nodes);
    CHECK(parse_command("  show   Clients ;  ").command == Command::show_clients);
    CHECK(parse_command("show servers;").command == Command::show_servers);
    CHECK(parse_command("SHOW POOLS").command == Command::show_pools);
    CHECK(parse_command("SHOW STATS").command == Command::show_stats);
    CHECK(parse_command("show version").command == Command::show_version);
    CHECK(parse_command("SHOW HELP").command == Command::show_help);
    CHECK(parse_command("pause").command == Command::pause);
    CHECK(parse_command("Resume;").command == Command::resume);
    CHECK(parse_command("RELOAD").command == Command::reload);

    ParsedCommand empty = parse_command(" ; ");
    CHECK_FALSE(empty.command);
    CHECK(empty.error.empty());

    for (const char* bad : {"SHOW NOTHING", "SHOW", "SHOW NODES; SHOW POOLS", "SELECT 1", "PAUSE NOW", "RELOAD ALL"}) {
        ParsedCommand parsed = parse_command(bad);
        INFO(bad);
        CHECK_FALSE(parsed.command);
        CHECK_THAT(parsed.error, Catch::Contains("unknown command") && Catch::Contains("SHOW HELP"));
    }
}

TEST_CASE("admin result sets: text columns, one DataRow per row, the tag") {
    std::string out;
    append_result_set(out, ResultSet{{"name", "up"}, {{"n0", "true"}, {"n1", ""}}, "SHOW"});
    const std::string expected =
        // RowDescription: 2 fields, each name, table 0, column 0, type 25 (text), size -1, typmod -1, format 0
        std::string("T\0\0\0\x32\0\x02", 7) + std::string("name\0\0\0\0\0\0\0\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0", 23) +
        std::string("up\0\0\0\0\0\0\0\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0", 21) +
        // DataRow n0|true, DataRow n1|"" (empty, not NULL)
        std::string("D\0\0\0\x14\0\x02\0\0\0\x02n0\0\0\0\x04true", 21) + std::string("D\0\0\0\x10\0\x02\0\0\0\x02n1\0\0\0\0", 17) +
        std::string("C\0\0\0\x09SHOW\0", 10);
    CHECK(out == expected);
}

TEST_CASE("admin tables are views of the /status document") {
    const nlohmann::json status = nlohmann::json::parse(R"({
      "nodes": [
        {"name": "n0", "host": "10.0.0.1", "port": 5432, "role": "primary", "up": true, "elected_primary": true,
         "fenced": false, "held_back": false, "weight": 1, "timeline": 2, "lag_bytes": 0, "lag_seconds": 0, "streaming": false,
         "sync_state": "", "last_error": ""},
        {"name": "n1", "host": "10.0.0.2", "port": 5432, "role": "standby", "up": false, "elected_primary": false,
         "fenced": false, "held_back": true, "weight": 3, "timeline": 1, "lag_bytes": 4096, "lag_seconds": 1.5, "streaming": true,
         "sync_state": "quorum", "last_error": "connection refused"}],
      "listeners": {"auto": {"units_to_primary_total": 7, "unit_errors_total": 1},
                    "rw": {"units_to_primary_total": 0, "unit_errors_total": 0}},
      "pools": [{"node": "n0", "database": "app", "user": "u", "active": 2, "idle": 3, "waiting": 0,
                 "checkouts": 40, "wait_timeouts": 0, "opened": 5, "closed": 0, "pins": {}}]})");

    ResultSet nodes = nodes_table(status);
    REQUIRE(nodes.rows.size() == 2);
    CHECK(nodes.columns.front() == "name");
    CHECK(nodes.rows[0] == std::vector<std::string>{"n0", "10.0.0.1", "5432", "primary", "true", "true", "false",
                                                    "false", "1", "2", "0", "0", "false", "", ""});
    CHECK(nodes.rows[1][4] == "false");
    CHECK(nodes.rows[1][8] == "3");
    CHECK(nodes.rows[1][11] == "1.5");
    CHECK(nodes.rows[1][14] == "connection refused");

    ResultSet stats = stats_table(status);
    CHECK(stats.columns == std::vector<std::string>{"listener", "unit_errors_total", "units_to_primary_total"});
    CHECK(stats.rows == std::vector<std::vector<std::string>>{{"auto", "1", "7"}, {"rw", "0", "0"}});

    ResultSet pools = pools_table(status);
    REQUIRE(pools.rows.size() == 1);
    CHECK(pools.rows[0] == std::vector<std::string>{"n0", "app", "u", "2", "3", "0", "40", "0", "5", "0"});
    CHECK(pools_table(nlohmann::json::parse(R"({"nodes": []})")).rows.empty());
}

TEST_CASE("admin clients and servers tables") {
    ResultSet clients = clients_table({ClientInfo{12, 1, "auto", "app", "appdb", "10.1.1.1:5000", "TLSv1.3",
                                                  "idle in transaction", "n0", 42}});
    CHECK(clients.rows.at(0) == std::vector<std::string>{"12", "1", "auto", "app", "appdb", "10.1.1.1:5000", "TLSv1.3",
                                                         "idle in transaction", "n0", "42"});
    ResultSet servers = servers_table({ServerInfo{"n1", "appdb", "app", 4242, 0, "idle in pool", 0, ""},
                                       ServerInfo{"n0", "appdb", "app", 77, 1, "in use", 12, "TLSv1.3"}});
    CHECK(servers.rows.at(0) == std::vector<std::string>{"n1", "appdb", "app", "4242", "0", "idle in pool", "", ""});
    CHECK(servers.rows.at(1) == std::vector<std::string>{"n0", "appdb", "app", "77", "1", "in use", "12", "TLSv1.3"});
}
