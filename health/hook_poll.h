// One polled hook at one gate of a rollout (confirm-*, pre-rollout, rollback, rollout hooks):
// when the next call is due and what its answers add up to. Pure: the caller makes the calls and
// passes the time in, so gates are tested on an injected clock.
#pragma once

#include <cstdint>
#include <string>

namespace weir::health {

class HookPoll {
 public:
  enum class Kind : uint8_t {
    kConfirm,     // passed at the first 2xx; waits until then
    kPreRollout,  // passed at the first 2xx; failed after `threshold` failed calls
    kRollback,    // triggered (kPassed) at the first 2xx
    kRollout,     // the latest answer: 2xx passes, anything else fails; called every interval
  };
  enum class Outcome : uint8_t { kPending, kPassed, kFailed };

  HookPoll(Kind kind, uint32_t interval_ms, uint32_t threshold = 1)
      : kind_(kind), interval_ms_(interval_ms), threshold_(threshold ? threshold : 1) {}

  // Starts over for the gate named `key` (a rollout's run and step); nothing when it is the same.
  void arm(const std::string& key);
  const std::string& key() const { return key_; }
  // Whether a call should start now: none under way, the outcome still open (a rollout hook's
  // never closes) and `interval_ms` since the last call started.
  bool due(uint64_t now_ms) const;
  void started(uint64_t now_ms);
  // The call's answer: `ok` for a 2xx; `summary` says what came back ("503 in 12 ms").
  void answered(bool ok, std::string summary);

  Outcome outcome() const { return outcome_; }
  bool in_flight() const { return in_flight_; }
  uint32_t calls() const { return calls_; }
  uint32_t failures() const { return failures_; }
  const std::string& last() const { return last_; }

 private:
  Kind kind_;
  uint32_t interval_ms_;
  uint32_t threshold_;
  std::string key_;
  Outcome outcome_ = Outcome::kPending;
  bool in_flight_ = false;
  bool started_once_ = false;
  uint64_t last_start_ms_ = 0;
  uint32_t calls_ = 0, failures_ = 0;
  std::string last_;
};

}  // namespace weir::health
