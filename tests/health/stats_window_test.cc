#include "health/stats_window.h"

#include <doctest/doctest.h>

#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>

#include "health/histogram.h"
#include "health/version_counters.h"

namespace weir::health {
namespace {

// Response counts by status class; index 0 is "cut after the head was sent".
using Classes = std::array<uint64_t, 6>;

// One sample: `requests` started, `responses` by class, and one total latency per value in
// `total_us` (the headers latency of each is half of it, so both histograms are exercised).
Sample make_sample(uint64_t requests, const Classes& responses,
                   std::initializer_list<uint64_t> total_us = {}) {
  Sample s;
  s.requests = requests;
  s.responses = responses;
  for (uint64_t us : total_us) {
    ++s.total_latency[Histogram::index(us)];
    ++s.headers_latency[Histogram::index(us / 2)];
  }
  return s;
}

// `n` requests all answered 2xx.
Sample ok(uint64_t n) { return make_sample(n, {0, 0, n, 0, 0, 0}); }

}  // namespace

TEST_CASE("health/stats_window: Sample::add sums one worker's counters after another") {
  auto a = std::make_unique<VersionCounters>();
  auto b = std::make_unique<VersionCounters>();
  a->requests.add(3);
  a->responses[2].add(2);
  a->responses[0].add(1);
  a->failures[static_cast<size_t>(FailureKind::kTimeout)].add(1);
  a->total_latency[Histogram::index(1500)].add(2);
  a->headers_latency[Histogram::index(700)].add(2);
  b->requests.add(4);
  b->responses[5].add(4);
  b->failures[static_cast<size_t>(FailureKind::kConnect)].add(4);
  b->total_latency[Histogram::index(1500)].add(4);

  Sample s;
  s.add(*a);
  s.add(*b);
  CHECK(s.requests == 7);
  CHECK(s.responses == Classes{1, 0, 2, 0, 0, 4});
  CHECK(s.failures == std::array<uint64_t, 3>{4, 0, 1});
  CHECK(s.total_latency[Histogram::index(1500)] == 6);
  CHECK(s.headers_latency[Histogram::index(700)] == 2);
}

TEST_CASE("health/stats_window: Sample::minus is the per-field difference") {
  Sample later = make_sample(10, {1, 0, 7, 0, 1, 1}, {100, 100, 5000});
  later.failures = {2, 1, 0};
  Sample earlier = make_sample(4, {0, 0, 3, 0, 1, 0}, {100});
  earlier.failures = {1, 0, 0};
  Sample d = later.minus(earlier);
  CHECK(d.requests == 6);
  CHECK(d.responses == Classes{1, 0, 4, 0, 0, 1});
  CHECK(d.failures == std::array<uint64_t, 3>{1, 1, 0});
  CHECK(d.total_latency[Histogram::index(100)] == 1);
  CHECK(d.total_latency[Histogram::index(5000)] == 1);
  CHECK(d.headers_latency[Histogram::index(50)] == 1);
}

TEST_CASE("health/stats_window: Sample::minus clamps at zero when the later sample is smaller") {
  // Relaxed stores may be seen out of step across workers: never wrap to 2^64 - n.
  Sample later = make_sample(3, {0, 0, 3, 0, 0, 0}, {100});
  Sample earlier = make_sample(5, {0, 0, 2, 0, 0, 4}, {100, 100});
  earlier.failures = {1, 1, 1};
  Sample d = later.minus(earlier);
  CHECK(d.requests == 0);
  CHECK(d.responses == Classes{0, 0, 1, 0, 0, 0});
  CHECK(d.failures == std::array<uint64_t, 3>{0, 0, 0});
  CHECK(d.total_latency[Histogram::index(100)] == 0);
}

TEST_CASE("health/stats_window: an empty window summarizes to zeros") {
  StatsWindow w;
  for (uint32_t window_s : {1u, 30u, 600u}) {
    Summary s = w.summarize(1000, window_s);
    CHECK(s.window_s == window_s);
    CHECK(s.requests == 0);
    CHECK(s.completed == 0);
    CHECK(s.errors == 0);
    CHECK(s.error_rate == 0);
    CHECK(s.p50_us == 0);
    CHECK(s.p99_us == 0);
    CHECK(s.headers_p99_us == 0);
  }
}

TEST_CASE("health/stats_window: summarize covers exactly the last window_s seconds") {
  // Second t carries t requests, so each window's total is a known arithmetic sum.
  StatsWindow w;
  const uint64_t now = 2000;
  for (uint64_t t = now - 599; t <= now; ++t) w.add(t, ok(t));
  auto sum_of_last = [&](uint64_t n) {
    uint64_t total = 0;
    for (uint64_t t = now - n + 1; t <= now; ++t) total += t;
    return total;
  };
  struct Case {
    uint32_t window_s;
    uint32_t effective_s;
  };
  for (Case c :
       {Case{1, 1}, Case{2, 2}, Case{30, 30}, Case{600, 600}, Case{601, 600}, Case{10000, 600}}) {
    CAPTURE(c.window_s);
    Summary s = w.summarize(now, c.window_s);
    CHECK(s.window_s == c.effective_s);
    CHECK(s.requests == sum_of_last(c.effective_s));
    CHECK(s.completed == sum_of_last(c.effective_s));
  }
  // Seconds after `now` have not happened yet; a window ending earlier sees only its own.
  CHECK(w.summarize(now - 10, 1).requests == now - 10);
  CHECK(w.summarize(now - 10, 30).requests == sum_of_last(40) - sum_of_last(10));
}

TEST_CASE("health/stats_window: a window reaching before second 0 stops at second 0") {
  StatsWindow w;
  for (uint64_t t = 0; t <= 5; ++t) w.add(t, ok(1));
  CHECK(w.summarize(5, 30).requests == 6);
  CHECK(w.summarize(0, 30).requests == 1);
}

TEST_CASE("health/stats_window: seconds with no fold count as nothing") {
  StatsWindow w;
  w.add(100, ok(5));
  w.add(103, ok(7));  // 101 and 102 never folded
  w.add(110, ok(11));
  CHECK(w.summarize(103, 1).requests == 7);
  CHECK(w.summarize(102, 2).requests == 0);
  CHECK(w.summarize(103, 4).requests == 12);
  CHECK(w.summarize(110, 30).requests == 23);
  CHECK(w.summarize(109, 6).requests == 0);
  CHECK(w.summarize(109, 7).requests == 7);
  CHECK(w.summarize(140, 30).requests == 0);  // everything aged out
  // Which seconds were counted at all: an idle second (folded, no traffic) is, a second
  // before the first fold is not.
  w.add(111, Sample{});
  CHECK(w.summarize(103, 4).counted_s == 2);
  CHECK(w.summarize(102, 2).counted_s == 0);
  CHECK(w.summarize(111, 2).counted_s == 2);
  CHECK(w.summarize(111, 2).requests == 11);
}

TEST_CASE("health/stats_window: a ring slot reused after 600 s does not leak its old second") {
  StatsWindow w;
  w.add(10, make_sample(7, {0, 0, 0, 0, 0, 7}, {50'000'000}));
  // 610 maps to the slot 10 used; before anything is added there it must read as empty.
  CHECK(w.summarize(610, 600).requests == 0);
  CHECK(w.summarize(610, 1).requests == 0);
  w.add(610, make_sample(3, {0, 0, 3, 0, 0, 0}, {1000, 1000, 1000}));
  Summary s = w.summarize(610, 600);
  CHECK(s.requests == 3);
  CHECK(s.responses == Classes{0, 0, 3, 0, 0, 0});
  CHECK(s.errors == 0);
  CHECK(s.p99_us == Histogram::value(Histogram::index(1000)));
  // A full lap later, the same slot again.
  w.add(1210, ok(1));
  CHECK(w.summarize(1210, 600).requests == 1);
  CHECK(w.summarize(1210, 600).p99_us == 0);
}

TEST_CASE("health/stats_window: several adds in one second are merged, not overwritten") {
  // The control thread folds every 250 ms, so one second receives up to four deltas.
  StatsWindow w;
  w.add(42, make_sample(2, {0, 0, 2, 0, 0, 0}, {1000, 1000}));
  w.add(42, make_sample(3, {1, 0, 1, 0, 0, 1}, {1000, 20'000}));
  w.add(42, make_sample(0, {}));  // an idle tick adds nothing and removes nothing
  Sample last = make_sample(1, {0, 0, 0, 0, 1, 0}, {20'000});
  last.failures = {0, 0, 1};
  w.add(42, last);
  Summary s = w.summarize(42, 1);
  CHECK(s.requests == 6);
  CHECK(s.responses == Classes{1, 0, 3, 0, 1, 1});
  CHECK(s.failures == std::array<uint64_t, 3>{0, 0, 1});
  CHECK(s.completed == 6);
  CHECK(s.errors == 2);
  // Latencies from every tick: three at 1 ms, two at 20 ms.
  CHECK(s.p50_us == Histogram::value(Histogram::index(1000)));
  CHECK(s.p99_us == Histogram::value(Histogram::index(20'000)));
  CHECK(s.headers_p50_us == Histogram::value(Histogram::index(500)));
  CHECK(s.headers_p99_us == Histogram::value(Histogram::index(10'000)));
}

TEST_CASE("health/stats_window: error_rate is (5xx + cut) / completed") {
  struct Case {
    Classes responses;
    uint64_t errors;
    double rate;
  };
  for (const Case& c : {
           Case{{0, 0, 100, 0, 0, 0}, 0, 0.0},
           Case{{0, 0, 90, 5, 5, 0}, 0, 0.0},  // 3xx and 4xx are not the version's fault
           Case{{0, 0, 97, 0, 0, 3}, 3, 0.03},
           Case{{2, 0, 95, 0, 2, 1}, 3, 0.03},  // cut responses count as errors
           Case{{0, 0, 0, 0, 0, 8}, 8, 1.0}, Case{{4, 0, 0, 0, 0, 0}, 4, 1.0},
           Case{{0, 1, 1, 0, 0, 0}, 0, 0.0},  // 1xx completes like any status
       }) {
    CAPTURE(c.errors);
    StatsWindow w;
    uint64_t completed = 0;
    for (uint64_t n : c.responses) completed += n;
    w.add(7, make_sample(completed, c.responses));
    Summary s = w.summarize(7, 30);
    CHECK(s.completed == completed);
    CHECK(s.errors == c.errors);
    CHECK(s.error_rate == doctest::Approx(c.rate));
  }
}

TEST_CASE("health/stats_window: started requests without a response are not completed") {
  StatsWindow w;
  w.add(1, make_sample(10, {0, 0, 4, 0, 0, 0}));
  Summary s = w.summarize(1, 1);
  CHECK(s.requests == 10);
  CHECK(s.completed == 4);
  CHECK(s.error_rate == 0);
}

TEST_CASE("health/stats_window: percentiles combine every second of the window") {
  StatsWindow w;
  // 98 fast requests spread over 98 seconds, then two slow ones in the last second.
  for (uint64_t t = 1; t <= 98; ++t) w.add(t, make_sample(1, {0, 0, 1, 0, 0, 0}, {2000}));
  w.add(99, make_sample(2, {0, 0, 2, 0, 0, 0}, {900'000, 900'000}));
  Summary s = w.summarize(99, 600);
  CHECK(s.p50_us == Histogram::value(Histogram::index(2000)));
  CHECK(s.p90_us == Histogram::value(Histogram::index(2000)));
  CHECK(s.p99_us == Histogram::value(Histogram::index(900'000)));
  // Only the last second: both slow.
  CHECK(w.summarize(99, 1).p50_us == Histogram::value(Histogram::index(900'000)));
}

TEST_CASE("health/stats_window: StatsCollector's first fold counts from zero") {
  StatsCollector c;
  CHECK(c.window(1) == nullptr);
  c.fold(100, 1, ok(1000));  // traffic between start and the first fold is real traffic
  REQUIRE(c.window(1) != nullptr);
  CHECK(c.window(1)->summarize(100, 600).requests == 1000);
  c.fold(101, 1, ok(1010));
  c.fold(102, 1, ok(1030));
  CHECK(c.window(1)->summarize(102, 1).requests == 20);
  CHECK(c.window(1)->summarize(102, 30).requests == 1030);
  CHECK(c.window(2) == nullptr);
}

TEST_CASE("health/stats_window: StatsCollector keeps versions apart") {
  StatsCollector c;
  c.fold(1, 1, ok(0));
  c.fold(1, 2, ok(500));
  c.fold(2, 1, ok(5));
  c.fold(2, 2, ok(507));
  CHECK(c.window(1)->summarize(2, 30).requests == 5);
  CHECK(c.window(2)->summarize(2, 30).requests == 507);
}

TEST_CASE("health/stats_window: StatsCollector folds every 250 ms into the same second") {
  StatsCollector c;
  c.fold(10, 1, ok(0));
  // Four ticks in second 11, cumulative 3, 5, 5, 9; then one in second 12.
  for (uint64_t cumulative : {3, 5, 5, 9}) c.fold(11, 1, ok(cumulative));
  c.fold(12, 1, ok(10));
  CHECK(c.window(1)->summarize(11, 1).requests == 9);
  CHECK(c.window(1)->summarize(12, 1).requests == 1);
  CHECK(c.window(1)->summarize(12, 30).requests == 10);
}

TEST_CASE("health/stats_window: StatsCollector clamps a counter seen going backwards") {
  StatsCollector c;
  c.fold(1, 1, ok(100));
  c.fold(2, 1, ok(99));   // a worker's store seen late: no wrap-around
  c.fold(3, 1, ok(104));  // measured from 99, the last cumulative seen
  CHECK(c.window(1)->summarize(2, 1).requests == 0);
  CHECK(c.window(1)->summarize(3, 1).requests == 5);
}

TEST_CASE("health/stats_window: a window without traffic holds no ring; idle seconds add none") {
  StatsWindow w;
  CHECK(w.footprint() < 64);
  w.add(5, Sample{});  // an idle version's fold: nothing recorded, nothing allocated
  CHECK(w.footprint() < 64);
  CHECK(w.summarize(5, 30).requests == 0);
  w.add(6, ok(3));
  CHECK(w.footprint() > 600 * 8);
  CHECK(w.summarize(6, 30).requests == 3);
}

TEST_CASE("health/stats_window: a delta with latencies only (a body ending later) is recorded") {
  StatsWindow w;
  w.add(1, make_sample(1, {0, 0, 1, 0, 0, 0}));
  Sample late;
  ++late.total_latency[Histogram::index(2000)];
  CHECK(!late.all_zero());
  CHECK(late.empty());
  w.add(2, late);
  CHECK(w.summarize(2, 30).p50_us > 1500);
}

TEST_CASE("health/version_counters: ids far beyond a few thousand get counters, on first use") {
  auto t = std::make_unique<VersionCounterTable>();
  CHECK(t->find(10000) == nullptr);
  VersionCounters* c = t->get_or_create(10000);
  REQUIRE(c);
  c->requests.add(2);
  CHECK(t->find(10000) == c);
  CHECK(t->find(10000)->requests.get() == 2);
  CHECK(t->find(10001) == nullptr);  // same chunk, never used
  CHECK(t->find(9000) == nullptr);
  CHECK(t->get_or_create(10000) == c);
  CHECK(t->get_or_create(VersionCounterTable::kCapacity) == nullptr);
}

}  // namespace weir::health
