#include "proxy/cpu_count.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace weir::proxy {
namespace {

TEST_CASE("cpu_count: cpu.max lines") {
  CHECK(cpu_max_limit("max 100000\n") == std::nullopt);
  CHECK(cpu_max_limit("100000 100000\n") == 1u);
  CHECK(cpu_max_limit("150000 100000\n") == 2u);  // 1.5 CPUs: two workers, rounded up
  CHECK(cpu_max_limit("200000 100000") == 2u);
  CHECK(cpu_max_limit("1000 100000") == 1u);
  CHECK(cpu_max_limit("400000 50000\n") == 8u);
  for (const char* bad : {"", "\n", "max", "100000", "0 100000", "100000 0", "-5 100000",
                          "1.5 100000", "100000 100000 7", "abc def"}) {
    CAPTURE(bad);
    CHECK(cpu_max_limit(bad) == std::nullopt);
  }
}

// A cgroup v2 tree under a per-process temp folder.
struct CgroupTree {
  std::filesystem::path root = std::filesystem::temp_directory_path() /
                               ("weir_cpu_count_" + std::to_string(getpid()));
  CgroupTree() { std::filesystem::remove_all(root); }
  ~CgroupTree() { std::filesystem::remove_all(root); }
  void set(const std::string& cgroup, const std::string& cpu_max) {
    std::filesystem::create_directories(root / cgroup);
    std::ofstream(root / cgroup / "cpu.max") << cpu_max;
  }
};

TEST_CASE("cpu_count: the tightest cpu.max of the cgroup and its ancestors") {
  CgroupTree t;
  const std::string root = t.root.string();
  t.set("kubepods/pod1", "max 100000\n");
  t.set("kubepods/pod1/weir", "250000 100000\n");
  CHECK(cgroup_cpu_limit("0::/kubepods/pod1/weir\n", root) == 3u);
  // A parent's limit below the child's wins.
  t.set("kubepods", "100000 100000\n");
  CHECK(cgroup_cpu_limit("0::/kubepods/pod1/weir\n", root) == 1u);
  // v1 lines are skipped; the v2 line counts wherever it is.
  CHECK(cgroup_cpu_limit("12:cpu,cpuacct:/x\n0::/kubepods/pod1\n", root) == 1u);
  // Without limits on the way (or a cgroup that does not exist), none.
  CHECK(cgroup_cpu_limit("0::/other\n", root) == std::nullopt);
  CHECK(cgroup_cpu_limit("0::/\n", root) == std::nullopt);
  CHECK(cgroup_cpu_limit("", root) == std::nullopt);
  CHECK(cgroup_cpu_limit("3:memory:/a\n", root) == std::nullopt);
  // A container sees its own cgroup as the root ("0::/"), with cpu.max right there.
  t.set("", "50000 100000\n");
  CHECK(cgroup_cpu_limit("0::/\n", root) == 1u);
}

TEST_CASE("cpu_count: available_cpus follows the affinity mask") {
  cpu_set_t saved;
  REQUIRE(sched_getaffinity(0, sizeof saved, &saved) == 0);
  const unsigned all = available_cpus();
  CHECK(all >= 1);
  CHECK(all <= static_cast<unsigned>(CPU_COUNT(&saved)));
  // Pinned to one CPU, one worker.
  cpu_set_t one;
  CPU_ZERO(&one);
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &saved)) {
      CPU_SET(c, &one);
      break;
    }
  }
  REQUIRE(sched_setaffinity(0, sizeof one, &one) == 0);
  CHECK(available_cpus() == 1);
  REQUIRE(sched_setaffinity(0, sizeof saved, &saved) == 0);
}

}  // namespace
}  // namespace weir::proxy
