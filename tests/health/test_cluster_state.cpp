// ClusterState is a pure function of observations: each test feeds rounds and checks the
// snapshot a router would see.

#include "health/cluster_state.hpp"

#include <catch2/catch.hpp>

#include <vector>

using namespace pglane::health;

namespace {

constexpr std::uint64_t mib = 1024 * 1024;

Settings test_settings() {
    Settings settings;
    settings.failures_before_down = 3;
    settings.max_lag_bytes = 16 * mib;
    settings.max_lag_seconds = 30;
    return settings;
}

std::vector<NodeAddress> three_nodes() {
    return {{"pg1", "10.0.0.1", 5432}, {"pg2", "10.0.0.2", 5432}, {"pg3", "10.0.0.3", 5432}};
}

Observation primary(std::uint32_t timeline, std::uint64_t current_lsn) {
    Observation observation;
    observation.ok = true;
    observation.timeline = timeline;
    observation.current_lsn = current_lsn;
    return observation;
}

Observation standby(std::uint32_t timeline, std::uint64_t receive_lsn, std::uint64_t replay_lsn,
                    std::optional<double> replay_lag_seconds = 0.1) {
    Observation observation;
    observation.ok = true;
    observation.in_recovery = true;
    observation.timeline = timeline;
    observation.receive_lsn = receive_lsn;
    observation.replay_lsn = replay_lsn;
    observation.replay_lag_seconds = replay_lag_seconds;
    return observation;
}

Observation failed() { return Observation::failure("connection refused"); }

Topology apply(ClusterState& state, std::vector<Observation> round) {
    return state.apply_round(round);
}

}  // namespace

TEST_CASE("before the first round every node is down and there is no primary") {
    ClusterState state(test_settings(), three_nodes());
    const Topology& topology = state.current();
    REQUIRE(topology.nodes.size() == 3);
    CHECK(topology.version == 0);
    CHECK_FALSE(topology.primary);
    for (const auto& node : topology.nodes) CHECK_FALSE(node.up);
}

TEST_CASE("every round returns the next version") {
    ClusterState state(test_settings(), three_nodes());
    CHECK(apply(state, {primary(1, 100), standby(1, 100, 100), failed()}).version == 1);
    CHECK(apply(state, {primary(1, 100), standby(1, 100, 100), failed()}).version == 2);
}

TEST_CASE("a round of the wrong size is rejected") {
    ClusterState state(test_settings(), three_nodes());
    std::vector<Observation> round{primary(1, 100)};
    CHECK_THROWS_AS(state.apply_round(round), std::invalid_argument);
}

TEST_CASE("a node is down only after failures_before_down failures in a row") {
    ClusterState state(test_settings(), three_nodes());
    apply(state, {primary(1, 100), standby(1, 100, 100), standby(1, 100, 100)});
    auto topology = apply(state, {primary(1, 100), failed(), standby(1, 100, 100)});
    CHECK(topology.nodes[1].up);
    CHECK(topology.nodes[1].consecutive_failures == 1);
    topology = apply(state, {primary(1, 100), failed(), standby(1, 100, 100)});
    CHECK(topology.nodes[1].up);
    CHECK(topology.nodes[1].routable_standby());
    topology = apply(state, {primary(1, 100), failed(), standby(1, 100, 100)});
    CHECK_FALSE(topology.nodes[1].up);
    CHECK_FALSE(topology.nodes[1].routable_standby());
    CHECK(topology.nodes[1].consecutive_failures == 3);
    CHECK(topology.nodes[1].probes_failed == 3);
    CHECK(topology.nodes[1].probes_ok == 1);
    CHECK(topology.nodes[1].last_error == "connection refused");
    CHECK(topology.nodes[1].role == Role::standby);  // last known role is kept
}

