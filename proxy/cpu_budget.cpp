#include "proxy/cpu_budget.hpp"

#include "common/text_file.hpp"

#include <sched.h>

#include <algorithm>
#include <charconv>
#include <thread>

namespace pglane::proxy {

namespace {

std::optional<long long> parse_count(std::string_view text) {
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
    long long value = 0;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc{} || end != text.data() + text.size() || value <= 0) return std::nullopt;
    return value;
}

std::optional<int> cpus_of(std::optional<long long> quota, std::optional<long long> period) {
    if (!quota || !period) return std::nullopt;
    return static_cast<int>(std::min<long long>((*quota + *period - 1) / *period, 1 << 20));
}

std::vector<std::string_view> split(std::string_view text, char separator) {
    std::vector<std::string_view> parts;
    while (true) {
        const auto at = text.find(separator);
        parts.push_back(text.substr(0, at));
        if (at == std::string_view::npos) return parts;
        text.remove_prefix(at + 1);
    }
}

bool lists(std::string_view comma_separated, std::string_view item) {
    const auto items = split(comma_separated, ',');
    return std::find(items.begin(), items.end(), item) != items.end();
}

// The mount of /proc/self/mountinfo whose file system type and super options `wanted` accepts.
template <typename Wanted>
std::optional<CgroupMount> find_mount(std::string_view mountinfo, Wanted wanted) {
    for (std::string_view line : split(mountinfo, '\n')) {
        // ID PARENT MAJOR:MINOR ROOT POINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER_OPTIONS
        const auto fields = split(line, ' ');
        const auto dash = std::find(fields.begin(), fields.end(), "-");
        if (fields.size() < 5 || dash == fields.end() || fields.end() - dash < 4) continue;
        if (wanted(dash[1], dash[3])) return CgroupMount{std::string(fields[3]), std::string(fields[4])};
    }
    return std::nullopt;
}

int affinity_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
    return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace

std::optional<int> cpus_of_quota(std::string_view cpu_max) {
    const auto space = cpu_max.find(' ');
    if (space == std::string_view::npos) return std::nullopt;
    return cpus_of(parse_count(cpu_max.substr(0, space)), parse_count(cpu_max.substr(space + 1)));   // "max": none
}

std::optional<int> cpus_of_cfs(std::string_view quota_us, std::string_view period_us) {
    return cpus_of(parse_count(quota_us), parse_count(period_us));   // -1: none
}

std::optional<std::string> cgroup_v2_path(std::string_view proc_self_cgroup) {
    for (std::string_view line : split(proc_self_cgroup, '\n'))
        if (line.starts_with("0::/")) return std::string(line.substr(3));
    return std::nullopt;
}

std::optional<std::string> cgroup_v1_cpu_path(std::string_view proc_self_cgroup) {
    for (std::string_view line : split(proc_self_cgroup, '\n')) {
        // ID:CONTROLLERS:PATH
        const auto first = line.find(':');
        const auto second = first == std::string_view::npos ? first : line.find(':', first + 1);
        if (second == std::string_view::npos) continue;
        if (lists(line.substr(first + 1, second - first - 1), "cpu")) return std::string(line.substr(second + 1));
    }
    return std::nullopt;
}

std::optional<CgroupMount> cgroup_v2_mount(std::string_view mountinfo) {
    return find_mount(mountinfo, [](std::string_view type, std::string_view) { return type == "cgroup2"; });
}

std::optional<CgroupMount> cgroup_v1_cpu_mount(std::string_view mountinfo) {
    return find_mount(mountinfo, [](std::string_view type, std::string_view super_options) {
        return type == "cgroup" && lists(super_options, "cpu");
    });
}

std::vector<std::string> cgroup_directories(const CgroupMount& mount, std::string_view path) {
    // The mount shows the hierarchy from mount.root down: a path outside it has no files here.
    std::string_view relative = path;
    if (mount.root != "/") {
        if (!path.starts_with(mount.root) || (path.size() > mount.root.size() && path[mount.root.size()] != '/'))
            return {};
        relative.remove_prefix(mount.root.size());
    }
    while (relative.ends_with('/')) relative.remove_suffix(1);
    std::vector<std::string> directories;
    while (true) {
        directories.push_back(mount.point + std::string(relative));
        if (relative.empty()) return directories;
        const auto slash = relative.rfind('/');
        relative = slash == std::string_view::npos ? std::string_view() : relative.substr(0, slash);
    }
}

int usable_cpus() {
    int cpus = affinity_cpus();
    const auto self = read_text_file("/proc/self/cgroup");
    const auto mountinfo = read_text_file("/proc/self/mountinfo");
    if (!self || !mountinfo) return cpus;
    const auto bound = [&cpus](std::optional<int> quota) {
        if (quota) cpus = std::min(cpus, std::max(1, *quota));
    };
    const auto v2_path = cgroup_v2_path(*self);
    const auto v2_mount = cgroup_v2_mount(*mountinfo);
    if (v2_path && v2_mount) {
        for (const std::string& directory : cgroup_directories(*v2_mount, *v2_path))
            if (const auto text = read_text_file(directory + "/cpu.max")) bound(cpus_of_quota(*text));
    }
    const auto v1_path = cgroup_v1_cpu_path(*self);
    const auto v1_mount = cgroup_v1_cpu_mount(*mountinfo);
    if (v1_path && v1_mount) {
        for (const std::string& directory : cgroup_directories(*v1_mount, *v1_path)) {
            const auto quota = read_text_file(directory + "/cpu.cfs_quota_us");
            const auto period = read_text_file(directory + "/cpu.cfs_period_us");
            if (quota && period) bound(cpus_of_cfs(*quota, *period));
        }
    }
    return cpus;
}

}  // namespace pglane::proxy
