#include "health/histogram.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <vector>

namespace weir::health {
namespace {

std::vector<uint64_t> counts_of(const std::vector<uint64_t>& values_us) {
  std::vector<uint64_t> counts(Histogram::kBuckets);
  for (uint64_t v : values_us) ++counts[Histogram::index(v)];
  return counts;
}

double relative_error(uint64_t estimate, uint64_t exact) {
  return std::abs(static_cast<double>(estimate) - static_cast<double>(exact)) /
         static_cast<double>(exact);
}

// Nearest rank in integers, q = percent / 100: the ceil(q * n)-th smallest, at least the first.
uint64_t nearest_rank(uint64_t percent, uint64_t n) {
  return std::max<uint64_t>(1, (percent * n + 99) / 100);
}

// The exact nearest-rank percentile of `sorted`.
uint64_t exact_percentile(const std::vector<uint64_t>& sorted, uint64_t percent) {
  return sorted[nearest_rank(percent, sorted.size()) - 1];
}

}  // namespace

TEST_CASE("health/histogram: values below 64 us have a bucket each") {
  for (uint64_t v = 0; v < Histogram::kSub; ++v) {
    CAPTURE(v);
    CHECK(Histogram::index(v) == v);
    CHECK(Histogram::value(Histogram::index(v)) == v);
  }
  CHECK(Histogram::index(64) == 64);
}

TEST_CASE("health/histogram: round trip within 2% from 100 us to 60 s") {
  // Every value up to 100 ms, then geometric steps of 0.1% up to 60 s.
  double worst = 0;
  auto check = [&](uint64_t v) {
    double err = relative_error(Histogram::value(Histogram::index(v)), v);
    worst = std::max(worst, err);
    if (err > 0.02) FAIL_CHECK("value " << v << " comes back with error " << err);
  };
  for (uint64_t v = 100; v <= 100'000; ++v) check(v);
  for (double v = 100'000; v <= 60e6; v *= 1.001) check(static_cast<uint64_t>(v));
  check(60'000'000);
  MESSAGE("worst relative error " << worst);
  CHECK(worst > 0);  // the sweep did reach bucketed values
}

TEST_CASE("health/histogram: every bucket's reported value falls back into that bucket") {
  for (size_t i = 0; i < Histogram::kBuckets; ++i) {
    CAPTURE(i);
    CHECK(Histogram::index(Histogram::value(i)) == i);
    if (i > 0) CHECK(Histogram::value(i) > Histogram::value(i - 1));
  }
}

TEST_CASE("health/histogram: index is monotonic") {
  size_t previous = 0;
  for (uint64_t v = 0; v < (uint64_t{1} << 20); ++v) {
    size_t i = Histogram::index(v);
    if (i < previous) FAIL_CHECK("index(" << v << ") = " << i << " < " << previous);
    if (i > previous + 1) FAIL_CHECK("index(" << v << ") skipped a bucket");
    previous = i;
  }
  for (double v = 1 << 20; v < 1e15; v *= 1.0001) {
    size_t i = Histogram::index(static_cast<uint64_t>(v));
    if (i < previous) FAIL_CHECK("index(" << v << ") = " << i << " < " << previous);
    previous = i;
  }
}

TEST_CASE("health/histogram: the last bucket clamps huge values") {
  const size_t last = Histogram::kBuckets - 1;
  const uint64_t top = uint64_t{1} << (Histogram::kMaxExponent + 1);  // first past the range
  CHECK(Histogram::index(top - 1) == last);
  CHECK(Histogram::index(top) == last);
  CHECK(Histogram::index(uint64_t{1} << 40) == last);
  CHECK(Histogram::index(std::numeric_limits<uint64_t>::max()) == last);
  CHECK(Histogram::index(60'000'000) < last);  // 60 s is still measured, not clamped
  CHECK(Histogram::value(last) < top);
  CHECK(Histogram::value(last) > top - top / 64);
}

TEST_CASE("health/histogram: percentile of an empty histogram is 0") {
  std::vector<uint64_t> counts(Histogram::kBuckets);
  for (double q : {0.0, 0.5, 0.99, 1.0}) CHECK(Histogram::percentile(counts, q) == 0);
}

TEST_CASE("health/histogram: percentile of a single value is that value for every q") {
  for (uint64_t v : {0, 1, 63, 1000, 250'000, 59'000'000}) {
    CAPTURE(v);
    const uint64_t expect = Histogram::value(Histogram::index(v));
    for (size_t n : {1, 2, 1000}) {
      auto counts = counts_of(std::vector<uint64_t>(n, v));
      for (double q : {0.0, 0.01, 0.5, 0.9, 0.99, 1.0}) {
        CHECK(Histogram::percentile(counts, q) == expect);
      }
    }
  }
}

TEST_CASE("health/histogram: percentile is the nearest rank on a uniform distribution") {
  // 1..50 µs are exact buckets, so the nearest rank is the value itself.
  std::vector<uint64_t> values;
  for (uint64_t v = 1; v <= 50; ++v) values.push_back(v);
  auto counts = counts_of(values);
  struct Case {
    double q;
    uint64_t expect;
  };
  for (Case c : {Case{0.0, 1}, Case{0.01, 1}, Case{0.02, 1}, Case{0.03, 2}, Case{0.5, 25},
                 Case{0.51, 26}, Case{0.9, 45}, Case{0.99, 50}, Case{1.0, 50}}) {
    CAPTURE(c.q);
    CHECK(Histogram::percentile(counts, c.q) == c.expect);
  }
}

TEST_CASE("health/histogram: percentile on a bimodal distribution picks the right mode") {
  // 90 fast requests at 2 ms and 10 slow at 800 ms.
  std::vector<uint64_t> values(90, 2000);
  values.insert(values.end(), 10, 800'000);
  auto counts = counts_of(values);
  const uint64_t fast = Histogram::value(Histogram::index(2000));
  const uint64_t slow = Histogram::value(Histogram::index(800'000));
  CHECK(Histogram::percentile(counts, 0.5) == fast);
  CHECK(Histogram::percentile(counts, 0.9) == fast);
  CHECK(Histogram::percentile(counts, 0.91) == slow);
  CHECK(Histogram::percentile(counts, 0.99) == slow);
  CHECK(relative_error(fast, 2000) < 0.02);
  CHECK(relative_error(slow, 800'000) < 0.02);
}

TEST_CASE("health/histogram: percentile rank matches integer nearest rank for every q and n") {
  // Whole-percent q over sizes 1..300: floating-point q * n must not round a rank up by one.
  for (uint64_t n = 1; n <= 300; ++n) {
    std::vector<uint64_t> values;
    for (uint64_t v = 0; v < n; ++v) values.push_back(Histogram::value(v % Histogram::kBuckets));
    auto counts = counts_of(values);
    std::sort(values.begin(), values.end());
    for (uint64_t percent = 0; percent <= 100; ++percent) {
      const double q = static_cast<double>(percent) / 100.0;
      const uint64_t got = Histogram::percentile(counts, q);
      const uint64_t want = exact_percentile(values, percent);
      if (got != want) FAIL_CHECK("n " << n << " q " << q << ": " << got << " != " << want);
    }
  }
}

TEST_CASE("health/histogram: p50/p90/p99 of random data within 2% of the exact percentiles") {
  struct Distribution {
    const char* name;
    std::function<double(std::mt19937_64&)> draw_us;
  };
  const Distribution distributions[] = {
      {"uniform 100us-60s",
       [](std::mt19937_64& r) { return std::uniform_real_distribution<double>(100, 60e6)(r); }},
      {"log-uniform 100us-60s",
       [](std::mt19937_64& r) {
         return std::exp(std::uniform_real_distribution<double>(std::log(100), std::log(60e6))(r));
       }},
      {"lognormal around 20ms",
       [](std::mt19937_64& r) {
         return std::clamp(std::lognormal_distribution<double>(std::log(20'000), 1.0)(r), 100.0,
                           60e6);
       }},
      {"bimodal 1ms / 2s",
       [](std::mt19937_64& r) {
         bool slow = std::bernoulli_distribution(0.05)(r);
         return std::normal_distribution<double>(slow ? 2e6 : 1000, slow ? 2e5 : 100)(r);
       }},
  };
  for (const auto& d : distributions) {
    for (uint64_t seed : {1, 2, 3}) {
      CAPTURE(d.name);
      CAPTURE(seed);
      std::mt19937_64 rng(seed);
      std::vector<uint64_t> values(50'000);
      for (auto& v : values) v = static_cast<uint64_t>(std::max(100.0, d.draw_us(rng)));
      auto counts = counts_of(values);
      std::sort(values.begin(), values.end());
      for (uint64_t percent : {50, 90, 99}) {
        CAPTURE(percent);
        const double q = static_cast<double>(percent) / 100.0;
        CHECK(relative_error(Histogram::percentile(counts, q), exact_percentile(values, percent)) <=
              0.02);
      }
    }
  }
}

}  // namespace weir::health

namespace weir::health {
namespace {

TEST_CASE("health/histogram: export bounds start at 50 us and ascend to 60 s") {
  const auto& b = Histogram::kExportBoundsUs;
  CHECK(b[0] == 50);
  CHECK(b[std::size(b) - 1] == 60'000'000);
  for (size_t i = 1; i < std::size(b); ++i) {
    CHECK(b[i] > b[i - 1]);
    CHECK(static_cast<double>(b[i]) / static_cast<double>(b[i - 1]) <= 3.0);
  }
}

TEST_CASE("health/histogram: cumulative export puts each sample where percentile() reports it") {
  std::vector<uint64_t> counts(Histogram::kBuckets, 0);
  counts[Histogram::index(40)] = 2;      // 40 us: under the first bound
  counts[Histogram::index(53)] = 5;      // 53 us: a fast service's p50
  counts[Histogram::index(980)] = 1;     // just under 1 ms
  counts[Histogram::index(90'000'000)] = 1;  // beyond the last bound
  const uint64_t bounds[] = {50, 100, 1000, 60'000'000};
  std::vector<uint64_t> out(std::size(bounds) + 1);
  double sum = 0;
  Histogram::cumulative(counts, bounds, out, &sum);
  CHECK(out == std::vector<uint64_t>{2, 7, 8, 8, 9});
  CHECK(sum == doctest::Approx(2 * 40 + 5 * 53 + Histogram::value(Histogram::index(980)) +
                               Histogram::value(Histogram::index(90'000'000))));
  // The guard's p50 (53 us) lies in (50, 100]: the bucket a PromQL quantile interpolates in.
  const uint64_t p50 = Histogram::percentile(counts, 0.5);
  CHECK(p50 > 50);
  CHECK(p50 <= 100);
}

}  // namespace
}  // namespace weir::health