TEST_CASE("a success between failures resets the count") {
    ClusterState state(test_settings(), three_nodes());
    apply(state, {primary(1, 100), standby(1, 100, 100), standby(1, 100, 100)});
    apply(state, {primary(1, 100), failed(), standby(1, 100, 100)});
    apply(state, {primary(1, 100), failed(), standby(1, 100, 100)});
    apply(state, {primary(1, 100), standby(1, 100, 100), standby(1, 100, 100)});
    const auto topology = apply(state, {primary(1, 100), failed(), standby(1, 100, 100)});
    CHECK(topology.nodes[1].up);
    CHECK(topology.nodes[1].consecutive_failures == 1);
}

TEST_CASE("one success brings a down node back up") {
    ClusterState state(test_settings(), three_nodes());
    apply(state, {primary(1, 100), standby(1, 100, 100), standby(1, 100, 100)});
    for (int i = 0; i < 5; ++i) apply(state, {primary(1, 100), failed(), standby(1, 100, 100)});
    REQUIRE_FALSE(state.current().nodes[1].up);
    const auto topology = apply(state, {primary(1, 100), standby(1, 100, 100), standby(1, 100, 100)});
    CHECK(topology.nodes[1].up);
    CHECK(topology.nodes[1].consecutive_failures == 0);
    CHECK(topology.nodes[1].last_error.empty());
    CHECK(topology.nodes[1].routable_standby());
}

TEST_CASE("a node never reached stays down") {
    ClusterState state(test_settings(), three_nodes());
    const auto topology = apply(state, {primary(1, 100), failed(), standby(1, 100, 100)});
    CHECK_FALSE(topology.nodes[1].up);
    CHECK(topology.nodes[1].role == Role::unknown);
}

TEST_CASE("a standby over max_lag_bytes is held back and returns only below half") {
    ClusterState state(test_settings(), three_nodes());
    auto topology = apply(state, {primary(1, 100 * mib), standby(1, 100 * mib, 90 * mib),
                                  standby(1, 100 * mib, 100 * mib)});
    CHECK(topology.nodes[1].lag_bytes == 10 * mib);
    CHECK_FALSE(topology.nodes[1].held_back);

    topology = apply(state, {primary(1, 120 * mib), standby(1, 120 * mib, 100 * mib),
                             standby(1, 120 * mib, 120 * mib)});
    CHECK(topology.nodes[1].lag_bytes == 20 * mib);
    CHECK(topology.nodes[1].held_back);
    CHECK_FALSE(topology.nodes[1].routable_standby());
    CHECK(topology.nodes[2].routable_standby());

    // Back under the limit but not under half of it: still held back.
    topology = apply(state, {primary(1, 130 * mib), standby(1, 130 * mib, 120 * mib),
                             standby(1, 130 * mib, 130 * mib)});
    CHECK(topology.nodes[1].lag_bytes == 10 * mib);
    CHECK(topology.nodes[1].held_back);

    topology = apply(state, {primary(1, 140 * mib), standby(1, 140 * mib, 133 * mib),
                             standby(1, 140 * mib, 140 * mib)});
    CHECK(topology.nodes[1].lag_bytes == 7 * mib);
    CHECK_FALSE(topology.nodes[1].held_back);
    CHECK(topology.nodes[1].routable_standby());
}

TEST_CASE("a standby over max_lag_seconds is held back and returns only below half") {
    ClusterState state(test_settings(), three_nodes());
    auto topology = apply(state, {primary(1, 1000), standby(1, 1000, 900, 31.0),
                                  standby(1, 1000, 1000)});
    CHECK(topology.nodes[1].lag_seconds == Approx(31.0));
    CHECK(topology.nodes[1].held_back);

    topology = apply(state, {primary(1, 1000), standby(1, 1000, 950, 20.0), standby(1, 1000, 1000)});
    CHECK(topology.nodes[1].held_back);

    topology = apply(state, {primary(1, 1000), standby(1, 1000, 990, 14.0), standby(1, 1000, 1000)});
    CHECK_FALSE(topology.nodes[1].held_back);
}

