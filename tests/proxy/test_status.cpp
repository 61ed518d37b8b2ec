#include "proxy/status.hpp"

#include <catch2/catch.hpp>

using namespace pglane;

namespace {

health::Topology two_nodes() {
    health::Topology t;
    t.version = 3;
    t.primary = 0;
    t.primary_term = 2;
    health::NodeStatus primary;
    primary.address = {"n0", "127.0.0.1", 15432};
    primary.up = true;
    primary.role = health::Role::primary;
    health::NodeStatus standby;
    standby.address = {"n1", "127.0.0.1", 15433};
    standby.up = true;
    standby.role = health::Role::standby;
    standby.lag_bytes = 4096;
    standby.held_back = true;
    t.nodes = {primary, standby};
    return t;
}

}  // namespace

TEST_CASE("metrics expose node health and counters in Prometheus text format") {
    proxy::CounterTotals totals;
    totals.node.resize(2);
    totals.listener[static_cast<std::size_t>(proxy::ListenerKind::ro)]
                    [static_cast<std::size_t>(proxy::ListenerCounter::client_connections_total)] = 7;
    totals.node[1][static_cast<std::size_t>(proxy::NodeCounter::sessions_routed_total)] = 5;
    std::string text = proxy::render_metrics(two_nodes(), totals);
    REQUIRE_THAT(text, Catch::Contains("# TYPE pglane_node_up gauge\n"));
    REQUIRE_THAT(text, Catch::Contains("pglane_node_up{node=\"n1\"} 1\n"));
    REQUIRE_THAT(text, Catch::Contains("pglane_node_is_primary{node=\"n0\"} 1\n"));
    REQUIRE_THAT(text, Catch::Contains("pglane_node_is_primary{node=\"n1\"} 0\n"));
    REQUIRE_THAT(text, Catch::Contains("pglane_node_lag_bytes{node=\"n1\"} 4096\n"));
    REQUIRE_THAT(text, Catch::Contains("pglane_node_held_back{node=\"n1\"} 1\n"));
    REQUIRE_THAT(text, Catch::Contains("pglane_primary_term 2\n"));
    REQUIRE_THAT(text, Catch::Contains("# TYPE pglane_client_connections_total counter\n"));
    REQUIRE_THAT(text, Catch::Contains("pglane_client_connections_total{listener=\"ro\"} 7\n"));
    REQUIRE_THAT(text, Catch::Contains("pglane_sessions_routed_total{node=\"n1\"} 5\n"));
}

TEST_CASE("status JSON names the elected primary and each node's state") {
    proxy::CounterTotals totals;
    totals.node.resize(2);
    auto status = proxy::render_status(two_nodes(), totals);
    REQUIRE(status["primary"] == "n0");
    REQUIRE(status["primary_term"] == 2);
    REQUIRE(status["nodes"][0]["elected_primary"] == true);
    REQUIRE(status["nodes"][1]["role"] == "standby");
    REQUIRE(status["nodes"][1]["held_back"] == true);
    REQUIRE(status["nodes"][1]["lag_bytes"] == 4096);
    REQUIRE(status["listeners"]["rw"]["client_connections_total"] == 0);
}
