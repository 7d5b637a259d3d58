// GET /metrics: the Prometheus text exposition of weir's counters, produced by prometheus-cpp's
// TextSerializer over a custom Collectable that reads the per-worker counters (proxy/stats.h)
// and the control thread's state at scrape time. Nothing here runs per request.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/config.h"
#include "proxy/control_store.h"
#include "proxy/runtime_state.h"
#include "proxy/stats.h"

namespace weir::proxy {

// One version's request figures, summed over the workers' counters (health/version_counters.h).
struct VersionMetrics {
  std::string service, version;
  uint64_t responses[6] = {};       // by status class; [0]: cut after the response head
  uint64_t failures[3] = {};        // upstream connect, reset, timeout
  std::vector<uint64_t> latency;    // health::Histogram buckets of µs to the response's end
  std::vector<uint64_t> head_latency;  // the same to the response head
  uint64_t request_bytes = 0;   // request body bytes sent to the version
  uint64_t response_bytes = 0;  // response body bytes received from it
};

// The process itself, from /proc (Prometheus' process_* conventions). Zeros when unreadable.
struct ProcessMetrics {
  double cpu_seconds = 0;
  double resident_bytes = 0;
  double virtual_bytes = 0;
  double open_fds = 0;
  double max_fds = 0;
  double start_time_seconds = 0;  // since the Unix epoch
};
ProcessMetrics read_process_metrics();

// A service's mirror target and the shadow traffic it got ([service.mirror]).
struct MirrorMetrics {
  std::string service, version;
  health::MirrorTotals totals;
};

// One endpoint of one version as the control thread sees it (probes and outlier ejection).
struct EndpointMetrics {
  std::string service, version, endpoint;  // endpoint: "host:port"
  bool probe_failing = false;
  bool ejected = false;
};

// The guard's view of one watched (non-stable) version.
struct GuardMetrics {
  std::string service, version;
  std::string state;     // pass, hold, fail, reverted or disabled
  uint64_t reverts = 0;  // since start
  uint64_t dry_run_reverts = 0;  // would-be reverts of a dry run, since start
};

// One configured rollout: its state and how many gates it waits for.
struct RolloutMetrics {
  std::string service;
  std::string state;  // one of kRolloutStates
  size_t waiting_for = 0;
};
inline constexpr const char* kRolloutStates[] = {"idle",   "running",  "waiting",
                                                 "paused", "promoted", "aborted"};

// One [[service.guard.query]]: queries sent and those that errored or timed out.
struct KpiQueryMetrics {
  std::string service, query;
  uint64_t sent = 0, errors = 0;
};
// Hook calls since start ([[service.hook]]).
struct HookMetrics {
  uint64_t calls = 0, failures = 0, dropped = 0;
  size_t queued = 0;
};

// What one scrape reads. Control thread only; the worker counters are single-writer atomics.
struct MetricsSource {
  std::vector<const WorkerStats*> workers;
  const config::Config* config = nullptr;  // the configured services
  const RuntimeState* runtime = nullptr;   // their effective weights
  uint64_t reloads_ok = 0;
  uint64_t reloads_failed = 0;
  std::vector<VersionMetrics> versions;
  std::vector<std::string> listeners = {};  // names by index, for weir_connections_active
  std::vector<EndpointMetrics> endpoints = {};
  std::vector<GuardMetrics> guards = {};
  std::vector<MirrorMetrics> mirrors = {};  // defaulted: initializers may stop before it
  std::vector<RolloutMetrics> rollouts = {};
  ControlStore::FleetFigures fleet = {};     // present only in fleet mode
  std::vector<KpiQueryMetrics> kpi_queries = {};
  HookMetrics hooks = {};
  double last_reload_ok_s = 0;  // Unix time of the last configuration load that took (the start)
};

// The states weir_guard_state is one-hot over.
inline constexpr const char* kGuardStates[] = {"pass", "hold", "fail", "reverted", "disabled"};

std::string render_metrics(const MetricsSource& source);

}  // namespace weir::proxy