TEST_CASE("an idle primary does not make a caught-up standby look late") {
    ClusterState state(test_settings(), three_nodes());
    // No commit for an hour: the last replayed transaction is old, but nothing is pending.
    const auto topology = apply(state, {primary(1, 5000), standby(1, 5000, 5000, 3600.0),
                                        standby(1, 5000, 5000, std::nullopt)});
    CHECK(topology.nodes[1].lag_seconds == 0);
    CHECK(topology.nodes[1].lag_bytes == 0);
    CHECK_FALSE(topology.nodes[1].held_back);
    CHECK(topology.nodes[2].routable_standby());
}

TEST_CASE("a standby ahead of the last known primary position has no byte lag") {
    ClusterState state(test_settings(), three_nodes());
    const auto topology = apply(state, {primary(1, 1000), standby(1, 2000, 2000), failed()});
    CHECK(topology.nodes[1].lag_bytes == 0);
}

TEST_CASE("without a primary a standby has no byte lag") {
    ClusterState state(test_settings(), three_nodes());
    const auto topology = apply(state, {failed(), standby(1, 2000, 1000), failed()});
    CHECK_FALSE(topology.primary);
    CHECK(topology.nodes[1].lag_bytes == 0);
}

TEST_CASE("the first primary seen is elected and the term starts") {
    ClusterState state(test_settings(), three_nodes());
    const auto topology = apply(state, {primary(1, 100), standby(1, 100, 100), standby(1, 100, 100)});
    REQUIRE(topology.primary);
    CHECK(*topology.primary == 0);
    CHECK(topology.primary_term == 1);
    CHECK_FALSE(topology.split_brain);
    for (const auto& node : topology.nodes) CHECK_FALSE(node.fenced);
}

TEST_CASE("the term stays while the same primary stays elected") {
    ClusterState state(test_settings(), three_nodes());
    apply(state, {primary(1, 100), standby(1, 100, 100), standby(1, 100, 100)});
    const auto topology = apply(state, {primary(1, 200), standby(1, 200, 200), standby(1, 200, 200)});
    CHECK(topology.primary_term == 1);
}

TEST_CASE("a promoted standby with a higher timeline replaces the primary and the term changes") {
    ClusterState state(test_settings(), three_nodes());
    apply(state, {primary(1, 100), standby(1, 100, 100), standby(1, 100, 100)});
    // pg1 is still up and still says primary (not yet stopped), pg2 was promoted.
    const auto topology = apply(state, {primary(1, 100), primary(2, 120), standby(2, 120, 120)});
    REQUIRE(topology.primary);
    CHECK(*topology.primary == 1);
    CHECK(topology.primary_term == 2);
    CHECK(topology.nodes[0].fenced);
    CHECK_FALSE(topology.nodes[1].fenced);
    CHECK(topology.split_brain);
}

TEST_CASE("when the primary stops and a standby is promoted the new primary is elected on the next round") {
    ClusterState state(test_settings(), three_nodes());
    apply(state, {primary(1, 100), standby(1, 100, 100), standby(1, 100, 100)});
    const auto topology = apply(state, {failed(), primary(2, 120), standby(2, 120, 120)});
    REQUIRE(topology.primary);
    CHECK(*topology.primary == 1);
    CHECK(topology.primary_term == 2);
    // The old primary is still up (below the threshold) with its last known role: fenced,
    // but it did not answer, so it is no split brain.
    CHECK(topology.nodes[0].fenced);
    CHECK_FALSE(topology.split_brain);
    CHECK(topology.nodes[2].routable_standby());
}

