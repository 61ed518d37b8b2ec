#include "routing/node_choice.hpp"

#include <catch2/catch.hpp>

using pglane::health::NodeStatus;
using pglane::health::Role;
using pglane::health::Topology;

namespace {

NodeStatus node(const char* name, Role role, bool up = true, bool held_back = false) {
    NodeStatus n;
    n.address = {name, "127.0.0.1", 5432};
    n.role = role;
    n.up = up;
    n.held_back = held_back;
    return n;
}

Topology cluster(std::vector<NodeStatus> nodes, std::optional<std::size_t> primary) {
    Topology t;
    t.version = 1;
    t.nodes = std::move(nodes);
    t.primary = primary;
    t.primary_term = 1;
    return t;
}

}  // namespace

TEST_CASE("the elected primary is chosen for writes") {
    auto t = cluster({node("n0", Role::primary), node("n1", Role::standby)}, 0);
    REQUIRE(pglane::routing::choose_primary(t) == std::optional<std::size_t>(0));
}

TEST_CASE("no primary is chosen when the elected one is down") {
    auto t = cluster({node("n0", Role::primary, false), node("n1", Role::standby)}, 0);
    REQUIRE_FALSE(pglane::routing::choose_primary(t).has_value());
}

TEST_CASE("no primary is chosen when none is elected, even if a node claims it") {
    auto t = cluster({node("n0", Role::primary), node("n1", Role::primary)}, std::nullopt);
    REQUIRE_FALSE(pglane::routing::choose_primary(t).has_value());
}

TEST_CASE("read-only sessions rotate over the routable standbys") {
    auto t = cluster({node("n0", Role::primary), node("n1", Role::standby), node("n2", Role::standby)}, 0);
    auto first = pglane::routing::read_only_candidates(t, 0, false);
    auto second = pglane::routing::read_only_candidates(t, 1, false);
    REQUIRE(first == std::vector<std::size_t>{1, 2});
    REQUIRE(second == std::vector<std::size_t>{2, 1});
    REQUIRE(pglane::routing::read_only_candidates(t, 2, false) == first);
}

TEST_CASE("held-back and down standbys are skipped for reads") {
    auto t = cluster({node("n0", Role::primary), node("n1", Role::standby, true, true),
                      node("n2", Role::standby, false)},
                     0);
    REQUIRE(pglane::routing::read_only_candidates(t, 0, false).empty());
    REQUIRE(pglane::routing::read_only_candidates(t, 7, true) == std::vector<std::size_t>{0});
}

TEST_CASE("the primary is tried last for reads when fallback is on") {
    auto t = cluster({node("n0", Role::primary), node("n1", Role::standby)}, 0);
    REQUIRE(pglane::routing::read_only_candidates(t, 0, true) == std::vector<std::size_t>{1, 0});
}

TEST_CASE("a fenced node claiming primary is never a read fallback") {
    auto fenced = node("n1", Role::primary);
    fenced.fenced = true;
    auto t = cluster({node("n0", Role::primary), fenced}, 0);
    REQUIRE(pglane::routing::read_only_candidates(t, 0, true) == std::vector<std::size_t>{0});
}

TEST_CASE("the unavailable message names what every node is doing") {
    auto t = cluster({node("n0", Role::primary, false), node("n1", Role::standby, true, true)}, std::nullopt);
    auto text = pglane::routing::describe_unavailable(t, true);
    REQUIRE(text == "pglane: no primary is available (n0 down, n1 standby held back for lag)");
}

TEST_CASE("before the first probe round the unavailable message says so") {
    Topology t;
    t.nodes = {node("n0", Role::unknown, false)};
    REQUIRE(pglane::routing::describe_unavailable(t, false) ==
            "pglane: no standby or primary is available (no health probe has completed yet)");
}

TEST_CASE("the candidates can be written into a vector the caller keeps") {
    auto t = cluster({node("n0", Role::primary), node("n1", Role::standby), node("n2", Role::standby),
                      node("n3", Role::standby, false)},
                     0);
    std::vector<std::size_t> order{9, 9, 9, 9, 9};   // what a previous call left is replaced
    for (std::uint64_t turn = 0; turn < 5; ++turn) {
        for (bool fallback : {false, true}) {
            pglane::routing::read_only_candidates(t, turn, fallback, order);
            REQUIRE(order == pglane::routing::read_only_candidates(t, turn, fallback));
        }
    }
    pglane::routing::read_only_candidates(t, 1, true, order);
    REQUIRE(order == std::vector<std::size_t>{2, 1, 0});
}
