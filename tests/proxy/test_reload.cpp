#include "proxy/reload.hpp"

#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

using pglane::proxy::restart_only_difference;

namespace {

nlohmann::json document(const char* text) { return nlohmann::json::parse(text); }

const char* running = R"({
  "listen": {"rw": "127.0.0.1:6433"}, "nodes": [{"name": "n0", "host": "10.0.0.1", "port": 5432}],
  "log_level": "info", "limits": {"startup_timeout_ms": 15000, "max_client_connections": 100},
  "health": {"interval_ms": 1000, "max_lag_bytes": 1048576}})";

}  // namespace

TEST_CASE("reload: what a running pglane applies is not a difference") {
    CHECK(restart_only_difference(document(running), document(running)).empty());
    CHECK(restart_only_difference(document(running), document(R"({
      "listen": {"rw": "127.0.0.1:6433"}, "nodes": [{"name": "n1", "host": "10.0.0.2", "port": 5432}],
      "log_level": "debug", "limits": {"startup_timeout_ms": 15000, "max_client_connections": 5,
                                       "max_client_connections_per_user": 2,
                                       "max_client_connections_by_user": {"batch": 1}},
      "health": {"interval_ms": 1000, "max_lag_bytes": 1024, "max_lag_seconds": 3}})"))
              .empty());
}

TEST_CASE("reload: a section holding only what reload applies is as good as none") {
    nlohmann::json without = document(running);
    without.erase("limits");
    nlohmann::json with = without;
    with["limits"] = {{"max_client_connections_per_user", 1}};
    CHECK(restart_only_difference(without, with).empty());
    CHECK(restart_only_difference(with, without).empty());
    with["limits"]["startup_timeout_ms"] = 100;
    CHECK(restart_only_difference(without, with) == "limits.startup_timeout_ms");
    CHECK(restart_only_difference(with, without) == "limits.startup_timeout_ms");
}

TEST_CASE("reload: anything else is named by its key") {
    auto changed = [](const char* pointer, nlohmann::json value) {
        nlohmann::json next = document(running);
        next[nlohmann::json::json_pointer(pointer)] = std::move(value);
        return restart_only_difference(document(running), next);
    };
    CHECK(changed("/tls", nlohmann::json{{"server_sslmode", "require"}}) == "tls.server_sslmode");
    CHECK(changed("/listen/rw", "127.0.0.1:7000") == "listen.rw");
    CHECK(changed("/limits/startup_timeout_ms", 1000) == "limits.startup_timeout_ms");
    CHECK(changed("/health/interval_ms", 500) == "health.interval_ms");
    CHECK(changed("/pool", nlohmann::json{{"mode", "transaction"}}) == "pool.mode");
    CHECK(changed("/limits/idle_session_timeout_ms", 1000) == "limits.idle_session_timeout_ms");

    nlohmann::json removed = document(running);
    removed.erase("listen");
    CHECK(restart_only_difference(document(running), removed) == "listen.rw");
}

namespace {

// A config file of its own for a ConfigReloader; removed with the fixture.
struct ConfigFile {
    std::string path = (std::filesystem::temp_directory_path() /
                        ("pglane-reload-test-" + std::to_string(::getpid()) + ".json")).string();
    ~ConfigFile() { std::filesystem::remove(path); }

    void write(bool failover, const char* third_node_host) {
        nlohmann::json config = document(R"({"listen": {"rw": "127.0.0.1:6433"}, "nodes": [
            {"name": "n0", "host": "127.0.0.1", "port": 5432}, {"name": "n1", "host": "127.0.0.1", "port": 5433}]})");
        config["failover"] = {{"enabled", failover}};
        if (third_node_host) config["nodes"].push_back({{"name", "n2"}, {"host", third_node_host}, {"port", 5434}});
        std::ofstream(path) << config.dump();
    }
};

}  // namespace

TEST_CASE("reload: a node list that changed is checked for standbys a promotion could not re-point") {
    ConfigFile file;
    file.write(true, nullptr);
    pglane::proxy::ConfigReloader reloader(file.path, {});
    CHECK(reloader.warnings().empty());

    // n2 at an address of another host: n0 or n1, known by loopback addresses, could not be
    // its upstream after a promotion.
    file.write(true, "10.0.0.3");
    REQUIRE(reloader.reload().empty());
    const auto warnings = reloader.warnings();
    REQUIRE(warnings.size() == 2);
    CHECK(warnings[0].starts_with("if n0 is promoted: "));
    CHECK(warnings[1].starts_with("if n1 is promoted: "));
    CHECK(warnings[1].find("pglane reaches n2 at 10.0.0.3") != std::string::npos);

    // On the same host as the others: nothing to warn of, and the earlier warnings are gone.
    file.write(true, "127.0.0.1");
    REQUIRE(reloader.reload().empty());
    CHECK(reloader.warnings().empty());
}

TEST_CASE("reload: without built-in failover nothing is re-pointed, so nothing is warned of") {
    ConfigFile file;
    file.write(false, nullptr);
    pglane::proxy::ConfigReloader reloader(file.path, {});
    file.write(false, "10.0.0.3");
    REQUIRE(reloader.reload().empty());
    CHECK(reloader.warnings().empty());
}
