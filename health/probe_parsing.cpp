// The pure half of the probe: its SQL, its connection string, and parsing its row.

#include "health/probe.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <utility>

namespace pglane::health {
namespace {

[[nodiscard]] const std::optional<std::string>& column(
    std::span<const std::optional<std::string>> row, ProbeColumn which) {
    return row[static_cast<std::size_t>(which)];
}

[[nodiscard]] std::optional<bool> parse_bool(const std::optional<std::string>& text) {
    if (!text) return std::nullopt;
    if (*text == "t") return true;
    if (*text == "f") return false;
    return std::nullopt;
}

template <typename Number>
[[nodiscard]] std::optional<Number> parse_number(std::string_view text) {
    Number value{};
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
    return value;
}

// A NULL LSN (a standby that has streamed nothing yet) reads as 0; garbage is an error.
[[nodiscard]] bool read_lsn(const std::optional<std::string>& text, std::uint64_t& out) {
    if (!text) {
        out = 0;
        return true;
    }
    const auto lsn = parse_lsn(*text);
    if (lsn) out = *lsn;
    return lsn.has_value();
}

void append_value(std::string& out, std::string_view key, std::string_view value) {
    out += key;
    out += "='";
    for (char c : value) {
        if (c == '\'' || c == '\\') out += '\\';
        out += c;
    }
    out += "' ";
}

}  // namespace

// One statement, one row, whatever the role. CASE keeps the functions that raise on the
// other role (pg_current_wal_lsn() in recovery) from being evaluated. The primary's
// timeline comes from its current WAL file name because pg_control_checkpoint() keeps the
// old timeline until the first checkpoint after a fast promotion; a standby reports the
// timeline it receives, or its checkpoint's when no WAL receiver is running.
// pg_stat_wal_receiver has a row only while a receiver is connected; its columns are NULL
// for users without pg_read_all_stats, hence "unknown". pg_stat_replication is folded into
// one text column so the probe stays one row, one round trip.
// https://www.postgresql.org/docs/15/monitoring-stats.html#MONITORING-PG-STAT-WAL-RECEIVER-VIEW
std::string_view probe_sql() {
    return "SELECT r.in_recovery,"
           " CASE WHEN NOT r.in_recovery THEN pg_current_wal_lsn() END,"
           " CASE WHEN r.in_recovery THEN pg_last_wal_receive_lsn() END,"
           " CASE WHEN r.in_recovery THEN pg_last_wal_replay_lsn() END,"
           " CASE WHEN r.in_recovery"
           "  THEN extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END,"
           " CASE WHEN r.in_recovery THEN pg_is_wal_replay_paused() END,"
           " CASE WHEN r.in_recovery"
           "  THEN coalesce((SELECT received_tli FROM pg_stat_wal_receiver),"
           "                (pg_control_checkpoint()).timeline_id)"
           "  ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int"
           " END,"
           " CASE WHEN w.pid IS NOT NULL THEN coalesce(w.status, 'unknown') END,"
           " w.sender_host,"
           " w.sender_port,"
           " CASE WHEN NOT r.in_recovery THEN"
           "  (SELECT string_agg(s.application_name || E'\\t' || s.sync_state || E'\\t'"
           "                     || coalesce(s.flush_lsn::text, ''), E'\\n'"
           "                     ORDER BY s.application_name)"
           "   FROM pg_stat_replication AS s) END"
           " FROM (SELECT pg_is_in_recovery() AS in_recovery) AS r"
           " LEFT JOIN pg_stat_wal_receiver AS w ON r.in_recovery";
}

// https://www.postgresql.org/docs/15/datatype-pg-lsn.html: two hexadecimal numbers of up
// to 8 digits each, the high and low 32 bits.
std::optional<std::uint64_t> parse_lsn(std::string_view text) {
    const auto slash = text.find('/');
    if (slash == std::string_view::npos) return std::nullopt;
    const std::string_view high = text.substr(0, slash);
    const std::string_view low = text.substr(slash + 1);
    if (high.empty() || low.empty() || high.size() > 8 || low.size() > 8) return std::nullopt;
    std::uint32_t high_value = 0;
    std::uint32_t low_value = 0;
    for (auto [half, value] : {std::pair{high, &high_value}, std::pair{low, &low_value}}) {
        const auto [end, ec] = std::from_chars(half.data(), half.data() + half.size(), *value, 16);
        if (ec != std::errc() || end != half.data() + half.size()) return std::nullopt;
    }
    return (std::uint64_t{high_value} << 32) | low_value;
}

std::optional<std::vector<ReplicationPeer>> parse_replication(std::string_view text) {
    std::vector<ReplicationPeer> peers;
    while (!text.empty()) {
        const auto end = text.find('\n');
        std::string_view line = text.substr(0, end);
        text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
        const auto first = line.find('\t');
        const auto second = first == std::string_view::npos ? first : line.find('\t', first + 1);
        if (second == std::string_view::npos || line.find('\t', second + 1) != std::string_view::npos) {
            return std::nullopt;
        }
        ReplicationPeer peer;
        peer.application_name = std::string(line.substr(0, first));
        peer.sync_state = std::string(line.substr(first + 1, second - first - 1));
        const std::string_view flush = line.substr(second + 1);
        if (!flush.empty()) {
            const auto lsn = parse_lsn(flush);
            if (!lsn) return std::nullopt;
            peer.flush_lsn = *lsn;
        }
        peers.push_back(std::move(peer));
    }
    return peers;
}

Observation parse_probe_row(std::span<const std::optional<std::string>> row) {
    if (row.size() != static_cast<std::size_t>(ProbeColumn::count)) {
        return Observation::failure(fmt::format("probe row has {} columns", row.size()));
    }
    Observation observation;
    const auto in_recovery = parse_bool(column(row, ProbeColumn::in_recovery));
    if (!in_recovery) return Observation::failure("probe row: bad in_recovery");
    observation.in_recovery = *in_recovery;

    if (!read_lsn(column(row, ProbeColumn::current_lsn), observation.current_lsn) ||
        !read_lsn(column(row, ProbeColumn::receive_lsn), observation.receive_lsn) ||
        !read_lsn(column(row, ProbeColumn::replay_lsn), observation.replay_lsn)) {
        return Observation::failure("probe row: bad LSN");
    }
    if (!observation.in_recovery && !column(row, ProbeColumn::current_lsn)) {
        return Observation::failure("probe row: primary without a current LSN");
    }
    if (const auto& lag = column(row, ProbeColumn::replay_lag_seconds)) {
        observation.replay_lag_seconds = parse_number<double>(*lag);
        if (!observation.replay_lag_seconds) return Observation::failure("probe row: bad replay lag");
    }
    observation.replay_paused =
        parse_bool(column(row, ProbeColumn::replay_paused)).value_or(false);

    const auto& timeline_text = column(row, ProbeColumn::timeline);
    const auto timeline =
        timeline_text ? parse_number<std::uint32_t>(*timeline_text) : std::nullopt;
    if (!timeline) return Observation::failure("probe row: bad timeline");
    observation.timeline = *timeline;

    observation.wal_receiver_status = column(row, ProbeColumn::wal_receiver_status).value_or("");
    observation.sender_host = column(row, ProbeColumn::sender_host).value_or("");
    if (const auto& port = column(row, ProbeColumn::sender_port)) {
        const auto value = parse_number<std::uint16_t>(*port);
        if (!value) return Observation::failure("probe row: bad sender port");
        observation.sender_port = *value;
    }
    if (const auto& replication = column(row, ProbeColumn::replication)) {
        auto peers = parse_replication(*replication);
        if (!peers) return Observation::failure("probe row: bad replication list");
        observation.replication = std::move(*peers);
    }
    observation.ok = true;
    return observation;
}

std::string connection_string(const NodeAddress& node, const Settings& settings,
                              std::string_view hostaddr) {
    // libpq's connect_timeout is whole seconds with a floor of 2; the probe's own deadline
    // is what really bounds a connect, this only stops libpq from waiting longer.
    const int connect_timeout = std::max(2, (settings.probe_timeout_ms() + 999) / 1000);
    std::string out;
    append_value(out, "host", node.host);
    if (!hostaddr.empty()) append_value(out, "hostaddr", hostaddr);
    append_value(out, "port", std::to_string(node.port));
    append_value(out, "user", settings.user);
    if (!settings.password.empty()) append_value(out, "password", settings.password);
    append_value(out, "dbname", settings.dbname);
    append_value(out, "application_name", "pglane-health");
    append_value(out, "connect_timeout", std::to_string(connect_timeout));
    // GSS negotiation may look up Kerberos credentials synchronously; the probe must not block.
    append_value(out, "gssencmode", "disable");
    // The probe reaches the node as pglane's sessions do, TLS included.
    append_value(out, "sslmode", to_string(node.sslmode));
    if (!node.ca_file.empty()) append_value(out, "sslrootcert", node.ca_file);
    out.pop_back();
    return out;
}

}  // namespace pglane::health
