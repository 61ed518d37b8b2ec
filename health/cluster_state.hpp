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
#include <vector>

namespace pglane::health {

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

private:
    void apply_observation(NodeStatus& node, const Observation& observation);
    void set_up(NodeStatus& node, bool up);
    [[nodiscard]] std::optional<std::size_t> elect_primary() const;
    void set_primary(std::optional<std::size_t> elected);
    void update_fencing(std::span<const Observation> round);
    void update_lag(std::size_t index);
    void set_held_back(NodeStatus& node, bool held_back);

    Settings settings_;
    Topology topology_;
    // Last known replay lag per node: the snapshot keeps only the derived lag_seconds.
    std::vector<std::optional<double>> replay_lag_seconds_;
};

}  // namespace pglane::health
