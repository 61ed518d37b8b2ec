#include "proxy/cpu_budget.hpp"

#include <catch2/catch.hpp>

#include <thread>

using namespace pglane::proxy;

TEST_CASE("a cgroup v2 cpu.max is read as whole CPUs, rounded up") {
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
}

TEST_CASE("the process's cgroup v2 path is the 0:: line of /proc/self/cgroup") {
    CHECK(cgroup_v2_path("0::/system.slice/pglane.service\n") == "/system.slice/pglane.service");
    CHECK(cgroup_v2_path("0::/\n") == "/");
    // A hybrid host lists the v1 hierarchies first.
    CHECK(cgroup_v2_path("4:memory:/app\n1:cpu:/\n0::/kubepods/pod1/ctr\n") == "/kubepods/pod1/ctr");
    CHECK(cgroup_v2_path("0::/last-line-without-newline") == "/last-line-without-newline");
    // cgroup v1 only: no unified hierarchy.
    CHECK(cgroup_v2_path("12:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n") == std::nullopt);
    CHECK(cgroup_v2_path("") == std::nullopt);
}

TEST_CASE("this process may use at least one CPU and no more than the machine has") {
    const int cpus = usable_cpus();
    CHECK(cpus >= 1);
    CHECK(static_cast<unsigned>(cpus) <= std::max(1u, std::thread::hardware_concurrency()));
}
