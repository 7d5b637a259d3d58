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
};

}  // namespace weir::health