TEST_CASE("two primaries on the same timeline: the incumbent stays and the other is fenced, split_brain set") {
    ClusterState state(test_settings(), three_nodes());
    apply(state, {primary(1, 100), standby(1, 100, 100), standby(1, 100, 100)});
    // pg2 claims primary on the same timeline with more WAL: the incumbent still wins.
    auto topology = apply(state, {primary(1, 100), primary(1, 500), standby(1, 100, 100)});
    REQUIRE(topology.primary);
    CHECK(*topology.primary == 0);
    CHECK(topology.primary_term == 1);
    CHECK(topology.split_brain);
    CHECK(topology.nodes[1].fenced);
    CHECK_FALSE(topology.nodes[0].fenced);

    topology = apply(state, {primary(1, 100), standby(1, 100, 100), standby(1, 100, 100)});
    CHECK_FALSE(topology.split_brain);
    CHECK_FALSE(topology.nodes[1].fenced);
}

TEST_CASE("without an incumbent the tie goes to the furthest WAL position, then config order") {
    ClusterState furthest(test_settings(), three_nodes());
    auto topology = apply(furthest, {primary(1, 100), primary(1, 500), standby(1, 100, 100)});
    REQUIRE(topology.primary);
    CHECK(*topology.primary == 1);
    CHECK(topology.nodes[0].fenced);

    ClusterState equal(test_settings(), three_nodes());
    topology = apply(equal, {standby(1, 100, 100), primary(1, 500), primary(1, 500)});
    REQUIRE(topology.primary);
    CHECK(*topology.primary == 1);
    CHECK(topology.nodes[2].fenced);
}

TEST_CASE("a higher timeline wins over the incumbent") {
    ClusterState state(test_settings(), three_nodes());
    apply(state, {primary(3, 900), standby(3, 900, 900), standby(3, 900, 900)});
    // pg3 has less WAL but a newer timeline: it is the one that was promoted.
    const auto topology = apply(state, {primary(3, 900), standby(3, 900, 900), primary(4, 100)});
    REQUIRE(topology.primary);
    CHECK(*topology.primary == 2);
    CHECK(topology.primary_term == 2);
    CHECK(topology.nodes[0].fenced);
}

TEST_CASE("no candidate means no primary") {
    ClusterState state(test_settings(), three_nodes());
    auto topology = apply(state, {standby(1, 100, 100), standby(1, 100, 100), failed()});
    CHECK_FALSE(topology.primary);
    CHECK(topology.primary_term == 0);
    CHECK(topology.nodes[0].routable_standby());
}

TEST_CASE("the elected primary going down leaves no primary and changes the term") {
    ClusterState state(test_settings(), three_nodes());
    apply(state, {primary(1, 100), standby(1, 100, 100), standby(1, 100, 100)});
    Topology topology;
    for (int i = 0; i < 3; ++i) topology = apply(state, {failed(), standby(1, 100, 100), standby(1, 100, 100)});
    CHECK_FALSE(topology.nodes[0].up);
    CHECK_FALSE(topology.primary);
    CHECK(topology.primary_term == 2);
    CHECK_FALSE(topology.nodes[0].fenced);

    // The same node coming back is a new term: sessions pinned to the old one can tell.
    topology = apply(state, {primary(1, 100), standby(1, 100, 100), standby(1, 100, 100)});
    REQUIRE(topology.primary);
    CHECK(*topology.primary == 0);
    CHECK(topology.primary_term == 3);
}

TEST_CASE("a primary back in recovery loses the election") {
    ClusterState state(test_settings(), three_nodes());
    apply(state, {primary(1, 100), standby(1, 100, 100), standby(1, 100, 100)});
    const auto topology = apply(state, {standby(1, 100, 100), standby(1, 100, 100), standby(1, 100, 100)});
    CHECK_FALSE(topology.primary);
    CHECK(topology.primary_term == 2);
    CHECK(topology.nodes[0].role == Role::standby);
    CHECK_FALSE(topology.nodes[0].fenced);
}

