// Drives every service's [service.rollout]: operator commands (from any replica) and the steps
// the guard's verdicts and the clock earn (only where the control store leads). The store holds
// the truth: a rollout's position is part of the service's runtime state
// (ServiceRuntime::rollout), written with the weights it asks for in one change, so a restart,
// or another replica taking the lead, continues from the same step, the same wait and the same
// approvals. Rollout clocks are wall-clock milliseconds, comparable across processes. Owned by
// Server; control thread only.
//
// Gates: the plan's own (pause steps, approvals, change windows) live in health::Rollout; other
// parts of weir add theirs through set_holds() (see health/rollout.h for what a hold is). While
// a rollout waits, running_version() still names its version, so the guard keeps judging it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "config/config.h"
#include "health/rollout.h"
#include "proxy/control_store.h"

namespace weir::proxy {

class RolloutDriver {
 public:
  explicit RolloutDriver(ControlStore& store) : store_(store) {}

  // Holds other parts of weir own (hooks, ...): asked before every attempt to move `service`'s
  // rollout, with the rollout as it is (r.next_transition() says what the move would be);
  // each text returned holds the move and shows in waiting_for. Empty: nothing held.
  using HoldsFn =
      std::function<health::Holds(const std::string& service, const health::Rollout& r)>;
  void set_holds(HoldsFn fn) { holds_ = std::move(fn); }

  // Takes the running configuration: one rollout per service with [service.rollout], each at
  // the position the store holds.
  void configure(const config::Config& config);
  // The store's state of `service` changed: follow its rollout position.
  void on_state(const std::string& service);

  // start | pause | resume | abort | promote | approve, by `actor`. approve refuses with 403
  // (the starter, or an approver of this gate already) or 409 (nothing waits for approval).
  void command(const std::string& service, const std::string& op, const std::string& actor,
               const std::string& reason, CommitDone done);
  // Starts the rollouts configured with auto_start that never ran.
  void auto_start();

  // The version a running or waiting rollout of `service` gates, or nullptr.
  const std::string* running_version(const std::string& service) const;
  // One guard judgement of the rollout's version (acted on only where the store leads).
  void on_verdict(const std::string& service, const health::Judgement& j, uint64_t now_wall_ms);
  // About once a second: ends timed pauses and lifts holds that cleared (where the store leads).
  void tick(uint64_t now_wall_ms);
  // The guard reverted `version`: a rollout of it ends, aborted.
  void on_revert(const std::string& service, const std::string& version, const std::string& why);

  // The rollout of `service`, or nullptr.
  const health::Rollout* rollout(const std::string& service) const {
    auto it = entries_.find(service);
    return it == entries_.end() ? nullptr : &it->second.rollout;
  }
  // "none" without a rollout, else idle / running / waiting / paused / promoted / aborted.
  std::string state(const std::string& service) const;
  // The admin view's detail: step, plan, weight, timing, what it waits for, approvals.
  nlohmann::json detail(const std::string& service, uint64_t now_wall_ms) const;
  // Every configured rollout's service and state, for metrics.
  std::map<std::string, std::string> states() const;

 private:
  struct Entry {
    config::Service service;  // the configured service (its rollout plan and versions)
    health::Rollout rollout;
  };
  // Commits what `a` asks of the service, with the rollout's position `after`, as `actor`;
  // refused when the stored position is no longer `before` (someone else moved it).
  void apply(const Entry& e, const nlohmann::json& before, const health::Rollout& after,
             const health::Rollout::Action& a, AuditEvent ev, CommitDone done);
  // Commits a move the rollout made by itself (verdict or tick), if its position changed.
  void step_by_itself(Entry& e, const nlohmann::json& before, const health::Rollout::Action& a);
  health::Holds holds_for(const std::string& service, const health::Rollout& r) const;

  ControlStore& store_;
  std::map<std::string, Entry> entries_;
  HoldsFn holds_;
  uint64_t last_tick_ms_ = 0;
};

// A rollout position as stored in ServiceRuntime::rollout, and back (nullopt: none / malformed).
nlohmann::json position_json(const health::Rollout::Position& p);
std::optional<health::Rollout::Position> position_from_json(const nlohmann::json& j);
// A plan's steps as the admin view shows them: weights, "pause", {"pause_s": N},
// {"weight": W, "step_s": S}.
nlohmann::json steps_json(const config::RolloutConfig& plan);

}  // namespace weir::proxy
