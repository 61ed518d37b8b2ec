#pragma once
// Structured logging: one event a line on stderr, `time level event key=value ...`.
// Safe from any thread: each line is formatted first and written with one write(2).

#include <fmt/format.h>

#include <initializer_list>
#include <string>
#include <string_view>

namespace pglane::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };

/// One key=value pair; the value is formatted when the field is built.
struct Field {
    std::string_view key;
    std::string value;

    template <typename T>
    Field(std::string_view k, const T& v) : key(k), value(fmt::format("{}", v)) {}
};

void set_level(Level level);
[[nodiscard]] Level level();
[[nodiscard]] bool parse_level(std::string_view text, Level& out);

void write(Level level, std::string_view event, std::initializer_list<Field> fields);

inline void debug(std::string_view event, std::initializer_list<Field> fields = {}) {
    if (level() <= Level::debug) write(Level::debug, event, fields);
}
inline void info(std::string_view event, std::initializer_list<Field> fields = {}) {
    write(Level::info, event, fields);
}
inline void warn(std::string_view event, std::initializer_list<Field> fields = {}) {
    write(Level::warn, event, fields);
}
inline void error(std::string_view event, std::initializer_list<Field> fields = {}) {
    write(Level::error, event, fields);
}

}  // namespace pglane::log
