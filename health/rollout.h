// A progressive rollout of one version: weight steps, each held for a bake time and gated by the
// guard's verdicts, ending in promotion (the version becomes stable) or abort. Pure state
// machine: the control thread feeds it verdicts and the time, and applies the weights it asks
// for.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/config.h"
#include "health/guard.h"

namespace weir::health {

enum class RolloutState : uint8_t { kIdle, kRunning, kPaused, kPromoted, kAborted };
const char* to_string(RolloutState s);

class Rollout {
 public:
  explicit Rollout(config::RolloutConfig plan) : plan_(std::move(plan)) {}

  // What the caller must do to the service's weights after a call.
  struct Action {
    bool change = false;    // set `weight` on the rollout's version, 100 - weight on stable
    uint32_t weight = 0;
    bool promote = false;   // make the version stable with all traffic
    std::string why;
  };

  // Operator controls; each returns the action, or an error text in `*error` (state unchanged).
  Action start(uint64_t now_ms, std::string* error);
  Action pause(std::string* error);
  Action resume(uint64_t now_ms, std::string* error);
  Action abort(const std::string& why);
  Action promote(std::string* error);

  // One guard evaluation of the rollout's version.
  Action on_verdict(Verdict v, uint64_t now_ms);

  // Where the rollout is, to save and restore (another process may continue it). The run of
  // passes within a step is not part of it: a restored step has to pass again from there.
  struct Position {
    RolloutState state = RolloutState::kIdle;
    size_t step = 0;
    uint64_t step_started_ms = 0;
    std::string reason;
  };
  Position position() const { return {state_, step_, step_started_ms_, reason_}; }
  // false when `p` does not fit this plan (a step past its end): then nothing changes.
  bool restore(const Position& p);

  RolloutState state() const { return state_; }
  uint64_t step_started_ms() const { return step_started_ms_; }
  uint64_t passing_since_ms() const { return passing_since_ms_; }
  size_t step() const { return step_; }
  uint32_t weight() const { return state_ == RolloutState::kIdle ? 0 : plan_.steps[step_]; }
  const config::RolloutConfig& plan() const { return plan_; }
  const std::string& last_reason() const { return reason_; }

 private:
  Action enter_step(size_t i, uint64_t now_ms, std::string why);

  config::RolloutConfig plan_;
  RolloutState state_ = RolloutState::kIdle;
  size_t step_ = 0;
  uint64_t step_started_ms_ = 0;
  uint64_t passing_since_ms_ = 0;  // start of the current unbroken run of passes; 0 = none
  std::string reason_;
};

}  // namespace weir::health
