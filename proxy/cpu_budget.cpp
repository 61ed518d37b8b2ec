#include "proxy/cpu_budget.hpp"

#include <sched.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <sstream>
#include <thread>

namespace pglane::proxy {

namespace {

std::optional<long long> parse_count(std::string_view text) {
    long long value = 0;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc{} || end != text.data() + text.size() || value <= 0) return std::nullopt;
    return value;
}

std::optional<std::string> read_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) return std::nullopt;
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

int affinity_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
    return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace

std::optional<int> cpus_of_quota(std::string_view cpu_max) {
    while (!cpu_max.empty() && (cpu_max.back() == '\n' || cpu_max.back() == ' ')) cpu_max.remove_suffix(1);
    const auto space = cpu_max.find(' ');
    if (space == std::string_view::npos) return std::nullopt;
    const auto quota = parse_count(cpu_max.substr(0, space));
    const auto period = parse_count(cpu_max.substr(space + 1));
    if (!quota || !period) return std::nullopt;   // "max": no quota
    return static_cast<int>(std::min<long long>((*quota + *period - 1) / *period, 1 << 20));
}

std::optional<std::string> cgroup_v2_path(std::string_view proc_self_cgroup) {
    while (!proc_self_cgroup.empty()) {
        const auto end = proc_self_cgroup.find('\n');
        std::string_view line = proc_self_cgroup.substr(0, end);
        if (line.starts_with("0::/")) return std::string(line.substr(3));
        if (end == std::string_view::npos) break;
        proc_self_cgroup.remove_prefix(end + 1);
    }
    return std::nullopt;
}

int usable_cpus() {
    int cpus = affinity_cpus();
    const auto self = read_file("/proc/self/cgroup");
    const auto path = self ? cgroup_v2_path(*self) : std::nullopt;
    if (!path) return cpus;
    // A limit on any ancestor bounds the process too; the root has no cpu.max.
    std::string dir = *path;
    while (true) {
        if (const auto text = read_file("/sys/fs/cgroup" + (dir == "/" ? std::string() : dir) + "/cpu.max"))
            if (const auto quota = cpus_of_quota(*text)) cpus = std::min(cpus, std::max(1, *quota));
        if (dir == "/") break;
        const auto slash = dir.rfind('/');
        dir = slash == 0 ? "/" : dir.substr(0, slash);
    }
    return cpus;
}

}  // namespace pglane::proxy
