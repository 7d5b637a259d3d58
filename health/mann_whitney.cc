#include "health/mann_whitney.h"

#include <cmath>

#include "health/histogram.h"

namespace weir::health {

namespace {

double median_ms(const SparseHistogram& h, uint64_t n) {
  if (n == 0) return 0;
  const uint64_t rank = (n + 1) / 2;  // the lower median, as Histogram::percentile(0.5)
  uint64_t seen = 0;
  for (auto [i, c] : h) {
    seen += c;
    if (seen >= rank) return static_cast<double>(Histogram::value(i)) / 1000.0;
  }
  return 0;
}

}  // namespace

MannWhitney mann_whitney(const SparseHistogram& canary, const SparseHistogram& stable) {
  MannWhitney m;
  for (auto [i, c] : canary) m.n_canary += c;
  for (auto [i, c] : stable) m.n_stable += c;
  m.median_canary_ms = median_ms(canary, m.n_canary);
  m.median_stable_ms = median_ms(stable, m.n_stable);
  if (m.n_canary == 0 || m.n_stable == 0) return m;
  // Walk both bucket lists in index order: a canary value beats every stable value in lower
  // buckets and ties (half) with those in its own bucket.
  double stable_below = 0, tie_sum = 0;
  size_t a = 0, b = 0;
  while (a < canary.size() || b < stable.size()) {
    const uint32_t ia = a < canary.size() ? canary[a].first : UINT32_MAX;
    const uint32_t ib = b < stable.size() ? stable[b].first : UINT32_MAX;
    const uint32_t i = ia < ib ? ia : ib;
    const double c = ia == i ? static_cast<double>(canary[a++].second) : 0;
    const double s = ib == i ? static_cast<double>(stable[b++].second) : 0;
    m.u += c * (stable_below + s / 2);
    stable_below += s;
    const double t = c + s;
    tie_sum += t * t * t - t;
  }
  const double n1 = static_cast<double>(m.n_canary), n2 = static_cast<double>(m.n_stable);
  const double n = n1 + n2;
  m.mean = n1 * n2 / 2;
  const double var = n1 * n2 / 12 * ((n + 1) - tie_sum / (n * (n - 1)));
  if (var <= 0) return m;  // every value in one bucket: nothing tells them apart
  const double sd = std::sqrt(var);
  const double diff = m.u - m.mean;
  m.z = (diff > 0.5 ? diff - 0.5 : diff < -0.5 ? diff + 0.5 : 0) / sd;
  m.p = 0.5 * std::erfc(m.z / std::sqrt(2.0));
  return m;
}

}  // namespace weir::health
