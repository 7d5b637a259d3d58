#include "health/mann_whitney.h"

#include <doctest/doctest.h>

#include <random>

#include "health/histogram.h"

namespace weir::health {
namespace {

// `n` latencies spread evenly over [lo_us, hi_us], as a sparse histogram.
SparseHistogram spread(uint64_t n, uint64_t lo_us, uint64_t hi_us) {
  std::vector<uint64_t> dense(Histogram::kBuckets);
  for (uint64_t i = 0; i < n; ++i) dense[Histogram::index(lo_us + (hi_us - lo_us) * i / n)]++;
  SparseHistogram out;
  for (size_t i = 0; i < dense.size(); ++i) {
    if (dense[i]) out.emplace_back(static_cast<uint32_t>(i), dense[i]);
  }
  return out;
}

TEST_CASE("mann-whitney: U counts slower pairs, ties as halves") {
  // Canary 1 and 3 against stable 2, 2: one slower pair of each canary value... U = 0 + 2.
  MannWhitney m = mann_whitney({{1, 1}, {3, 1}}, {{2, 2}});
  CHECK(m.u == doctest::Approx(2));
  CHECK(m.mean == doctest::Approx(2));
  CHECK(m.z == doctest::Approx(0));
  CHECK(m.p == doctest::Approx(0.5));
  // Everything tied in one bucket: no variance, nothing to tell apart.
  m = mann_whitney({{5, 2}}, {{5, 2}});
  CHECK(m.u == doctest::Approx(2));
  CHECK(m.p == 1);
  // A bucket shared by both counts half: canary {1, 2}, stable {2, 3} -> 0 + 0.5.
  m = mann_whitney({{1, 1}, {2, 1}}, {{2, 1}, {3, 1}});
  CHECK(m.u == doctest::Approx(0.5));
  CHECK(m.z < 0);
  CHECK(m.p > 0.5);
}

TEST_CASE("mann-whitney: the tie correction and the normal approximation") {
  // n1 = n2 = 3, canary all above stable: U = 9, mean 4.5, no ties:
  // var = 9/12 * 7 = 5.25, z = (9 - 4.5 - 0.5) / sqrt(5.25).
  MannWhitney m = mann_whitney({{10, 1}, {11, 1}, {12, 1}}, {{1, 1}, {2, 1}, {3, 1}});
  CHECK(m.u == doctest::Approx(9));
  CHECK(m.z == doctest::Approx(4 / std::sqrt(5.25)));
  // With ties (two values in one bucket each side): tie term (4^3 - 4) / (6 * 5) = 2.
  m = mann_whitney({{10, 2}, {12, 1}}, {{1, 1}, {10, 2}});
  // U = 2 * (1 + 1) + 1 * 3 = 7, var = 9/12 * (7 - 2) = 3.75
  CHECK(m.u == doctest::Approx(7));
  CHECK(m.z == doctest::Approx((7 - 4.5 - 0.5) / std::sqrt(3.75)));
}

TEST_CASE("mann-whitney: 5 -> 6 ms is significant but small; 50 -> 80 ms is both") {
  MannWhitney small = mann_whitney(spread(2000, 5500, 6500), spread(2000, 4500, 5500));
  CHECK(small.p < 1e-6);
  CHECK(small.effect_ms() == doctest::Approx(1).epsilon(0.05));
  MannWhitney big = mann_whitney(spread(500, 70000, 90000), spread(500, 40000, 60000));
  CHECK(big.p < 1e-6);
  CHECK(big.effect_ms() == doctest::Approx(30).epsilon(0.05));
  // The same distribution: no evidence either way.
  MannWhitney same = mann_whitney(spread(1000, 40000, 60000), spread(1000, 40000, 60000));
  CHECK(same.p > 0.3);
}

}  // namespace
}  // namespace weir::health
