// Control-thread view of per-version statistics: the workers' cumulative counters are summed
// once a second, the difference from the previous second goes into a ring of 1-second buckets,
// and any window up to ten minutes can be summarized (counts, error rate, percentiles).
#pragma once

#include <array>
#include <cstdint>
#include <unordered_map>
#include <utility>
#include <vector>

#include "health/histogram.h"
#include "health/version_counters.h"

namespace weir::health {

// Counts for one version; cumulative (summed over workers) or one second's increments.
struct Sample {
  uint64_t requests = 0;
  std::array<uint64_t, 6> responses{};
  std::array<uint64_t, 3> failures{};
  std::vector<uint64_t> headers_latency = std::vector<uint64_t>(Histogram::kBuckets);
  std::vector<uint64_t> total_latency = std::vector<uint64_t>(Histogram::kBuckets);

  void add(const VersionCounters& c);  // reads one worker's counters into this sample
  void add(const Sample& o);           // another sample's counts on top of these
  Sample minus(const Sample& earlier) const;
  bool empty() const { return requests == 0 && completed() == 0; }
  bool all_zero() const;  // no count at all, latencies included
  uint64_t completed() const {
    uint64_t n = 0;
    for (uint64_t r : responses) n += r;
    return n;
  }
};

struct Summary {
  uint32_t window_s = 0;
  uint32_t counted_s = 0;  // seconds of the window that were folded (0: nothing was counted)
  uint64_t requests = 0;   // started
  uint64_t completed = 0;  // answered (any status) or cut
  uint64_t errors = 0;     // 5xx (weir's own 502/504 included) + cut responses
  std::array<uint64_t, 6> responses{};
  std::array<uint64_t, 3> failures{};
  double error_rate = 0;   // errors / completed
  uint64_t p50_us = 0, p90_us = 0, p99_us = 0;  // total time
  uint64_t headers_p50_us = 0, headers_p99_us = 0;
  // The total-time histogram: (Histogram bucket index, count), increasing index.
  std::vector<std::pair<uint32_t, uint64_t>> latency;
};

class StatsWindow {
 public:
  static constexpr uint32_t kSeconds = 600;

  // `second` is a monotonically increasing second number; `delta` that second's increments.
  // The ring is allocated by the first delta that holds any count: a version without traffic
  // costs a few bytes.
  void add(uint64_t second, const Sample& delta);
  // The last `window_s` seconds ending at `now_second` (inclusive).
  Summary summarize(uint64_t now_second, uint32_t window_s) const;
  // The same over several windows' traffic together (a fleet's replicas; nullptrs skipped).
  static Summary summarize(const std::vector<const StatsWindow*>& windows, uint64_t now_second,
                           uint32_t window_s);
  // Bytes this window holds, itself included (for the per-version memory budget).
  size_t footprint() const;

 private:
  struct Bucket {
    uint64_t second = UINT64_MAX;
    uint64_t requests = 0;
    std::array<uint64_t, 6> responses{};
    std::array<uint64_t, 3> failures{};
    // Sparse: a second's latencies fall into few buckets.
    std::vector<std::pair<uint16_t, uint32_t>> headers, total;
  };
  std::vector<Bucket> ring_;  // kSeconds buckets once anything was added, else empty
};

// Keeps the previous cumulative sample and the window of every version id.
class StatsCollector {
 public:
  // Returns the increments since the previous fold of `id`.
  Sample fold(uint64_t second, uint32_t id, const Sample& cumulative);
  bool has(uint32_t id) const { return entries_.count(id) != 0; }
  // nullptr for an id never folded.
  const StatsWindow* window(uint32_t id) const;

 private:
  struct Entry {
    Sample previous;
    StatsWindow window;
  };
  std::unordered_map<uint32_t, Entry> entries_;
};

}  // namespace weir::health
