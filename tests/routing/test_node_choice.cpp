#include "routing/node_choice.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <map>

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

namespace {

NodeStatus weighted(const char* name, std::uint32_t weight, bool up = true) {
    NodeStatus n = node(name, Role::standby, up);
    n.address.weight = weight;
    return n;
}

// How many of `turns` consecutive turns (from `start`) each node is chosen first.
std::map<std::size_t, int> firsts(const Topology& t, std::uint64_t start, int turns) {
    std::map<std::size_t, int> count;
    for (int i = 0; i < turns; ++i) ++count[pglane::routing::read_only_candidates(t, start + i, false).front()];
    return count;
}

}  // namespace

TEST_CASE("standbys get reads in proportion to their weights, exactly over each cycle of turns") {
    auto t = cluster({node("n0", Role::primary), weighted("n1", 3), weighted("n2", 1)}, 0);
    REQUIRE(firsts(t, 0, 4) == std::map<std::size_t, int>{{1, 3}, {2, 1}});
    REQUIRE(firsts(t, 41, 4) == std::map<std::size_t, int>{{1, 3}, {2, 1}});   // any 4 in a row
    REQUIRE(firsts(t, 0, 4000) == std::map<std::size_t, int>{{1, 3000}, {2, 1000}});

    auto three = cluster({node("n0", Role::primary), weighted("n1", 5), weighted("n2", 2), weighted("n3", 3)}, 0);
    REQUIRE(firsts(three, 7, 10) == std::map<std::size_t, int>{{1, 5}, {2, 2}, {3, 3}});
}

TEST_CASE("a heavier standby's turns are spread over the cycle, not bunched") {
    // Laid end to end, 5:2:3 would give n1 five turns in a row; spread, never more than two.
    auto t = cluster({node("n0", Role::primary), weighted("n1", 5), weighted("n2", 2), weighted("n3", 3)}, 0);
    std::size_t previous = 99;
    int run = 0;
    int longest = 0;
    for (std::uint64_t turn = 0; turn < 30; ++turn) {
        const std::size_t first = pglane::routing::read_only_candidates(t, turn, false).front();
        run = first == previous ? run + 1 : 1;
        previous = first;
        longest = std::max(longest, run);
    }
    REQUIRE(longest == 2);
}

TEST_CASE("after the chosen standby come the other weighted ones, then weight 0, then the primary") {
    auto t = cluster({node("n0", Role::primary), weighted("n1", 2), weighted("n2", 0), weighted("n3", 1)}, 0);
    for (std::uint64_t turn = 0; turn < 6; ++turn) {
        auto order = pglane::routing::read_only_candidates(t, turn, true);
        REQUIRE(order.size() == 4);
        REQUIRE((order[0] == 1 || order[0] == 3));
        REQUIRE(order[1] == (order[0] == 1 ? 3 : 1));
        REQUIRE(order[2] == 2);
        REQUIRE(order[3] == 0);
    }
}

TEST_CASE("a standby of weight 0 takes reads only when no weighted standby is routable") {
    auto t = cluster({node("n0", Role::primary), weighted("n1", 1, false), weighted("n2", 0)}, 0);
    REQUIRE(pglane::routing::read_only_candidates(t, 0, true) == std::vector<std::size_t>{2, 0});
    REQUIRE(firsts(t, 0, 10) == std::map<std::size_t, int>{{2, 10}});
}

TEST_CASE("equal weights other than 1 rotate exactly as the default does") {
    auto t = cluster({node("n0", Role::primary), weighted("n1", 4), weighted("n2", 4)}, 0);
    REQUIRE(pglane::routing::read_only_candidates(t, 0, false) == std::vector<std::size_t>{1, 2});
    REQUIRE(pglane::routing::read_only_candidates(t, 1, false) == std::vector<std::size_t>{2, 1});
}
