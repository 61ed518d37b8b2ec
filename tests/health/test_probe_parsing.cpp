// The probe's pure half: LSN text, the probe row and the connection string.

#include "health/probe.hpp"

#include <catch2/catch.hpp>

using namespace pglane::health;

namespace {

ProbeRow primary_row() {
    return {"f", "1/2A000060", std::nullopt, std::nullopt, std::nullopt, std::nullopt, "3"};
}

ProbeRow standby_row() {
    return {"t", std::nullopt, "0/3000148", "0/3000100", "1.25", "f", "2"};
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
          "connect_timeout='3' gssencmode='disable'");
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
