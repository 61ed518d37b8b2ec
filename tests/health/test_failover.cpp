// The failover decision is a pure function of a snapshot and how long the primary has been
// down; the tracker follows an outage across rounds with explicit times.

#include "health/failover.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <vector>

using namespace pglane::health;
using namespace std::chrono_literals;

namespace {

FailoverSettings failover_settings() {
    FailoverSettings settings;
    settings.enabled = true;
    settings.after_ms = 5000;
    return settings;
}

NodeStatus node(std::string name, std::uint16_t port) {
    NodeStatus status;
    status.address = {std::move(name), "127.0.0.1", port};
    return status;
}

// pg1 (the old primary, down), pg2 and pg3 standbys that stream from nothing.
Topology primary_lost() {
    Topology topology;
    topology.nodes = {node("pg1", 5432), node("pg2", 5433), node("pg3", 5434)};
    topology.nodes[0].role = Role::primary;
    topology.nodes[0].timeline = 1;
    for (std::size_t i = 1; i < 3; ++i) {
        NodeStatus& standby = topology.nodes[i];
        standby.up = true;
        standby.role = Role::standby;
        standby.timeline = 1;
        standby.receive_lsn = 0x3000000;
        standby.replay_lsn = 0x3000000;
        standby.sync_state = "quorum";
    }
    return topology;
}

constexpr std::optional<std::size_t> old_primary = 0;

}  // namespace

TEST_CASE("no failover while a primary is elected") {
    Topology topology = primary_lost();
    topology.nodes[0].up = true;
    topology.primary = 0;
    const auto decision = decide_failover(topology, old_primary, 60s, failover_settings());
    CHECK_FALSE(decision.promote());
    CHECK_FALSE(decision.refused);
}

TEST_CASE("no failover before the primary has been down for after_ms") {
    const auto decision = decide_failover(primary_lost(), old_primary, 4999ms, failover_settings());
    CHECK_FALSE(decision.promote());
    CHECK_FALSE(decision.refused);
    CHECK(decide_failover(primary_lost(), old_primary, 5000ms, failover_settings()).promote());
}

TEST_CASE("the standby with the most received WAL is promoted") {
    Topology topology = primary_lost();
    topology.nodes[2].receive_lsn = 0x3000100;
    const auto decision = decide_failover(topology, old_primary, 6s, failover_settings());
    REQUIRE(decision.promote());
    CHECK(decision.candidate == 2u);
    CHECK(decision.reason.find("pg3") != std::string::npos);
}

TEST_CASE("received WAL counts, not replayed WAL, and a held-back standby may be promoted") {
    Topology topology = primary_lost();
    topology.nodes[1].replay_lsn = 0x3000000;
    topology.nodes[1].receive_lsn = 0x9000000;  // far ahead in what it has, replay lagging
    topology.nodes[1].held_back = true;
    topology.nodes[2].replay_lsn = 0x3000100;
    topology.nodes[2].receive_lsn = 0x3000100;
    const auto decision = decide_failover(topology, old_primary, 6s, failover_settings());
    REQUIRE(decision.promote());
    CHECK(decision.candidate == 1u);
}

TEST_CASE("on equal WAL a standby that was synchronous wins, then config order") {
    Topology topology = primary_lost();
    topology.nodes[1].sync_state = "async";
    auto decision = decide_failover(topology, old_primary, 6s, failover_settings());
    REQUIRE(decision.promote());
    CHECK(decision.candidate == 2u);

    topology.nodes[1].sync_state = "sync";
    decision = decide_failover(topology, old_primary, 6s, failover_settings());
    REQUIRE(decision.promote());
    CHECK(decision.candidate == 1u);  // both synchronous: config order
}

TEST_CASE("the reported timeline does not outrank WAL (a stopped receiver reports an old checkpoint's)") {
    Topology topology = primary_lost();
    topology.nodes[1].receive_lsn = 0x9000000;
    topology.nodes[2].timeline = 2;
    const auto decision = decide_failover(topology, old_primary, 6s, failover_settings());
    REQUIRE(decision.promote());
    CHECK(decision.candidate == 1u);
}

