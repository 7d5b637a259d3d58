// GET /metrics: the Prometheus text exposition of weir's counters, produced by prometheus-cpp's
// TextSerializer over a custom Collectable that reads the per-worker counters (proxy/stats.h)
// and the control thread's state at scrape time. Nothing here runs per request.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/config.h"
#include "proxy/runtime_state.h"
#include "proxy/stats.h"

namespace weir::proxy {

// What one scrape reads. Control thread only; the worker counters are single-writer atomics.
struct MetricsSource {
  std::vector<const WorkerStats*> workers;
  const config::Config* config = nullptr;  // the configured services
  const RuntimeState* runtime = nullptr;   // their effective weights
  uint64_t reloads_ok = 0;
  uint64_t reloads_failed = 0;
};

std::string render_metrics(const MetricsSource& source);

}  // namespace weir::proxy
