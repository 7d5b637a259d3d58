// The guard's decision for one non-stable version, from window summaries of that version and of
// stable over the same window. Pure: no clock of its own (times are passed in), no I/O, so a
// 30-second window is tested in microseconds.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "health/mann_whitney.h"
#include "health/stats_window.h"

namespace weir::health {

// The thresholds come straight from the config's [service.guard] table.
using GuardSettings = config::GuardConfig;

enum class Verdict : uint8_t { kPass, kHold, kFail };
const char* to_string(Verdict v);

// A check the guard does not compute from its windows (a Prometheus KPI query, a rollout hook),
// judged together with the built-in rules: a fail is a breach like theirs (even below
// min_requests: the check has data of its own), a hold keeps a pass from counting.
struct ExternalCheck {
  std::string name;  // "query checkout", "rollout hook smoke"
  Verdict verdict = Verdict::kHold;
  std::string reason;
};

struct Evaluation {
  uint64_t at_ms = 0;
  std::string version;
  Verdict verdict = Verdict::kHold;
  std::vector<std::string> reasons;  // every breached rule with its figures, or why hold/pass
  Summary canary;
  Summary stable;
  uint32_t breaches_in_a_row = 0;
  bool reverted = false;  // this evaluation triggered the revert
  std::vector<ExternalCheck> checks;  // the external checks it judged
  // A pass with confidence, not just no breach (a rollout's success_after): every error-rate
  // rule configured holds at the upper bound of its interval (see health/rollout.h).
  bool significant = false;
  // The latency test against stable, when min_latency_increase_ms is set and both versions had
  // min_requests.
  std::optional<MannWhitney> latency;
  // Dry run: breaches of dry-run rules (they do not make the verdict), their run, and whether
  // this evaluation is the one that would have reverted.
  std::vector<std::string> dry_reasons;
  uint32_t dry_breaches_in_a_row = 0;
  bool would_revert = false;
};

// z such that P(Z <= z) = p for a standard normal (bisection on erfc; p in (0,1)).
double normal_quantile(double p);
// Lower bound of the Wilson score interval for `errors` of `n` at one-sided confidence z.
double wilson_lower(uint64_t errors, uint64_t n, double z);
// Upper bound of the same interval.
double wilson_upper(uint64_t errors, uint64_t n, double z);

class VersionGuard {
 public:
  explicit VersionGuard(std::string version) : version_(std::move(version)) {}

  // One evaluation; `healthy_endpoints` of the version (0 = fail: nothing can serve it).
  Evaluation evaluate(const GuardSettings& s, const Summary& canary, const Summary& stable,
                      uint32_t healthy_endpoints, uint64_t now_ms,
                      const std::vector<ExternalCheck>& checks = {});
  uint32_t breaches_in_a_row() const { return breaches_; }
  void reset() { breaches_ = 0, dry_breaches_ = 0; }

 private:
  std::string version_;
  uint32_t breaches_ = 0;
  uint32_t dry_breaches_ = 0;
};

// A bounded history of decisions per service, for /explain.
class DecisionLog {
 public:
  explicit DecisionLog(size_t capacity = 256) : capacity_(capacity) {}
  void add(Evaluation e);
  const std::deque<Evaluation>& entries() const { return entries_; }
  std::string to_json(const std::string& service, const GuardSettings& s) const;

 private:
  size_t capacity_;
  std::deque<Evaluation> entries_;
};

}  // namespace weir::health