TEST_CASE("a standby that failed its last probe is not a candidate") {
    Topology topology = primary_lost();
    topology.nodes[2].receive_lsn = 0x9000000;
    topology.nodes[2].consecutive_failures = 1;
    const auto decision = decide_failover(topology, old_primary, 6s, failover_settings());
    REQUIRE(decision.promote());
    CHECK(decision.candidate == 1u);
}

TEST_CASE("failover is refused while a standby still streams from the old primary") {
    Topology topology = primary_lost();
    topology.nodes[2].wal_receiver = "streaming";
    topology.nodes[2].streaming = true;
    topology.nodes[2].upstream = "127.0.0.1:5432";
    const auto decision = decide_failover(topology, old_primary, 60s, failover_settings());
    CHECK_FALSE(decision.promote());
    CHECK(decision.refused);
    CHECK(decision.reason.find("pg3 still streams from the old primary pg1") != std::string::npos);
}

TEST_CASE("failover is refused while a standby streams from an upstream pglane does not know") {
    Topology topology = primary_lost();
    topology.nodes[1].wal_receiver = "streaming";
    topology.nodes[1].streaming = true;
    topology.nodes[1].upstream = "db-old.example:5432";
    const auto decision = decide_failover(topology, old_primary, 60s, failover_settings());
    CHECK(decision.refused);
    CHECK(decision.reason.find("no node pglane knows") != std::string::npos);
}

TEST_CASE("failover is refused when a standby's WAL receiver is hidden from the health user") {
    Topology topology = primary_lost();
    topology.nodes[1].wal_receiver = "unknown";
    const auto decision = decide_failover(topology, old_primary, 60s, failover_settings());
    CHECK(decision.refused);
    CHECK(decision.reason.find("pg_read_all_stats") != std::string::npos);
}

TEST_CASE("a standby cascading from another up standby does not block failover") {
    Topology topology = primary_lost();
    topology.nodes[2].wal_receiver = "streaming";
    topology.nodes[2].streaming = true;
    topology.nodes[2].upstream = "127.0.0.1:5433";
    const auto decision = decide_failover(topology, old_primary, 6s, failover_settings());
    CHECK(decision.promote());
}

TEST_CASE("a receiver that is not streaming (reconnecting) does not block failover") {
    Topology topology = primary_lost();
    topology.nodes[1].wal_receiver = "starting";
    topology.nodes[1].upstream = "127.0.0.1:5432";
    CHECK(decide_failover(topology, old_primary, 6s, failover_settings()).promote());
}

TEST_CASE("failover is refused when no standby is up") {
    Topology topology = primary_lost();
    topology.nodes[1].up = false;
    topology.nodes[2].up = false;
    const auto decision = decide_failover(topology, old_primary, 60s, failover_settings());
    CHECK(decision.refused);
    CHECK(decision.reason == "no standby is up");
}

TEST_CASE("failover is refused when a down standby was seen with more WAL than the candidate") {
    Topology topology = primary_lost();
    topology.nodes[1].up = false;
    topology.nodes[1].primary_seen_flush_lsn = 0x3000100;
    const auto decision = decide_failover(topology, old_primary, 60s, failover_settings());
    CHECK(decision.refused);
    CHECK(decision.reason.find("could lose commits") != std::string::npos);

    topology.nodes[1].primary_seen_flush_lsn = 0x3000000;
    CHECK(decide_failover(topology, old_primary, 60s, failover_settings()).promote());
}

