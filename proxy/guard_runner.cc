#include "proxy/guard_runner.h"

#include <algorithm>

#include "proxy/http_util.h"
#include "proxy/log.h"

namespace weir::proxy {

namespace {

const config::Service* find_service(const config::Config& config, const std::string& name) {
  for (const auto& s : config.services) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

const config::Version* find_version(const config::Service& s, const std::string& name) {
  for (const auto& v : s.versions) {
    if (v.name == name) return &v;
  }
  return &s.versions.front();  // the caller judged `name` in this service's snapshot
}

}  // namespace

std::string revert_in(const config::Service& cs, const std::string& version, uint32_t weight,
                      ServiceRuntime& rt, AuditEvent& ev) {
  if (rt.reverted.count(version)) return "=";
  RuntimeState view;
  view.set(cs.name, rt);
  std::map<std::string, uint32_t> weights = view.weights(cs);
  ev.before = {{"weights", weights}, {"stable", view.stable(cs)}};
  weights[version] = weight;
  rt.weights = weights;
  rt.reverted.insert(version);
  ev.after = {{"weights", weights}, {"stable", view.stable(cs)}};
  return "";
}

bool GuardRunner::ramping(const std::string& service, const std::string& version) const {
  const ServiceRuntime* rt = store_.state().find(service);
  return rt && rt->reverted.count(version) && rt->ramps.contains(version);
}

void GuardRunner::tick(const std::shared_ptr<const routing::Snapshot>& snap,
                       const config::Config& config, uint64_t now_ms, uint64_t second) {
  // A revert or a rollout step publishes a new snapshot mid-loop; `snap` keeps this one alive.
  for (size_t si = 0; si < snap->services.size() && si < config.services.size(); ++si) {
    const routing::Service& svc = snap->services[si];
    const config::Service& cs = config.services[si];
    const config::GuardConfig& g = cs.guard;
    const std::string* rolling = rollouts_.running_version(svc.name);
    const ServiceRuntime* srt = store_.state().find(svc.name);
    const bool switched_off = g.enabled && srt && srt->guard_disabled;
    if (!g.enabled && !rolling) continue;
    if (switched_off && !rolling) continue;
    ServiceGuard& sg = guards_[svc.name];
    const uint32_t interval = g.enabled ? g.interval_ms : 1000;
    if (now_ms - sg.last_eval_ms < interval) continue;
    sg.last_eval_ms = now_ms;
    const routing::Version& stable = svc.versions[svc.stable];
    const health::Summary stable_summary = window_(svc, stable, second, g.window_s);
    const uint64_t wall = static_cast<uint64_t>(unix_time_ms());
    for (const auto& v : svc.versions) {
      if (&v == &stable || v.weight == 0) continue;
      // A version already ramping down after a revert is not judged (or reverted) again.
      if (ramping(svc.name, v.name)) continue;
      // Without a guard a rollout advances on time alone; with its guard switched off by an
      // operator it holds, since nothing watches the step it would advance to.
      health::Judgement judged;
      judged.verdict = switched_off ? health::Verdict::kHold : health::Verdict::kPass;
      if (g.enabled && !switched_off) {
        const health::Summary summary = window_(svc, v, second, g.window_s);
        auto [it, fresh] = sg.versions.try_emplace(v.name, v.name);
        // Probed unhealthy or ejected endpoints do not count: a version with none left fails.
        const auto healthy = static_cast<uint32_t>(std::count_if(
            v.endpoints.begin(), v.endpoints.end(), [](const auto& ep) { return ep.healthy; }));
        // Stamped with wall time: explain shows it as it was, whenever it is asked.
        health::Evaluation e = it->second.evaluate(
            g, summary, stable_summary, healthy, wall,
            checks_ ? checks_(cs, v.name, stable.name, now_ms) : std::vector<health::ExternalCheck>{});
        judged = {e.verdict, summary.completed, g.window_s, e.significant};
        sg.current[v.name] = e.verdict;
        sg.judged_weight[v.name] = v.weight;
        if (e.would_revert) dry_run_revert(cs, v, e);
        if (e.reverted) {
          revert(cs, v, e, summary, stable_summary, wall);
          it->second.reset();
        }
        sg.log.add(std::move(e));
        if (sg.current.count(v.name) == 0) continue;  // reverted: the rollout was told
      }
      if (rolling && *rolling == v.name) rollouts_.on_verdict(svc.name, judged, wall);
    }
  }
}

void GuardRunner::revert(const config::Service& cs, const routing::Version& v,
                         const health::Evaluation& e, const health::Summary& summary,
                         const health::Summary& stable_summary, uint64_t wall_ms) {
  const config::GuardConfig& g = cs.guard;
  std::string why;
  for (const auto& r : e.reasons) why += (why.empty() ? "" : "; ") + r;
  log(LogLevel::kWarn,
               "guard: service %s version %s reverted to weight 0 after %u breaches in a "
               "row (window %us): %s",
               cs.name.c_str(), v.name.c_str(), e.breaches_in_a_row, g.window_s, why.c_str());
  ServiceGuard& sg = guards_[cs.name];
  ++sg.reverts[v.name];
  sg.current.erase(v.name);
  const std::string version = v.name;
  ServiceChange sc;
  sc.service = cs.name;
  sc.event.actor = "guard";
  sc.event.action = "revert";
  sc.event.reason = why;
  sc.event.detail = nlohmann::json::parse(health::DecisionLog(1).to_json(cs.name, g), nullptr,
                                          false);
  sc.event.detail["evaluation"] = {{"version", v.name},
                                   {"error_rate", summary.error_rate},
                                   {"completed", summary.completed},
                                   {"errors", summary.errors},
                                   {"p99_ms", static_cast<double>(summary.p99_us) / 1000.0},
                                   {"stable_error_rate", stable_summary.error_rate},
                                   {"window_s", g.window_s}};
  // Applied to the latest state: with a fleet, another replica may have reverted it already.
  sc.revert_version = version;
  sc.apply = [cs, version, ramp = g.revert_ramp_ms, wall_ms](ServiceRuntime& rt, AuditEvent& ev) {
    RuntimeState view;
    view.set(cs.name, rt);
    const uint32_t from = view.weight(cs, *find_version(cs, version));
    // With a ramp, the first step happens now and the rest on the leader's ticks.
    std::string r = revert_in(cs, version, ramp ? from * (kRevertSteps - 1) / kRevertSteps : 0,
                              rt, ev);
    if (r.empty() && ramp && from > 0) {
      rt.ramps[version] = {{"from", from}, {"start_ms", wall_ms}, {"duration_ms", ramp}};
    }
    return r;
  };
  store_.commit(std::move(sc), [](const CommitResult& r) {
    if (!r.ok())
      log(LogLevel::kWarn, "guard: the revert could not be saved: %s", r.error.c_str());
  });
  rollouts_.on_revert(cs.name, version, why);
}

void GuardRunner::dry_run_revert(const config::Service& cs, const routing::Version& v,
                                 const health::Evaluation& e) {
  std::string why;
  for (const auto& r : e.dry_reasons) why += (why.empty() ? "" : "; ") + r;
  log(LogLevel::kWarn,
      "guard: service %s version %s would be reverted (dry run, %u breaches in a row); traffic "
      "stays: %s",
      cs.name.c_str(), v.name.c_str(), e.dry_breaches_in_a_row, why.c_str());
  ++guards_[cs.name].dry_run_reverts[v.name];
  AuditEvent ev;
  ev.actor = "guard";
  ev.action = "guard_dry_run_revert";
  ev.service = cs.name;
  ev.reason = why;
  ev.detail = {{"version", v.name},
               {"weight", v.weight},
               {"breaches_in_a_row", e.dry_breaches_in_a_row},
               {"breaches", e.dry_reasons},
               {"completed", e.canary.completed},
               {"error_rate", e.canary.error_rate},
               {"p99_ms", static_cast<double>(e.canary.p99_us) / 1000.0},
               {"stable_error_rate", e.stable.error_rate},
               {"window_s", cs.guard.window_s}};
  // Every replica of a fleet judges the same merged window: one record, from the leader.
  if (store_.leads()) store_.append(std::move(ev));
}

uint64_t GuardRunner::dry_run_reverts(const std::string& service,
                                      const std::string& version) const {
  auto g = guards_.find(service);
  if (g == guards_.end()) return 0;
  auto n = g->second.dry_run_reverts.find(version);
  return n == g->second.dry_run_reverts.end() ? 0 : n->second;
}

void GuardRunner::advance_ramps(const config::Config& config, uint64_t wall_ms) {
  if (!store_.leads()) return;
  for (const config::Service& cs : config.services) {
    const ServiceRuntime* rt = store_.state().find(cs.name);
    if (!rt || rt->ramps.empty() || rt->guard_disabled) continue;
    // Copies: a local store commits at once, and that replaces *rt.
    RuntimeState view;
    view.set(cs.name, *rt);
    const nlohmann::json ramps = rt->ramps;
    const std::set<std::string> reverted = rt->reverted;
    for (const auto& item : ramps.items()) {
      // Named, not a structured binding: clang 14 cannot capture one in the lambdas below.
      const std::string& version = item.key();
      const nlohmann::json& ramp = item.value();
      const std::string key = cs.name + "/" + version;
      if (!reverted.count(version) || stepping_->count(key)) continue;
      const uint64_t start = ramp.value("start_ms", uint64_t{0});
      const uint64_t duration = std::max<uint64_t>(1, ramp.value("duration_ms", uint64_t{1}));
      const uint32_t from = ramp.value("from", 0u);
      const uint64_t elapsed = wall_ms > start ? wall_ms - start : 0;
      const auto due = static_cast<uint32_t>(
          std::min<uint64_t>(kRevertSteps, 1 + elapsed * kRevertSteps / duration));
      const uint32_t w = from * (kRevertSteps - due) / kRevertSteps;
      auto cv = std::find_if(cs.versions.begin(), cs.versions.end(),
                             [&](const config::Version& v) { return v.name == version; });
      if (cv == cs.versions.end()) continue;  // reconciled away with its version set
      if (view.weight(cs, *cv) <= w && due < kRevertSteps) continue;  // this step is done
      ServiceChange sc;
      sc.service = cs.name;
      sc.event.actor = "guard";
      sc.event.action = "revert_step";
      sc.event.reason = "revert_ramp_ms: step " + std::to_string(due) + " of " +
                        std::to_string(kRevertSteps);
      sc.apply = [svc = cs, version = version, w, last = due >= kRevertSteps](ServiceRuntime& rt,
                                                                              AuditEvent& ev) {
        // An operator took the version back meanwhile, or the guard was switched off: over.
        if (!rt.reverted.count(version) || !rt.ramps.contains(version)) return std::string("=");
        RuntimeState now;
        now.set(svc.name, rt);
        std::map<std::string, uint32_t> weights = now.weights(svc);
        if (last) rt.ramps.erase(version);
        if (weights[version] <= w) return std::string(last ? "" : "=");
        ev.before = {{"weights", weights}};
        weights[version] = w;
        rt.weights = weights;
        ev.after = {{"weights", weights}};
        return std::string();
      };
      stepping_->insert(key);
      store_.commit(std::move(sc), [stepping = stepping_, key](const CommitResult& res) {
        stepping->erase(key);
        if (!res.ok())
          log(LogLevel::kWarn, "guard: a revert step could not be saved: %s", res.error.c_str());
      });
      log(LogLevel::kInfo, "guard: service %s version %s revert ramp at weight %u",
          cs.name.c_str(), version.c_str(), w);
    }
  }
}

void GuardRunner::on_state(const config::Config& config, const std::string& service) {
  const ServiceRuntime* rt = store_.state().find(service);
  const config::Service* cs = find_service(config, service);
  auto sg = guards_.find(service);
  if (!rt || !cs) return;
  if (rt->guard_disabled) {
    // The breaches a disabled guard counted are stale by the time it is back on.
    if (sg != guards_.end()) {
      for (auto& [name, vg] : sg->second.versions) vg.reset();
      sg->second.current.clear();
    }
    return;
  }
  if (sg == guards_.end()) return;
  RuntimeState view;
  view.set(service, *rt);
  const std::map<std::string, uint32_t> weights = view.weights(*cs);
  const std::string& stable = view.stable(*cs);
  ServiceGuard& g = sg->second;
  for (auto it = g.current.begin(); it != g.current.end();) {
    auto w = weights.find(it->first);
    auto judged = g.judged_weight.find(it->first);
    // A verdict belongs to the traffic it judged: a version re-ramped, promoted to stable or
    // taken out has none until it is judged again.
    if (w == weights.end() || it->first == stable || judged == g.judged_weight.end() ||
        judged->second != w->second) {
      it = g.current.erase(it);
    } else {
      ++it;
    }
  }
}

std::string GuardRunner::state(const config::Service& s, std::string_view version) const {
  const ServiceRuntime* rt = store_.state().find(s.name);
  if (rt && rt->guard_disabled) return "disabled";
  if (rt && (version.empty() ? !rt->reverted.empty() : rt->reverted.count(std::string(version))))
    return "reverted";
  auto g = guards_.find(s.name);
  if (g == guards_.end()) return "hold";
  const auto& current = g->second.current;
  if (!version.empty()) {
    auto it = current.find(std::string(version));
    return it == current.end() ? "hold" : health::to_string(it->second);
  }
  // The service as a whole: the worst current verdict of its judged versions.
  bool any_pass = false, any_hold = false;
  for (const auto& [name, v] : current) {
    if (v == health::Verdict::kFail) return "fail";
    any_hold = any_hold || v == health::Verdict::kHold;
    any_pass = any_pass || v == health::Verdict::kPass;
  }
  return any_hold || !any_pass ? "hold" : "pass";
}

std::string GuardRunner::explain_json(const config::Service& s) const {
  auto it = guards_.find(s.name);
  static const health::DecisionLog kEmpty;
  nlohmann::json out = nlohmann::json::parse(
      (it == guards_.end() ? kEmpty : it->second.log).to_json(s.name, s.guard));
  for (auto& d : out["decisions"]) d["time"] = utc_timestamp_ms(d["at_ms"].get<int64_t>());
  // The rollout the guard gates, waits included: explain answers "why is it not moving?".
  if (s.rollout.present)
    out["rollout"] = rollouts_.detail(s.name, static_cast<uint64_t>(unix_time_ms()));
  if (it != guards_.end()) {
    nlohmann::json dry = nlohmann::json::object();
    for (const auto& [version, n] : it->second.dry_run_reverts) dry[version] = n;
    if (!dry.empty()) out["dry_run_reverts"] = dry;
  }
  return out.dump();
}

const health::Evaluation* GuardRunner::last_decision(const std::string& service,
                                                     const std::string& version) const {
  auto g = guards_.find(service);
  if (g == guards_.end()) return nullptr;
  const auto& entries = g->second.log.entries();
  auto it = std::find_if(entries.rbegin(), entries.rend(),
                         [&](const health::Evaluation& e) { return e.version == version; });
  return it == entries.rend() ? nullptr : &*it;
}

uint64_t GuardRunner::reverts(const std::string& service, const std::string& version) const {
  auto g = guards_.find(service);
  if (g == guards_.end()) return 0;
  auto n = g->second.reverts.find(version);
  return n == g->second.reverts.end() ? 0 : n->second;
}

}  // namespace weir::proxy
