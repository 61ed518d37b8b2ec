#pragma once
// How many worker threads pglane starts when the config leaves `workers` at 0: one per CPU
// this process may use. "May use" is what the kernel will give, not what the machine has: the
// affinity mask (taskset, a container's cpuset) and a cgroup v2 CPU quota (`docker run
// --cpus`, a Kubernetes CPU limit), the smallest quota on the way from the process's cgroup
// to the root. One per core of the machine would start 64 workers in a 2-CPU container on a
// 64-core host.

#include <optional>
#include <string>
#include <string_view>

namespace pglane::proxy {

/// The CPUs a cgroup v2 `cpu.max` ("QUOTA PERIOD", or "max PERIOD" without a quota) allows,
/// rounded up (a quota of 1.5 CPUs can keep two threads busy part of the time); nullopt
/// without a quota or for text that is not `cpu.max`'s.
[[nodiscard]] std::optional<int> cpus_of_quota(std::string_view cpu_max);

/// The process's cgroup v2 path (e.g. "/system.slice/pglane.service") from the text of
/// /proc/self/cgroup: its "0::" line; nullopt on a cgroup v1 host (no such line).
[[nodiscard]] std::optional<std::string> cgroup_v2_path(std::string_view proc_self_cgroup);

/// The CPUs this process may use: its affinity mask, bounded by the cgroup quotas found
/// under /sys/fs/cgroup. At least one.
[[nodiscard]] int usable_cpus();

}  // namespace pglane::proxy
