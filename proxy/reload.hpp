#pragma once
// SIGHUP, and the admin console's RELOAD: the config file read again. What a running pglane
// can change is applied at once, without touching a session: log_level, the users file's
// contents, the client connection limits, the lag thresholds for holding standbys back, and
// the node list (nodes added or removed, their weights and replication hosts). A file that
// does not parse, whose users file cannot be read, or that changes anything else (listeners,
// pools, auth method, routing...) is refused as a whole with a log line naming the reason,
// and everything stays as it was.

#include "proxy/config.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace pglane::proxy {

struct SecretSources;

/// The first setting that differs between two config documents outside what a reload may
/// change, as a config key ("nodes", "limits.startup_timeout_ms"); empty when none does.
[[nodiscard]] std::string restart_only_difference(const nlohmann::json& running, const nlohmann::json& next);

class ConfigReloader {
public:
    struct Targets {
        SecretSources* secrets = nullptr;                       // null: no "auth" section
        std::function<void(const Limits&)> limits;               // ClientLimits::set_limits
        std::function<void(std::uint64_t, double)> lag_limits;   // HealthChecker::set_lag_limits
        TlsContexts* tls = nullptr;                              // certificate files read again
        // The node list: whether it can be applied (HealthChecker::check_nodes), then apply it.
        std::function<std::string(const std::vector<health::NodeAddress>&)> check_nodes;
        std::function<void(const std::vector<health::NodeAddress>&)> nodes;
    };

    /// `path` is read now: the document later reloads are compared with. Throws ConfigError.
    ConfigReloader(std::string path, Targets targets);

    /// Thread-safe. Empty when the file was applied; otherwise why not (also logged).
    std::string reload();

    /// What the last reload that applied warned of (also logged, as at the start): with
    /// failover enabled, each standby a built-in promotion could not re-point
    /// (health::repoint_hazards), for a node list that changed since the start.
    [[nodiscard]] std::vector<std::string> warnings() const;

private:
    std::string refuse(std::string reason);

    mutable std::mutex mutex_;
    std::string path_;
    std::vector<std::string> warnings_;
    nlohmann::json running_;
    Targets targets_;
};

}  // namespace pglane::proxy
