#include "health/rollout.h"

#include <algorithm>

#include "health/change_window.h"

namespace weir::health {

const char* to_string(RolloutState s) {
  switch (s) {
    case RolloutState::kIdle: return "idle";
    case RolloutState::kRunning: return "running";
    case RolloutState::kWaiting: return "waiting";
    case RolloutState::kPaused: return "paused";
    case RolloutState::kPromoted: return "promoted";
    case RolloutState::kAborted: return "aborted";
  }
  return "?";
}

const char* to_string(Transition t) {
  switch (t) {
    case Transition::kNone: return "none";
    case Transition::kStart: return "start";
    case Transition::kIncrease: return "increase";
    case Transition::kPromotion: return "promotion";
    case Transition::kPause: return "pause";
  }
  return "?";
}

namespace {

bool active(RolloutState s) {
  return s == RolloutState::kRunning || s == RolloutState::kWaiting || s == RolloutState::kPaused;
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : "; ") + s;
  return out;
}

}  // namespace

uint32_t Rollout::weight_at(size_t i) const {
  for (size_t k = i + 1; k-- > 0;) {
    if (!plan_.steps[k].pause) return plan_.steps[k].weight;
  }
  return 0;
}

uint32_t Rollout::weight() const {
  if (state_ == RolloutState::kIdle || !entered_ || plan_.steps.empty()) return 0;
  return weight_at(step_);
}

Transition Rollout::next_transition() const {
  if (!active(state_) && state_ != RolloutState::kIdle && state_ != RolloutState::kAborted)
    return Transition::kNone;
  if (!active(state_) || !entered_) return Transition::kStart;
  if (step_ + 1 >= plan_.steps.size()) return Transition::kNone;
  const config::RolloutStep& next = plan_.steps[step_ + 1];
  if (next.pause) return Transition::kPause;
  return next.weight >= 100 ? Transition::kPromotion : Transition::kIncrease;
}

bool Rollout::needs_approval() const {
  if (plan_.approvals == 0 || !active(state_) || !entered_) return false;
  return plan_.steps[step_].pause || next_transition() == Transition::kPromotion;
}

Rollout::Position Rollout::position() const {
  Position p;
  p.state = state_;
  p.step = step_;
  p.step_started_ms = step_started_ms_;
  p.reason = reason_;
  p.entered = entered_;
  p.waiting_for = waiting_for_;
  p.waiting_since_ms = waiting_since_ms_;
  p.started_by = started_by_;
  p.approvals = approvals_;
  p.resumed = resumed_;
  return p;
}

bool Rollout::restore(const Position& p) {
  if (p.step >= plan_.steps.size()) return false;
  // The run of passes belongs to the step: a wait that began (or ended) keeps it.
  if (step_ != p.step || step_started_ms_ != p.step_started_ms || entered_ != p.entered) {
    passing_since_ms_ = 0;
    early_ = false;
  }
  state_ = p.state;
  step_ = p.step;
  step_started_ms_ = p.step_started_ms;
  reason_ = p.reason;
  entered_ = p.entered;
  waiting_for_ = p.waiting_for;
  waiting_since_ms_ = p.waiting_since_ms;
  started_by_ = p.started_by;
  approvals_ = p.approvals;
  resumed_ = p.resumed;
  return true;
}

Rollout::Action Rollout::enter_step(size_t i, uint64_t now_ms, std::string why) {
  Action a;
  a.approvals = std::move(approvals_);
  step_ = i;
  entered_ = true;
  step_started_ms_ = now_ms;
  passing_since_ms_ = 0;
  early_ = false;
  approvals_.clear();
  resumed_ = false;
  waiting_for_.clear();
  waiting_since_ms_ = 0;
  state_ = RolloutState::kRunning;
  reason_ = why;
  const config::RolloutStep& s = plan_.steps[i];
  if (s.pause) {
    a.event = "rollout_pause_step";
    if (s.pause_s == 0) {
      // Nothing to bake: the pause waits for its resume (and approvals) from the start.
      state_ = RolloutState::kWaiting;
      waiting_since_ms_ = now_ms;
      waiting_for_ = plan_holds(now_ms);
    }
  } else if (s.weight >= 100) {
    state_ = RolloutState::kPromoted;
    a.promote = true;
    a.event = "rollout_promote";
  } else {
    a.change = true;
    a.weight = s.weight;
    a.event = i == 0 ? "rollout_start" : "rollout_step";
  }
  a.why = std::move(why);
  return a;
}

