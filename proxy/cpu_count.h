// How many CPUs this process may run on, for `workers = 0`: the scheduler affinity mask
// (taskset, cpusets, Kubernetes static CPU manager), capped by the cgroup v2 CPU quota
// (`cpu.max`, a container's CPU limit) of its cgroup and every cgroup above it.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace weir::proxy {

// At least 1.
unsigned available_cpus();

// The CPUs a cpu.max line ("QUOTA PERIOD", or "max PERIOD" for no limit) allows: the quota
// divided by the period, rounded up. nullopt for "max" and for text that is not a cpu.max line.
std::optional<unsigned> cpu_max_limit(std::string_view text);

// The tightest cpu.max limit on the cgroup named by `proc_cgroup` (the text of
// /proc/self/cgroup; its v2 line is "0::/PATH") and its ancestors, read under `cgroup_root`
// (normally /sys/fs/cgroup). nullopt when no cgroup on the way has a limit or none is found.
std::optional<unsigned> cgroup_cpu_limit(std::string_view proc_cgroup,
                                         const std::string& cgroup_root);

}  // namespace weir::proxy