TEST_CASE("a failing-but-not-yet-down primary stays elected") {
    ClusterState state(test_settings(), three_nodes());
    apply(state, {primary(1, 100), standby(1, 100, 100), standby(1, 100, 100)});
    for (int i = 0; i < 2; ++i) {
        const auto topology = apply(state, {failed(), standby(1, 100, 100), standby(1, 100, 100)});
        REQUIRE(topology.primary);
        CHECK(*topology.primary == 0);
        CHECK(topology.primary_term == 1);
        CHECK(topology.nodes[0].up);
        CHECK_FALSE(topology.nodes[0].fenced);
    }
}

TEST_CASE("a standby that gets promoted is no longer held back") {
    ClusterState state(test_settings(), three_nodes());
    auto topology = apply(state, {primary(1, 100 * mib), standby(1, 100 * mib, 10 * mib), failed()});
    REQUIRE(topology.nodes[1].held_back);
    topology = apply(state, {failed(), primary(2, 100 * mib), failed()});
    CHECK_FALSE(topology.nodes[1].held_back);
    CHECK(topology.nodes[1].lag_bytes == 0);
}

namespace {

Observation streaming_standby(std::uint64_t lsn, std::string host, std::uint16_t port) {
    Observation observation = standby(1, lsn, lsn);
    observation.wal_receiver_status = "streaming";
    observation.sender_host = std::move(host);
    observation.sender_port = port;
    return observation;
}

Observation primary_with_senders(std::uint64_t lsn, std::vector<ReplicationPeer> peers) {
    Observation observation = primary(1, lsn);
    observation.replication = std::move(peers);
    return observation;
}

}  // namespace

TEST_CASE("a standby shows its WAL receiver's upstream and whether it streams") {
    ClusterState state(test_settings(), three_nodes());
    Observation idle = standby(1, 100, 100);
    idle.wal_receiver_status = "";
    auto topology = apply(state, {primary(1, 100), streaming_standby(100, "10.0.0.1", 5432), idle});
    CHECK(topology.nodes[1].upstream == "10.0.0.1:5432");
    CHECK(topology.nodes[1].streaming);
    CHECK(topology.nodes[1].wal_receiver == "streaming");
    CHECK(topology.nodes[2].upstream.empty());
    CHECK_FALSE(topology.nodes[2].streaming);
}

TEST_CASE("the primary's sync states are shown on each standby and kept while the primary does not answer") {
    ClusterState state(test_settings(), three_nodes());
    auto topology = apply(state, {primary_with_senders(100, {{"pg2", "quorum", 90}, {"pg3", "async", 80}}),
                                  standby(1, 100, 100), standby(1, 100, 100)});
    CHECK(topology.nodes[1].sync_state == "quorum");
    CHECK(topology.nodes[1].primary_seen_flush_lsn == 90);
    CHECK(topology.nodes[2].sync_state == "async");
    CHECK(topology.nodes[0].sync_state.empty());

    for (int i = 0; i < 3; ++i) topology = apply(state, {failed(), standby(1, 100, 100), standby(1, 100, 100)});
    CHECK_FALSE(topology.primary);
    CHECK(topology.nodes[1].sync_state == "quorum");
    CHECK(topology.nodes[2].sync_state == "async");

    // A standby the primary no longer lists loses its sync state after failures_before_down
    // answers in a row, not at once: a primary being killed may answer once without senders.
    for (int i = 0; i < 2; ++i) {
        topology = apply(state, {primary_with_senders(100, {{"pg2", "quorum", 100}}), standby(1, 100, 100),
                                 standby(1, 100, 100)});
        CHECK(topology.nodes[2].sync_state == "async");
        CHECK(topology.nodes[2].primary_seen_flush_lsn == 80);
    }
    topology = apply(state, {primary_with_senders(100, {{"pg2", "quorum", 100}}), standby(1, 100, 100),
                             standby(1, 100, 100)});
    CHECK(topology.nodes[2].sync_state.empty());
    CHECK(topology.nodes[2].primary_seen_flush_lsn == 0);
    CHECK(topology.nodes[1].primary_seen_flush_lsn == 100);
}

