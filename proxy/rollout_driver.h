// Drives every service's [service.rollout]: operator commands (from any replica) and the steps
// the guard's verdicts earn (only where the control store leads). The store holds the truth: a
// rollout's position is part of the service's runtime state (ServiceRuntime::rollout), written
// with the weights it asks for in one change, so a restart, or another replica taking the lead,
// continues from the same step. Rollout clocks are wall-clock milliseconds, comparable across
// processes. Owned by Server; control thread only.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "config/config.h"
#include "health/rollout.h"
#include "proxy/control_store.h"

namespace weir::proxy {

class RolloutDriver {
 public:
  explicit RolloutDriver(ControlStore& store) : store_(store) {}

  // Takes the running configuration: one rollout per service with [service.rollout], each at
  // the position the store holds.
  void configure(const config::Config& config);
  // The store's state of `service` changed: follow its rollout position.
  void on_state(const std::string& service);

  // start | pause | resume | abort | promote, by `actor`.
  void command(const std::string& service, const std::string& op, const std::string& actor,
               const std::string& reason, CommitDone done);
  // Starts the rollouts configured with auto_start that never ran.
  void auto_start();

  // The version a running rollout of `service` gates, or nullptr.
  const std::string* running_version(const std::string& service) const;
  // One guard verdict of the running rollout's version (acted on only where the store leads).
  void on_verdict(const std::string& service, health::Verdict v, uint64_t now_wall_ms);
  // The guard reverted `version`: a rollout of it ends, aborted.
  void on_revert(const std::string& service, const std::string& version, const std::string& why);

  // "none" without a rollout, else idle / running / paused / promoted / aborted.
  std::string state(const std::string& service) const;
  // The admin view's detail: step, plan, weight, timing, what it waits for.
  nlohmann::json detail(const std::string& service, uint64_t now_wall_ms) const;

 private:
  struct Entry {
    config::Service service;  // the configured service (its rollout plan and versions)
    health::Rollout rollout;
  };
  // Commits what `a` asks of the service, with the rollout's position `after`, as `actor`;
  // refused when the stored position is no longer `before` (someone else moved it).
  void apply(const Entry& e, const nlohmann::json& before, const health::Rollout& after,
             const health::Rollout::Action& a, AuditEvent ev, CommitDone done);

  ControlStore& store_;
  std::map<std::string, Entry> entries_;
};

// A rollout position as stored in ServiceRuntime::rollout, and back (nullopt: none / malformed).
nlohmann::json position_json(const health::Rollout::Position& p);
std::optional<health::Rollout::Position> position_from_json(const nlohmann::json& j);

}  // namespace weir::proxy
