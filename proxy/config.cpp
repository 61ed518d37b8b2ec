#include "proxy/config.hpp"

#include "common/log.hpp"
#include "common/text_file.hpp"
#include "health/failover.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <set>

namespace pglane::proxy {

using nlohmann::json;

std::string Endpoint::to_string() const { return fmt::format("{}:{}", host, port); }

std::string_view to_string(ListenerKind kind) {
    switch (kind) {
        case ListenerKind::rw: return "rw";
        case ListenerKind::ro: return "ro";
        case ListenerKind::auto_: return "auto";
    }
    return "?";
}

namespace {

[[noreturn]] void fail(const std::string& key, const std::string& why) {
    throw ConfigError(fmt::format("config key \"{}\": {}", key, why));
}

void reject_unknown_keys(const json& object, const std::string& where, std::initializer_list<const char*> known) {
    for (auto it = object.begin(); it != object.end(); ++it) {
        bool ok = false;
        for (const char* k : known) ok = ok || it.key() == k;
        if (!ok) fail(where.empty() ? it.key() : where + "." + it.key(), "unknown key");
    }
}

const json* find_object(const json& parent, const char* name, const std::string& key) {
    auto it = parent.find(name);
    if (it == parent.end()) return nullptr;
    if (!it->is_object()) fail(key, "must be an object");
    return &*it;
}

template <typename T>
void read(const json& parent, const char* name, const std::string& key, T& out) {
    auto it = parent.find(name);
    if (it == parent.end()) return;
    try {
        out = it->get<T>();
    } catch (const json::exception&) {
        fail(key, "has the wrong type");
    }
}

template <typename T>
void read_int(const json& parent, const char* name, const std::string& key, T& out, long long min, long long max) {
    auto it = parent.find(name);
    if (it == parent.end()) return;
    if (!it->is_number_integer() && !it->is_number_unsigned()) fail(key, "must be an integer");
    long long v = it->get<long long>();
    if (v < min || v > max) fail(key, fmt::format("must be between {} and {}", min, max));
    out = static_cast<T>(v);
}

std::uint16_t parse_port(const std::string& text, const std::string& key) {
    try {
        std::size_t used = 0;
        int port = std::stoi(text, &used);
        if (used == text.size() && port > 0 && port < 65536) return static_cast<std::uint16_t>(port);
    } catch (const std::exception&) {
    }
    fail(key, fmt::format("\"{}\" is not a port number", text));
}

Endpoint parse_endpoint(const json& value, const std::string& key) {
    if (!value.is_string()) fail(key, "must be a \"host:port\" string");
    auto text = value.get<std::string>();
    auto colon = text.rfind(':');
    if (colon == std::string::npos || colon == 0) fail(key, fmt::format("\"{}\" is not host:port", text));
    Endpoint e{text.substr(0, colon), parse_port(text.substr(colon + 1), key)};
    if (e.host.size() > 2 && e.host.front() == '[' && e.host.back() == ']') e.host = e.host.substr(1, e.host.size() - 2);
    return e;
}

void parse_listen(const json& root, Config& config) {
    const json* listen = find_object(root, "listen", "listen");
    if (!listen) fail("listen", "is required (give at least one of listen.rw, listen.ro)");
    reject_unknown_keys(*listen, "listen",
                        {"rw", "ro", "auto", "unix_socket_dir", "unix_socket_mode", "unix_socket_group"});
    if (listen->contains("rw")) config.listen_rw = parse_endpoint(listen->at("rw"), "listen.rw");
    if (listen->contains("ro")) config.listen_ro = parse_endpoint(listen->at("ro"), "listen.ro");
    if (listen->contains("auto")) config.listen_auto = parse_endpoint(listen->at("auto"), "listen.auto");
    if (!config.listen_rw && !config.listen_ro && !config.listen_auto)
        fail("listen", "names no port (give listen.auto, listen.rw and/or listen.ro)");
    read(*listen, "unix_socket_dir", "listen.unix_socket_dir", config.unix_socket_dir);
    if (!config.unix_socket_dir.empty()) {
        if (config.unix_socket_dir.front() != '/') fail("listen.unix_socket_dir", "must be an absolute path");
        // sockaddr_un holds 107 bytes and a NUL; the longest name is ".s.PGSQL.65535".
        if (config.unix_socket_dir.size() + std::string_view("/.s.PGSQL.65535").size() > 107)
            fail("listen.unix_socket_dir", "is too long for a socket path (at most 92 bytes)");
    }
    if (listen->contains("unix_socket_mode")) {
        std::string mode;
        read(*listen, "unix_socket_mode", "listen.unix_socket_mode", mode);
        const auto digits = mode.find_first_not_of("01234567");
        if (mode.empty() || mode.size() > 4 || digits != std::string::npos)
            fail("listen.unix_socket_mode", fmt::format("\"{}\" is not an octal mode such as \"0770\"", mode));
        config.unix_socket_mode = static_cast<unsigned>(std::stoul(mode, nullptr, 8)) & 0777;
        if (config.unix_socket_dir.empty()) fail("listen.unix_socket_mode", "needs listen.unix_socket_dir");
    }
    read(*listen, "unix_socket_group", "listen.unix_socket_group", config.unix_socket_group);
    if (!config.unix_socket_group.empty() && config.unix_socket_dir.empty())
        fail("listen.unix_socket_group", "needs listen.unix_socket_dir");
    if (root.contains("metrics_listen")) config.metrics_listen = parse_endpoint(root.at("metrics_listen"), "metrics_listen");
}

health::SslMode parse_sslmode(const json& parent, const std::string& key) {
    const std::string name = key.substr(key.rfind('.') + 1);
    std::string text;
    read(parent, name.c_str(), key, text);
    for (auto mode : {health::SslMode::disable, health::SslMode::prefer, health::SslMode::require,
                      health::SslMode::verify_ca, health::SslMode::verify_full})
        if (text == health::to_string(mode)) return mode;
    fail(key, "must be one of disable, prefer, require, verify-ca, verify-full");
}

// Before the nodes: they inherit tls.server_sslmode and tls.server_ca_file.
void parse_tls(const json& root, Config& config) {
    const json* t = find_object(root, "tls", "tls");
    if (!t) return;
    reject_unknown_keys(*t, "tls", {"cert_file", "key_file", "mode", "server_sslmode", "server_ca_file"});
    TlsSettings& s = config.tls;
    read(*t, "cert_file", "tls.cert_file", s.cert_file);
    read(*t, "key_file", "tls.key_file", s.key_file);
    read(*t, "server_ca_file", "tls.server_ca_file", s.server_ca_file);
    if (t->contains("server_sslmode")) s.server_sslmode = parse_sslmode(*t, "tls.server_sslmode");
    if (s.cert_file.empty() != s.key_file.empty())
        fail(s.cert_file.empty() ? "tls.cert_file" : "tls.key_file", "is needed with the other (certificate and key)");
    s.mode = s.cert_file.empty() ? ClientTlsMode::disable : ClientTlsMode::allow;
    if (t->contains("mode")) {
        std::string mode;
        read(*t, "mode", "tls.mode", mode);
        if (mode == "disable") s.mode = ClientTlsMode::disable;
        else if (mode == "allow") s.mode = ClientTlsMode::allow;
        else if (mode == "require") s.mode = ClientTlsMode::require;
        else fail("tls.mode", "must be one of disable, allow, require");
        if (s.mode != ClientTlsMode::disable && s.cert_file.empty())
            fail("tls.mode", fmt::format("\"{}\" needs tls.cert_file and tls.key_file", mode));
    }
}

void check_server_verification(const Config& config) {
    for (std::size_t i = 0; i < config.nodes.size(); ++i) {
        const health::NodeAddress& node = config.nodes[i];
        bool verifies = node.sslmode == health::SslMode::verify_ca || node.sslmode == health::SslMode::verify_full;
        if (verifies && node.ca_file.empty())
            fail(fmt::format("nodes[{}].sslmode", i),
                 fmt::format("\"{}\" needs tls.server_ca_file (the CA that signed the servers' certificates)",
                             health::to_string(node.sslmode)));
    }
}

void parse_nodes(const json& root, Config& config) {
    auto it = root.find("nodes");
    if (it == root.end()) fail("nodes", "is required");
    if (!it->is_array() || it->empty()) fail("nodes", "must be a non-empty array");
    if (it->size() > health::max_node_slots)
        fail("nodes", fmt::format("lists {} nodes; pglane serves at most {}", it->size(), health::max_node_slots));
    std::set<std::string> names;
    for (std::size_t i = 0; i < it->size(); ++i) {
        const json& node = (*it)[i];
        std::string key = fmt::format("nodes[{}]", i);
        if (!node.is_object()) fail(key, "must be an object");
        reject_unknown_keys(node, key, {"name", "host", "port", "sslmode", "weight", "replication_host"});
        health::NodeAddress address;
        address.sslmode = config.tls.server_sslmode;
        address.ca_file = config.tls.server_ca_file;
        if (node.contains("sslmode")) address.sslmode = parse_sslmode(node, key + ".sslmode");
        read(node, "name", key + ".name", address.name);
        read(node, "host", key + ".host", address.host);
        read_int(node, "port", key + ".port", address.port, 1, 65535);
        read_int(node, "weight", key + ".weight", address.weight, 0, health::max_node_weight);
        read(node, "replication_host", key + ".replication_host", address.replication_host);
        if (node.contains("replication_host") && address.replication_host.empty())
            fail(key + ".replication_host", "must not be empty (leave it out to use host)");
        if (address.name.empty()) fail(key + ".name", "is required");
        if (address.host.empty()) fail(key + ".host", "is required");
        if (address.port == 0) fail(key + ".port", "is required");
        if (!names.insert(address.name).second) fail(key + ".name", fmt::format("\"{}\" is used twice", address.name));
        config.nodes.push_back(std::move(address));
    }
}

void parse_health(const json& root, Config& config) {
    const json* h = find_object(root, "health", "health");
    if (!h) return;
    reject_unknown_keys(*h, "health", {"interval_ms", "timeout_ms", "failures_before_down", "user", "password",
                                       "dbname", "max_lag_bytes", "max_lag_seconds"});
    health::Settings& s = config.health;
    read_int(*h, "interval_ms", "health.interval_ms", s.interval_ms, 50, 3'600'000);
    read_int(*h, "timeout_ms", "health.timeout_ms", s.timeout_ms, 0, 3'600'000);
    read_int(*h, "failures_before_down", "health.failures_before_down", s.failures_before_down, 1, 1000);
    read(*h, "user", "health.user", s.user);
    read(*h, "password", "health.password", s.password);
    read(*h, "dbname", "health.dbname", s.dbname);
    read_int(*h, "max_lag_bytes", "health.max_lag_bytes", s.max_lag_bytes, 0, (1LL << 62));
    read(*h, "max_lag_seconds", "health.max_lag_seconds", s.max_lag_seconds);
    if (s.max_lag_seconds < 0) fail("health.max_lag_seconds", "must not be negative");
    if (s.user.empty()) fail("health.user", "must not be empty");
}

void parse_auth(const json& root, Config& config) {
    const json* a = find_object(root, "auth", "auth");
    if (!a) {
        if (config.listen_auto)
            fail("auth", "is required by listen.auto: pglane authenticates auto-port clients itself "
                         "(give auth.users_file and/or auth.query)");
        return;
    }
    reject_unknown_keys(*a, "auth", {"method", "users_file", "query", "query_user", "query_password", "query_dbname"});
    AuthSettings auth;
    std::string method = "scram-sha-256";
    read(*a, "method", "auth.method", method);
    if (method == "scram-sha-256") auth.method = AuthSettings::Method::scram_sha_256;
    else if (method == "md5") auth.method = AuthSettings::Method::md5;
    else if (method == "trust") auth.method = AuthSettings::Method::trust;
    else fail("auth.method", "must be one of scram-sha-256, md5, trust");
    read(*a, "users_file", "auth.users_file", auth.users_file);
    read(*a, "query", "auth.query", auth.query);
    read(*a, "query_user", "auth.query_user", auth.query_user);
    read(*a, "query_password", "auth.query_password", auth.query_password);
    read(*a, "query_dbname", "auth.query_dbname", auth.query_dbname);
    if (auth.users_file.empty() && auth.query.empty()) fail("auth", "needs auth.users_file or auth.query");
    if (!auth.query.empty() && auth.query.find("$1") == std::string::npos)
        fail("auth.query", "must contain $1 (the user name)");
    if (!auth.query.empty() && auth.query_user.empty()) fail("auth.query_user", "is required with auth.query");
    config.auth = std::move(auth);
}

void parse_routing(const json& root, Config& config) {
    const json* r = find_object(root, "routing", "routing");
    if (!r) return;
    reject_unknown_keys(*r, "routing", {"read_your_writes", "read_balance", "read_only_functions", "write_functions"});
    std::string ryw = "lsn";
    read(*r, "read_your_writes", "routing.read_your_writes", ryw);
    if (ryw == "lsn") config.routing.read_your_writes = routing::ReadYourWrites::lsn;
    else if (ryw == "session") config.routing.read_your_writes = routing::ReadYourWrites::session;
    else if (ryw == "off") config.routing.read_your_writes = routing::ReadYourWrites::off;
    else fail("routing.read_your_writes", "must be one of lsn, session, off");
    std::string balance = "statement";
    read(*r, "read_balance", "routing.read_balance", balance);
    if (balance == "statement") config.routing.read_balance = routing::ReadBalance::statement;
    else if (balance == "session") config.routing.read_balance = routing::ReadBalance::session;
    else fail("routing.read_balance", "must be one of statement, session");
    std::vector<std::string> names;
    read(*r, "read_only_functions", "routing.read_only_functions", names);
    config.routing.read_only_functions.insert(names.begin(), names.end());
    names.clear();
    read(*r, "write_functions", "routing.write_functions", names);
    config.routing.write_functions.insert(names.begin(), names.end());
}

void parse_failover(const json& root, Config& config) {
    const json* f = find_object(root, "failover", "failover");
    if (!f) return;
    reject_unknown_keys(*f, "failover", {"enabled", "after_ms", "hold_ms", "promote_timeout_ms"});
    health::FailoverSettings& s = config.health.failover;
    read(*f, "enabled", "failover.enabled", s.enabled);
    read_int(*f, "after_ms", "failover.after_ms", s.after_ms, 0, 3'600'000);
    read_int(*f, "hold_ms", "failover.hold_ms", s.hold_ms, 0, 3'600'000);
    read_int(*f, "promote_timeout_ms", "failover.promote_timeout_ms", s.promote_timeout_ms, 1000, 3'600'000);
}

void parse_limits(const json& root, Config& config) {
    const json* l = find_object(root, "limits", "limits");
    if (!l) return;
    reject_unknown_keys(*l, "limits", {"max_message_bytes", "startup_timeout_ms", "server_connect_timeout_ms",
                                       "max_client_connections", "max_client_connections_per_user",
                                       "max_client_connections_by_user", "idle_session_timeout_ms",
                                       "idle_in_transaction_timeout_ms"});
    read_int(*l, "idle_session_timeout_ms", "limits.idle_session_timeout_ms", config.limits.idle_session_timeout_ms, 0,
             604'800'000);
    read_int(*l, "idle_in_transaction_timeout_ms", "limits.idle_in_transaction_timeout_ms",
             config.limits.idle_in_transaction_timeout_ms, 0, 604'800'000);
    read_int(*l, "max_message_bytes", "limits.max_message_bytes", config.limits.max_message_bytes, 10'000,
             1024LL * 1024 * 1024 - 1);
    read_int(*l, "startup_timeout_ms", "limits.startup_timeout_ms", config.limits.startup_timeout_ms, 100, 3'600'000);
    read_int(*l, "server_connect_timeout_ms", "limits.server_connect_timeout_ms",
             config.limits.server_connect_timeout_ms, 100, 3'600'000);
    read_int(*l, "max_client_connections", "limits.max_client_connections", config.limits.max_client_connections, 0,
             10'000'000);
    read_int(*l, "max_client_connections_per_user", "limits.max_client_connections_per_user",
             config.limits.max_client_connections_per_user, 0, 10'000'000);
    if (const json* by_user = find_object(*l, "max_client_connections_by_user", "limits.max_client_connections_by_user")) {
        for (auto it = by_user->begin(); it != by_user->end(); ++it) {
            std::uint32_t limit = 0;
            read_int(*by_user, it.key().c_str(), "limits.max_client_connections_by_user." + it.key(), limit, 0,
                     10'000'000);
            config.limits.max_client_connections_by_user[it.key()] = limit;
        }
    }
}

}  // namespace

static void parse_pool(const json& root, Config& config) {
    const json* p = find_object(root, "pool", "pool");
    if (!p) return;
    reject_unknown_keys(*p, "pool", {"mode", "size", "min_idle", "max_wait_ms", "server_lifetime_ms",
                                     "server_idle_timeout_ms"});
    PoolSettings& s = config.pool;
    std::string mode = "session";
    read(*p, "mode", "pool.mode", mode);
    if (mode == "session") s.mode = PoolSettings::Mode::session;
    else if (mode == "transaction") s.mode = PoolSettings::Mode::transaction;
    else fail("pool.mode", "must be \"session\" or \"transaction\"");
    read_int(*p, "size", "pool.size", s.size, 1, 100'000);
    read_int(*p, "min_idle", "pool.min_idle", s.min_idle, 0, 100'000);
    read_int(*p, "max_wait_ms", "pool.max_wait_ms", s.max_wait_ms, 0, 3'600'000);
    read_int(*p, "server_lifetime_ms", "pool.server_lifetime_ms", s.server_lifetime_ms, 1000, 604'800'000);
    read_int(*p, "server_idle_timeout_ms", "pool.server_idle_timeout_ms", s.server_idle_timeout_ms, 1000, 604'800'000);
    if (s.min_idle > s.size) fail("pool.min_idle", "cannot exceed pool.size");
    // Pooled connections log in with the credentials pglane verified itself.
    if (s.mode == PoolSettings::Mode::transaction && !config.auth)
        fail("pool.mode", "transaction pooling needs an \"auth\" section (pglane authenticates clients itself)");
}

static void parse_admin(const json& root, Config& config) {
    const json* a = find_object(root, "admin", "admin");
    if (!a) return;
    reject_unknown_keys(*a, "admin", {"users"});
    read(*a, "users", "admin.users", config.admin_users);
    if (!config.admin_users.empty() && !config.auth)
        fail("admin.users", "the admin console needs an \"auth\" section (pglane authenticates its users itself)");
}

Config parse_config(const std::string& json_text) {
    json root;
    try {
        root = json::parse(json_text);
    } catch (const json::parse_error& e) {
        throw ConfigError(fmt::format("config is not valid JSON: {}", e.what()));
    }
    if (!root.is_object()) throw ConfigError("config must be a JSON object");
    reject_unknown_keys(root, "", {"listen", "metrics_listen", "nodes", "health", "ro_fallback_to_primary",
                                   "workers", "log_level", "limits", "auth", "routing", "failover", "pool",
                                   "shutdown_timeout_ms", "admin", "tls", "busy_poll_us"});
    Config config;
    parse_listen(root, config);
    parse_tls(root, config);
    parse_nodes(root, config);
    check_server_verification(config);
    parse_health(root, config);
    parse_limits(root, config);
    parse_auth(root, config);
    parse_routing(root, config);
    parse_failover(root, config);
    parse_pool(root, config);
    parse_admin(root, config);
    read(root, "ro_fallback_to_primary", "ro_fallback_to_primary", config.ro_fallback_to_primary);
    read_int(root, "workers", "workers", config.workers, 0, 256);
    read_int(root, "busy_poll_us", "busy_poll_us", config.busy_poll_us, 0, 10'000);
    read_int(root, "shutdown_timeout_ms", "shutdown_timeout_ms", config.shutdown_timeout_ms, 0, 3'600'000);
    read(root, "log_level", "log_level", config.log_level);
    log::Level level;
    if (!log::parse_level(config.log_level, level)) fail("log_level", "must be one of debug, info, warn, error");
    return config;
}

Config load_config(const std::string& path) {
    const auto text = read_text_file(path);
    if (!text) throw ConfigError(fmt::format("cannot read config file \"{}\"", path));
    return parse_config(*text);
}

std::vector<std::string> failover_repoint_hazards(const Config& config) {
    if (!config.health.failover.enabled) return {};
    return health::repoint_hazards(config.nodes);
}

}  // namespace pglane::proxy