TEST_CASE("a primary replaced by a promoted standby stays fenced even as the only node claiming primary") {
    ClusterState state(test_settings(), three_nodes());
    apply(state, {primary(1, 100), standby(1, 100, 100), standby(1, 100, 100)});
    for (int i = 0; i < 3; ++i) apply(state, {failed(), standby(1, 100, 100), standby(1, 100, 100)});
    auto topology = apply(state, {failed(), primary(2, 120), standby(2, 120, 120)});
    REQUIRE(topology.primary == 1u);
    CHECK(topology.nodes[0].fenced);

    // The new primary goes down; the old one comes back still claiming primary.
    for (int i = 0; i < 3; ++i) topology = apply(state, {primary(1, 100), failed(), standby(2, 120, 120)});
    CHECK_FALSE(topology.primary);
    CHECK(topology.nodes[0].up);
    CHECK(topology.nodes[0].fenced);
}

TEST_CASE("a primary replaced by a higher timeline while still up stays fenced after the new one goes down") {
    ClusterState state(test_settings(), three_nodes());
    apply(state, {primary(1, 100), standby(1, 100, 100), standby(1, 100, 100)});
    auto topology = apply(state, {primary(1, 100), primary(2, 120), standby(2, 120, 120)});
    REQUIRE(topology.primary == 1u);
    for (int i = 0; i < 3; ++i) topology = apply(state, {primary(1, 100), failed(), standby(2, 120, 120)});
    CHECK_FALSE(topology.primary);
    CHECK(topology.nodes[0].fenced);
    CHECK_FALSE(topology.split_brain);
}

TEST_CASE("a fenced old primary is released only once it reports in recovery") {
    ClusterState state(test_settings(), three_nodes());
    apply(state, {primary(1, 100), standby(1, 100, 100), standby(1, 100, 100)});
    auto topology = apply(state, {primary(1, 100), primary(2, 120), standby(2, 120, 120)});
    REQUIRE(topology.nodes[0].fenced);
    topology = apply(state, {standby(2, 120, 120), primary(2, 130), standby(2, 130, 130)});
    CHECK_FALSE(topology.nodes[0].fenced);
    CHECK(topology.nodes[0].routable_standby());

    // Rejoined, it may be promoted and elected again later.
    for (int i = 0; i < 3; ++i) apply(state, {standby(2, 130, 130), failed(), standby(2, 130, 130)});
    topology = apply(state, {primary(3, 140), failed(), standby(3, 140, 140)});
    REQUIRE(topology.primary == 0u);
    CHECK_FALSE(topology.nodes[0].fenced);
    CHECK(topology.nodes[1].fenced);
}

TEST_CASE("a node fenced by the failover manager is not elected while it claims primary") {
    ClusterState state(test_settings(), three_nodes());
    apply(state, {primary(1, 100), standby(1, 100, 100), standby(1, 100, 100)});
    state.fence(0, "pglane promotes pg2");
    auto topology = state.snapshot();
    CHECK(topology.nodes[0].fenced);
    topology = apply(state, {primary(1, 100), standby(1, 100, 100), standby(1, 100, 100)});
    CHECK_FALSE(topology.primary);
    CHECK(topology.nodes[0].fenced);
    topology = apply(state, {primary(1, 100), primary(2, 110), standby(1, 100, 100)});
    CHECK(topology.primary == 1u);
}

TEST_CASE("the same primary coming back after an outage is not fenced") {
    ClusterState state(test_settings(), three_nodes());
    apply(state, {primary(1, 100), standby(1, 100, 100), standby(1, 100, 100)});
    for (int i = 0; i < 3; ++i) apply(state, {failed(), standby(1, 100, 100), standby(1, 100, 100)});
    const auto topology = apply(state, {primary(1, 100), standby(1, 100, 100), standby(1, 100, 100)});
    CHECK(topology.primary == 0u);
    CHECK_FALSE(topology.nodes[0].fenced);
}

