#include "proxy/status_table.hpp"

#include <catch2/catch.hpp>

#include <sstream>
#include <vector>

using pglane::proxy::human_bytes;
using pglane::proxy::render_status_table;

namespace {

// A /status snapshot as pglane serves it (trimmed to what the table reads, plus noise).
const char* snapshot = R"({
  "version": "0.1.0", "primary": "n0", "primary_term": 3, "split_brain": false,
  "failovers": 1, "last_failover": "promoted n0 after n9 was down for 5000 ms",
  "nodes": [
    {"name": "n0", "up": true, "role": "primary", "elected_primary": true, "timeline": 2,
     "lag_bytes": 0, "lag_seconds": 0, "held_back": false, "fenced": false, "server_connections_active": 12,
     "wal_receiver": "", "sync_state": ""},
    {"name": "n1", "up": true, "role": "standby", "elected_primary": false, "timeline": 2,
     "lag_bytes": 4096, "lag_seconds": 1.5, "held_back": false, "fenced": false, "server_connections_active": 7,
     "wal_receiver": "streaming", "sync_state": "quorum", "replay_paused": false},
    {"name": "n2", "up": true, "role": "standby", "elected_primary": false, "timeline": 2,
     "lag_bytes": 50331648, "lag_seconds": 42.0, "held_back": true, "fenced": false, "server_connections_active": 0,
     "wal_receiver": "streaming", "sync_state": "async", "replay_paused": true},
    {"name": "n3", "up": false, "role": "standby", "elected_primary": false, "timeline": 1,
     "lag_bytes": 0, "lag_seconds": 0, "held_back": false, "fenced": false, "server_connections_active": 0,
     "last_error": "connection refused"},
    {"name": "n9", "up": true, "role": "primary", "elected_primary": false, "timeline": 1,
     "lag_bytes": 0, "lag_seconds": 0, "held_back": false, "fenced": true, "server_connections_active": 0}
  ],
  "listeners": {"rw": {"client_connections_active": 5}, "ro": {"client_connections_active": 2},
                "auto": {"client_connections_active": 12}}
})";

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

// The whitespace-separated words of the row whose first word is `node`.
std::vector<std::string> row_of(const std::string& table, const std::string& node) {
    for (const auto& line : lines_of(table)) {
        std::istringstream words(line);
        std::vector<std::string> row;
        for (std::string w; words >> w;) row.push_back(w);
        if (!row.empty() && row[0] == node) return row;
    }
    return {};
}

}  // namespace

TEST_CASE("the status table shows each node's role, state, timeline, lag, routing and connections") {
    std::string table = render_status_table(nlohmann::json::parse(snapshot));
    auto lines = lines_of(table);
    REQUIRE(lines.at(0) == "pglane 0.1.0  primary: n0 (term 3)  clients: 19 (rw 5, ro 2, auto 12)  failovers: 1");
    REQUIRE(lines.at(1) == "last failover: promoted n0 after n9 was down for 5000 ms");
    REQUIRE_THAT(lines.at(2), Catch::StartsWith("NODE  ROLE     STATE  TIMELINE"));
    REQUIRE(row_of(table, "n0") == std::vector<std::string>{"n0", "primary", "up", "2", "-", "-", "writes", "12"});
    REQUIRE(row_of(table, "n1") ==
            std::vector<std::string>{"n1", "standby", "up", "2", "4.0", "KiB", "1.5", "s", "reads", "7", "quorum"});
    REQUIRE(row_of(table, "n2") == std::vector<std::string>{"n2", "standby", "up", "2", "48.0", "MiB", "42.0", "s",
                                                            "HELD", "BACK", "0", "replay", "paused"});
    REQUIRE(row_of(table, "n3") ==
            std::vector<std::string>{"n3", "standby", "DOWN", "1", "-", "-", "-", "0", "connection", "refused"});
    REQUIRE(row_of(table, "n9") == std::vector<std::string>{"n9", "primary", "up", "1", "-", "-", "FENCED", "0"});
}

TEST_CASE("the status table's columns line up") {
    auto lines = lines_of(render_status_table(nlohmann::json::parse(snapshot)));
    auto header = lines.at(2);
    auto routing = header.find("ROUTING");
    REQUIRE(routing != std::string::npos);
    for (std::size_t i = 3; i < lines.size(); ++i) {
        REQUIRE(lines[i].size() > routing);
        REQUIRE(lines[i][routing - 1] == ' ');
        REQUIRE(lines[i][routing] != ' ');
    }
}

TEST_CASE("a cluster without an elected primary says writes are refused") {
    auto status = nlohmann::json::parse(snapshot);
    status["primary"] = nullptr;
    status["split_brain"] = true;
    std::string first = lines_of(render_status_table(status)).at(0);
    REQUIRE_THAT(first, Catch::Contains("primary: NONE (writes refused)"));
    REQUIRE_THAT(first, Catch::Contains("SPLIT BRAIN"));
}

TEST_CASE("a document that is not pglane's status is refused") {
    REQUIRE_THROWS_WITH(render_status_table(nlohmann::json::parse(R"({"hello": 1})")),
                        Catch::Contains("not a pglane /status document"));
    REQUIRE_THROWS(render_status_table(nlohmann::json::parse("[1, 2]")));
}

TEST_CASE("lag in bytes reads at a glance") {
    REQUIRE(human_bytes(0) == "0 B");
    REQUIRE(human_bytes(1023) == "1023 B");
    REQUIRE(human_bytes(4096) == "4.0 KiB");
    REQUIRE(human_bytes(16u * 1024 * 1024) == "16.0 MiB");
    REQUIRE(human_bytes(3ull * 1024 * 1024 * 1024) == "3.0 GiB");
}
