#include "proxy/cpu_budget.hpp"

#include <catch2/catch.hpp>

#include <thread>

using namespace pglane::proxy;

TEST_CASE("cgroup CPU quotas are read as whole CPUs, rounded up") {
    CHECK(cpus_of_quota("200000 100000\n") == 2);   // docker run --cpus 2
    CHECK(cpus_of_quota("150000 100000") == 2);     // --cpus 1.5: two threads can still run
    CHECK(cpus_of_quota("50000 100000\n") == 1);    // half a CPU
    CHECK(cpus_of_quota("400000 100000") == 4);
    CHECK(cpus_of_quota("max 100000\n") == std::nullopt);   // no quota
    CHECK(cpus_of_quota("") == std::nullopt);
    CHECK(cpus_of_quota("200000") == std::nullopt);
    CHECK(cpus_of_quota("-1 100000") == std::nullopt);
    CHECK(cpus_of_quota("200000 0") == std::nullopt);
    CHECK(cpus_of_quota("2e5 100000") == std::nullopt);
    // cgroup v1: two files.
    CHECK(cpus_of_cfs("300000\n", "100000\n") == 3);
    CHECK(cpus_of_cfs("150000\n", "100000\n") == 2);
    CHECK(cpus_of_cfs("-1\n", "100000\n") == std::nullopt);   // no quota
    CHECK(cpus_of_cfs("", "100000") == std::nullopt);
}

TEST_CASE("the process's cgroup path is its v2 line, or the v1 line of the cpu controller") {
    CHECK(cgroup_v2_path("0::/system.slice/pglane.service\n") == "/system.slice/pglane.service");
    CHECK(cgroup_v2_path("0::/\n") == "/");
    CHECK(cgroup_v2_path("0::/last-line-without-newline") == "/last-line-without-newline");
    // A hybrid host lists the v1 hierarchies first; the cpu controller is in one of them.
    const char* hybrid = "4:memory:/app\n3:cpuset:/\n2:cpu,cpuacct:/docker/abc\n1:name=systemd:/x\n0::/kubepods/ctr\n";
    CHECK(cgroup_v2_path(hybrid) == "/kubepods/ctr");
    CHECK(cgroup_v1_cpu_path(hybrid) == "/docker/abc");
    // "cpuset" and "cpuacct" are other controllers, not "cpu".
    CHECK(cgroup_v1_cpu_path("3:cpuset:/a\n2:cpuacct:/b\n1:cpu:/c\n") == "/c");
    CHECK(cgroup_v1_cpu_path("3:cpuset:/a\n2:cpuacct:/b\n") == std::nullopt);
    CHECK(cgroup_v1_cpu_path("0::/only-v2\n") == std::nullopt);
    CHECK(cgroup_v2_path("12:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n") == std::nullopt);
    CHECK(cgroup_v2_path("") == std::nullopt);
}

TEST_CASE("cgroup hierarchies are found in mountinfo") {
    // This machine's kind: v1 controllers under /sys/fs/cgroup, v2 at .../unified.
    const char* hybrid =
        "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
        "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct\n"
        "34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
    const auto v1 = cgroup_v1_cpu_mount(hybrid);
    REQUIRE(v1);
    CHECK(v1->point == "/sys/fs/cgroup/cpu,cpuacct");
    CHECK(v1->root == "/");
    const auto v2 = cgroup_v2_mount(hybrid);
    REQUIRE(v2);
    CHECK(v2->point == "/sys/fs/cgroup/unified");
    // A container with its own cgroup namespace: v2 only, its own cgroup shown as the root.
    const char* container = "812 790 0:26 /kubepods/pod1/ctr /sys/fs/cgroup ro,nosuid - cgroup2 cgroup rw,nsdelegate\n";
    CHECK(cgroup_v1_cpu_mount(container) == std::nullopt);
    REQUIRE(cgroup_v2_mount(container));
    CHECK(cgroup_v2_mount(container)->root == "/kubepods/pod1/ctr");
    CHECK(cgroup_v2_mount("") == std::nullopt);
    CHECK(cgroup_v2_mount("garbage\n1 2 3\n") == std::nullopt);
}

TEST_CASE("a cgroup's quota files are looked for in it and in each ancestor, under the mount") {
    const CgroupMount host{"/", "/sys/fs/cgroup"};
    CHECK(cgroup_directories(host, "/system.slice/pglane.service") ==
          std::vector<std::string>{"/sys/fs/cgroup/system.slice/pglane.service", "/sys/fs/cgroup/system.slice",
                                   "/sys/fs/cgroup"});
    CHECK(cgroup_directories(host, "/") == std::vector<std::string>{"/sys/fs/cgroup"});
    // The mount shows the hierarchy from /docker/abc down: that directory is the mount point.
    const CgroupMount docker{"/docker/abc", "/sys/fs/cgroup/cpu"};
    CHECK(cgroup_directories(docker, "/docker/abc") == std::vector<std::string>{"/sys/fs/cgroup/cpu"});
    CHECK(cgroup_directories(docker, "/docker/abc/inner") ==
          std::vector<std::string>{"/sys/fs/cgroup/cpu/inner", "/sys/fs/cgroup/cpu"});
    // Outside what the mount shows: nothing to read.
    CHECK(cgroup_directories(docker, "/docker/other").empty());
    CHECK(cgroup_directories(docker, "/docker/abcd").empty());
}

TEST_CASE("this process may use at least one CPU and no more than the machine has") {
    const int cpus = usable_cpus();
    CHECK(cpus >= 1);
    CHECK(static_cast<unsigned>(cpus) <= std::max(1u, std::thread::hardware_concurrency()));
}
