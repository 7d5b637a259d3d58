#include "proxy/rollout_driver.h"


#include "proxy/http_util.h"
#include "proxy/log.h"

namespace weir::proxy {

namespace {

using nlohmann::json;

health::RolloutState state_named(const std::string& s, bool* ok) {
  using S = health::RolloutState;
  *ok = true;
  for (S st : {S::kIdle, S::kRunning, S::kPaused, S::kPromoted, S::kAborted}) {
    if (s == health::to_string(st)) return st;
  }
  *ok = false;
  return S::kIdle;
}

}  // namespace

json position_json(const health::Rollout::Position& p) {
  return {{"state", health::to_string(p.state)},
          {"step", p.step},
          {"step_started_ms", p.step_started_ms},
          {"reason", p.reason}};
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
  return p;
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
        log(LogLevel::kInfo, "rollout: service %s did not start: %s", name.c_str(),
                     r.error.c_str());
    });
  }
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
  health::Rollout::Action a;
  if (op == "start") {
    a = r.start(now, &error);
  } else if (op == "pause") {
    a = r.pause(&error);
  } else if (op == "resume") {
    a = r.resume(now, &error);
  } else if (op == "abort") {
    a = r.abort("aborted by " + actor + (reason.empty() ? "" : ": " + reason));
    if (!a.change) error = "only a running or paused rollout can be aborted";
  } else if (op == "promote") {
    a = r.promote(&error);
  } else {
    error = "unknown rollout operation " + op + " (start, pause, resume, abort, promote)";
  }
  if (!error.empty()) {
    done({409, "rollout_refused", error});
    return;
  }
  AuditEvent ev;
  ev.actor = actor;
  ev.action = "rollout_" + op;
  ev.reason = reason.empty() ? a.why : reason;
  apply(e, before, r, a, std::move(ev), std::move(done));
}

void RolloutDriver::apply(const Entry& e, const json& before, const health::Rollout& after,
                          const health::Rollout::Action& a, AuditEvent ev, CommitDone done) {
  ServiceChange sc;
  sc.service = e.service.name;
  sc.event = std::move(ev);
  const bool by_guard = sc.event.actor == "guard";
  sc.apply = [svc = e.service, before, pos = position_json(after.position()), a,
              by_guard](ServiceRuntime& rt, AuditEvent& ev) {
    // A position that does not fit this plan (the config changed) counts as never started.
    json stored = position_json({});
    if (auto p = position_from_json(rt.rollout); p && p->step < svc.rollout.steps.size())
      stored = rt.rollout;
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
        log(LogLevel::kInfo, "rollout: service %s promoted %s to stable (%s)",
                     name.c_str(), version.c_str(), why.c_str());
      } else if (a.change) {
        log(LogLevel::kInfo, "rollout: service %s version %s at %u%% (%s)", name.c_str(),
                     version.c_str(), a.weight, why.c_str());
      } else if (what == "rollout_abort") {
        log(LogLevel::kWarn, "rollout: service %s aborted by the guard", name.c_str());
      } else {
        log(LogLevel::kInfo, "rollout: service %s %s (%s)", name.c_str(), what.c_str(),
                     why.c_str());
      }
    }
    done(r);
  });
}

const std::string* RolloutDriver::running_version(const std::string& service) const {
  auto it = entries_.find(service);
  if (it == entries_.end() || it->second.rollout.state() != health::RolloutState::kRunning)
    return nullptr;
  return &it->second.service.rollout.version;
}

void RolloutDriver::on_verdict(const std::string& service, health::Verdict v,
                               uint64_t now_wall_ms) {
  auto it = entries_.find(service);
  if (it == entries_.end() || !store_.leads()) return;
  Entry& e = it->second;
  if (e.rollout.state() != health::RolloutState::kRunning) return;
  const json before = position_json(e.rollout.position());
  // The run of passes lives in the driver's own copy; only a step or a pause is a change.
  health::Rollout::Action a = e.rollout.on_verdict(v, now_wall_ms);
  const json after = position_json(e.rollout.position());
  if (after == before) return;
  AuditEvent ev;
  ev.actor = "rollout";
  ev.action = a.promote ? "rollout_promote" : a.change ? "rollout_step" : "rollout_pause";
  ev.reason = a.why.empty() ? e.rollout.last_reason() : a.why;
  health::Rollout moved = e.rollout;
  // Until the store has it, the driver stays where the store is (on_state brings it forward).
  e.rollout.restore(*position_from_json(before));
  apply(e, before, moved, a, std::move(ev), [service](const CommitResult& r) {
    if (!r.ok())
      log(LogLevel::kWarn, "rollout: service %s: the step could not be saved: %s",
                   service.c_str(), r.error.c_str());
  });
}

void RolloutDriver::on_revert(const std::string& service, const std::string& version,
                              const std::string& why) {
  auto it = entries_.find(service);
  if (it == entries_.end() || it->second.service.rollout.version != version) return;
  Entry& e = it->second;
  const auto st = e.rollout.state();
  if (st != health::RolloutState::kRunning && st != health::RolloutState::kPaused) return;
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
      log(LogLevel::kWarn, "rollout: service %s: the abort could not be saved: %s",
                   service.c_str(), res.error.c_str());
  });
}

std::string RolloutDriver::state(const std::string& service) const {
  auto it = entries_.find(service);
  return it == entries_.end() ? "none" : health::to_string(it->second.rollout.state());
}

json RolloutDriver::detail(const std::string& service, uint64_t now_wall_ms) const {
  auto it = entries_.find(service);
  if (it == entries_.end()) return nullptr;
  const Entry& e = it->second;
  const health::Rollout& r = e.rollout;
  const config::RolloutConfig& plan = e.service.rollout;
  json out = {{"version", plan.version},
              {"steps", plan.steps},
              {"step_s", plan.step_s},
              {"max_step_s", plan.max_step_s},
              {"reason", r.last_reason()}};
  if (r.state() == health::RolloutState::kIdle) return out;
  out["step"] = r.step();
  out["step_of"] = plan.steps.size();
  out["weight"] = r.weight();
  const uint64_t started = r.step_started_ms();
  if (r.state() == health::RolloutState::kRunning || r.state() == health::RolloutState::kPaused) {
    out["step_started"] = utc_timestamp_ms(static_cast<int64_t>(started));
    out["in_step_s"] = now_wall_ms > started ? (now_wall_ms - started) / 1000.0 : 0.0;
    const uint64_t passing = r.passing_since_ms();
    out["passing_s"] = passing && now_wall_ms > passing ? (now_wall_ms - passing) / 1000.0 : 0.0;
  }
  if (r.state() == health::RolloutState::kRunning) {
    const uint64_t step_ms = uint64_t{plan.step_s} * 1000;
    const uint64_t passing = r.passing_since_ms();
    // The step advances once it has passed for step_s without a break and lasted step_s.
    if (passing) {
      const uint64_t at = std::max(started + step_ms, passing + step_ms);
      out["advances_at"] = utc_timestamp_ms(static_cast<int64_t>(at));
      out["waiting_for"] = "the guard to keep passing until then";
    } else {
      out["waiting_for"] = "a passing guard verdict";
    }
    if (!store_.leads()) out["waiting_for"] = "the fleet leader (steps advance there)";
  } else if (r.state() == health::RolloutState::kPaused) {
    out["waiting_for"] = "an operator: resume, abort or promote";
  }
  return out;
}

}  // namespace weir::proxy
