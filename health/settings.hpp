#pragma once
// What the health checker is told by the config ("health" section).

#include <cstdint>
#include <string>

namespace pglane::health {

struct Settings {
    int interval_ms = 1000;
    int timeout_ms = 0;            // per probe (connect + query); 0 means interval_ms
    int failures_before_down = 3;
    std::string user = "postgres";
    std::string password;
    std::string dbname = "postgres";
    std::uint64_t max_lag_bytes = 16 * 1024 * 1024;
    double max_lag_seconds = 30;

    [[nodiscard]] int probe_timeout_ms() const { return timeout_ms > 0 ? timeout_ms : interval_ms; }
};

}  // namespace pglane::health
