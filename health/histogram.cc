#include "health/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace weir::health {

size_t Histogram::index(uint64_t v) {
  if (v < kSub) return static_cast<size_t>(v);
  unsigned e = static_cast<unsigned>(std::bit_width(v)) - 1;  // floor(log2 v) >= kSubBits
  if (e > kMaxExponent) return kBuckets - 1;
  uint64_t sub = (v >> (e - kSubBits)) & (kSub - 1);
  return static_cast<size_t>(kSub + (e - kSubBits) * kSub + sub);
}

uint64_t Histogram::value(size_t i) {
  if (i < kSub) return i;
  size_t e = (i - kSub) / kSub + kSubBits;
  uint64_t sub = (i - kSub) % kSub;
  uint64_t width = uint64_t{1} << (e - kSubBits);
  uint64_t low = (uint64_t{1} << e) + sub * width;
  return low + width / 2;
}

uint64_t Histogram::percentile(std::span<const uint64_t> counts, double q) {
  uint64_t total = 0;
  for (uint64_t c : counts) total += c;
  if (total == 0) return 0;
  // The smallest value with at least q of the samples at or below it (nearest rank).
  // q is usually a decimal a double only approximates: 0.07 * 100 is 7.000000000000001, and a
  // bare ceil would make the rank 8. A relative 1e-12 is far above double rounding (1e-16) and
  // far below any real fraction of a rank.
  const double exact = q * static_cast<double>(total);
  uint64_t rank = static_cast<uint64_t>(std::ceil(exact - exact * 1e-12));
  if (rank == 0) rank = 1;
  uint64_t seen = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    seen += counts[i];
    if (seen >= rank) return value(i);
  }
  return value(counts.size() - 1);
}

void Histogram::cumulative(std::span<const uint64_t> counts, std::span<const uint64_t> bounds_us,
                           std::span<uint64_t> out, double* sum_us) {
  std::fill(out.begin(), out.end(), 0);
  double sum = 0;
  size_t b = 0;  // bounds ascend and bucket midpoints ascend: one pass
  for (size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] == 0) continue;
    const uint64_t mid = value(i);
    while (b < bounds_us.size() && mid > bounds_us[b]) ++b;
    out[b] += counts[i];
    sum += static_cast<double>(mid) * static_cast<double>(counts[i]);
  }
  for (size_t k = 1; k < out.size(); ++k) out[k] += out[k - 1];
  if (sum_us) *sum_us = sum;
}

}  // namespace weir::health
