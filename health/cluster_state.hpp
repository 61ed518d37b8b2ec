#pragma once
// The health decision logic as a pure function of probe results: node up/down with a
// failure threshold, standby lag with hold-back hysteresis, primary election and fencing.
// No I/O and no clock, so tests drive it with sequences of observations.

#include "health/settings.hpp"
#include "health/topology.hpp"

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pglane::health {

/// One row of a primary's pg_stat_replication, as the probe aggregates it.
struct ReplicationPeer {
    std::string application_name;
    std::string sync_state;
    std::uint64_t flush_lsn = 0;   // 0 when NULL (nothing flushed yet)

    bool operator==(const ReplicationPeer&) const = default;
};

/// What one probe of one node saw. Plain data, produced by the probe on the health thread.
struct Observation {
    bool ok = false;               // the probe connected and read its row
    std::string error;             // why it failed, when !ok
    bool in_recovery = false;      // pg_is_in_recovery(): a standby
    std::uint32_t timeline = 0;
    std::uint64_t current_lsn = 0;  // primary: pg_current_wal_lsn()
    std::uint64_t receive_lsn = 0;  // standby: pg_last_wal_receive_lsn()
    std::uint64_t replay_lsn = 0;   // standby: pg_last_wal_replay_lsn()
    std::optional<double> replay_lag_seconds;  // now() - pg_last_xact_replay_timestamp()
    bool replay_paused = false;    // standby: pg_is_wal_replay_paused()
    // Standby: pg_stat_wal_receiver (no row: no receiver running).
    std::string wal_receiver_status;   // "unknown" when the row is there but hidden from the user
    std::string sender_host;
    std::uint16_t sender_port = 0;
    // Primary: pg_stat_replication, one entry per WAL sender.
    std::vector<ReplicationPeer> replication;
    double probe_seconds = 0;      // how long the probe took

    [[nodiscard]] static Observation failure(std::string why, double seconds = 0) {
        Observation observation;
        observation.error = std::move(why);
        observation.probe_seconds = seconds;
        return observation;
    }
};

/// Owns the node state machine and the election across rounds. Not thread-safe: only the
/// health thread (or a test) calls it; what it returns is copied into immutable snapshots.
class ClusterState {
public:
    ClusterState(Settings settings, std::vector<NodeAddress> nodes);

    /// Folds one round (one observation per node, in config order) into the state and
    /// returns the next snapshot (version + 1). Throws std::invalid_argument when the
    /// round's size does not match the node list: a programming error, not a node failure.
    [[nodiscard]] Topology apply_round(std::span<const Observation> round);

    /// The latest snapshot (version 0, every node down, before the first round).
    [[nodiscard]] const Topology& current() const { return topology_; }

    /// Fences `index` for good: it is never elected again while it claims to be primary,
    /// until a probe shows it in recovery. The failover manager calls it on the old
    /// primary the moment it promotes another node; the election does it on its own when
    /// the elected primary is replaced by another node.
    void fence(std::size_t index, std::string_view reason);
    /// A reload of the node list. `slots` extends the current one (existing slots keep their
    /// address; new ones are appended); `active[i]` false retires slot i (never probed,
    /// elected or routed to), true brings a retired slot back as a new, down, node.
    void set_nodes(std::span<const NodeAddress> slots, const std::vector<bool>& active);
    /// A reload: standbys are held back, and let back, against these from the next round on.
    void set_lag_limits(std::uint64_t max_lag_bytes, double max_lag_seconds) {
        settings_.max_lag_bytes = max_lag_bytes;
        settings_.max_lag_seconds = max_lag_seconds;
    }

    /// Failover bookkeeping shown in the snapshot (counters and a line on the last attempt).
    void record_failover(bool succeeded, std::string description);

    /// The current state as the next snapshot (version + 1), for changes made between rounds.
    [[nodiscard]] Topology snapshot();

    /// The node elected last (kept while no node is elected), if any ever was.
    [[nodiscard]] std::optional<std::size_t> last_primary() const { return last_primary_; }

private:
    void apply_observation(NodeStatus& node, const Observation& observation);
    void set_up(NodeStatus& node, bool up);
    [[nodiscard]] std::optional<std::size_t> elect_primary() const;
    void set_primary(std::optional<std::size_t> elected);
    void update_fencing(std::span<const Observation> round);
    void update_sync_states(std::span<const Observation> round);
    void update_lag(std::size_t index);
    void set_held_back(NodeStatus& node, bool held_back);

    Settings settings_;
    Topology topology_;
    // Last known replay lag per node: the snapshot keeps only the derived lag_seconds.
    std::vector<std::optional<double>> replay_lag_seconds_;
    // Sticky fencing: a node that lost the primary role to another one (per node).
    std::vector<bool> lost_primary_role_;
    std::optional<std::size_t> last_primary_;
    // Answers in a row of the elected primary that did not list the node (sync state).
    std::vector<int> sync_absent_rounds_;
};

}  // namespace pglane::health
