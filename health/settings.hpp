#pragma once
// What the health checker is told by the config ("health" section).

#include <cstdint>
#include <string>

namespace pglane::health {

/// Built-in failover ("failover" section). Off by default: with more than one pglane, or an
/// external manager (Patroni, repmgr...), pglane only follows promotions.
struct FailoverSettings {
    bool enabled = false;
    int after_ms = 5000;            // the primary must be down this long before a promotion
    int hold_ms = 30000;            // writes and new rw sessions wait this long for a primary
    int promote_timeout_ms = 60000; // bound on pg_promote()
};

struct Settings {
    int interval_ms = 1000;
    int timeout_ms = 0;            // per probe (connect + query); 0 means interval_ms
    int failures_before_down = 3;
    std::string user = "postgres";
    std::string password;
    std::string dbname = "postgres";
    std::uint64_t max_lag_bytes = 16 * 1024 * 1024;
    double max_lag_seconds = 30;
    FailoverSettings failover;

    [[nodiscard]] int probe_timeout_ms() const { return timeout_ms > 0 ? timeout_ms : interval_ms; }
};

}  // namespace pglane::health
