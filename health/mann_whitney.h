// The Mann-Whitney U test over two latency histograms (canary vs stable, the same window), as
// Kayenta judges latency: rank-based, so a few slow outliers do not decide it, and no shape is
// assumed. Every histogram bucket is one group of tied values. One-sided: "is the canary
// slower?", by the normal approximation with the tie correction and a continuity correction.
// Pure arithmetic.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace weir::health {

// A histogram as (log-linear bucket index, count) pairs in increasing index order.
using SparseHistogram = std::vector<std::pair<uint32_t, uint64_t>>;

struct MannWhitney {
  uint64_t n_canary = 0, n_stable = 0;
  double u = 0;       // canary-vs-stable pairs where the canary is slower, ties counted half
  double mean = 0;    // U's expectation when neither is slower: n_canary * n_stable / 2
  double z = 0;       // (U - mean - 0.5) / sd; 0 when sd is 0 (every value tied)
  double p = 1;       // one-sided p-value of "the canary is slower"
  double median_canary_ms = 0, median_stable_ms = 0;
  double effect_ms() const { return median_canary_ms - median_stable_ms; }
};

MannWhitney mann_whitney(const SparseHistogram& canary, const SparseHistogram& stable);

}  // namespace weir::health
