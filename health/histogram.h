// Log-linear latency histogram in microseconds: exact below 64 µs, then 64 sub-buckets per
// power of two, so a bucket is at most 1/64 (1.6%) wide relative to its value — within the 2%
// the guard needs from 100 µs to 60 s. Bucket math only; storage is up to the user.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace weir::health {

struct Histogram {
  static constexpr unsigned kSubBits = 6;
  static constexpr uint64_t kSub = 1u << kSubBits;        // 64
  static constexpr unsigned kMaxExponent = 26;             // 2^26 µs ≈ 67 s
  static constexpr size_t kBuckets = kSub + (kMaxExponent - kSubBits + 1) * kSub;

  static size_t index(uint64_t micros);
  // The bucket's midpoint, the estimate a percentile reports.
  static uint64_t value(size_t index);
  // q in [0,1]; counts has kBuckets entries; 0 when empty.
  static uint64_t percentile(std::span<const uint64_t> counts, double q);

  // Export: Prometheus `le` bounds in µs, from 50 µs (a fast service's p50 must land in a
  // bucket of its own) to 60 s, at most 1.67x apart.
  static constexpr uint64_t kExportBoundsUs[] = {
      50,      100,     150,     200,     300,     500,     750,     1000,     1500,
      2000,    3000,    5000,    7500,    10000,   15000,   20000,   30000,    50000,
      75000,   100000,  150000,  200000,  300000,  500000,  750000,  1000000,  1500000,
      2000000, 3000000, 5000000, 7500000, 10000000, 30000000, 60000000};
  // Folds log-linear `counts` into cumulative counts at each of `bounds_us` plus +Inf (`out`
  // has bounds_us.size() + 1 entries). A bucket counts at the first bound at or above its
  // midpoint, the value percentile() reports for it, so a quantile of the export lands in the
  // bucket holding the guard's figure. `sum_us` gets the sum of those midpoints.
  static void cumulative(std::span<const uint64_t> counts, std::span<const uint64_t> bounds_us,
                         std::span<uint64_t> out, double* sum_us);
};

}  // namespace weir::health
