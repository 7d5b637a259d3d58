// Outgoing hooks ([[service.hook]], Flagger's webhook types) on the control thread's loop, with
// weir's own HTTP client: never a blocking call, every call bounded by its timeout_ms, retried
// `retries` times with doubling backoff (stepped by tick()), and recorded as evidence: the last
// calls of each service (hook, status, time, a bounded excerpt of the answer) in explain, and
// the audit log (action "hook_call"). Header values never appear in either.
//
// HookRunner makes the calls and feeds event hooks: it reads the store's audit events (where
// the store leads, so a fleet sends each once), queues one POST per event hook of the service
// (bounded: the oldest waiting call is dropped and counted when the queue is full) and fires
// post-rollout hooks when a rollout is promoted or aborted. ReleaseHooks holds the rollout's
// gates: pre-rollout and confirm-* hooks as holds of a transition, rollout hooks as the guard's
// external checks, rollback hooks polled while a rollout is under way. Both owned by Server.
#pragma once

#include <uv.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "config/config.h"
#include "health/guard.h"
#include "health/hook_poll.h"
#include "proxy/control_store.h"
#include "proxy/outgoing.h"

namespace weir::proxy {

// One call of a hook and its answer, as explain and the audit log show it.
struct HookCall {
  std::string service, hook, type;
  std::string time;       // when it ended (UTC)
  uint32_t attempts = 0;
  int status = 0;         // the last answer's status; 0 = none came
  std::string error;      // the last attempt's transport error
  double duration_ms = 0;  // the last attempt's
  std::string excerpt;    // the last answer's body (or the error), bounded
  bool ok() const { return status >= 200 && status < 300; }
  // "HTTP 503 in 12 ms" / "timeout: ..." (no header values, no body).
  std::string summary() const;
  nlohmann::json to_json() const;
};

// The Slack-compatible text line of an audit event ("weir: shop: guard reverted canary: ...").
std::string slack_text(const nlohmann::json& event);

class HookRunner {
 public:
  using Done = std::function<void(const HookCall&)>;

  HookRunner(uv_loop_t* loop, ControlStore& store);
  HookRunner(const HookRunner&) = delete;
  HookRunner& operator=(const HookRunner&) = delete;

  // Takes the running configuration. The first call also marks the store's audit trail as read
  // so far: events from before this process started are not sent again.
  void configure(const config::Config& config);
  // POSTs `payload` to `hook` of `service`, retrying as configured; `done` (optional) runs on a
  // later loop turn with the last attempt. With `audit`, the outcome goes to the audit log.
  void call(const std::string& service, const config::Hook& hook, nlohmann::json payload,
            bool audit, Done done = {});
  // The audit record of one call (action "hook_call").
  void audit(const HookCall& c);
  // Retries that are due; new audit events to event and post-rollout hooks. About every 100 ms.
  void tick(uint64_t now_ms);
  // explain's "hooks": the service's last calls, newest last (bounded).
  nlohmann::json explain(const std::string& service) const;

  struct Figures {
    uint64_t calls = 0, failures = 0, dropped = 0;
    size_t queued = 0;
  };
  Figures figures() const { return figures_; }
  void close();

  static constexpr size_t kMaxQueued = 256;   // event calls waiting or under way
  static constexpr size_t kKeptCalls = 32;    // per service, for explain

 private:
  struct Pending {
    std::string service;
    config::Hook hook;
    std::string body;
    bool audit = false;
    bool event = false;  // counts against kMaxQueued
    Done done;
    uint32_t attempt = 0;
    uint64_t due_ms = 0;
    uint64_t id = 0;
  };
  void attempt(Pending p);
  void record(const HookCall& c, bool audit);
  void poll_events();
  void send_events(const nlohmann::json& event);

  ControlStore& store_;
  OutgoingClients clients_;
  std::map<std::string, std::vector<config::Hook>> hooks_;  // by service
  std::deque<Pending> retries_;                             // waiting for their due time
  std::map<std::string, std::deque<HookCall>> calls_;       // by service
  std::vector<uint64_t> events_in_flight_;                  // ids of event calls under way
  uint64_t next_id_ = 1;
  uint64_t last_seq_ = 0;
  bool seq_known_ = false;
  uint64_t now_ms_ = 0;
  Figures figures_;
};

// The rollout gates hooks hold. The caller (the rollout driver's holds, the guard runner's
// external checks) asks at each of its steps; ReleaseHooks starts the calls due and answers
// from what the hooks said so far.
class ReleaseHooks {
 public:
  // Aborts the rollout of `service` (a pre-rollout hook failed `threshold` times, a rollback
  // hook answered 2xx); `actor` is "hook:NAME".
  using AbortFn = std::function<void(const std::string& service, const std::string& actor,
                                     const std::string& reason)>;

  ReleaseHooks(HookRunner& runner, AbortFn abort) : runner_(runner), abort_(std::move(abort)) {}

  // What a rollout is doing, for the hooks' payload and to key its gates.
  struct RolloutInfo {
    std::string version, stable;
    uint64_t run = 0;  // identifies one run of the rollout (e.g. its start time)
    size_t step = 0;
    uint32_t weight = 0;
    std::string phase;  // the transition ahead: "start", "increase", "promotion"
  };
  // The holds of the transition ahead: pre-rollout and confirm-rollout at "start",
  // confirm-traffic-increase at "increase", confirm-promotion at "promotion". Empty = go.
  std::vector<std::string> holds(const config::Service& svc, const RolloutInfo& r,
                                 uint64_t now_ms);
  // Rollout hooks as the guard's external checks of the rollout's version during a step.
  std::vector<health::ExternalCheck> rollout_checks(const config::Service& svc,
                                                    const RolloutInfo& r, uint64_t now_ms);
  // Rollback hooks of a rollout under way: polled; a 2xx aborts.
  void poll_rollback(const config::Service& svc, const RolloutInfo& r, uint64_t now_ms);
  // The gates' state for explain and the admin view.
  nlohmann::json explain(const std::string& service) const;

  // The JSON body of a release hook call.
  static nlohmann::json payload(const config::Service& svc, const config::Hook& h,
                                const RolloutInfo& r);

 private:
  struct Gate {
    health::HookPoll poll;
    std::string hook;
  };
  Gate& gate(const config::Service& svc, const config::Hook& h);
  // Starts the call of `h` when its poll is due.
  void drive(const config::Service& svc, const config::Hook& h, const RolloutInfo& r,
             const std::string& key, uint64_t now_ms);

  HookRunner& runner_;
  AbortFn abort_;
  std::map<std::pair<std::string, std::string>, Gate> gates_;  // by (service, hook name)
};

}  // namespace weir::proxy
