// The state machine of one endpoint's active health check: consecutive passes and failures
// against the thresholds, the expected statuses, and when the next probe is due. Pure: the
// caller (proxy/health_prober.cc on the control thread) does the I/O and passes the clock in.
#pragma once

#include <cstdint>
#include <string>

#include "config/config.h"

namespace weir::health {

// true when `status` is in one of the policy's expected ranges (2xx when none are given).
bool status_expected(const config::HealthCheck& policy, int status);

class ActiveCheck {
 public:
  // Endpoints start healthy: a fresh endpoint serves at once, and the first failures count
  // towards unhealthy_threshold like any others.
  explicit ActiveCheck(const config::HealthCheck& policy) : policy_(policy) {}

  // Records one probe outcome; true when the endpoint's state flipped (see healthy()).
  // `reason` says what the probe saw ("status 503", "timeout after 100 ms", ...).
  bool record(bool passed, const std::string& reason, uint64_t now_ms);

  bool healthy() const { return healthy_; }
  // When the next probe is due after one that ended at `now_ms`; `random` spreads probes
  // over [interval, interval + jitter].
  uint64_t next_probe_at(uint64_t now_ms, uint64_t random) const;
  // What the last state change was based on, e.g. "3 consecutive failures, last: status 503".
  const std::string& why() const { return why_; }
  uint64_t changed_at_ms() const { return changed_at_ms_; }
  const config::HealthCheck& policy() const { return policy_; }

 private:
  config::HealthCheck policy_;
  bool healthy_ = true;
  uint32_t passes_ = 0;    // consecutive
  uint32_t failures_ = 0;  // consecutive
  uint64_t changed_at_ms_ = 0;
  std::string why_;
};

}  // namespace weir::health
