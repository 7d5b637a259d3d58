#include "health/active_check.h"

namespace weir::health {

bool status_expected(const config::HealthCheck& policy, int status) {
  if (policy.expected_status.empty()) return status >= 200 && status <= 299;
  for (const auto& r : policy.expected_status) {
    if (status >= r.lo && status <= r.hi) return true;
  }
  return false;
}

bool ActiveCheck::record(bool passed, const std::string& reason, uint64_t now_ms) {
  if (passed) {
    failures_ = 0;
    ++passes_;
    if (healthy_ || passes_ < policy_.healthy_threshold) return false;
    healthy_ = true;
    why_ = std::to_string(passes_) + " consecutive passes, last: " + reason;
  } else {
    passes_ = 0;
    ++failures_;
    if (!healthy_ || failures_ < policy_.unhealthy_threshold) return false;
    healthy_ = false;
    why_ = std::to_string(failures_) + " consecutive failures, last: " + reason;
  }
  changed_at_ms_ = now_ms;
  return true;
}

uint64_t ActiveCheck::next_probe_at(uint64_t now_ms, uint64_t random) const {
  uint64_t jitter = policy_.jitter_ms ? random % (uint64_t{policy_.jitter_ms} + 1) : 0;
  return now_ms + policy_.interval_ms + jitter;
}

}  // namespace weir::health
