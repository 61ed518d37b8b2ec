// The node slots a reload may use: nodes that stay keep theirs, new and changed ones take
// new slots, and past max_node_slots the reload is refused (a restart starts over).

#include "health/checker.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace pglane::health;

namespace {

std::vector<NodeAddress> nodes(std::size_t count, const std::string& prefix = "pg") {
    std::vector<NodeAddress> list;
    for (std::size_t i = 0; i < count; ++i) list.push_back({prefix + std::to_string(i), "10.0.0.1", 5432});
    return list;
}

}  // namespace

TEST_CASE("a reload fits while the node slots ever used stay within max_node_slots") {
    HealthChecker checker(Settings{}, nodes(3));
    CHECK(checker.check_nodes(nodes(3)).empty());
    CHECK(checker.check_nodes(nodes(max_node_slots)).empty());
    // Three slots stay taken by the first list even when it is replaced wholesale.
    CHECK(checker.check_nodes(nodes(max_node_slots - 3, "other")).empty());
    const std::string refused = checker.check_nodes(nodes(max_node_slots - 2, "other"));
    CHECK(refused.find("would need 65 node slots") != std::string::npos);
    CHECK(refused.find("restart pglane") != std::string::npos);
}