TEST_CASE("the tracker promotes after_ms after the primary stopped answering") {
    FailoverTracker tracker(failover_settings());
    Topology topology = primary_lost();
    topology.nodes[0].up = true;
    topology.primary = 0;
    CHECK_FALSE(tracker.on_round(topology, 0, 0ms).promote());
    topology.nodes[0].consecutive_failures = 1;  // failing, still elected
    CHECK_FALSE(tracker.on_round(topology, 0, 1000ms).promote());
    topology.primary.reset();                      // now down
    topology.nodes[0].up = false;
    CHECK_FALSE(tracker.on_round(topology, 0, 3000ms).promote());
    CHECK_FALSE(tracker.on_round(topology, 0, 5999ms).promote());
    CHECK(tracker.on_round(topology, 0, 6000ms).promote());
}

TEST_CASE("the tracker starts over when the primary comes back") {
    FailoverTracker tracker(failover_settings());
    Topology down = primary_lost();
    Topology back = primary_lost();
    back.nodes[0].up = true;
    back.primary = 0;
    CHECK_FALSE(tracker.on_round(down, 0, 0ms).promote());
    CHECK_FALSE(tracker.on_round(back, 0, 4000ms).promote());
    CHECK_FALSE(tracker.on_round(down, 0, 8000ms).promote());
    CHECK_FALSE(tracker.on_round(down, 0, 12999ms).promote());
    CHECK(tracker.on_round(down, 0, 13000ms).promote());
}

TEST_CASE("after a failed promotion the tracker waits after_ms before the next attempt") {
    FailoverTracker tracker(failover_settings());
    const Topology down = primary_lost();
    CHECK_FALSE(tracker.on_round(down, 0, 0ms).promote());
    REQUIRE(tracker.on_round(down, 0, 5000ms).promote());
    tracker.attempt_failed(7000ms);
    CHECK_FALSE(tracker.on_round(down, 0, 8000ms).promote());
    CHECK_FALSE(tracker.on_round(down, 0, 11999ms).promote());
    CHECK(tracker.on_round(down, 0, 12000ms).promote());
}

TEST_CASE("a refusal is reported while it lasts and the promotion follows once it clears") {
    FailoverTracker tracker(failover_settings());
    Topology topology = primary_lost();
    topology.nodes[1].wal_receiver = "streaming";
    topology.nodes[1].streaming = true;
    topology.nodes[1].upstream = "127.0.0.1:5432";
    CHECK_FALSE(tracker.on_round(topology, 0, 0ms).refused);  // not down long enough yet
    CHECK(tracker.on_round(topology, 0, 6000ms).refused);
    CHECK(tracker.on_round(topology, 0, 7000ms).refused);
    topology.nodes[1].streaming = false;
    topology.nodes[1].wal_receiver.clear();
    CHECK(tracker.on_round(topology, 0, 8000ms).promote());
}

TEST_CASE("primary_conninfo is re-pointed with libpq's parser, everything else kept") {
    std::string error;
    const auto conninfo = repoint_conninfo(
        "host=127.0.0.1 port=55432 user=replicator password='it\\'s' application_name=n2 hostaddr=127.0.0.1",
        "10.0.0.2", 5433, error);
    REQUIRE(conninfo);
    CHECK(*conninfo == "host='10.0.0.2' port='5433' user='replicator' password='it\\'s' application_name='n2'");
}

TEST_CASE("a URI primary_conninfo is re-pointed too, and garbage is an error") {
    std::string error;
    const auto conninfo = repoint_conninfo("postgresql://replicator@old:5432/?application_name=n1", "new", 6000, error);
    REQUIRE(conninfo);
    CHECK(*conninfo == "host='new' port='6000' user='replicator' application_name='n1'");
    CHECK_FALSE(repoint_conninfo("host='unterminated", "new", 6000, error));
    CHECK_FALSE(error.empty());
}

TEST_CASE("the quorum lists the standby names, quoting those that need it") {
    const std::vector<std::string> names{"n1", "n0", "Pg-3"};
    CHECK(quorum_standby_names(names) == "ANY 1 (n1, n0, \"Pg-3\")");
}

TEST_CASE("SQL literals and LSNs are written as PostgreSQL reads them") {
    CHECK(sql_literal("it's a \\ test") == "E'it''s a \\\\ test'");
    CHECK(format_lsn(0x16B374D848u) == "16/B374D848");
    CHECK(format_lsn(0) == "0/0");
}

