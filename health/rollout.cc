#include "health/rollout.h"

namespace weir::health {

const char* to_string(RolloutState s) {
  switch (s) {
    case RolloutState::kIdle: return "idle";
    case RolloutState::kRunning: return "running";
    case RolloutState::kPaused: return "paused";
    case RolloutState::kPromoted: return "promoted";
    case RolloutState::kAborted: return "aborted";
  }
  return "?";
}

Rollout::Action Rollout::enter_step(size_t i, uint64_t now_ms, std::string why) {
  step_ = i;
  step_started_ms_ = now_ms;
  passing_since_ms_ = 0;
  reason_ = why;
  Action a;
  if (plan_.steps[i] >= 100) {
    state_ = RolloutState::kPromoted;
    a.promote = true;
  } else {
    a.change = true;
    a.weight = plan_.steps[i];
  }
  a.why = std::move(why);
  return a;
}

Rollout::Action Rollout::start(uint64_t now_ms, std::string* error) {
  if (state_ == RolloutState::kRunning || state_ == RolloutState::kPaused) {
    *error = "the rollout is already " + std::string(to_string(state_));
    return {};
  }
  state_ = RolloutState::kRunning;
  return enter_step(0, now_ms, "rollout started");
}

Rollout::Action Rollout::pause(std::string* error) {
  if (state_ != RolloutState::kRunning) {
    *error = "only a running rollout can be paused (it is " + std::string(to_string(state_)) + ")";
    return {};
  }
  state_ = RolloutState::kPaused;
  reason_ = "paused by an operator";
  return {};
}

Rollout::Action Rollout::resume(uint64_t now_ms, std::string* error) {
  if (state_ != RolloutState::kPaused) {
    *error = "only a paused rollout can be resumed (it is " + std::string(to_string(state_)) + ")";
    return {};
  }
  state_ = RolloutState::kRunning;
  // The step's bake time starts again: what happened while paused does not count.
  step_started_ms_ = now_ms;
  passing_since_ms_ = 0;
  reason_ = "resumed";
  return {};
}

Rollout::Action Rollout::abort(const std::string& why) {
  Action a;
  if (state_ == RolloutState::kRunning || state_ == RolloutState::kPaused) {
    state_ = RolloutState::kAborted;
    reason_ = why;
    a.change = true;
    a.weight = 0;
    a.why = why;
  }
  return a;
}

Rollout::Action Rollout::promote(std::string* error) {
  if (state_ == RolloutState::kPromoted) {
    *error = "the rollout is already promoted";
    return {};
  }
  state_ = RolloutState::kPromoted;
  reason_ = "promoted by an operator";
  Action a;
  a.promote = true;
  a.why = reason_;
  return a;
}

bool Rollout::restore(const Position& p) {
  if (p.step >= plan_.steps.size()) return false;
  if (state_ != p.state || step_ != p.step || step_started_ms_ != p.step_started_ms)
    passing_since_ms_ = 0;
  state_ = p.state;
  step_ = p.step;
  step_started_ms_ = p.step_started_ms;
  reason_ = p.reason;
  return true;
}

Rollout::Action Rollout::on_verdict(Verdict v, uint64_t now_ms) {
  if (state_ != RolloutState::kRunning) return {};
  if (v == Verdict::kPass) {
    if (passing_since_ms_ == 0) passing_since_ms_ = now_ms;
  } else {
    passing_since_ms_ = 0;  // a hold or a failure: the step has to pass again from here
  }
  const uint64_t step_ms = uint64_t{plan_.step_s} * 1000;
  if (passing_since_ms_ != 0 && now_ms - passing_since_ms_ >= step_ms &&
      now_ms - step_started_ms_ >= step_ms) {
    return enter_step(step_ + 1, now_ms,
                      "step " + std::to_string(step_ + 1) + " passed for " +
                          std::to_string(plan_.step_s) + " s");
  }
  if (now_ms - step_started_ms_ >= uint64_t{plan_.max_step_s} * 1000) {
    state_ = RolloutState::kPaused;
    reason_ = "paused: the guard did not pass a whole step within max_step_s (" +
              std::to_string(plan_.max_step_s) + " s); an operator decides";
  }
  return {};
}

}  // namespace weir::health