TEST_CASE("failover attempts are counted in the snapshot") {
    ClusterState state(test_settings(), three_nodes());
    state.record_failover(false, "promoting pg2 failed: timeout");
    state.record_failover(true, "promoted pg2");
    const auto topology = state.snapshot();
    CHECK(topology.failovers == 1);
    CHECK(topology.failover_failures == 1);
    CHECK(topology.last_failover == "promoted pg2");
    CHECK(topology.version == 1);
}

TEST_CASE("a reload retires a removed node and adds a new one in a slot of its own") {
    ClusterState state(test_settings(), three_nodes());
    apply(state, {primary(1, 100), standby(1, 100, 100), standby(1, 100, 100)});
    std::vector<NodeAddress> slots = three_nodes();
    slots.push_back({"pg4", "10.0.0.4", 5432});
    state.set_nodes(slots, {true, false, true, true});
    const Topology topology = apply(state, {primary(1, 200), Observation::failure("removed from the configuration"),
                                            standby(1, 200, 200), standby(1, 200, 200)});
    REQUIRE(topology.nodes.size() == 4);
    CHECK(topology.primary == 0u);
    CHECK(topology.nodes[1].retired);
    CHECK_FALSE(topology.nodes[1].up);
    CHECK_FALSE(topology.nodes[1].routable_standby());
    CHECK_FALSE(topology.nodes[3].retired);
    CHECK(topology.nodes[3].routable_standby());   // one answer brings a node up
}

TEST_CASE("a retired primary is no longer elected, and a node brought back starts down") {
    ClusterState state(test_settings(), three_nodes());
    apply(state, {primary(1, 100), standby(1, 100, 100), standby(1, 100, 100)});
    state.set_nodes(three_nodes(), {false, true, true});
    Topology topology = apply(state, {primary(1, 100), standby(1, 100, 100), standby(1, 100, 100)});
    CHECK(topology.nodes[0].retired);
    CHECK_FALSE(topology.primary);   // even though its slot still answers as a primary
    state.set_nodes(three_nodes(), {true, true, true});
    CHECK_FALSE(state.current().nodes[0].retired);
    CHECK_FALSE(state.current().nodes[0].up);
    topology = apply(state, {primary(1, 100), standby(1, 100, 100), standby(1, 100, 100)});
    CHECK(topology.primary == 0u);
}

TEST_CASE("a removed standby's position on the primary no longer counts") {
    ClusterState state(test_settings(), three_nodes());
    Observation p = primary(1, 500);
    p.replication = {{"pg2", "quorum", 400}, {"pg3", "quorum", 500}};
    apply(state, {p, standby(1, 400, 400), standby(1, 500, 500)});
    CHECK(state.current().nodes[2].primary_seen_flush_lsn == 500);
    state.set_nodes(three_nodes(), {true, true, false});
    const Topology topology = apply(state, {p, standby(1, 400, 400), Observation::failure("removed")});
    CHECK(topology.nodes[1].primary_seen_flush_lsn == 400);
    CHECK(topology.nodes[2].primary_seen_flush_lsn == 0);   // not what the primary still reports
    CHECK(topology.nodes[2].sync_state.empty());
}

TEST_CASE("a reload that changes only a node's weight keeps the node up, with its new weight") {
    ClusterState state(test_settings(), three_nodes());
    apply(state, {primary(1, 100), standby(1, 100, 100), standby(1, 100, 100)});
    std::vector<NodeAddress> slots = three_nodes();
    slots[2].weight = 4;
    state.set_nodes(slots, {true, true, true});
    const Topology& now = state.current();
    CHECK(now.nodes[2].address.weight == 4);
    CHECK(now.nodes[2].up);               // not started over: the same node
    CHECK(now.nodes[2].routable_standby());
    CHECK(now.nodes[1].address.weight == 1);
}
