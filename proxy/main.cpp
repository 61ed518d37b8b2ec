// pglane: PostgreSQL wire-protocol proxy and load balancer for an HA cluster.

#include "common/log.hpp"
#include "pglane_version.hpp"
#include "proxy/config.hpp"
#include "proxy/manual.hpp"
#include "proxy/server.hpp"
#include "proxy/status_cli.hpp"

#include <csignal>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr const char* usage = R"(usage: pglane --config FILE | --check-config --config FILE | status [--url URL] [--watch [SECONDS]]
              | --version | --help (the manual)
)";

}  // namespace

int main(int argc, char** argv) {
    if (argc >= 2 && std::string_view(argv[1]) == "status") return pglane::proxy::run_status_command(argc - 2, argv + 2);
    std::string config_path;
    bool check_only = false;
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        if (arg == "--version") {
            std::printf("pglane %s\n", pglane::version);
            return 0;
        }
        if (arg == "--help" || arg == "-h") {
            std::fputs(pglane::proxy::manual, stdout);
            return 0;
        }
        if (arg == "--check-config") {
            check_only = true;
        } else if (arg == "--config" && i + 1 < argc) {
            config_path = argv[++i];
        } else if (arg.starts_with("--config=")) {
            config_path = std::string(arg.substr(9));
        } else {
            std::fprintf(stderr, "pglane: unknown argument \"%s\"\n%s", argv[i], usage);
            return 2;
        }
    }
    if (config_path.empty()) {
        std::fputs(usage, stderr);
        return 2;
    }
    pglane::proxy::Config config;
    try {
        config = pglane::proxy::load_config(config_path);
        // The certificate, key and CA files are part of the config: read them now too.
        const pglane::proxy::TlsContexts files_readable(config.tls);
    } catch (const pglane::proxy::ConfigError& e) {
        std::fprintf(stderr, "pglane: invalid config %s: %s\n", config_path.c_str(), e.what());
        return 1;
    }
    const std::vector<std::string> hazards = pglane::proxy::failover_repoint_hazards(config);
    if (check_only) {
        for (const std::string& hazard : hazards) std::fprintf(stderr, "pglane: warning: %s\n", hazard.c_str());
        std::printf("pglane: config %s is valid\n", config_path.c_str());
        return 0;
    }
    pglane::log::Level level = pglane::log::Level::info;
    (void)pglane::log::parse_level(config.log_level, level);
    pglane::log::set_level(level);
    for (const std::string& hazard : hazards) pglane::log::warn("failover_repoint_hazard", {{"hazard", hazard}});
    std::signal(SIGPIPE, SIG_IGN);
    try {
        return pglane::proxy::run_server(config, config_path);
    } catch (const std::exception& e) {
        pglane::log::error("pglane_failed", {{"error", e.what()}});
        return 1;
    }
}
