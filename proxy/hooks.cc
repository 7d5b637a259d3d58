#include "proxy/hooks.h"

#include <algorithm>
#include <cstdio>

#include "proxy/http_util.h"

namespace weir::proxy {

namespace {

using nlohmann::json;
using Type = config::Hook::Type;

json metadata_json(const config::Hook& h) {
  json m = json::object();
  for (const auto& [k, v] : h.metadata) m[k] = v;
  return m;
}

std::string ms_text(double ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f ms", ms);
  return buf;
}

}  // namespace

std::string HookCall::summary() const {
  if (status) return "HTTP " + std::to_string(status) + " in " + ms_text(duration_ms);
  return error.empty() ? std::string("no answer") : error;
}

json HookCall::to_json() const {
  return {{"service", service}, {"hook", hook},         {"type", type},
          {"time", time},       {"attempts", attempts}, {"status", status},
          {"ok", ok()},         {"error", error},       {"duration_ms", duration_ms},
          {"excerpt", excerpt}};
}

std::string slack_text(const json& e) {
  const std::string service = e.value("service", "");
  const std::string action = e.value("action", "");
  const std::string actor = e.value("actor", "");
  std::string text = "weir: " + (service.empty() ? std::string("(process)") : service) + ": " +
                     action + " by " + actor;
  // The figures an operator reads first: weights after, and why.
  if (e.contains("after") && e["after"].is_object() && e["after"].contains("weights")) {
    std::string w;
    for (const auto& [name, weight] : e["after"]["weights"].items())
      w += (w.empty() ? "" : ", ") + name + " " + weight.dump();
    text += " (weights now " + w + ")";
  }
  const std::string reason = e.value("reason", "");
  if (!reason.empty()) text += ": " + reason;
  return text;
}

HookRunner::HookRunner(uv_loop_t* loop, ControlStore& store)
    : store_(store), clients_(loop) {}

void HookRunner::configure(const config::Config& config) {
  hooks_.clear();
  for (const auto& s : config.services) {
    if (!s.hooks.empty()) hooks_[s.name] = s.hooks;
  }
  if (!seq_known_) {
    seq_known_ = true;
    for (const auto& e : store_.events_since(0, 1)) last_seq_ = e.value("seq", uint64_t{0});
  }
}

void HookRunner::call(const std::string& service, const config::Hook& hook, json payload,
                      bool audit, Done done) {
  Pending p;
  p.service = service;
  p.hook = hook;
  p.body = payload.dump();
  p.audit = audit;
  p.event = hook.type == Type::kEvent;
  p.done = std::move(done);
  p.id = next_id_++;
  if (p.event) {
    if (events_in_flight_.size() >= kMaxQueued) {
      // Bounded: the oldest event still waiting for a retry gives way to the new one.
      auto oldest = std::find_if(retries_.begin(), retries_.end(),
                                 [](const Pending& r) { return r.event; });
      if (oldest == retries_.end()) {
        ++figures_.dropped;
        std::fprintf(stderr, "weir: hook %s of %s: queue full, event dropped\n",
                     hook.name.c_str(), service.c_str());
        return;
      }
      std::erase(events_in_flight_, oldest->id);
      retries_.erase(oldest);
      ++figures_.dropped;
    }
    events_in_flight_.push_back(p.id);
  }
  figures_.queued = events_in_flight_.size();
  attempt(std::move(p));
}

void HookRunner::attempt(Pending p) {
  ++p.attempt;
  const config::OutgoingTarget& t = p.hook.target;
  HttpRequest req = OutgoingClients::request(t, "POST", t.url, p.body);
  req.headers.emplace_back("Content-Type", "application/json");
  const int64_t started = unix_time_ms();
  HttpCallbacks cb;
  cb.on_done = [this, p, started](HttpError error, HttpResponse response) mutable {
    HookCall c;
    c.service = p.service;
    c.hook = p.hook.name;
    c.type = config::to_string(p.hook.type);
    c.time = utc_timestamp_ms();
    c.attempts = p.attempt;
    c.duration_ms = static_cast<double>(unix_time_ms() - started);
    if (error.ok()) {
      c.status = response.status;
      c.excerpt = excerpt(response.body);
    } else {
      c.error = std::string(to_string(error.kind)) + ": " + error.message;
      c.excerpt = excerpt(c.error);
    }
    ++figures_.calls;
    // A 4xx is the receiver's answer ("not yet", "no"); no answer, a 5xx or a 429 is retried.
    const bool retryable = c.status == 0 || c.status >= 500 || c.status == 429;
    if (!c.ok() && retryable && p.attempt <= p.hook.retries) {
      // Doubling backoff from backoff_ms, capped at a minute.
      const uint64_t delay =
          std::min<uint64_t>(60000, uint64_t{p.hook.backoff_ms} << std::min(p.attempt - 1, 16u));
      p.due_ms = now_ms_ + delay;
      retries_.push_back(std::move(p));
      return;
    }
    if (!c.ok()) ++figures_.failures;
    if (p.event) std::erase(events_in_flight_, p.id);
    figures_.queued = events_in_flight_.size();
    record(c, p.audit);
    if (p.done) p.done(c);
  };
  clients_.client(t).request(std::move(req), std::move(cb));
}

void HookRunner::record(const HookCall& c, bool audit) {
  auto& list = calls_[c.service];
  list.push_back(c);
  while (list.size() > kKeptCalls) list.pop_front();
  std::fprintf(stderr, "weir: hook %s (%s) of %s: %s after %u attempt(s)\n", c.hook.c_str(),
               c.type.c_str(), c.service.c_str(), c.summary().c_str(), c.attempts);
  if (audit) this->audit(c);
}

void HookRunner::audit(const HookCall& c) {
  AuditEvent ev;
  ev.actor = "hook:" + c.hook;
  ev.action = "hook_call";
  ev.service = c.service;
  ev.reason = c.type + " hook " + c.hook + ": " + c.summary();
  ev.detail = c.to_json();
  store_.append(std::move(ev));
}

void HookRunner::tick(uint64_t now_ms) {
  now_ms_ = now_ms;
  std::deque<Pending> due;
  for (auto it = retries_.begin(); it != retries_.end();) {
    if (it->due_ms <= now_ms) {
      due.push_back(std::move(*it));
      it = retries_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& p : due) attempt(std::move(p));
  poll_events();
}

void HookRunner::poll_events() {
  if (!seq_known_) return;
  // Only where the store leads: a fleet notifies once. Other replicas keep up with the trail.
  const bool leads = store_.leads();
  for (const auto& e : store_.events_since(last_seq_, 1000)) {
    last_seq_ = std::max(last_seq_, e.value("seq", uint64_t{0}));
    if (leads) send_events(e);
  }
}

void HookRunner::send_events(const json& e) {
  const std::string service = e.value("service", "");
  const std::string action = e.value("action", "");
  auto it = hooks_.find(service);
  // A hook's own calls are evidence, not changes of the service: no event about them.
  if (it == hooks_.end() || action == "hook_call") return;
  const bool ended = action == "rollout_promote" || action == "rollout_abort" ||
                     (e.contains("after") && e["after"].is_object() &&
                      e["after"].contains("rollout") && e["after"]["rollout"].is_object() &&
                      (e["after"]["rollout"].value("state", "") == "aborted" ||
                       e["after"]["rollout"].value("state", "") == "promoted") &&
                      !(e.contains("before") && e["before"].is_object() &&
                        e["before"].contains("rollout") && e["before"]["rollout"].is_object() &&
                        e["before"]["rollout"].value("state", "") ==
                            e["after"]["rollout"].value("state", "")));
  for (const auto& h : it->second) {
    if (h.type == Type::kEvent) {
      json body = h.slack ? json{{"text", slack_text(e)}}
                          : json{{"source", "weir"},    {"hook", h.name},
                                 {"type", "event"},     {"service", service},
                                 {"event", e},          {"metadata", metadata_json(h)}};
      call(service, h, std::move(body), true);
    } else if (h.type == Type::kPostRollout && ended) {
      const json& after = e.contains("after") && e["after"].is_object() ? e["after"] : json();
      std::string outcome = action == "rollout_promote" ? "promoted" : "aborted";
      if (after.contains("rollout") && after["rollout"].is_object())
        outcome = after["rollout"].value("state", outcome);
      json body = {{"source", "weir"},   {"hook", h.name},       {"type", "post-rollout"},
                   {"service", service}, {"outcome", outcome},   {"reason", e.value("reason", "")},
                   {"event", e},         {"metadata", metadata_json(h)}};
      // Failure is only logged (and audited, like every call).
      call(service, h, std::move(body), true);
    }
  }
}

json HookRunner::explain(const std::string& service) const {
  json out = json::array();
  auto it = calls_.find(service);
  if (it != calls_.end()) {
    for (const auto& c : it->second) out.push_back(c.to_json());
  }
  return out;
}

void HookRunner::close() {
  retries_.clear();
  events_in_flight_.clear();
  clients_.close();
}

// --- ReleaseHooks ---------------------------------------------------------------------------

json ReleaseHooks::payload(const config::Service& svc, const config::Hook& h,
                           const RolloutInfo& r) {
  json j = {{"source", "weir"},       {"hook", h.name},
            {"type", config::to_string(h.type)},
            {"service", svc.name},    {"version", r.version},
            {"stable", r.stable},     {"step", r.step},
            {"weight", r.weight},     {"phase", r.phase},
            {"metadata", metadata_json(h)}};
  // How a smoke test reaches the version before it takes traffic.
  if (!svc.override_header.empty())
    j["override"] = {{"header", svc.override_header}, {"value", r.version}};
  else if (!svc.override_cookie.empty())
    j["override"] = {{"cookie", svc.override_cookie}, {"value", r.version}};
  return j;
}

ReleaseHooks::Gate& ReleaseHooks::gate(const config::Service& svc, const config::Hook& h) {
  using K = health::HookPoll::Kind;
  const K kind = h.type == Type::kPreRollout ? K::kPreRollout
                 : h.type == Type::kRollback ? K::kRollback
                 : h.type == Type::kRollout  ? K::kRollout
                                             : K::kConfirm;
  auto it = gates_.find({svc.name, h.name});
  if (it == gates_.end())
    it = gates_.emplace(std::make_pair(svc.name, h.name),
                        Gate{health::HookPoll(kind, h.interval_ms, h.threshold), h.name})
             .first;
  return it->second;
}

void ReleaseHooks::drive(const config::Service& svc, const config::Hook& h, const RolloutInfo& r,
                         const std::string& key, uint64_t now_ms) {
  Gate& g = gate(svc, h);
  g.poll.arm(key);
  if (!g.poll.due(now_ms)) return;
  g.poll.started(now_ms);
  // A rollout hook runs every guard interval: its calls are in explain, and in the audit log
  // only when its answer changes (a trail of identical passes would bury every other event).
  // Polled hooks go to the audit log on their first answer and when the answer changes.
  const bool periodic = h.type == Type::kRollout || h.type == Type::kRollback ||
                        h.type == Type::kConfirmRollout || h.type == Type::kConfirmPromotion ||
                        h.type == Type::kConfirmTrafficIncrease;
  runner_.call(svc.name, h, payload(svc, h, r), !periodic,
               [this, service = svc.name, hook = h, key](const HookCall& c) {
                 auto it = gates_.find({service, hook.name});
                 if (it == gates_.end() || it->second.poll.key() != key) return;
                 health::HookPoll& p = it->second.poll;
                 const auto before = p.outcome();
                 const uint32_t calls_before = p.calls();
                 p.answered(c.ok(), c.summary());
                 const auto after = p.outcome();
                 if (hook.type != Type::kPreRollout &&
                     (calls_before == 0 || after != before))
                   runner_.audit(c);
                 if (hook.type == Type::kPreRollout && after == health::HookPoll::Outcome::kFailed &&
                     before != after) {
                   abort_(service, "hook:" + hook.name,
                          "pre-rollout hook " + hook.name + " failed " +
                              std::to_string(p.failures()) + " time(s) (threshold " +
                              std::to_string(hook.threshold) + "), last: " + c.summary());
                 }
                 if (hook.type == Type::kRollback && after == health::HookPoll::Outcome::kPassed &&
                     before != after) {
                   abort_(service, "hook:" + hook.name,
                          "rollback hook " + hook.name + " answered " + c.summary());
                 }
               });
}

std::vector<std::string> ReleaseHooks::holds(const config::Service& svc, const RolloutInfo& r,
                                             uint64_t now_ms) {
  std::vector<std::string> out;
  const std::string key = std::to_string(r.run) + "/" + std::to_string(r.step) + "/" + r.phase;
  for (const auto& h : svc.hooks) {
    const bool applies =
        (r.phase == "start" && (h.type == Type::kPreRollout || h.type == Type::kConfirmRollout)) ||
        (r.phase == "increase" && h.type == Type::kConfirmTrafficIncrease) ||
        (r.phase == "promotion" && h.type == Type::kConfirmPromotion);
    if (!applies) continue;
    // A pre-rollout smoke test runs once per run of the rollout; a confirmation per gate.
    drive(svc, h, r, h.type == Type::kPreRollout ? std::to_string(r.run) : key, now_ms);
    const Gate& g = gates_.at({svc.name, h.name});
    if (g.poll.outcome() == health::HookPoll::Outcome::kPassed) continue;
    std::string why = std::string(config::to_string(h.type)) + " hook " + h.name;
    if (h.type == Type::kPreRollout) {
      why += g.poll.calls() ? ": " + std::to_string(g.poll.failures()) + " of " +
                                  std::to_string(h.threshold) + " failure(s), last " +
                                  g.poll.last()
                            : ": running";
    } else {
      why += ": no 2xx yet" + (g.poll.calls() ? " (last " + g.poll.last() + ")" : std::string());
    }
    out.push_back(std::move(why));
  }
  return out;
}

std::vector<health::ExternalCheck> ReleaseHooks::rollout_checks(const config::Service& svc,
                                                                const RolloutInfo& r,
                                                                uint64_t now_ms) {
  std::vector<health::ExternalCheck> out;
  const std::string key = std::to_string(r.run) + "/" + std::to_string(r.step);
  for (const auto& h : svc.hooks) {
    if (h.type != Type::kRollout) continue;
    drive(svc, h, r, key, now_ms);
    const Gate& g = gates_.at({svc.name, h.name});
    health::ExternalCheck c;
    c.name = "rollout hook " + h.name;
    using O = health::HookPoll::Outcome;
    c.verdict = g.poll.outcome() == O::kPassed   ? health::Verdict::kPass
                : g.poll.outcome() == O::kFailed ? health::Verdict::kFail
                                                 : health::Verdict::kHold;
    c.reason = g.poll.calls() ? g.poll.last() : "no answer yet";
    out.push_back(std::move(c));
  }
  return out;
}

void ReleaseHooks::poll_rollback(const config::Service& svc, const RolloutInfo& r,
                                 uint64_t now_ms) {
  for (const auto& h : svc.hooks) {
    if (h.type == Type::kRollback) drive(svc, h, r, std::to_string(r.run), now_ms);
  }
}

json ReleaseHooks::explain(const std::string& service) const {
  json out = json::array();
  using O = health::HookPoll::Outcome;
  for (const auto& [key, g] : gates_) {
    if (key.first != service) continue;
    out.push_back({{"hook", g.hook},
                   {"outcome", g.poll.outcome() == O::kPassed   ? "passed"
                               : g.poll.outcome() == O::kFailed ? "failed"
                                                                : "pending"},
                   {"calls", g.poll.calls()},
                   {"failures", g.poll.failures()},
                   {"last", g.poll.last()},
                   {"in_flight", g.poll.in_flight()}});
  }
  return out;
}

}  // namespace weir::proxy
