// A progressive rollout of one version: steps of weight, each held for a bake time and gated by
// the guard's verdicts, pause steps, and gates, ending in promotion (the version becomes stable)
// or abort. Pure state machine: the control thread feeds it verdicts, ticks and the time, and
// applies the weights it asks for.
//
// Gates and waiting. A transition (the start's first step, a traffic increase, the promotion)
// happens only when nothing holds it. When a step is done (baked, or a pause over) but the next
// transition is held, the rollout is `waiting` (RolloutState::kWaiting) and waiting_for() lists
// every reason, in words an operator acts on. Holds come from two places:
//   - the plan itself: an indefinite pause step ("resume"), separation of duties (`approvals`:
//     at the promotion and at the end of every pause step), change windows (`windows`: every
//     transition that moves traffic);
//   - the caller: `Holds` passed to start / on_verdict / tick / resume / approve, one text per
//     gate it owns (e.g. "confirm-promotion hook deploy-check: no 2xx yet"). Pass the holds
//     that apply to next_transition(); an empty list means the caller holds nothing. The rollout
//     re-asks at every call, so a hold lifts at the next tick after the caller stops passing it.
// While waiting, the guard keeps judging: a failing verdict at a weight step sends the rollout
// back to running (the step has to pass again), and a revert still aborts (abort()). Operators
// may pause, abort or promote a waiting rollout; reverts and aborts are never held.
//
// Approvals: approve() by an actor other than the one who started the rollout counts toward
// the plan's `approvals` at the gate the rollout waits at; at an indefinite pause an approval
// also resumes. Approvals belong to one gate: entering the next step clears them.
//
// success_after: a weight step also ends early on a verdict that passes with at least
// `success_after` completed requests of the version in the guard's window, `significant` set
// (every error-rate rule configured passed at the guard's confidence: the Wilson upper bound of
// the error rate at or below max_error_rate, the upper bound of the increase over stable at or
// below max_error_rate_increase), once the step has lasted at least one guard window.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/config.h"
#include "health/guard.h"

namespace weir::health {

enum class RolloutState : uint8_t { kIdle, kRunning, kWaiting, kPaused, kPromoted, kAborted };
const char* to_string(RolloutState s);

// The move a rollout makes next, so a caller knows which of its gates apply.
enum class Transition : uint8_t {
  kNone,       // nothing ahead (not running, or at the end)
  kStart,      // the first step's traffic
  kIncrease,   // to a higher weight below 100
  kPromotion,  // to 100: the version becomes stable
  kPause,      // into a pause step: no traffic moves
};
const char* to_string(Transition t);

// Reasons a transition has to wait, one text each.
using Holds = std::vector<std::string>;

// One guard judgement of the rollout's version, as the rollout needs it.
struct Judgement {
  Verdict verdict = Verdict::kHold;
  uint64_t samples = 0;      // the version's completed requests in the guard's window
  uint32_t window_s = 0;     // the guard's window
  bool significant = false;  // passed with every error-rate rule inside its limit at confidence
};

struct Approval {
  std::string actor;
  std::string reason;
  uint64_t at_ms = 0;
};

class Rollout {
 public:
  explicit Rollout(config::RolloutConfig plan) : plan_(std::move(plan)) {}

  // What the caller must do to the service's weights after a call.
  struct Action {
    bool change = false;    // set `weight` on the rollout's version, 100 - weight on stable
    uint32_t weight = 0;
    bool promote = false;   // make the version stable with all traffic
    std::string why;
    // The audit action of what happened ("rollout_step", "rollout_promote", "rollout_wait",
    // "rollout_pause_step", "rollout_pause", "rollout_running", ...); "" = nothing.
    std::string event;
    std::vector<Approval> approvals;  // the approvals that let this transition through
  };

  // Operator controls; each returns the action, or an error text in `*error` (state unchanged).
  Action start(uint64_t now_ms, std::string* error, const Holds& holds = {},
               const std::string& actor = "");
  Action pause(std::string* error);
  // Resumes an operator's pause, or an indefinite pause step.
  Action resume(uint64_t now_ms, std::string* error, const Holds& holds = {});
  // `*forbidden` is set when the actor may not approve (the starter, or an approver already).
  Action approve(const std::string& actor, const std::string& reason, uint64_t now_ms,
                 std::string* error, bool* forbidden, const Holds& holds = {});
  Action abort(const std::string& why);
  Action promote(std::string* error);

  // One guard evaluation of the rollout's version.
  Action on_verdict(const Judgement& j, uint64_t now_ms, const Holds& holds = {});
  Action on_verdict(Verdict v, uint64_t now_ms, const Holds& holds = {}) {
    return on_verdict(Judgement{v, 0, 0, false}, now_ms, holds);
  }
  // Time passes (call it about once a second): ends timed pauses, lifts holds that cleared.
  Action tick(uint64_t now_ms, const Holds& holds = {});

  // Where the rollout is, to save and restore (another process may continue it). The run of
  // passes within a step is not part of it: a restored step has to pass again from there.
  struct Position {
    RolloutState state = RolloutState::kIdle;
    size_t step = 0;
    uint64_t step_started_ms = 0;
    std::string reason;
    bool entered = true;  // false: started, waiting to enter step 0 (no traffic yet)
    std::vector<std::string> waiting_for;
    uint64_t waiting_since_ms = 0;
    std::string started_by;
    std::vector<Approval> approvals;  // at the gate it waits at
    bool resumed = false;             // the indefinite pause step was resumed
  };
  Position position() const;
  // false when `p` does not fit this plan (a step past its end): then nothing changes.
  bool restore(const Position& p);

  RolloutState state() const { return state_; }
  uint64_t step_started_ms() const { return step_started_ms_; }
  uint64_t passing_since_ms() const { return passing_since_ms_; }
  size_t step() const { return step_; }
  bool entered() const { return entered_; }
  // The weight in effect: the step's, a pause's previous step's, 0 before the first.
  uint32_t weight() const;
  Transition next_transition() const;
  const std::vector<std::string>& waiting_for() const { return waiting_for_; }
  uint64_t waiting_since_ms() const { return waiting_since_ms_; }
  const std::string& started_by() const { return started_by_; }
  const std::vector<Approval>& approvals() const { return approvals_; }
  // Whether the gate ahead needs approvals (plan.approvals > 0 at a pause or before 100).
  bool needs_approval() const;
  const config::RolloutConfig& plan() const { return plan_; }
  const std::string& last_reason() const { return reason_; }

 private:
  Action enter_step(size_t i, uint64_t now_ms, std::string why);
  // Moves on when the current step is done and nothing holds the next transition.
  Action gate(uint64_t now_ms, const Holds& holds);
  Holds plan_holds(uint64_t now_ms) const;
  uint32_t weight_at(size_t i) const;

  config::RolloutConfig plan_;
  RolloutState state_ = RolloutState::kIdle;
  size_t step_ = 0;
  uint64_t step_started_ms_ = 0;
  uint64_t passing_since_ms_ = 0;  // start of the current unbroken run of passes; 0 = none
  bool early_ = false;             // success_after met in this step
  std::string reason_;
  bool entered_ = true;
  std::vector<std::string> waiting_for_;
  uint64_t waiting_since_ms_ = 0;
  std::string started_by_;
  std::vector<Approval> approvals_;
  bool resumed_ = false;
};

}  // namespace weir::health