Holds Rollout::plan_holds(uint64_t now_ms) const {
  Holds h;
  const Transition t = next_transition();
  const bool at_pause = entered_ && plan_.steps[step_].pause;
  if (at_pause && plan_.steps[step_].pause_s == 0 && !resumed_) {
    h.push_back("a resume: step " + std::to_string(step_ + 1) +
                " is a pause until an operator resumes it");
  }
  if (needs_approval() && approvals_.size() < plan_.approvals) {
    h.push_back(std::to_string(plan_.approvals - approvals_.size()) + " more approval" +
                (plan_.approvals - approvals_.size() == 1 ? "" : "s") + " from a token other than " +
                (started_by_.empty() ? "the starter's" : "\"" + started_by_ + "\"") +
                " (approvals = " + std::to_string(plan_.approvals) + ")");
  }
  if (t != Transition::kPause && t != Transition::kNone && !plan_.windows.empty()) {
    if (std::string closed = closed_windows(plan_.windows, now_ms); !closed.empty())
      h.push_back(closed);
  }
  return h;
}

Rollout::Action Rollout::gate(uint64_t now_ms, const Holds& holds) {
  if (state_ != RolloutState::kRunning && state_ != RolloutState::kWaiting) return {};
  std::string why;
  bool done = false;
  if (!entered_) {
    done = true;
    why = "rollout started";
  } else {
    const config::RolloutStep& s = plan_.steps[step_];
    const uint64_t bake_ms = uint64_t{plan_.bake_s(step_)} * 1000;
    if (s.pause) {
      done = s.pause_s == 0 || now_ms - step_started_ms_ >= bake_ms;
      why = s.pause_s == 0 ? "pause at step " + std::to_string(step_ + 1) + " resumed"
                           : "pause of " + std::to_string(s.pause_s) + " s at step " +
                                 std::to_string(step_ + 1) + " over";
    } else if (early_) {
      done = true;
      why = "step " + std::to_string(step_ + 1) + " passed early (success_after " +
            std::to_string(plan_.success_after) + " requests, significant)";
    } else {
      done = passing_since_ms_ != 0 && now_ms - passing_since_ms_ >= bake_ms &&
             now_ms - step_started_ms_ >= bake_ms;
      why = "step " + std::to_string(step_ + 1) + " passed for " +
            std::to_string(plan_.bake_s(step_)) + " s";
    }
    // A waiting step was done when the wait began (a failing verdict ends the wait).
    done = done || state_ == RolloutState::kWaiting;
    if (!done) {
      if (state_ == RolloutState::kRunning && !s.pause &&
          now_ms - step_started_ms_ >= uint64_t{plan_.max_step_s} * 1000) {
        state_ = RolloutState::kPaused;
        reason_ = "paused: the guard did not pass a whole step within max_step_s (" +
                  std::to_string(plan_.max_step_s) + " s); an operator decides";
        Action a;
        a.event = "rollout_pause";
        a.why = reason_;
        return a;
      }
      return {};
    }
  }
  Holds all = plan_holds(now_ms);
  all.insert(all.end(), holds.begin(), holds.end());
  if (all.empty()) {
    if (!entered_) return enter_step(0, now_ms, why);
    if (step_ + 1 >= plan_.steps.size()) return {};
    return enter_step(step_ + 1, now_ms, why);
  }
  Action a;
  if (state_ != RolloutState::kWaiting || all != waiting_for_) {
    a.event = "rollout_wait";
    a.why = "waiting for " + join(all);
  }
  if (state_ != RolloutState::kWaiting) waiting_since_ms_ = now_ms;
  state_ = RolloutState::kWaiting;
  waiting_for_ = std::move(all);
  reason_ = why + "; waiting for " + join(waiting_for_);
  return a;
}

Rollout::Action Rollout::start(uint64_t now_ms, std::string* error, const Holds& holds,
                               const std::string& actor) {
  if (active(state_)) {
    *error = "the rollout is already " + std::string(to_string(state_));
    return {};
  }
  if (plan_.steps.empty()) {
    *error = "the rollout has no steps";
    return {};
  }
  state_ = RolloutState::kRunning;
  step_ = 0;
  entered_ = false;
  started_by_ = actor;
  approvals_.clear();
  resumed_ = false;
  waiting_for_.clear();
  step_started_ms_ = now_ms;
  Action a = gate(now_ms, holds);
  if (a.event == "rollout_wait") a.event = "rollout_start";
  return a;
}

Rollout::Action Rollout::pause(std::string* error) {
  if (state_ != RolloutState::kRunning && state_ != RolloutState::kWaiting) {
    *error = "only a running or waiting rollout can be paused (it is " +
             std::string(to_string(state_)) + ")";
    return {};
  }
  state_ = RolloutState::kPaused;
  waiting_for_.clear();
  reason_ = "paused by an operator";
  Action a;
  a.event = "rollout_pause";
  return a;
}

