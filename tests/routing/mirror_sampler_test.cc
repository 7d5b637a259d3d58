#include "routing/mirror_sampler.h"

#include <doctest/doctest.h>

#include <cstddef>
#include <vector>

namespace weir::routing {
namespace {

// How many of `n` consecutive requests the sampler copies.
int copies(MirrorSampler& s, uint32_t id, uint32_t percent, int n) {
  int k = 0;
  for (int i = 0; i < n; ++i) k += s.take(id, percent) ? 1 : 0;
  return k;
}

TEST_CASE("mirror sampler: exactly percent of every 100 consecutive requests") {
  for (uint32_t percent : {1u, 3u, 10u, 25u, 33u, 50u, 67u, 99u}) {
    CAPTURE(percent);
    MirrorSampler s;
    for (int window = 0; window < 20; ++window) {
      CHECK(copies(s, 7, percent, 100) == static_cast<int>(percent));
    }
  }
}

TEST_CASE("mirror sampler: smooth, never a burst") {
  // 10% is every tenth request: the gaps between copies are all exactly 10.
  MirrorSampler s;
  std::vector<int> hits;
  for (int i = 0; i < 1000; ++i) {
    if (s.take(0, 10)) hits.push_back(i);
  }
  REQUIRE(hits.size() == 100);
  for (size_t i = 1; i < hits.size(); ++i) CHECK(hits[i] - hits[i - 1] == 10);
  // 25% over any window of n requests copies floor(n/4) or one more, wherever it starts.
  MirrorSampler q;
  std::vector<bool> picked;
  for (int i = 0; i < 400; ++i) picked.push_back(q.take(1, 25));
  for (size_t start = 0; start + 37 <= picked.size(); start += 13) {
    int k = 0;
    for (size_t i = start; i < start + 37; ++i) k += picked[i] ? 1 : 0;
    CHECK(k >= 9);
    CHECK(k <= 10);
  }
}

TEST_CASE("mirror sampler: 0 and 100 percent, and targets count apart") {
  MirrorSampler s;
  CHECK(copies(s, 0, 0, 500) == 0);
  CHECK(copies(s, 0, 100, 500) == 500);
  // Interleaved targets keep their own accumulators.
  int a = 0, b = 0;
  for (int i = 0; i < 300; ++i) {
    a += s.take(3, 20) ? 1 : 0;
    b += s.take(4000, 50) ? 1 : 0;
  }
  CHECK(a == 60);
  CHECK(b == 150);
}

}  // namespace
}  // namespace weir::routing
