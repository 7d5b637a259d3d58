#include "proxy/cpu_count.h"

#include <sched.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <iterator>
#include <thread>

namespace weir::proxy {
namespace {

std::string read_small_file(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

bool parse_u64(std::string_view s, uint64_t* out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size();
}

}  // namespace

std::optional<unsigned> cpu_max_limit(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  const size_t space = text.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  std::string_view quota_text = text.substr(0, space), period_text = text.substr(space + 1);
  uint64_t quota = 0, period = 0;
  if (quota_text == "max" || !parse_u64(quota_text, &quota) ||
      !parse_u64(period_text, &period) || quota == 0 || period == 0) {
    return std::nullopt;
  }
  const uint64_t cpus = (quota + period - 1) / period;
  return static_cast<unsigned>(std::min<uint64_t>(cpus, 1u << 16));
}

std::optional<unsigned> cgroup_cpu_limit(std::string_view proc_cgroup,
                                         const std::string& cgroup_root) {
  std::string path;
  bool found = false;
  size_t start = 0;
  while (start < proc_cgroup.size()) {
    size_t end = proc_cgroup.find('\n', start);
    if (end == std::string_view::npos) end = proc_cgroup.size();
    std::string_view line = proc_cgroup.substr(start, end - start);
    if (line.starts_with("0::")) {
      path = std::string(line.substr(3));
      found = true;
    }
    start = end + 1;
  }
  if (!found || !path.starts_with('/')) return std::nullopt;
  std::optional<unsigned> limit;
  // The cgroup's own quota and every ancestor's apply; the root has no cpu.max.
  while (true) {
    std::string dir = cgroup_root + (path == "/" ? "" : path);
    if (auto l = cpu_max_limit(read_small_file(dir + "/cpu.max"))) {
      limit = limit ? std::min(*limit, *l) : *l;
    }
    if (path == "/" || path.empty()) break;
    const size_t slash = path.rfind('/');
    path = slash == 0 ? "/" : path.substr(0, slash);
  }
  return limit;
}

unsigned available_cpus() {
  unsigned cpus = 0;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) cpus = static_cast<unsigned>(CPU_COUNT(&set));
  if (cpus == 0) cpus = std::thread::hardware_concurrency();
  if (auto limit = cgroup_cpu_limit(read_small_file("/proc/self/cgroup"), "/sys/fs/cgroup")) {
    cpus = std::min(cpus, *limit);
  }
  return std::max(1u, cpus);
}

}  // namespace weir::proxy
