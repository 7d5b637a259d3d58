#include "health/guard.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

namespace weir::health {

const char* to_string(Verdict v) {
  switch (v) {
    case Verdict::kPass: return "pass";
    case Verdict::kHold: return "hold";
    case Verdict::kFail: return "fail";
  }
  return "?";
}

double normal_quantile(double p) {
  double lo = -10, hi = 10;
  for (int i = 0; i < 100; ++i) {
    double mid = (lo + hi) / 2;
    double cdf = 0.5 * std::erfc(-mid / std::sqrt(2.0));
    (cdf < p ? lo : hi) = mid;
  }
  return (lo + hi) / 2;
}

namespace {

// The Wilson score interval's centre and half-width, both scaled by 1 / (1 + z^2 / n).
std::pair<double, double> wilson(uint64_t errors, uint64_t n, double z) {
  const double nn = static_cast<double>(n);
  const double p = static_cast<double>(errors) / nn;
  const double z2 = z * z;
  const double scale = 1 + z2 / nn;
  return {(p + z2 / (2 * nn)) / scale,
          z * std::sqrt(p * (1 - p) / nn + z2 / (4 * nn * nn)) / scale};
}

}  // namespace

double wilson_lower(uint64_t errors, uint64_t n, double z) {
  // With no errors the bound is exactly 0; computed, centre - margin leaves a rounding crumb
  // (~1e-17) that would fail max_error_rate = 0.
  if (n == 0 || errors == 0) return 0;
  auto [centre, margin] = wilson(errors, n, z);
  return std::max(0.0, centre - margin);
}

double wilson_upper(uint64_t errors, uint64_t n, double z) {
  if (n == 0) return 1;
  auto [centre, margin] = wilson(errors, n, z);
  return std::min(1.0, centre + margin);
}

namespace {

// Standard error of the difference of two error rates (unpooled).
double difference_se(const Summary& canary, const Summary& stable) {
  const double pc = canary.error_rate, ps = stable.error_rate;
  return std::sqrt(pc * (1 - pc) / static_cast<double>(canary.completed) +
                   ps * (1 - ps) / static_cast<double>(stable.completed));
}

template <typename... Args>
std::string fmt(const char* f, Args... args) {
  char buf[512];
  std::snprintf(buf, sizeof buf, f, args...);
  return buf;
}

}  // namespace

Evaluation VersionGuard::evaluate(const GuardSettings& s, const Summary& canary,
                                  const Summary& stable, uint32_t healthy_endpoints,
                                  uint64_t now_ms, const std::vector<ExternalCheck>& checks) {
  Evaluation e;
  e.at_ms = now_ms;
  e.version = version_;
  e.canary = canary;
  e.stable = stable;
  e.checks = checks;
  const bool external_fail = std::any_of(checks.begin(), checks.end(), [](const ExternalCheck& c) {
    return c.verdict == Verdict::kFail;
  });
  // A breach of `rule`: it makes the verdict, unless the rule runs dry.
  auto breach = [&](std::string_view rule, std::string text) {
    if (s.is_dry(rule)) {
      e.dry_reasons.push_back("[dry run] " + text);
    } else {
      e.reasons.push_back(std::move(text));
    }
  };
  if (healthy_endpoints == 0) {
    breach("healthy_endpoints", "no healthy endpoint");
  } else if (canary.completed < s.min_requests && !external_fail) {
    // Too little traffic to judge either way: neither pass nor fail.
    e.verdict = Verdict::kHold;
    e.reasons.push_back(fmt("%llu requests in the window, below min_requests %llu",
                            static_cast<unsigned long long>(canary.completed),
                            static_cast<unsigned long long>(s.min_requests)));
    for (const auto& c : checks) {
      if (c.verdict == Verdict::kHold) e.reasons.push_back(c.name + ": " + c.reason);
    }
    e.breaches_in_a_row = breaches_;
    e.dry_breaches_in_a_row = dry_breaches_;
    return e;
  } else if (canary.completed >= s.min_requests) {
    const double z = normal_quantile(s.confidence);
    if (s.max_error_rate >= 0) {
      // Significant only when even the interval's lower bound is above the limit.
      double lower = wilson_lower(canary.errors, canary.completed, z);
      if (lower > s.max_error_rate) {
        breach("max_error_rate",
               fmt("error rate %.4f (lower bound %.4f) above max_error_rate %.4f",
                   canary.error_rate, lower, s.max_error_rate));
      }
    }
    if (s.max_error_rate_increase >= 0 && stable.completed > 0) {
      // One-sided two-proportion z-test of canary - stable > allowed increase.
      const double pc = canary.error_rate, ps = stable.error_rate;
      const double se = difference_se(canary, stable);
      const double diff = pc - ps - s.max_error_rate_increase;
      const bool breached = se > 0 ? diff / se > z : diff > 0;
      if (breached) {
        breach("max_error_rate_increase",
               fmt("error rate %.4f vs stable %.4f: increase above max_error_rate_increase "
                   "%.4f (z %.2f)", pc, ps, s.max_error_rate_increase,
                   se > 0 ? diff / se : 0.0));
      }
    }
    const double p99_ms = static_cast<double>(canary.p99_us) / 1000.0;
    const double p50_ms = static_cast<double>(canary.p50_us) / 1000.0;
    if (s.max_p99_ms && p99_ms > s.max_p99_ms) {
      breach("max_p99_ms", fmt("p99 %.1f ms above max_p99_ms %u", p99_ms, s.max_p99_ms));
    }
    if (s.max_p50_ms && p50_ms > s.max_p50_ms) {
      breach("max_p50_ms", fmt("p50 %.1f ms above max_p50_ms %u", p50_ms, s.max_p50_ms));
    }
    if (s.max_p99_ratio > 0 && stable.completed >= s.min_requests && stable.p99_us > 0) {
      double ratio = static_cast<double>(canary.p99_us) / static_cast<double>(stable.p99_us);
      if (ratio > s.max_p99_ratio) {
        breach("max_p99_ratio",
               fmt("p99 %.2fx stable's, above max_p99_ratio %.2f", ratio, s.max_p99_ratio));
      }
    }
    if (s.min_latency_increase_ms >= 0 && stable.completed >= s.min_requests) {
      // Slower only when both significantly (the rank test) and materially (the medians).
      const MannWhitney m = mann_whitney(canary.latency, stable.latency);
      e.latency = m;
      const double alpha = 1 - s.latency_confidence;
      if (m.p < alpha && m.effect_ms() >= s.min_latency_increase_ms) {
        breach("min_latency_increase_ms",
               fmt("slower than stable: Mann-Whitney U %.0f (expected %.0f, z %.2f), p %.2g < "
                   "%.2g (latency_confidence %.4g); median %.1f ms vs %.1f ms, +%.1f ms at or "
                   "above min_latency_increase_ms %g",
                   m.u, m.mean, m.z, m.p, alpha, s.latency_confidence, m.median_canary_ms,
                   m.median_stable_ms, m.effect_ms(), s.min_latency_increase_ms));
      }
    }
  }
  for (const auto& c : checks) {
    if (c.verdict == Verdict::kFail) breach(c.name, c.name + ": " + c.reason);
  }
  if (e.dry_reasons.empty()) {
    dry_breaches_ = 0;
  } else {
    ++dry_breaches_;
    // Once per run of breaches, as a real revert would happen once.
    e.would_revert = dry_breaches_ == s.consecutive;
  }
  e.dry_breaches_in_a_row = dry_breaches_;
  if (e.reasons.empty() && std::any_of(checks.begin(), checks.end(), [](const ExternalCheck& c) {
        return c.verdict == Verdict::kHold;
      })) {
    // The built-in rules pass but a check cannot say: neither a pass nor a breach.
    e.verdict = Verdict::kHold;
    for (const auto& c : checks) {
      if (c.verdict == Verdict::kHold) e.reasons.push_back(c.name + ": " + c.reason);
    }
    e.breaches_in_a_row = breaches_;
    return e;
  }
  if (e.reasons.empty()) {
    e.verdict = Verdict::kPass;
    breaches_ = 0;
    e.reasons.push_back("all thresholds met");
    const double z = normal_quantile(s.confidence);
    bool sure = s.max_error_rate >= 0 || s.max_error_rate_increase >= 0;
    if (s.max_error_rate >= 0)
      sure = sure && wilson_upper(canary.errors, canary.completed, z) <= s.max_error_rate;
    if (s.max_error_rate_increase >= 0) {
      const double pc = canary.error_rate, ps = stable.error_rate;
      const double se = stable.completed ? difference_se(canary, stable) : 1;
      sure = sure && stable.completed > 0 && pc - ps + z * se <= s.max_error_rate_increase;
    }
    e.significant = sure && healthy_endpoints > 0;
  } else {
    e.verdict = Verdict::kFail;
    ++breaches_;
    e.reverted = breaches_ >= s.consecutive;
  }
  e.breaches_in_a_row = breaches_;
  return e;
}

void DecisionLog::add(Evaluation e) {
  entries_.push_back(std::move(e));
  while (entries_.size() > capacity_) entries_.pop_front();
}

namespace {

// A window with no completed request has no rate or latency: null, not 0.
nlohmann::json summary_json(const Summary& s) {
  const bool answered = s.completed > 0;
  auto figure = [answered](double v) { return answered ? nlohmann::json(v) : nlohmann::json(); };
  return {{"window_s", s.window_s},
          {"requests", s.requests},
          {"completed", s.completed},
          {"errors", s.errors},
          {"error_rate", figure(s.error_rate)},
          {"failures", {{"connect", s.failures[0]}, {"reset", s.failures[1]},
                        {"timeout", s.failures[2]}}},
          {"p50_ms", figure(static_cast<double>(s.p50_us) / 1000.0)},
          {"p90_ms", figure(static_cast<double>(s.p90_us) / 1000.0)},
          {"p99_ms", figure(static_cast<double>(s.p99_us) / 1000.0)}};
}

}  // namespace

std::string DecisionLog::to_json(const std::string& service, const GuardSettings& s) const {
  // A threshold that is not set is null, not its "off" sentinel (-1 or 0).
  auto limit = [](auto v, bool set) { return set ? nlohmann::json(v) : nlohmann::json(); };
  nlohmann::json out;
  out["service"] = service;
  out["thresholds"] = {{"window_s", s.window_s},
                       {"min_requests", s.min_requests},
                       {"max_error_rate", limit(s.max_error_rate, s.max_error_rate >= 0)},
                       {"max_error_rate_increase",
                        limit(s.max_error_rate_increase, s.max_error_rate_increase >= 0)},
                       {"max_p99_ms", limit(s.max_p99_ms, s.max_p99_ms > 0)},
                       {"max_p50_ms", limit(s.max_p50_ms, s.max_p50_ms > 0)},
                       {"max_p99_ratio", limit(s.max_p99_ratio, s.max_p99_ratio > 0)},
                       {"confidence", s.confidence},
                       {"consecutive", s.consecutive},
                       {"min_latency_increase_ms", s.min_latency_increase_ms},
                       {"latency_confidence", s.latency_confidence}};
  if (s.dry_run_all) {
    out["thresholds"]["dry_run"] = true;
  } else if (!s.dry_run.empty()) {
    out["thresholds"]["dry_run"] = s.dry_run;
  }
  nlohmann::json list = nlohmann::json::array();
  for (const auto& e : entries_) {
    nlohmann::json d = {{"at_ms", e.at_ms},
                        {"version", e.version},
                        {"verdict", to_string(e.verdict)},
                        {"reasons", e.reasons},
                        {"breaches_in_a_row", e.breaches_in_a_row},
                        {"reverted", e.reverted},
                        {"significant", e.significant},
                        {"canary", summary_json(e.canary)},
                        {"stable", summary_json(e.stable)}};
    if (e.latency) {
      const MannWhitney& m = *e.latency;
      d["latency_test"] = {{"test", "mann-whitney-u"},
                           {"u", m.u},
                           {"expected_u", m.mean},
                           {"z", m.z},
                           {"p_value", m.p},
                           {"median_ms", m.median_canary_ms},
                           {"stable_median_ms", m.median_stable_ms},
                           {"effect_ms", m.effect_ms()}};
    }
    if (!e.dry_reasons.empty() || e.dry_breaches_in_a_row) {
      d["dry_run"] = {{"breaches", e.dry_reasons},
                      {"breaches_in_a_row", e.dry_breaches_in_a_row},
                      {"would_revert", e.would_revert}};
    }
    if (!e.checks.empty()) {
      nlohmann::json checks = nlohmann::json::array();
      for (const auto& c : e.checks)
        checks.push_back({{"name", c.name}, {"verdict", to_string(c.verdict)}, {"reason", c.reason}});
      d["checks"] = std::move(checks);
    }
    list.push_back(std::move(d));
  }
  out["decisions"] = std::move(list);
  return out.dump();
}

}  // namespace weir::health
