#pragma once
// How many worker threads pglane starts when the config leaves `workers` at 0: one per CPU
// this process may use. "May use" is what the kernel will give, not what the machine has: the
// affinity mask (taskset, a container's cpuset) and a cgroup CPU quota (`docker run --cpus`,
// a Kubernetes CPU limit), the smallest quota on the way from the process's cgroup to the
// root of its hierarchy, in cgroup v2 (`cpu.max`) or v1 (`cpu.cfs_quota_us`, hosts and
// runtimes that still mount it). One per core of the machine would start 64 workers in a
// 2-CPU container on a 64-core host.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pglane::proxy {

/// The CPUs a cgroup v2 `cpu.max` ("QUOTA PERIOD", or "max PERIOD" without a quota) allows,
/// rounded up (a quota of 1.5 CPUs can keep two threads busy part of the time); nullopt
/// without a quota or for text that is not `cpu.max`'s.
[[nodiscard]] std::optional<int> cpus_of_quota(std::string_view cpu_max);

/// The same for cgroup v1's two files, `cpu.cfs_quota_us` (-1: no quota) and
/// `cpu.cfs_period_us`.
[[nodiscard]] std::optional<int> cpus_of_cfs(std::string_view quota_us, std::string_view period_us);

/// The process's cgroup path (e.g. "/system.slice/pglane.service") from the text of
/// /proc/self/cgroup: in v2, its "0::" line; in v1, the line of the hierarchy the `cpu`
/// controller is in ("4:cpu,cpuacct:/docker/abc"). nullopt when there is no such line.
[[nodiscard]] std::optional<std::string> cgroup_v2_path(std::string_view proc_self_cgroup);
[[nodiscard]] std::optional<std::string> cgroup_v1_cpu_path(std::string_view proc_self_cgroup);

/// Where a cgroup hierarchy is mounted, from /proc/self/mountinfo: the mount point, and the
/// hierarchy's directory shown there (not "/" inside a container that sees only its own).
struct CgroupMount {
    std::string root;
    std::string point;
};
/// The cgroup2 mount; the cgroup v1 mount with the `cpu` controller.
[[nodiscard]] std::optional<CgroupMount> cgroup_v2_mount(std::string_view mountinfo);
[[nodiscard]] std::optional<CgroupMount> cgroup_v1_cpu_mount(std::string_view mountinfo);

/// The directories of the cgroup `path` and of each of its ancestors up to the mount's root,
/// as files under the mount point, the cgroup's own first.
[[nodiscard]] std::vector<std::string> cgroup_directories(const CgroupMount& mount, std::string_view path);

/// The CPUs this process may use: its affinity mask, bounded by the quotas of its cgroups.
/// At least one.
[[nodiscard]] int usable_cpus();

}  // namespace pglane::proxy
