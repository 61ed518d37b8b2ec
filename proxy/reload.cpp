#include "proxy/reload.hpp"

#include "common/log.hpp"
#include "common/text_file.hpp"
#include "proxy/client_auth.hpp"
#include "proxy/users_file.hpp"

#include <fmt/format.h>

#include <set>

namespace pglane::proxy {

namespace {

// What reload() applies; every other setting needs a restart.
const char* const reloadable[] = {
    "/log_level",
    "/nodes",
    "/limits/max_client_connections",
    "/limits/max_client_connections_per_user",
    "/limits/max_client_connections_by_user",
    "/health/max_lag_bytes",
    "/health/max_lag_seconds",
};

nlohmann::json without_reloadable(nlohmann::json document) {
    for (const char* pointer : reloadable) {
        nlohmann::json::json_pointer key(pointer);
        if (!document.contains(key)) continue;
        nlohmann::json& parent = document[key.parent_pointer()];
        parent.erase(key.back());
        // A section that held only reloadable settings is as good as none.
        if (parent.empty() && !key.parent_pointer().empty()) document.erase(key.parent_pointer().back());
    }
    return document;
}

std::string read_file(const std::string& path, std::string& error) {
    auto text = read_text_file(path);
    if (!text) error = fmt::format("cannot read config file \"{}\"", path);
    return text ? std::move(*text) : std::string();
}

}  // namespace

std::string restart_only_difference(const nlohmann::json& running, const nlohmann::json& next) {
    const nlohmann::json a = without_reloadable(running);
    const nlohmann::json b = without_reloadable(next);
    if (!a.is_object() || !b.is_object()) return a == b ? std::string() : std::string("(the whole document)");
    std::set<std::string> keys;
    for (const auto& [key, value] : a.items()) keys.insert(key);
    for (const auto& [key, value] : b.items()) keys.insert(key);
    for (const std::string& key : keys) {
        nlohmann::json left = a.value(key, nlohmann::json());
        nlohmann::json right = b.value(key, nlohmann::json());
        if (left == right) continue;
        // A section added or removed: name the setting in it.
        if (left.is_null() && right.is_object()) left = nlohmann::json::object();
        if (right.is_null() && left.is_object()) right = nlohmann::json::object();
        if (left.is_object() && right.is_object()) {
            // One level down names the setting ("limits.startup_timeout_ms").
            std::set<std::string> inner;
            for (const auto& [k, v] : left.items()) inner.insert(k);
            for (const auto& [k, v] : right.items()) inner.insert(k);
            for (const std::string& k : inner)
                if (left.value(k, nlohmann::json()) != right.value(k, nlohmann::json())) return key + "." + k;
        }
        return key;
    }
    return {};
}

ConfigReloader::ConfigReloader(std::string path, Targets targets) : path_(std::move(path)), targets_(std::move(targets)) {
    std::string error;
    std::string text = read_file(path_, error);
    if (!error.empty()) throw ConfigError(error);
    running_ = nlohmann::json::parse(text, nullptr, false);
}

std::string ConfigReloader::refuse(std::string reason) {
    log::warn("config_reload_refused", {{"path", path_}, {"reason", reason}});
    return reason;
}

std::string ConfigReloader::reload() {
    std::lock_guard lock(mutex_);
    std::string error;
    const std::string text = read_file(path_, error);
    if (!error.empty()) return refuse(error);
    Config config;
    try {
        config = parse_config(text);
    } catch (const ConfigError& e) {
        return refuse(e.what());
    }
    nlohmann::json next = nlohmann::json::parse(text);
    if (std::string key = restart_only_difference(running_, next); !key.empty())
        return refuse(fmt::format("\"{}\" changed: only a restart applies that (nothing was changed)", key));
    std::shared_ptr<const UsersFile> users;
    if (config.auth && !config.auth->users_file.empty()) {
        auto loaded = load_users_file(config.auth->users_file, error);
        if (!loaded) return refuse(fmt::format("config key \"auth.users_file\": {}", error));
        users = std::make_shared<const UsersFile>(std::move(*loaded));
    }

    if (targets_.check_nodes) {
        if (std::string nodes_error = targets_.check_nodes(config.nodes); !nodes_error.empty())
            return refuse(nodes_error);
    }
    // Renewed certificates (same paths, new contents) are read on every reload; a pair that
    // no longer loads refuses the reload and the running one stays.
    if (targets_.tls) {
        if (std::string tls_error = targets_.tls->reload_certificates(config.tls); !tls_error.empty())
            return refuse(tls_error);
    }

    log::Level level = log::Level::info;
    (void)log::parse_level(config.log_level, level);   // parse_config checked it
    log::set_level(level);
    if (users && targets_.secrets) targets_.secrets->users.store(users);
    if (targets_.limits) targets_.limits(config.limits);
    if (targets_.lag_limits) targets_.lag_limits(config.health.max_lag_bytes, config.health.max_lag_seconds);
    if (targets_.nodes) targets_.nodes(config.nodes);
    warnings_ = failover_repoint_hazards(config);
    for (const std::string& hazard : warnings_) log::warn("failover_repoint_hazard", {{"hazard", hazard}});
    running_ = std::move(next);
    log::info("config_reloaded", {{"path", path_},
                                  {"log_level", config.log_level},
                                  {"users", users ? users->size() : 0},
                                  {"max_client_connections", config.limits.max_client_connections},
                                  {"max_client_connections_per_user", config.limits.max_client_connections_per_user},
                                  {"max_lag_bytes", config.health.max_lag_bytes},
                                  {"max_lag_seconds", config.health.max_lag_seconds},
                                  {"nodes", config.nodes.size()}});
    return {};
}

std::vector<std::string> ConfigReloader::warnings() const {
    std::lock_guard lock(mutex_);
    return warnings_;
}

}  // namespace pglane::proxy