TEST_CASE("a standby is re-pointed at a host-local address only when pglane reaches it locally too") {
    const NodeAddress socket_primary{"n1", "/var/run/postgresql", 5432};
    const NodeAddress loopback_primary{"n1", "127.0.0.1", 5432};
    const NodeAddress remote_primary{"n1", "10.0.0.11", 5432};
    const NodeAddress remote_standby{"n2", "10.0.0.12", 5432};
    const NodeAddress local_standby{"n2", "127.0.0.1", 5434};
    const NodeAddress socket_standby{"n2", "/tmp/sockets/n2", 5434};

    CHECK(unreachable_upstream(remote_standby, remote_primary).empty());
    CHECK(unreachable_upstream(local_standby, loopback_primary).empty());
    CHECK(unreachable_upstream(socket_standby, socket_primary).empty());
    CHECK(unreachable_upstream(local_standby, socket_primary).empty());
    CHECK(unreachable_upstream(socket_standby, NodeAddress{"n1", "localhost", 5432}).empty());
    CHECK(unreachable_upstream(local_standby, remote_primary).empty());

    const std::string why = unreachable_upstream(remote_standby, socket_primary);
    CHECK(why.find("n1's address for its standbys is /var/run/postgresql/.s.PGSQL.5432") == 0);
    CHECK(why.find("set n2's primary_conninfo by hand") != std::string::npos);
    CHECK_FALSE(unreachable_upstream(remote_standby, loopback_primary).empty());
    CHECK_FALSE(unreachable_upstream(remote_standby, NodeAddress{"n1", "::1", 5432}).empty());
    CHECK_FALSE(unreachable_upstream(remote_standby, NodeAddress{"n1", "localhost", 5432}).empty());

    // A replication_host is what the standbys get instead of the host pglane uses.
    NodeAddress socket_primary_with_address = socket_primary;
    socket_primary_with_address.replication_host = "10.0.0.11";
    CHECK(socket_primary_with_address.upstream_host() == "10.0.0.11");
    CHECK(socket_primary.upstream_host() == "/var/run/postgresql");
    CHECK(unreachable_upstream(remote_standby, socket_primary_with_address).empty());
    NodeAddress remote_primary_local_address = remote_primary;
    remote_primary_local_address.replication_host = "127.0.0.1";
    CHECK_FALSE(unreachable_upstream(remote_standby, remote_primary_local_address).empty());
}

TEST_CASE("the re-pointings a promotion would refuse are known from the nodes alone") {
    const std::vector<NodeAddress> same_host{{"n0", "127.0.0.1", 5432}, {"n1", "/tmp/s", 5433}, {"n2", "localhost", 5434}};
    CHECK(repoint_hazards(same_host).empty());
    const std::vector<NodeAddress> remote{{"n0", "10.0.0.10", 5432}, {"n1", "10.0.0.11", 5432}};
    CHECK(repoint_hazards(remote).empty());

    // pglane on n0's host, n0 by its socket, n1 and n2 elsewhere: promoting n0 again after a
    // failover would leave n1 and n2 pointed at a socket path on their own hosts.
    std::vector<NodeAddress> mixed{{"n0", "/var/run/postgresql", 5432}, {"n1", "10.0.0.11", 5432},
                                   {"n2", "10.0.0.12", 5432}};
    const std::vector<std::string> hazards = repoint_hazards(mixed);
    REQUIRE(hazards.size() == 2);
    CHECK(hazards[0].find("if n0 is promoted: n0's address for its standbys is /var/run/postgresql/.s.PGSQL.5432, "
                          "an address of pglane's own host, and pglane reaches n1 at 10.0.0.11") == 0);
    CHECK(hazards[1].find("pglane reaches n2 at 10.0.0.12") != std::string::npos);
    mixed[0].replication_host = "10.0.0.10";
    CHECK(repoint_hazards(mixed).empty());
}
