#include "proxy/rollout_driver.h"

#include <cstdio>

#include "proxy/http_util.h"

namespace weir::proxy {

namespace {

using nlohmann::json;

health::RolloutState state_named(const std::string& s, bool* ok) {
  using S = health::RolloutState;
  *ok = true;
  for (S st : {S::kIdle, S::kRunning, S::kWaiting, S::kPaused, S::kPromoted, S::kAborted}) {
    if (s == health::to_string(st)) return st;
  }
  *ok = false;
  return S::kIdle;
}

json approvals_json(const std::vector<health::Approval>& list) {
  json out = json::array();
  for (const auto& a : list)
    out.push_back({{"actor", a.actor}, {"reason", a.reason}, {"at_ms", a.at_ms}});
  return out;
}

std::vector<std::string> approvers(const std::vector<health::Approval>& list) {
  std::vector<std::string> out;
  for (const auto& a : list) out.push_back(a.actor);
  return out;
}

}  // namespace

json position_json(const health::Rollout::Position& p) {
  json j = {{"state", health::to_string(p.state)},
            {"step", p.step},
            {"step_started_ms", p.step_started_ms},
            {"reason", p.reason}};
  // Only what is set, so positions written before gates existed compare equal.
  if (!p.entered) j["entered"] = false;
  if (!p.waiting_for.empty()) {
    j["waiting_for"] = p.waiting_for;
    j["waiting_since_ms"] = p.waiting_since_ms;
  }
  if (!p.started_by.empty()) j["started_by"] = p.started_by;
  if (!p.approvals.empty()) j["approvals"] = approvals_json(p.approvals);
  if (p.resumed) j["resumed"] = true;
  return j;
}

std::optional<health::Rollout::Position> position_from_json(const json& j) {
  if (!j.is_object() || !j.contains("state") || !j["state"].is_string()) return std::nullopt;
  health::Rollout::Position p;
  bool ok = false;
  p.state = state_named(j["state"].get<std::string>(), &ok);
  if (!ok) return std::nullopt;
  if (j.contains("step") && j["step"].is_number_unsigned()) p.step = j["step"].get<size_t>();
  if (j.contains("step_started_ms") && j["step_started_ms"].is_number_unsigned())
    p.step_started_ms = j["step_started_ms"].get<uint64_t>();
  if (j.contains("reason") && j["reason"].is_string()) p.reason = j["reason"].get<std::string>();
  if (j.contains("entered") && j["entered"].is_boolean()) p.entered = j["entered"].get<bool>();
  if (j.contains("waiting_for") && j["waiting_for"].is_array()) {
    for (const auto& w : j["waiting_for"]) {
      if (w.is_string()) p.waiting_for.push_back(w.get<std::string>());
    }
  }
  if (j.contains("waiting_since_ms") && j["waiting_since_ms"].is_number_unsigned())
    p.waiting_since_ms = j["waiting_since_ms"].get<uint64_t>();
  if (j.contains("started_by") && j["started_by"].is_string())
    p.started_by = j["started_by"].get<std::string>();
  if (j.contains("approvals") && j["approvals"].is_array()) {
    for (const auto& a : j["approvals"]) {
      if (!a.is_object() || !a.contains("actor") || !a["actor"].is_string()) continue;
      health::Approval ap;
      ap.actor = a["actor"].get<std::string>();
      if (a.contains("reason") && a["reason"].is_string()) ap.reason = a["reason"].get<std::string>();
      if (a.contains("at_ms") && a["at_ms"].is_number_unsigned()) ap.at_ms = a["at_ms"].get<uint64_t>();
      p.approvals.push_back(std::move(ap));
    }
  }
  if (j.contains("resumed") && j["resumed"].is_boolean()) p.resumed = j["resumed"].get<bool>();
  return p;
}

json steps_json(const config::RolloutConfig& plan) {
  json out = json::array();
  for (const auto& s : plan.steps) {
    if (s.pause) {
      out.push_back(s.pause_s ? json{{"pause_s", s.pause_s}} : json("pause"));
    } else if (s.step_s) {
      out.push_back({{"weight", s.weight}, {"step_s", s.step_s}});
    } else {
      out.push_back(s.weight);
    }
  }
  return out;
}

void RolloutDriver::configure(const config::Config& config) {
  std::map<std::string, Entry> next;
  for (const auto& svc : config.services) {
    if (!svc.rollout.present) continue;
    Entry e{svc, health::Rollout(svc.rollout)};
    next.emplace(svc.name, std::move(e));
  }
  entries_ = std::move(next);
  for (const auto& [name, e] : entries_) on_state(name);
}

void RolloutDriver::on_state(const std::string& service) {
  auto it = entries_.find(service);
  if (it == entries_.end()) return;
  const ServiceRuntime* rt = store_.state().find(service);
  std::optional<health::Rollout::Position> p;
  if (rt) p = position_from_json(rt->rollout);
  // Nothing stored (never started, or the versions changed): a fresh rollout.
  if (!p || !it->second.rollout.restore(*p)) it->second.rollout = health::Rollout(it->second.service.rollout);
}

void RolloutDriver::auto_start() {
  for (auto& [name, e] : entries_) {
    if (!e.service.rollout.auto_start || e.rollout.state() != health::RolloutState::kIdle) continue;
    command(name, "start", "startup", "auto_start", [name = name](const CommitResult& r) {
      if (!r.ok())
        std::fprintf(stderr, "weir: rollout: service %s did not start: %s\n", name.c_str(),
                     r.error.c_str());
    });
  }
}

health::Holds RolloutDriver::holds_for(const std::string& service,
                                       const health::Rollout& r) const {
  return holds_ ? holds_(service, r) : health::Holds{};
}

void RolloutDriver::command(const std::string& service, const std::string& op,
                            const std::string& actor, const std::string& reason,
                            CommitDone done) {
  auto it = entries_.find(service);
  if (it == entries_.end()) {
    done({409, "rollout_refused", "service " + service + " has no [service.rollout]"});
    return;
  }
  const Entry& e = it->second;
  const json before = position_json(e.rollout.position());
  health::Rollout r = e.rollout;
  const uint64_t now = static_cast<uint64_t>(unix_time_ms());
  std::string error;
  bool forbidden = false;
  health::Rollout::Action a;
  if (op == "start") {
    a = r.start(now, &error, holds_for(service, r), actor);
  } else if (op == "pause") {
    a = r.pause(&error);
  } else if (op == "resume") {
    a = r.resume(now, &error, holds_for(service, r));
  } else if (op == "approve") {
    a = r.approve(actor, reason, now, &error, &forbidden, holds_for(service, r));
  } else if (op == "abort") {
    a = r.abort("aborted by " + actor + (reason.empty() ? "" : ": " + reason));
    if (!a.change) error = "only a running, waiting or paused rollout can be aborted";
  } else if (op == "promote") {
    a = r.promote(&error);
  } else {
    error = "unknown rollout operation " + op +
            " (start, pause, resume, approve, abort, promote)";
  }
  if (!error.empty()) {
    done({forbidden ? 403 : 409, forbidden ? "approval_refused" : "rollout_refused", error});
    return;
  }
  AuditEvent ev;
  ev.actor = actor;
  ev.action = "rollout_" + op;
  ev.reason = reason.empty() ? (a.why.empty() ? r.last_reason() : a.why) : reason;
  if (op == "approve") {
    ev.detail = {{"requester", r.started_by()},
                 {"approver", actor},
                 {"approvals", approvals_json(r.approvals().empty() ? a.approvals : r.approvals())},
                 {"needed", e.service.rollout.approvals}};
    // The approval let the rollout through its gate: say so in the same record.
    if (a.change || a.promote || a.event == "rollout_pause_step")
      ev.detail["moved"] = a.event;
  } else if (op == "start" || op == "resume") {
    if (!r.waiting_for().empty()) ev.detail = {{"waiting_for", r.waiting_for()}};
  }
  apply(e, before, r, a, std::move(ev), std::move(done));
}

void RolloutDriver::apply(const Entry& e, const json& before, const health::Rollout& after,
                          const health::Rollout::Action& a, AuditEvent ev, CommitDone done) {
  ServiceChange sc;
  sc.service = e.service.name;
  sc.event = std::move(ev);
  const bool by_guard = sc.event.actor == "guard";
  if (a.promote || a.change) {
    // Who asked and who let it through: the audit trail of separation of duties.
    const std::string& requester = after.started_by();
    if (!a.approvals.empty()) {
      if (!sc.event.detail.is_object()) sc.event.detail = json::object();
      sc.event.detail["requester"] = requester;
      sc.event.detail["approvers"] = approvers(a.approvals);
    }
  }
  sc.apply = [svc = e.service, before, pos = position_json(after.position()), a, by_guard,
              actor = sc.event.actor](ServiceRuntime& rt, AuditEvent& ev) {
    // A position that does not fit this plan (the config changed) counts as never started.
    json stored = position_json({});
    if (auto p = position_from_json(rt.rollout); p && p->step < svc.rollout.steps.size())
      stored = position_json(*p);
    if (stored != before) return std::string("the rollout moved meanwhile (it is ") +
                                 stored.value("state", "?") + "); look again and retry";
    RuntimeState view;
    view.set(svc.name, rt);
    std::map<std::string, uint32_t> weights = view.weights(svc);
    const std::string stable = view.stable(svc);
    const std::string& version = svc.rollout.version;
    ev.before = {{"weights", weights}, {"stable", stable}, {"rollout", stored}};
    if (a.promote) {
      for (auto& [name, w] : weights) w = name == version ? 100 : 0;
      rt.stable = version;
      rt.record_promotion(stable, version, actor, unix_time_ms());
    } else if (a.change) {
      weights[version] = a.weight;
      if (stable != version) weights[stable] = 100 - a.weight;
    }
    if (a.promote || a.change) {
      rt.weights = weights;
      // The rollout's own moves are an operator's plan: reverts before it are settled.
      if (!by_guard) rt.reverted.clear();
    }
    rt.rollout = pos;
    ev.after = {{"weights", weights}, {"stable", rt.stable.empty() ? stable : rt.stable},
                {"rollout", pos}};
    return std::string();
  };
  const std::string name = e.service.name, version = e.service.rollout.version;
  const std::string what = sc.event.action, why = sc.event.reason;
  store_.commit(std::move(sc), [name, version, what, why, a,
                                done = std::move(done)](const CommitResult& r) {
    if (r.ok()) {
      if (a.promote) {
        std::fprintf(stderr, "weir: rollout: service %s promoted %s to stable (%s)\n",
                     name.c_str(), version.c_str(), why.c_str());
      } else if (a.change) {
        std::fprintf(stderr, "weir: rollout: service %s version %s at %u%% (%s)\n", name.c_str(),
                     version.c_str(), a.weight, why.c_str());
      } else if (what == "rollout_abort") {
        std::fprintf(stderr, "weir: rollout: service %s aborted by the guard\n", name.c_str());
      } else {
        std::fprintf(stderr, "weir: rollout: service %s %s (%s)\n", name.c_str(), what.c_str(),
                     why.c_str());
      }
    }
    done(r);
  });
}

const std::string* RolloutDriver::running_version(const std::string& service) const {
  auto it = entries_.find(service);
  if (it == entries_.end()) return nullptr;
  const auto st = it->second.rollout.state();
  if (st != health::RolloutState::kRunning && st != health::RolloutState::kWaiting) return nullptr;
  return &it->second.service.rollout.version;
}

void RolloutDriver::step_by_itself(Entry& e, const json& before,
                                   const health::Rollout::Action& a) {
  const json after = position_json(e.rollout.position());
  if (after == before) return;
  AuditEvent ev;
  ev.actor = "rollout";
  ev.action = a.event.empty() ? "rollout_step" : a.event;
  ev.reason = a.why.empty() ? e.rollout.last_reason() : a.why;
  if (!e.rollout.waiting_for().empty()) ev.detail = {{"waiting_for", e.rollout.waiting_for()}};
  health::Rollout moved = e.rollout;
  // Until the store has it, the driver stays where the store is (on_state brings it forward).
  e.rollout.restore(*position_from_json(before));
  const std::string service = e.service.name;
  apply(e, before, moved, a, std::move(ev), [service](const CommitResult& r) {
    if (!r.ok())
      std::fprintf(stderr, "weir: rollout: service %s: the step could not be saved: %s\n",
                   service.c_str(), r.error.c_str());
  });
}

void RolloutDriver::on_verdict(const std::string& service, const health::Judgement& j,
                               uint64_t now_wall_ms) {
  auto it = entries_.find(service);
  if (it == entries_.end() || !store_.leads()) return;
  Entry& e = it->second;
  const auto st = e.rollout.state();
  if (st != health::RolloutState::kRunning && st != health::RolloutState::kWaiting) return;
  const json before = position_json(e.rollout.position());
  // The run of passes lives in the driver's own copy; only a move or a wait is a change.
  const health::Holds holds = holds_for(service, e.rollout);
  health::Rollout::Action a = e.rollout.on_verdict(j, now_wall_ms, holds);
  step_by_itself(e, before, a);
}

void RolloutDriver::tick(uint64_t now_wall_ms) {
  if (!store_.leads() || now_wall_ms - last_tick_ms_ < 1000) return;
  last_tick_ms_ = now_wall_ms;
  for (auto& [name, e] : entries_) {
    const auto st = e.rollout.state();
    if (st != health::RolloutState::kRunning && st != health::RolloutState::kWaiting) continue;
    const json before = position_json(e.rollout.position());
    const health::Holds holds = holds_for(name, e.rollout);
    health::Rollout::Action a = e.rollout.tick(now_wall_ms, holds);
    step_by_itself(e, before, a);
  }
}

void RolloutDriver::on_revert(const std::string& service, const std::string& version,
                              const std::string& why) {
  auto it = entries_.find(service);
  if (it == entries_.end() || it->second.service.rollout.version != version) return;
  Entry& e = it->second;
  const auto st = e.rollout.state();
  if (st != health::RolloutState::kRunning && st != health::RolloutState::kPaused &&
      st != health::RolloutState::kWaiting)
    return;
  const json before = position_json(e.rollout.position());
  health::Rollout r = e.rollout;
  health::Rollout::Action a = r.abort("guard reverted " + version + ": " + why);
  a.change = false;  // the revert itself set the weights
  AuditEvent ev;
  ev.actor = "guard";
  ev.action = "rollout_abort";
  ev.reason = r.last_reason();
  apply(e, before, r, a, std::move(ev), [service](const CommitResult& res) {
    if (!res.ok())
      std::fprintf(stderr, "weir: rollout: service %s: the abort could not be saved: %s\n",
                   service.c_str(), res.error.c_str());
  });
}

std::string RolloutDriver::state(const std::string& service) const {
  auto it = entries_.find(service);
  return it == entries_.end() ? "none" : health::to_string(it->second.rollout.state());
}

std::map<std::string, std::string> RolloutDriver::states() const {
  std::map<std::string, std::string> out;
  for (const auto& [name, e] : entries_) out[name] = health::to_string(e.rollout.state());
  return out;
}

json RolloutDriver::detail(const std::string& service, uint64_t now_wall_ms) const {
  auto it = entries_.find(service);
  if (it == entries_.end()) return nullptr;
  const Entry& e = it->second;
  const health::Rollout& r = e.rollout;
  const config::RolloutConfig& plan = e.service.rollout;
  json out = {{"version", plan.version},
              {"steps", steps_json(plan)},
              {"step_s", plan.step_s},
              {"max_step_s", plan.max_step_s},
              {"reason", r.last_reason()},
              {"waiting_for", json::array()}};
  if (plan.approvals) out["approvals_needed"] = plan.approvals;
  if (plan.success_after) out["success_after"] = plan.success_after;
  if (!plan.windows.empty()) {
    json ws = json::array();
    for (const auto& w : plan.windows) ws.push_back(w.text);
    out["windows"] = ws;
  }
  if (r.state() == health::RolloutState::kIdle) return out;
  out["step"] = r.step();
  out["step_of"] = plan.steps.size();
  out["weight"] = r.weight();
  out["next"] = health::to_string(r.next_transition());
  if (!r.started_by().empty()) out["started_by"] = r.started_by();
  out["approvals"] = approvals_json(r.approvals());
  if (r.entered()) out["pause_step"] = plan.steps[r.step()].pause;
  const uint64_t started = r.step_started_ms();
  const auto st = r.state();
  const bool live = st == health::RolloutState::kRunning || st == health::RolloutState::kWaiting;
  if (live || st == health::RolloutState::kPaused) {
    out["step_started"] = utc_timestamp_ms(static_cast<int64_t>(started));
    out["in_step_s"] = now_wall_ms > started ? (now_wall_ms - started) / 1000.0 : 0.0;
    const uint64_t passing = r.passing_since_ms();
    out["passing_s"] = passing && now_wall_ms > passing ? (now_wall_ms - passing) / 1000.0 : 0.0;
  }
  json waiting = json::array();
  if (st == health::RolloutState::kWaiting) {
    for (const auto& w : r.waiting_for()) waiting.push_back(w);
    const uint64_t since = r.waiting_since_ms();
    out["waiting_since"] = utc_timestamp_ms(static_cast<int64_t>(since));
    out["waiting_s"] = now_wall_ms > since ? (now_wall_ms - since) / 1000.0 : 0.0;
  } else if (st == health::RolloutState::kRunning && r.entered()) {
    const config::RolloutStep& s = plan.steps[r.step()];
    const uint64_t bake_ms = uint64_t{plan.bake_s(r.step())} * 1000;
    const uint64_t passing = r.passing_since_ms();
    if (s.pause) {
      out["advances_at"] = utc_timestamp_ms(static_cast<int64_t>(started + bake_ms));
      waiting.push_back("the pause to end");
    } else if (passing) {
      // The step advances once it has passed for its bake time without a break and lasted it.
      const uint64_t at = std::max(started + bake_ms, passing + bake_ms);
      out["advances_at"] = utc_timestamp_ms(static_cast<int64_t>(at));
      waiting.push_back("the guard to keep passing until then");
    } else {
      waiting.push_back("a passing guard verdict");
    }
  } else if (st == health::RolloutState::kPaused) {
    waiting.push_back("an operator: resume, abort or promote");
  }
  if (live && !store_.leads()) waiting.push_back("the fleet leader (steps advance there)");
  out["waiting_for"] = waiting;
  return out;
}

}  // namespace weir::proxy
