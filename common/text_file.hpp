#pragma once
// A whole file read into a string: the config, the users file, the cgroup and /proc files
// the CPU count comes from. Callers word their own error.

#include <optional>
#include <string>

namespace pglane {

/// The file's bytes, or nullopt when it cannot be opened.
[[nodiscard]] std::optional<std::string> read_text_file(const std::string& path);

}  // namespace pglane
