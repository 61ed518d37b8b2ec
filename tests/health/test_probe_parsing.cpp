// The probe's pure half: LSN text, the probe row and the connection string.

#include "health/probe.hpp"

#include <catch2/catch.hpp>

using namespace pglane::health;

namespace {

ProbeRow primary_row() {
    return {"f", "1/2A000060", std::nullopt, std::nullopt, std::nullopt, std::nullopt, "3",
            std::nullopt, std::nullopt, std::nullopt, "n1\tquorum\t1/2A000060\nn2\tquorum\t1/29000000"};
}

ProbeRow standby_row() {
    return {"t", std::nullopt, "0/3000148", "0/3000100", "1.25", "f", "2",
            "streaming", "10.0.0.1", "5432", std::nullopt};
}

void set(ProbeRow& row, ProbeColumn which, std::optional<std::string> value) {
    row[static_cast<std::size_t>(which)] = std::move(value);
}

}  // namespace

TEST_CASE("an LSN is the high and low 32 bits in hexadecimal") {
    CHECK(parse_lsn("0/0") == 0u);
    CHECK(parse_lsn("0/3000148") == 0x3000148u);
    CHECK(parse_lsn("1/2A000060") == 0x12A000060u);
    CHECK(parse_lsn("16/B374D848") == 0x16B374D848u);
    CHECK(parse_lsn("ffffffff/ffffffff") == 0xFFFFFFFFFFFFFFFFu);
}

TEST_CASE("a malformed LSN is rejected") {
    CHECK_FALSE(parse_lsn(""));
    CHECK_FALSE(parse_lsn("/"));
    CHECK_FALSE(parse_lsn("0/"));
    CHECK_FALSE(parse_lsn("/1"));
    CHECK_FALSE(parse_lsn("3000148"));
    CHECK_FALSE(parse_lsn("0/3000148 "));
    CHECK_FALSE(parse_lsn("G/1"));
    CHECK_FALSE(parse_lsn("-1/1"));
    CHECK_FALSE(parse_lsn("1/2/3"));
    CHECK_FALSE(parse_lsn("100000000/0"));
}

TEST_CASE("a primary's row gives its timeline and current LSN") {
    const auto row = primary_row();
    const Observation observation = parse_probe_row(row);
    REQUIRE(observation.ok);
    CHECK_FALSE(observation.in_recovery);
    CHECK(observation.current_lsn == 0x12A000060u);
    CHECK(observation.timeline == 3);
    CHECK(observation.receive_lsn == 0);
    CHECK_FALSE(observation.replay_lag_seconds);
}

TEST_CASE("a standby's row gives its receive and replay positions and replay lag") {
    const auto row = standby_row();
    const Observation observation = parse_probe_row(row);
    REQUIRE(observation.ok);
    CHECK(observation.in_recovery);
    CHECK(observation.receive_lsn == 0x3000148u);
    CHECK(observation.replay_lsn == 0x3000100u);
    REQUIRE(observation.replay_lag_seconds);
    CHECK(*observation.replay_lag_seconds == Approx(1.25));
    CHECK_FALSE(observation.replay_paused);
    CHECK(observation.timeline == 2);
}

TEST_CASE("a standby's row gives its WAL receiver's status and upstream") {
    const Observation observation = parse_probe_row(standby_row());
    REQUIRE(observation.ok);
    CHECK(observation.wal_receiver_status == "streaming");
    CHECK(observation.sender_host == "10.0.0.1");
    CHECK(observation.sender_port == 5432);
    CHECK(observation.replication.empty());
}

TEST_CASE("a standby without a WAL receiver has no status and no upstream") {
    ProbeRow row = standby_row();
    set(row, ProbeColumn::wal_receiver_status, std::nullopt);
    set(row, ProbeColumn::sender_host, std::nullopt);
    set(row, ProbeColumn::sender_port, std::nullopt);
    const Observation observation = parse_probe_row(row);
    REQUIRE(observation.ok);
    CHECK(observation.wal_receiver_status.empty());
    CHECK(observation.sender_host.empty());
    CHECK(observation.sender_port == 0);
}

TEST_CASE("a primary's row lists its WAL senders with sync state and flush position") {
    const Observation observation = parse_probe_row(primary_row());
    REQUIRE(observation.ok);
    REQUIRE(observation.replication.size() == 2);
    CHECK(observation.replication[0] == ReplicationPeer{"n1", "quorum", 0x12A000060u});
    CHECK(observation.replication[1] == ReplicationPeer{"n2", "quorum", 0x129000000u});
}

TEST_CASE("a primary without WAL senders has an empty list") {
    ProbeRow row = primary_row();
    set(row, ProbeColumn::replication, std::nullopt);
    const Observation observation = parse_probe_row(row);
    REQUIRE(observation.ok);
    CHECK(observation.replication.empty());
}

