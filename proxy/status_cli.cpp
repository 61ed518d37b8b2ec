#include "proxy/status_cli.hpp"

#include "proxy/config.hpp"
#include "proxy/http_server.hpp"
#include "proxy/status_table.hpp"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

namespace pglane::proxy {

namespace {

constexpr const char* default_url = "http://127.0.0.1:9187/status";
constexpr auto request_timeout = std::chrono::seconds(5);
constexpr const char* clear_screen = "\x1b[H\x1b[2J";

constexpr const char* status_usage = R"(usage: pglane status [--url URL | --config FILE] [--watch [SECONDS]]
  --url URL         pglane's /status: http://HOST:PORT[/PATH] or HOST:PORT (default http://127.0.0.1:9187/status)
  --config FILE     read metrics_listen from pglane's config FILE instead of giving --url
  --watch [SECONDS] clear the screen and show it again every SECONDS (default 2) until Ctrl-C
)";

std::atomic<bool> interrupted{false};

extern "C" void on_interrupt(int) { interrupted = true; }

struct StatusUrl {
    Endpoint endpoint;
    std::string target = "/status";

    [[nodiscard]] std::string to_string() const { return fmt::format("http://{}{}", endpoint.to_string(), target); }
};

/// http://HOST:PORT[/PATH] or HOST:PORT; nullopt (and `error`) for anything else.
std::optional<StatusUrl> parse_url(std::string_view text, std::string& error) {
    if (text.starts_with("https://")) {
        error = "https is not supported: pglane's metrics endpoint speaks plain HTTP";
        return std::nullopt;
    }
    if (text.starts_with("http://")) text.remove_prefix(7);
    StatusUrl url;
    auto slash = text.find('/');
    if (slash != std::string_view::npos) {
        url.target = std::string(text.substr(slash));
        text = text.substr(0, slash);
    }
    auto colon = text.rfind(':');
    std::string host(text.substr(0, colon));
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    int port = 80;
    if (colon != std::string_view::npos) {
        try {
            std::size_t used = 0;
            std::string digits(text.substr(colon + 1));
            port = std::stoi(digits, &used);
            if (used != digits.size()) port = 0;
        } catch (const std::exception&) {
            port = 0;
        }
    }
    if (host.empty() || port <= 0 || port > 65535) {
        error = fmt::format("\"{}\" is not http://HOST:PORT[/PATH]", text);
        return std::nullopt;
    }
    url.endpoint = {host, static_cast<std::uint16_t>(port)};
    return url;
}

/// The table for one fetch, or the reason there is none.
struct Shown {
    bool ok = false;
    std::string text;
};

Shown fetch_table(const StatusUrl& url) {
    HttpGetResult got = http_get(url.endpoint, url.target, request_timeout);
    if (!got.error.empty()) {
        return {false, fmt::format("pglane status: cannot reach pglane at {}: {}\n"
                                   "(is pglane running with metrics_listen at that address? see --url and --config)\n",
                                   url.to_string(), got.error)};
    }
    if (got.response.status != 200) {
        return {false, fmt::format("pglane status: {} answered HTTP {}: {}\n", url.to_string(), got.response.status,
                                   got.response.body.substr(0, 200))};
    }
    try {
        return {true, render_status_table(nlohmann::json::parse(got.response.body))};
    } catch (const std::exception& e) {
        return {false, fmt::format("pglane status: {} did not answer with pglane's /status JSON: {}\n",
                                   url.to_string(), e.what())};
    }
}

int watch(const StatusUrl& url, double seconds, long iterations) {
    std::signal(SIGINT, on_interrupt);
    std::signal(SIGTERM, on_interrupt);
    bool last_ok = false;
    for (long round = 0; !interrupted && (iterations <= 0 || round < iterations); ++round) {
        Shown shown = fetch_table(url);
        last_ok = shown.ok;
        auto now = std::chrono::system_clock::now();
        std::string screen = fmt::format("{}Every {:.1f}s: pglane status --url {}   {:%Y-%m-%d %H:%M:%S} UTC   (Ctrl-C stops)\n\n{}",
                                         clear_screen, seconds, url.to_string(),
                                         std::chrono::floor<std::chrono::seconds>(now), shown.text);
        std::fputs(screen.c_str(), stdout);
        std::fflush(stdout);
        if (iterations > 0 && round + 1 >= iterations) break;
        // Sleep in small steps so Ctrl-C ends the watch at once.
        auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
        while (!interrupted && std::chrono::steady_clock::now() < until)
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return last_ok || interrupted ? 0 : 1;
}

int usage_error(const std::string& message) {
    std::fprintf(stderr, "pglane status: %s\n%s", message.c_str(), status_usage);
    return 2;
}

struct StatusOptions {
    std::optional<std::string> url;
    std::optional<std::string> config_path;
    std::optional<double> watch_seconds;
    long iterations = 0;   // undocumented: bounds --watch, for tests
    bool help = false;
};

/// The seconds after --watch (optional): empty `text` keeps the default.
std::optional<std::string> parse_watch_seconds(const std::string& text, double& seconds) {
    if (text.empty()) return std::nullopt;
    try {
        std::size_t used = 0;
        seconds = std::stod(text, &used);
        if (used != text.size()) throw std::invalid_argument(text);
    } catch (const std::exception&) {
        return fmt::format("--watch takes a number of seconds, not \"{}\"", text);
    }
    if (seconds < 0.1 || seconds > 86400) return std::string("--watch SECONDS must be between 0.1 and 86400");
    return std::nullopt;
}

/// Fills `options` from the arguments; the usage error when they make no sense.
std::optional<std::string> parse_arguments(int argc, char** argv, StatusOptions& options) {
    for (int i = 0; i < argc; ++i) {
        std::string_view arg = argv[i];
        auto value = [&](std::string_view name) -> std::optional<std::string> {
            if (arg.starts_with(std::string(name) + "=")) return std::string(arg.substr(name.size() + 1));
            if (arg == name && i + 1 < argc) return std::string(argv[++i]);
            return std::nullopt;
        };
        if (arg == "--help" || arg == "-h") {
            options.help = true;
        } else if (auto url = value("--url")) {
            options.url = *url;
        } else if (auto path = value("--config")) {
            options.config_path = *path;
        } else if (arg == "--watch" || arg.starts_with("--watch=")) {
            std::string seconds;
            if (arg.starts_with("--watch=")) seconds = std::string(arg.substr(8));
            else if (i + 1 < argc && argv[i + 1][0] != '-') seconds = argv[++i];
            double every = 2.0;
            if (auto error = parse_watch_seconds(seconds, every)) return error;
            options.watch_seconds = every;
        } else if (auto count = value("--iterations")) {
            try {
                options.iterations = std::stol(*count);
            } catch (const std::exception&) {
                return std::string("--iterations takes a number");
            }
        } else {
            return fmt::format("unknown argument \"{}\"", arg);
        }
    }
    if (options.url && options.config_path) return std::string("give --url or --config, not both");
    return std::nullopt;
}

}  // namespace

int run_status_command(int argc, char** argv) {
    StatusOptions options;
    if (auto error = parse_arguments(argc, argv, options)) return usage_error(*error);
    if (options.help) {
        std::fputs(status_usage, stdout);
        return 0;
    }
    std::string text = options.url.value_or(default_url);
    if (options.config_path) {
        try {
            Config config = load_config(*options.config_path);
            if (!config.metrics_listen)
                return usage_error(fmt::format("config {} has no metrics_listen: give --url", *options.config_path));
            text = config.metrics_listen->to_string();
        } catch (const ConfigError& e) {
            std::fprintf(stderr, "pglane status: invalid config %s: %s\n", options.config_path->c_str(), e.what());
            return 1;
        }
    }
    std::string error;
    auto url = parse_url(text, error);
    if (!url) return usage_error("--url " + error);
    if (options.watch_seconds) return watch(*url, *options.watch_seconds, options.iterations);
    Shown shown = fetch_table(*url);
    std::fputs(shown.text.c_str(), shown.ok ? stdout : stderr);
    return shown.ok ? 0 : 1;
}

}  // namespace pglane::proxy
