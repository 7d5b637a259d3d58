// Runs the guard of every guarded service at its interval: judges each non-stable version with
// traffic over a window (this replica's, or the fleet's merged one), reverts a version through
// the control store when its breaches hold, keeps the decision logs behind `explain`, steps
// capacity-aware revert ramps, and feeds verdicts to the rollout driver. The one derivation of
// the guard state operators see (admin view, dashboard, metrics) lives here. Owned by Server;
// control thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "health/guard.h"
#include "health/stats_window.h"
#include "proxy/control_store.h"
#include "proxy/rollout_driver.h"
#include "routing/snapshot.h"

namespace weir::proxy {

// Takes `version` of `cs` down to `weight` in `rt` as a revert does and marks it reverted (the
// service's view before and after goes to `ev`); "=" when it was reverted already.
std::string revert_in(const config::Service& cs, const std::string& version, uint32_t weight,
                      ServiceRuntime& rt, AuditEvent& ev);

class GuardRunner {
 public:
  // The summary a guard judges for `v` over the last `window_s` seconds ending at `second`.
  using WindowFn = std::function<health::Summary(const routing::Service& s,
                                                 const routing::Version& v, uint64_t second,
                                                 uint32_t window_s)>;

  GuardRunner(ControlStore& store, RolloutDriver& rollouts, WindowFn window)
      : store_(store), rollouts_(rollouts), window_(std::move(window)) {}
  // Checks judged with the built-in rules (KPI queries, rollout hooks) for version `version` of
  // `s`, whose stable is `stable`, at `now_ms`.
  using ChecksFn = std::function<std::vector<health::ExternalCheck>(
      const config::Service& s, const std::string& version, const std::string& stable,
      uint64_t now_ms)>;
  void set_checks(ChecksFn fn) { checks_ = std::move(fn); }

  // Runs the guards due at `now_ms` (monotonic) over `snap`, built from `config`.
  void tick(const std::shared_ptr<const routing::Snapshot>& snap, const config::Config& config,
            uint64_t now_ms, uint64_t second);
  // Steps the revert ramps held in the store's state that are due at `wall_ms` (wall clock, so
  // any replica can continue a ramp another began); only where the store leads.
  void advance_ramps(const config::Config& config, uint64_t wall_ms);
  // The store's state of `service` changed: a guard switched off forgets its breaches; a version
  // whose weight changed has no current verdict until its next evaluation.
  void on_state(const config::Config& config, const std::string& service);

  // hold / pass / fail (the current verdict), reverted, or disabled; for one version when
  // `version` is given, else for the service as a whole.
  std::string state(const config::Service& s, std::string_view version = {}) const;
  std::string explain_json(const config::Service& s) const;
  // The latest decision on `version` of `service` still in the log, or nullptr.
  const health::Evaluation* last_decision(const std::string& service,
                                          const std::string& version) const;
  uint64_t reverts(const std::string& service, const std::string& version) const;
  uint64_t dry_run_reverts(const std::string& service, const std::string& version) const;

 private:
  struct ServiceGuard {
    std::map<std::string, health::VersionGuard> versions;
    health::DecisionLog log;
    uint64_t last_eval_ms = 0;
    // The latest verdict per version, while its weight is what it was judged at.
    std::map<std::string, health::Verdict> current;
    std::map<std::string, uint32_t> judged_weight;
    std::map<std::string, uint64_t> reverts;  // by version, since start (weir_reverts_total)
    std::map<std::string, uint64_t> dry_run_reverts;  // would-be reverts of a dry run
  };
  // A capacity-aware revert (revert_ramp_ms) steps the version's weight from its weight at the
  // revert down to 0 in kRevertSteps equal steps over the ramp's duration
  // (ServiceRuntime::ramps).
  static constexpr uint32_t kRevertSteps = 10;

  void revert(const config::Service& cs, const routing::Version& v, const health::Evaluation& e,
              const health::Summary& summary, const health::Summary& stable_summary,
              uint64_t wall_ms);
  // A dry run's breaches held for `consecutive`: recorded (log, audit, metrics), not acted on.
  void dry_run_revert(const config::Service& cs, const routing::Version& v,
                      const health::Evaluation& e);
  bool ramping(const std::string& service, const std::string& version) const;

  ControlStore& store_;
  RolloutDriver& rollouts_;
  WindowFn window_;
  ChecksFn checks_;
  std::map<std::string, ServiceGuard> guards_;
  // Ramp steps committed and not answered yet ("service/version"): one in flight per ramp.
  std::shared_ptr<std::set<std::string>> stepping_ = std::make_shared<std::set<std::string>>();
};

}  // namespace weir::proxy
