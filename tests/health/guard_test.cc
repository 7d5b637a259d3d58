#include "health/guard.h"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "config/config.h"
#include "health/stats_window.h"

namespace weir::health {
namespace {

// A window summary with `completed` answers of which `errors` were 5xx; latencies in µs.
Summary summary(uint64_t completed, uint64_t errors, uint64_t p50_us = 1000,
                uint64_t p99_us = 5000) {
  Summary s;
  s.window_s = 30;
  s.requests = completed;
  s.completed = completed;
  s.errors = errors;
  s.responses[2] = completed - errors;
  s.responses[5] = errors;
  s.error_rate = completed ? static_cast<double>(errors) / static_cast<double>(completed) : 0;
  s.p50_us = s.p90_us = p50_us;
  s.p99_us = p99_us;
  return s;
}

// Every rule off; each test turns on the one it is about.
GuardSettings settings(uint64_t min_requests = 100, uint32_t consecutive = 3) {
  GuardSettings s;
  s.enabled = true;
  s.min_requests = min_requests;
  s.consecutive = consecutive;
  return s;
}

// A canary bad enough to breach max_error_rate 0.05 at any volume the tests use.
GuardSettings failing_settings(uint32_t consecutive = 3) {
  GuardSettings s = settings(100, consecutive);
  s.max_error_rate = 0.05;
  return s;
}
const Summary kBad = summary(1000, 500);
const Summary kGood = summary(1000, 0);
const Summary kStable = summary(10000, 10);

Verdict verdict_of(const GuardSettings& s, const Summary& canary, const Summary& stable = kStable,
                   uint32_t healthy = 2) {
  VersionGuard g("canary");
  return g.evaluate(s, canary, stable, healthy, 0).verdict;
}

}  // namespace

TEST_CASE("health/guard: normal_quantile matches the standard normal table") {
  struct Case {
    double p, z;
  };
  for (Case c : {Case{0.5, 0.0}, Case{0.8, 0.8416}, Case{0.9, 1.2816}, Case{0.95, 1.6449},
                 Case{0.975, 1.9600}, Case{0.99, 2.3263}, Case{0.9999, 3.7190}, Case{0.05, -1.6449},
                 Case{0.025, -1.9600}}) {
    CAPTURE(c.p);
    CHECK(normal_quantile(c.p) == doctest::Approx(c.z).epsilon(1e-4).scale(1));
  }
  CHECK(std::abs(normal_quantile(0.5)) < 1e-9);
}

TEST_CASE("health/guard: wilson_lower edge cases") {
  const double z = normal_quantile(0.95);
  for (double zz : {0.0, 1.0, z, 3.0}) {
    CAPTURE(zz);
    CHECK(wilson_lower(0, 0, zz) == 0);
    CHECK(wilson_lower(5, 0, zz) == 0);
  }
  // No errors: the lower bound is exactly 0 (not a rounding crumb that would beat
  // max_error_rate = 0).
  for (uint64_t n : {1, 7, 20, 100, 1000, 123457, 10'000'000}) {
    CAPTURE(n);
    CHECK(wilson_lower(0, n, z) <= 0.0);
    CHECK(wilson_lower(0, n, z) >= 0.0);
  }
  // All errors: n / (n + z^2), below 1 because n is finite.
  for (uint64_t n : {1, 20, 1000}) {
    CAPTURE(n);
    const double nn = static_cast<double>(n);
    CHECK(wilson_lower(n, n, z) == doctest::Approx(nn / (nn + z * z)));
    CHECK(wilson_lower(n, n, z) < 1.0);
  }
  // z = 0 is the plain rate; otherwise the bound is below it and tightens with volume.
  CHECK(wilson_lower(25, 100, 0) == doctest::Approx(0.25));
  CHECK(wilson_lower(25, 100, z) < 0.25);
  CHECK(wilson_lower(25, 100, z) < wilson_lower(250, 1000, z));
  CHECK(wilson_lower(250, 1000, z) < wilson_lower(2500, 10000, z));
  CHECK(wilson_lower(2500, 10000, z) == doctest::Approx(0.25).epsilon(0.03));
}

TEST_CASE("health/guard: hold below min_requests leaves the breach counter alone") {
  GuardSettings s = failing_settings();
  VersionGuard g("canary");
  CHECK(g.evaluate(s, kBad, kStable, 2, 1000).breaches_in_a_row == 1);
  for (uint64_t completed : {0, 1, 50, 99}) {
    CAPTURE(completed);
    // All errors, yet too few to judge.
    Evaluation e = g.evaluate(s, summary(completed, completed), kStable, 2, 2000);
    CHECK(e.verdict == Verdict::kHold);
    CHECK(e.breaches_in_a_row == 1);
    CHECK_FALSE(e.reverted);
    REQUIRE(e.reasons.size() == 1);
    CHECK(e.reasons[0].find("below min_requests 100") != std::string::npos);
  }
  CHECK(g.breaches_in_a_row() == 1);
  // Exactly min_requests is judged.
  CHECK(g.evaluate(s, summary(100, 100), kStable, 2, 3000).verdict == Verdict::kFail);
  CHECK(g.breaches_in_a_row() == 2);
}

TEST_CASE("health/guard: a pass resets the breach counter") {
  GuardSettings s = failing_settings();
  VersionGuard g("canary");
  g.evaluate(s, kBad, kStable, 2, 1);
  g.evaluate(s, kBad, kStable, 2, 2);
  Evaluation pass = g.evaluate(s, kGood, kStable, 2, 3);
  CHECK(pass.verdict == Verdict::kPass);
  CHECK(pass.breaches_in_a_row == 0);
  CHECK(pass.reasons == std::vector<std::string>{"all thresholds met"});
  CHECK(g.breaches_in_a_row() == 0);
  // Two more breaches are not enough for consecutive = 3: the count started over.
  CHECK_FALSE(g.evaluate(s, kBad, kStable, 2, 4).reverted);
  CHECK_FALSE(g.evaluate(s, kBad, kStable, 2, 5).reverted);
  CHECK(g.evaluate(s, kBad, kStable, 2, 6).reverted);
}

TEST_CASE("health/guard: a revert needs `consecutive` breaches in a row") {
  for (uint32_t consecutive : {1u, 2u, 3u, 5u}) {
    CAPTURE(consecutive);
    GuardSettings s = failing_settings(consecutive);
    VersionGuard g("canary");
    for (uint32_t i = 1; i <= consecutive; ++i) {
      Evaluation e = g.evaluate(s, kBad, kStable, 2, i);
      CHECK(e.verdict == Verdict::kFail);
      CHECK(e.breaches_in_a_row == i);
      CHECK(e.reverted == (i == consecutive));
    }
    // The server resets the guard after acting on a revert; counting starts over.
    g.reset();
    CHECK(g.breaches_in_a_row() == 0);
    CHECK(g.evaluate(s, kBad, kStable, 2, 100).reverted == (consecutive == 1));
  }
}

TEST_CASE("health/guard: evaluation records the time, version and both summaries") {
  VersionGuard g("v2");
  Evaluation e = g.evaluate(settings(), summary(150, 3), kStable, 2, 123456);
  CHECK(e.at_ms == 123456);
  CHECK(e.version == "v2");
  CHECK(e.canary.completed == 150);
  CHECK(e.stable.completed == kStable.completed);
  CHECK(e.verdict == Verdict::kPass);  // no rule configured
}

TEST_CASE("health/guard: max_error_rate breaches only when the Wilson lower bound is above it") {
  struct Case {
    uint64_t errors, completed;
    double max_error_rate;
    double confidence;
    bool breach;
  };
  for (Case c : {
           Case{1, 20, 0.05, 0.95, false},   // 5% observed, far from significant
           Case{50, 200, 0.05, 0.95, true},  // 25%
           Case{6, 100, 0.05, 0.95, false},  // 6% at low volume is noise
           Case{12, 100, 0.05, 0.95, true},
           Case{560, 10000, 0.05, 0.95, true},  // 5.6% at high volume is real
           Case{560, 10000, 0.05, 0.9999, false},
           Case{0, 100, 0.0, 0.95, false},     // max 0 and no errors: pass
           Case{1, 100, 0.0, 0.95, true},      // max 0: any error breaches
           Case{100, 100, 0.99, 0.95, false},  // all errors, but 100 can't prove > 99%
       }) {
    CAPTURE(c.errors);
    CAPTURE(c.completed);
    CAPTURE(c.max_error_rate);
    GuardSettings s = settings(20);
    s.max_error_rate = c.max_error_rate;
    s.confidence = c.confidence;
    CHECK((verdict_of(s, summary(c.completed, c.errors)) == Verdict::kFail) == c.breach);
  }
}

TEST_CASE("health/guard: max_error_rate = 0 passes a version with no errors at any volume") {
  // The config allows 0 ("any error reverts"); a rounding crumb in the bound must not fail it.
  GuardSettings s = settings(20);
  s.max_error_rate = 0;
  for (uint64_t n = 20; n <= 2000; ++n) {
    if (verdict_of(s, summary(n, 0)) != Verdict::kPass) FAIL_CHECK("failed with 0 errors of " << n);
  }
}

TEST_CASE("health/guard: max_error_rate_increase is a two-proportion test against stable") {
  struct Case {
    const char* what;
    Summary canary, stable;
    double increase;
    double confidence;
    bool breach;
  };
  for (const Case& c : {
           Case{"a handful of errors at low volume", summary(100, 3), summary(10000, 50), 0.01,
                0.95, false},
           Case{"5-point regression at low volume", summary(100, 7), summary(1000, 20), 0.01, 0.95,
                false},
           Case{"5-point regression at high volume", summary(10000, 700), summary(100000, 2000),
                0.01, 0.95, true},
           Case{"borderline: significant at 95%", summary(200, 14), summary(1000, 20), 0.01, 0.95,
                true},
           Case{"borderline: not at 99%", summary(200, 14), summary(1000, 20), 0.01, 0.99, false},
           Case{"within the allowed increase", summary(10000, 250), summary(100000, 2000), 0.01,
                0.95, false},
           Case{"canary better than stable", summary(10000, 0), summary(100000, 5000), 0.0, 0.95,
                false},
           Case{"both clean (zero variance)", summary(1000, 0), summary(1000, 0), 0.0, 0.95, false},
           Case{"all errors against clean (zero variance)", summary(1000, 1000), summary(1000, 0),
                0.01, 0.95, true},
           Case{"no stable traffic: not checked", summary(1000, 1000), summary(0, 0), 0.0, 0.95,
                false},
       }) {
    CAPTURE(c.what);
    GuardSettings s = settings();
    s.max_error_rate_increase = c.increase;
    s.confidence = c.confidence;
    VersionGuard g("canary");
    Evaluation e = g.evaluate(s, c.canary, c.stable, 2, 0);
    CHECK((e.verdict == Verdict::kFail) == c.breach);
    if (c.breach) CHECK(e.reasons[0].find("max_error_rate_increase") != std::string::npos);
  }
}

TEST_CASE("health/guard: latency thresholds") {
  struct Case {
    const char* what;
    uint32_t max_p99_ms, max_p50_ms;
    double max_p99_ratio;
    Summary canary, stable;
    bool breach;
  };
  const uint64_t ms = 1000;
  for (const Case& c : {
           Case{"p99 at the limit", 100, 0, 0, summary(500, 0, 10 * ms, 100 * ms), kStable, false},
           Case{"p99 above", 100, 0, 0, summary(500, 0, 10 * ms, 100 * ms + 500), kStable, true},
           Case{"p50 at the limit", 0, 20, 0, summary(500, 0, 20 * ms, 900 * ms), kStable, false},
           Case{"p50 above", 0, 20, 0, summary(500, 0, 20 * ms + 1, 30 * ms), kStable, true},
           Case{"p99 ratio at the limit", 0, 0, 2.0, summary(500, 0, ms, 200 * ms),
                summary(500, 0, ms, 100 * ms), false},
           Case{"p99 ratio above", 0, 0, 2.0, summary(500, 0, ms, 201 * ms),
                summary(500, 0, ms, 100 * ms), true},
           Case{"ratio needs min_requests on stable", 0, 0, 2.0, summary(500, 0, ms, 900 * ms),
                summary(99, 0, ms, 100 * ms), false},
           Case{"ratio with stable at exactly min_requests", 0, 0, 2.0,
                summary(500, 0, ms, 900 * ms), summary(100, 0, ms, 100 * ms), true},
           Case{"ratio skipped when stable p99 is 0", 0, 0, 2.0, summary(500, 0, ms, 900 * ms),
                summary(500, 0, 0, 0), false},
           Case{"rules off: any latency passes", 0, 0, 0, summary(500, 0, 60'000 * ms, 60'000 * ms),
                kStable, false},
       }) {
    CAPTURE(c.what);
    GuardSettings s = settings();
    s.max_p99_ms = c.max_p99_ms;
    s.max_p50_ms = c.max_p50_ms;
    s.max_p99_ratio = c.max_p99_ratio;
    CHECK((verdict_of(s, c.canary, c.stable) == Verdict::kFail) == c.breach);
  }
}

TEST_CASE("health/guard: every breached rule is listed") {
  GuardSettings s = settings();
  s.max_error_rate = 0.05;
  s.max_p99_ms = 100;
  s.max_p50_ms = 10;
  VersionGuard g("canary");
  Evaluation e = g.evaluate(s, summary(1000, 500, 50'000, 500'000), kStable, 2, 0);
  CHECK(e.verdict == Verdict::kFail);
  REQUIRE(e.reasons.size() == 3);
  CHECK(e.reasons[0].find("max_error_rate") != std::string::npos);
  CHECK(e.reasons[1].find("p99 500.0 ms above max_p99_ms 100") != std::string::npos);
  CHECK(e.reasons[2].find("p50 50.0 ms above max_p50_ms 10") != std::string::npos);
}

TEST_CASE("health/guard: zero healthy endpoints fails, whatever the traffic") {
  for (const Summary& canary : {summary(0, 0), summary(5, 0), kGood}) {
    CAPTURE(canary.completed);
    VersionGuard g("canary");
    GuardSettings s = settings(100, 2);
    Evaluation first = g.evaluate(s, canary, kStable, 0, 1);
    CHECK(first.verdict == Verdict::kFail);
    CHECK(first.reasons == std::vector<std::string>{"no healthy endpoint"});
    CHECK_FALSE(first.reverted);
    CHECK(g.evaluate(s, canary, kStable, 0, 2).reverted);
  }
}

TEST_CASE("health/guard: an external check's fail is a breach, its hold keeps a pass back") {
  GuardSettings s = settings(100, 2);
  const std::vector<ExternalCheck> fail{{"query checkout", Verdict::kFail, "value 3 above max 1"}};
  const std::vector<ExternalCheck> hold{{"query checkout", Verdict::kHold, "no data"}};
  const std::vector<ExternalCheck> pass{{"query checkout", Verdict::kPass, "value 0"}};
  VersionGuard g("canary");
  Evaluation e = g.evaluate(s, kGood, kStable, 2, 1, fail);
  CHECK(e.verdict == Verdict::kFail);
  CHECK(e.breaches_in_a_row == 1);
  CHECK(e.reasons == std::vector<std::string>{"query checkout: value 3 above max 1"});
  CHECK(e.checks.size() == 1);
  // A hold neither passes nor resets the run of breaches.
  e = g.evaluate(s, kGood, kStable, 2, 2, hold);
  CHECK(e.verdict == Verdict::kHold);
  CHECK(e.breaches_in_a_row == 1);
  CHECK(e.reasons == std::vector<std::string>{"query checkout: no data"});
  // Below min_requests a failing check still counts: it has data of its own.
  e = g.evaluate(s, summary(3, 0), kStable, 2, 3, fail);
  CHECK(e.verdict == Verdict::kFail);
  CHECK(e.reverted);
  g.reset();
  // Below min_requests with a holding check: the usual hold, with both reasons.
  e = g.evaluate(s, summary(3, 0), kStable, 2, 4, hold);
  CHECK(e.verdict == Verdict::kHold);
  CHECK(e.reasons.size() == 2);
  // Passing checks change nothing; a built-in breach still lists alone.
  CHECK(g.evaluate(s, kGood, kStable, 2, 5, pass).verdict == Verdict::kPass);
  GuardSettings bad = failing_settings();
  e = g.evaluate(bad, kBad, kStable, 2, 6, hold);
  CHECK(e.verdict == Verdict::kFail);
  CHECK(e.reasons.size() == 1);
  // The decision log shows the checks.
  DecisionLog log;
  log.add(g.evaluate(s, kGood, kStable, 2, 7, fail));
  auto j = nlohmann::json::parse(log.to_json("shop", s));
  CHECK(j["decisions"][0]["checks"][0]["name"] == "query checkout");
  CHECK(j["decisions"][0]["checks"][0]["verdict"] == "fail");
}

TEST_CASE("health/guard: to_string of every verdict") {
  CHECK(std::string(to_string(Verdict::kPass)) == "pass");
  CHECK(std::string(to_string(Verdict::kHold)) == "hold");
  CHECK(std::string(to_string(Verdict::kFail)) == "fail");
}

TEST_CASE("health/guard: DecisionLog keeps the newest `capacity` entries") {
  struct Case {
    size_t capacity, added;
  };
  for (Case c : {Case{3, 0}, Case{3, 2}, Case{3, 3}, Case{3, 10}, Case{1, 5}, Case{256, 300}}) {
    CAPTURE(c.capacity);
    CAPTURE(c.added);
    DecisionLog log(c.capacity);
    for (uint64_t i = 0; i < c.added; ++i) {
      Evaluation e;
      e.at_ms = i;
      log.add(std::move(e));
    }
    const size_t kept = std::min(c.capacity, c.added);
    REQUIRE(log.entries().size() == kept);
    if (kept) {
      CHECK(log.entries().front().at_ms == c.added - kept);
      CHECK(log.entries().back().at_ms == c.added - 1);
    }
  }
  DecisionLog by_default;
  for (int i = 0; i < 300; ++i) by_default.add(Evaluation{});
  CHECK(by_default.entries().size() == 256);
}

TEST_CASE("health/guard: DecisionLog::to_json round-trips through a JSON parser") {
  GuardSettings s = settings(100, 2);
  s.window_s = 60;
  s.max_error_rate = 0.05;
  s.max_p99_ms = 250;
  VersionGuard g("v2");
  DecisionLog log;
  log.add(g.evaluate(s, summary(10, 0), kStable, 2, 1000));
  log.add(g.evaluate(s, kBad, kStable, 2, 2000));
  Summary cut = summary(1000, 500, 2000, 300'000);
  cut.failures = {3, 2, 1};
  log.add(g.evaluate(s, cut, kStable, 2, 3000));

  const auto j = nlohmann::json::parse(log.to_json("checkout", s));
  CHECK(j["service"] == "checkout");
  const auto& t = j["thresholds"];
  CHECK(t["window_s"] == 60);
  CHECK(t["min_requests"] == 100);
  CHECK(t["max_error_rate"] == doctest::Approx(0.05));
  // Not set: null, not the -1 / 0 that mean "off" inside.
  CHECK(t["max_error_rate_increase"].is_null());
  CHECK(t["max_p99_ms"] == 250);
  CHECK(t["max_p50_ms"].is_null());
  CHECK(t["max_p99_ratio"].is_null());
  CHECK(t["confidence"] == doctest::Approx(0.95));
  CHECK(t["consecutive"] == 2);

  const auto& d = j["decisions"];
  REQUIRE(d.is_array());
  REQUIRE(d.size() == 3);
  struct Expect {
    uint64_t at_ms;
    const char* verdict;
    uint32_t breaches;
    bool reverted;
    size_t reasons;
  };
  const Expect expect[] = {
      {1000, "hold", 0, false, 1}, {2000, "fail", 1, false, 1}, {3000, "fail", 2, true, 2}};
  for (size_t i = 0; i < 3; ++i) {
    CAPTURE(i);
    CHECK(d[i]["at_ms"] == expect[i].at_ms);
    CHECK(d[i]["version"] == "v2");
    CHECK(d[i]["verdict"] == expect[i].verdict);
    CHECK(d[i]["breaches_in_a_row"] == expect[i].breaches);
    CHECK(d[i]["reverted"] == expect[i].reverted);
    CHECK(d[i]["reasons"].size() == expect[i].reasons);
    CHECK(d[i]["stable"]["completed"] == kStable.completed);
  }
  const auto& c = d[2]["canary"];
  CHECK(c["window_s"] == 30);
  CHECK(c["requests"] == 1000);
  CHECK(c["completed"] == 1000);
  CHECK(c["errors"] == 500);
  CHECK(c["error_rate"] == doctest::Approx(0.5));
  CHECK(c["failures"]["connect"] == 3);
  CHECK(c["failures"]["reset"] == 2);
  CHECK(c["failures"]["timeout"] == 1);
  CHECK(c["p50_ms"] == doctest::Approx(2.0));
  CHECK(c["p90_ms"] == doctest::Approx(2.0));
  CHECK(c["p99_ms"] == doctest::Approx(300.0));
  CHECK(d[2]["reasons"][1].get<std::string>().find("max_p99_ms 250") != std::string::npos);
}

TEST_CASE("health/guard: DecisionLog::to_json gives an empty window null figures") {
  GuardSettings s = settings(100, 2);
  s.max_error_rate_increase = 0.01;
  s.max_p50_ms = 20;
  s.max_p99_ratio = 1.5;
  VersionGuard g("v2");
  DecisionLog log;
  log.add(g.evaluate(s, summary(0, 0), summary(0, 0), 2, 1000));
  const auto j = nlohmann::json::parse(log.to_json("svc", s));
  const auto& t = j["thresholds"];
  CHECK(t["max_error_rate_increase"] == doctest::Approx(0.01));
  CHECK(t["max_p50_ms"] == 20);
  CHECK(t["max_p99_ratio"] == doctest::Approx(1.5));
  for (const char* side : {"canary", "stable"}) {
    CAPTURE(side);
    const auto& w = j["decisions"][0][side];
    CHECK(w["completed"] == 0);
    for (const char* key : {"error_rate", "p50_ms", "p90_ms", "p99_ms"}) {
      CAPTURE(key);
      CHECK(w[key].is_null());
    }
  }
}

TEST_CASE("health/guard: an empty DecisionLog is valid JSON with no decisions") {
  const auto j = nlohmann::json::parse(DecisionLog().to_json("svc", settings()));
  CHECK(j["decisions"].is_array());
  CHECK(j["decisions"].empty());
}

}  // namespace weir::health

namespace weir::health {
namespace {

Summary with_latency(uint64_t n, uint64_t lo_us, uint64_t hi_us) {
  Summary s = summary(n, 0);
  std::vector<uint64_t> dense(Histogram::kBuckets);
  for (uint64_t i = 0; i < n; ++i) dense[Histogram::index(lo_us + (hi_us - lo_us) * i / n)]++;
  for (size_t i = 0; i < dense.size(); ++i) {
    if (dense[i]) s.latency.emplace_back(static_cast<uint32_t>(i), dense[i]);
  }
  s.p50_us = Histogram::percentile(dense, 0.5);
  s.p99_us = Histogram::percentile(dense, 0.99);
  return s;
}

TEST_CASE("guard: Mann-Whitney latency fails only when significantly and materially slower") {
  GuardSettings s = settings(100, 1);
  s.min_latency_increase_ms = 5;
  VersionGuard g("canary");
  // 5 -> 6 ms: significant, below the 5 ms floor.
  Evaluation e = g.evaluate(s, with_latency(1000, 5500, 6500), with_latency(1000, 4500, 5500),
                            1, 0);
  CHECK(e.verdict == Verdict::kPass);
  REQUIRE(e.latency);
  CHECK(e.latency->p < 0.02);
  // 50 -> 80 ms: fails, and says how.
  e = g.evaluate(s, with_latency(500, 70000, 90000), with_latency(500, 40000, 60000), 1, 0);
  CHECK(e.verdict == Verdict::kFail);
  REQUIRE(e.reasons.size() == 1);
  CHECK(e.reasons[0].find("Mann-Whitney U") != std::string::npos);
  CHECK(e.reasons[0].find("p ") != std::string::npos);
  CHECK(e.reasons[0].find("+30.") != std::string::npos);
  // Too few stable requests: the comparison is not made.
  e = g.evaluate(s, with_latency(500, 70000, 90000), with_latency(50, 40000, 60000), 1, 0);
  CHECK_FALSE(e.latency);
  CHECK(e.verdict == Verdict::kPass);
  // A higher confidence than the evidence: a tiny sample does not fail.
  s.min_requests = 5;
  e = g.evaluate(s, with_latency(6, 50000, 52000), with_latency(6, 49000, 51000), 1, 0);
  CHECK(e.verdict == Verdict::kPass);
}

TEST_CASE("guard: dry-run rules are recorded, never make the verdict, would revert once") {
  GuardSettings s = settings(100, 2);
  s.max_p99_ms = 10;
  s.max_error_rate = 0.01;
  s.dry_run = {"max_p99_ms"};
  VersionGuard g("canary");
  Evaluation e = g.evaluate(s, summary(1000, 0, 1000, 50000), summary(1000, 0), 1, 0);
  CHECK(e.verdict == Verdict::kPass);
  REQUIRE(e.dry_reasons.size() == 1);
  CHECK(e.dry_reasons[0].find("[dry run] p99 50.0 ms above max_p99_ms 10") == 0);
  CHECK_FALSE(e.would_revert);
  e = g.evaluate(s, summary(1000, 0, 1000, 50000), summary(1000, 0), 1, 0);
  CHECK(e.would_revert);
  CHECK_FALSE(e.reverted);
  e = g.evaluate(s, summary(1000, 0, 1000, 50000), summary(1000, 0), 1, 0);
  CHECK_FALSE(e.would_revert);  // once per run of breaches
  CHECK(e.dry_breaches_in_a_row == 3);
  // An enforced rule still fails and reverts.
  e = g.evaluate(s, summary(1000, 200), summary(1000, 0), 1, 0);
  e = g.evaluate(s, summary(1000, 200), summary(1000, 0), 1, 0);
  CHECK(e.reverted);
  // The whole guard dry: even a failing error rate only would revert.
  GuardSettings all = settings(100, 1);
  all.max_error_rate = 0.01;
  all.dry_run_all = true;
  VersionGuard h("canary");
  e = h.evaluate(all, summary(1000, 200), summary(1000, 0), 1, 0);
  CHECK(e.verdict == Verdict::kPass);
  CHECK(e.would_revert);
  CHECK_FALSE(e.reverted);
  const auto j = nlohmann::json::parse([&] {
    DecisionLog log;
    log.add(e);
    return log.to_json("shop", all);
  }());
  CHECK(j["thresholds"]["dry_run"] == true);
  CHECK(j["decisions"][0]["dry_run"]["would_revert"] == true);
}

TEST_CASE("guard: a pass is significant only when the error-rate bounds are inside the limits") {
  GuardSettings s = settings(100, 3);
  s.max_error_rate = 0.05;
  VersionGuard g("canary");
  // 0 of 100: the upper bound at 95% is about 2.6%: significant.
  CHECK(g.evaluate(s, summary(100, 0), summary(100, 0), 1, 0).significant);
  // 3 of 100 passes (the lower bound is under 5%) but the upper bound is above: not yet.
  Evaluation e = g.evaluate(s, summary(100, 3), summary(100, 0), 1, 0);
  CHECK(e.verdict == Verdict::kPass);
  CHECK_FALSE(e.significant);
  // Without an error-rate rule nothing is significant.
  CHECK_FALSE(g.evaluate(settings(), summary(1000, 0), summary(1000, 0), 1, 0).significant);
}

}  // namespace
}  // namespace weir::health
