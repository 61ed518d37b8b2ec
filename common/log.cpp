#include "common/log.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <ctime>

namespace pglane::log {
namespace {

std::atomic<Level> current_level{Level::info};

constexpr std::string_view level_name(Level level) {
    switch (level) {
        case Level::debug: return "debug";
        case Level::info: return "info";
        case Level::warn: return "warn";
        case Level::error: return "error";
    }
    return "info";
}

// Values with spaces, quotes or '=' are quoted so a line splits unambiguously.
void append_value(std::string& line, std::string_view value) {
    bool needs_quotes = value.empty();
    for (char c : value) {
        if (c == ' ' || c == '"' || c == '=' || c == '\n' || c == '\t') {
            needs_quotes = true;
            break;
        }
    }
    if (!needs_quotes) {
        line.append(value);
        return;
    }
    line.push_back('"');
    for (char c : value) {
        if (c == '"' || c == '\\') line.push_back('\\');
        if (c == '\n') {
            line.append("\\n");
            continue;
        }
        line.push_back(c);
    }
    line.push_back('"');
}

}  // namespace

void set_level(Level level) { current_level.store(level, std::memory_order_relaxed); }

Level level() { return current_level.load(std::memory_order_relaxed); }

bool parse_level(std::string_view text, Level& out) {
    for (Level l : {Level::debug, Level::info, Level::warn, Level::error}) {
        if (text == level_name(l)) {
            out = l;
            return true;
        }
    }
    return false;
}

void write(Level lvl, std::string_view event, std::initializer_list<Field> fields) {
    if (lvl < level()) return;
    auto now = std::chrono::system_clock::now();
    auto seconds = std::chrono::system_clock::to_time_t(now);
    auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
    std::tm tm{};
    gmtime_r(&seconds, &tm);
    std::string line = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z {} {}", tm.tm_year + 1900,
                                   tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis,
                                   level_name(lvl), event);
    for (const Field& f : fields) {
        line.push_back(' ');
        line.append(f.key);
        line.push_back('=');
        append_value(line, f.value);
    }
    line.push_back('\n');
    // One write per line keeps lines from different threads whole.
    std::string_view rest = line;
    while (!rest.empty()) {
        ssize_t n = ::write(STDERR_FILENO, rest.data(), rest.size());
        if (n <= 0) return;
        rest.remove_prefix(static_cast<std::size_t>(n));
    }
}

}  // namespace pglane::log
