#pragma once
// `pglane status`: reads a running pglane's /status over HTTP and prints it as a table
// (proxy/status_table.hpp), once or every few seconds with --watch.

namespace pglane::proxy {

/// Runs `pglane status ARGS...` (argv holds the arguments after "status"); returns the exit
/// code: 0 shown, 1 pglane unreachable or its answer unusable, 2 bad arguments.
[[nodiscard]] int run_status_command(int argc, char** argv);

}  // namespace pglane::proxy