TEST_CASE("the replication list: a sender that flushed nothing yet reads as 0") {
    const auto peers = parse_replication("pg_basebackup_n1\tasync\t\nn2\tpotential\t0/5");
    REQUIRE(peers);
    REQUIRE(peers->size() == 2);
    CHECK(peers->at(0).application_name == "pg_basebackup_n1");
    CHECK(peers->at(0).flush_lsn == 0);
    CHECK(peers->at(1) == ReplicationPeer{"n2", "potential", 5});
}

TEST_CASE("a malformed replication list is rejected") {
    CHECK_FALSE(parse_replication("n1"));
    CHECK_FALSE(parse_replication("n1\tsync"));
    CHECK_FALSE(parse_replication("n1\tsync\t0/1\textra"));
    CHECK_FALSE(parse_replication("n1\tsync\tgarbage"));
    ProbeRow row = primary_row();
    set(row, ProbeColumn::replication, "n1 sync 0/1");
    CHECK_FALSE(parse_probe_row(row).ok);
}

TEST_CASE("a bad sender port is a failed observation") {
    ProbeRow row = standby_row();
    set(row, ProbeColumn::sender_port, "70000");
    CHECK_FALSE(parse_probe_row(row).ok);
}

TEST_CASE("the probe SQL asks for the WAL receiver and the WAL senders in its one row") {
    const std::string_view sql = probe_sql();
    CHECK(sql.find("pg_stat_wal_receiver") != std::string_view::npos);
    CHECK(sql.find("pg_stat_replication") != std::string_view::npos);
    CHECK(sql.find("string_agg") != std::string_view::npos);
}

TEST_CASE("a standby with paused replay and nothing replayed yet parses") {
    ProbeRow row = standby_row();
    row[static_cast<std::size_t>(ProbeColumn::replay_paused)] = "t";
    row[static_cast<std::size_t>(ProbeColumn::replay_lag_seconds)] = std::nullopt;
    row[static_cast<std::size_t>(ProbeColumn::receive_lsn)] = std::nullopt;
    const Observation observation = parse_probe_row(row);
    REQUIRE(observation.ok);
    CHECK(observation.replay_paused);
    CHECK_FALSE(observation.replay_lag_seconds);
    CHECK(observation.receive_lsn == 0);
}

TEST_CASE("a malformed probe row is a failed observation") {
    auto with = [](std::size_t column, std::optional<std::string> value) {
        ProbeRow row = standby_row();
        row[column] = std::move(value);
        return parse_probe_row(row);
    };
    const ProbeRow short_row{"t", "0/1"};
    CHECK_FALSE(parse_probe_row(short_row).ok);
    CHECK_FALSE(with(0, std::nullopt).ok);
    CHECK_FALSE(with(0, "yes").ok);
    CHECK_FALSE(with(2, "garbage").ok);
    CHECK_FALSE(with(4, "1.5s").ok);
    CHECK_FALSE(with(6, std::nullopt).ok);
    CHECK_FALSE(with(6, "-1").ok);

    ProbeRow primary = primary_row();
    primary[1] = std::nullopt;
    const Observation observation = parse_probe_row(primary);
    CHECK_FALSE(observation.ok);
    CHECK(observation.error == "probe row: primary without a current LSN");
}

TEST_CASE("the connection string names the node, the credentials and the probe") {
    Settings settings;
    settings.user = "monitor";
    settings.password = "it's \\secret";
    settings.dbname = "postgres";
    settings.interval_ms = 1000;
    settings.timeout_ms = 2500;
    const NodeAddress node{"pg1", "db.example", 5433};
    CHECK(connection_string(node, settings, "10.1.2.3") ==
          "host='db.example' hostaddr='10.1.2.3' port='5433' user='monitor' "
          "password='it\\'s \\\\secret' dbname='postgres' application_name='pglane-health' "
          "connect_timeout='3' gssencmode='disable' sslmode='prefer'");
}

TEST_CASE("the connection string carries the node's sslmode and CA file") {
    Settings settings;
    const NodeAddress node{"pg1", "db.example", 5433, SslMode::verify_full, "/etc/pglane/ca.pem"};
    const std::string conninfo = connection_string(node, settings);
    CHECK(conninfo.find("sslmode='verify-full' sslrootcert='/etc/pglane/ca.pem'") != std::string::npos);
}

TEST_CASE("the connection string leaves out what is not set") {
    Settings settings;
    settings.interval_ms = 500;
    const NodeAddress node{"pg1", "/tmp", 5432};
    const std::string conninfo = connection_string(node, settings);
    CHECK(conninfo.find("hostaddr") == std::string::npos);
    CHECK(conninfo.find("password") == std::string::npos);
    CHECK(conninfo.find("connect_timeout='2'") != std::string::npos);
}