Rollout::Action Rollout::resume(uint64_t now_ms, std::string* error, const Holds& holds) {
  if (state_ == RolloutState::kWaiting && entered_ && plan_.steps[step_].pause &&
      plan_.steps[step_].pause_s == 0 && !resumed_) {
    resumed_ = true;
    Action a = gate(now_ms, holds);
    if (a.event.empty() || a.event == "rollout_wait") a.event = "rollout_resume";
    return a;
  }
  if (state_ != RolloutState::kPaused) {
    *error = "only a paused rollout (or one at an indefinite pause step) can be resumed (it is " +
             std::string(to_string(state_)) +
             (state_ == RolloutState::kWaiting ? ", for " + join(waiting_for_) : "") + ")";
    return {};
  }
  state_ = RolloutState::kRunning;
  // The step's bake time starts again: what happened while paused does not count.
  step_started_ms_ = now_ms;
  passing_since_ms_ = 0;
  early_ = false;
  reason_ = "resumed";
  Action a;
  a.event = "rollout_resume";
  return a;
}

Rollout::Action Rollout::approve(const std::string& actor, const std::string& reason,
                                 uint64_t now_ms, std::string* error, bool* forbidden,
                                 const Holds& holds) {
  *forbidden = false;
  if (plan_.approvals == 0) {
    *error = "this rollout needs no approvals (no approvals = N under [service.rollout])";
    return {};
  }
  if (state_ != RolloutState::kWaiting || !needs_approval() ||
      approvals_.size() >= plan_.approvals) {
    *error = "the rollout waits for no approval now (it is " + std::string(to_string(state_)) +
             (state_ == RolloutState::kWaiting ? ", for " + join(waiting_for_) : "") +
             "); approve when it waits at a gate";
    return {};
  }
  if (actor == started_by_) {
    *forbidden = true;
    *error = "separation of duties: \"" + actor +
             "\" started this rollout and cannot approve it; another token must";
    return {};
  }
  for (const auto& ap : approvals_) {
    if (ap.actor == actor) {
      *forbidden = true;
      *error = "\"" + actor + "\" approved this gate already; approvals = " +
               std::to_string(plan_.approvals) + " needs a different token";
      return {};
    }
  }
  approvals_.push_back({actor, reason, now_ms});
  if (entered_ && plan_.steps[step_].pause && plan_.steps[step_].pause_s == 0) resumed_ = true;
  Action a = gate(now_ms, holds);
  if (a.event.empty() || a.event == "rollout_wait") {
    a.event = "rollout_approve";
    a.approvals = approvals_;
  }
  return a;
}

Rollout::Action Rollout::abort(const std::string& why) {
  Action a;
  if (active(state_)) {
    state_ = RolloutState::kAborted;
    reason_ = why;
    waiting_for_.clear();
    a.change = true;
    a.weight = 0;
    a.why = why;
    a.event = "rollout_abort";
  }
  return a;
}

Rollout::Action Rollout::promote(std::string* error) {
  if (state_ == RolloutState::kPromoted) {
    *error = "the rollout is already promoted";
    return {};
  }
  if (plan_.approvals > 0) {
    *error = "approvals = " + std::to_string(plan_.approvals) +
             ": the promotion needs approvals from tokens other than the starter's; approve it "
             "when the rollout waits at its gate";
    return {};
  }
  state_ = RolloutState::kPromoted;
  waiting_for_.clear();
  reason_ = "promoted by an operator";
  Action a;
  a.promote = true;
  a.why = reason_;
  a.event = "rollout_promote";
  return a;
}

Rollout::Action Rollout::on_verdict(const Judgement& j, uint64_t now_ms, const Holds& holds) {
  if (state_ != RolloutState::kRunning && state_ != RolloutState::kWaiting) return {};
  if (!entered_ || plan_.steps[step_].pause) return gate(now_ms, holds);
  if (j.verdict == Verdict::kPass) {
    if (passing_since_ms_ == 0) passing_since_ms_ = now_ms;
    if (plan_.success_after && j.significant && j.samples >= plan_.success_after &&
        now_ms - step_started_ms_ >= uint64_t{j.window_s} * 1000)
      early_ = true;
  } else if (j.verdict == Verdict::kFail || state_ != RolloutState::kWaiting) {
    // A hold or a failure: the step has to pass again from here. While waiting, a hold (too
    // little traffic to judge) is no evidence against a step that passed.
    passing_since_ms_ = 0;
    early_ = false;
  }
  if (j.verdict == Verdict::kFail && state_ == RolloutState::kWaiting) {
    state_ = RolloutState::kRunning;
    step_started_ms_ = now_ms;  // a fresh bake, not a max_step_s pause for the wait
    waiting_for_.clear();
    waiting_since_ms_ = 0;
    reason_ = "the guard failed while waiting: step " + std::to_string(step_ + 1) +
              " has to pass again";
    Action a;
    a.event = "rollout_running";
    a.why = reason_;
    return a;
  }
  return gate(now_ms, holds);
}

Rollout::Action Rollout::tick(uint64_t now_ms, const Holds& holds) { return gate(now_ms, holds); }

}  // namespace weir::health
