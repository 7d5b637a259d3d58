#include "proxy/fleet_store.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>

#include "proxy/file_store.h"
#include "proxy/log.h"
#include "proxy/version.h"
#include "proxy/guard_runner.h"
#include "proxy/http_util.h"

namespace weir::proxy {

namespace {

using nlohmann::json;

constexpr uint64_t kTimerMs = 100;
constexpr int kMaxAttempts = 8;
// A replica publishes at most this many seconds of windows per key, and this many keys: the
// bound on its replicas/ value (each second: 10 counters and the non-empty latency buckets).
constexpr size_t kMaxSecondsPerKey = 5;
constexpr size_t kMaxWindowKeys = 256;

uint64_t mono_ms() { return uv_hrtime() / 1000000; }

const config::Service* find_service(const config::Config& c, const std::string& name) {
  for (const auto& s : c.services) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

json sparse(const std::vector<uint64_t>& v) {
  json out = json::array();
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i]) out.push_back({i, v[i]});
  }
  return out;
}

void unsparse(const json& j, std::vector<uint64_t>& out) {
  if (!j.is_array()) return;
  for (const auto& p : j) {
    if (!p.is_array() || p.size() != 2 || !p[0].is_number_unsigned() || !p[1].is_number_unsigned())
      continue;
    const auto i = p[0].get<size_t>();
    if (i < out.size()) out[i] += p[1].get<uint64_t>();
  }
}

std::string default_replica(const std::string& admin_address) {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "weir");
  const size_t colon = admin_address.rfind(':');
  std::string port = colon == std::string::npos ? "" : admin_address.substr(colon + 1);
  // A port the kernel picks is not known yet and would not tell replicas apart: the pid does.
  if (port.empty() || port == "0") port = "pid" + std::to_string(::getpid());
  return std::string(host) + ":" + port;
}

EtcdSettings etcd_settings(const config::FleetSettings& f) {
  EtcdSettings s;
  s.endpoints = f.endpoints;
  for (auto& e : s.endpoints) {
    if (!e.empty() && e.back() == '/') e.pop_back();
  }
  s.timeout_ms = f.timeout_ms;
  s.tls.ca_file = f.ca_file;
  s.tls.cert = f.cert;
  s.tls.key = f.key;
  s.username = f.username;
  s.password = f.password;
  return s;
}

std::string status_text(const EtcdStatus& st) {
  return "etcd " + (st.endpoint.empty() ? std::string("(no endpoint)") : st.endpoint) + ": " +
         st.message;
}

}  // namespace

// A false positive of clang-tidy 14 on the implicit move of nlohmann::json members (json's
// by-value operator= is noexcept for a moved-from json).
// NOLINTNEXTLINE(bugprone-exception-escape)
struct FleetStore::Attempt {
  ServiceChange change;
  CommitDone done;
  int tries = 0;
};

FleetStore::FleetStore(uv_loop_t* loop, const config::Config& config, std::string admin_address)
    : loop_(loop),
      config_(std::make_shared<const config::Config>(config)),
      prefix_(config.fleet.prefix),
      replica_(config.fleet.replica.empty() ? default_replica(admin_address)
                                            : config.fleet.replica),
      admin_address_(std::move(admin_address)),
      lease_ttl_s_(config.fleet.lease_ttl_s),
      publish_ms_(config.fleet.publish_ms),
      files_(config.admin.state_dir),
      etcd_(std::make_unique<EtcdClient>(loop, etcd_settings(config.fleet))) {}

FleetStore::~FleetStore() {
  if (etcd_) etcd_->close();
}

bool FleetStore::up() const { return watch_up_ && calls_up_; }

bool FleetStore::open(const config::Config& config, std::string* error) {
  config_ = std::make_shared<const config::Config>(config);
  if (!files_.open(error)) return false;
  // Reverts kept while etcd was away, from an earlier run.
  {
    std::ifstream in(files_.dir() + "/fleet-pending.json");
    if (in) {
      json j = json::parse(in, nullptr, false);
      if (j.is_array()) {
        for (const auto& p : j) {
          if (!p.is_object() || !p.contains("service") || !p.contains("version")) continue;
          Pending pe;
          pe.service = p.value("service", "");
          pe.version = p.value("version", "");
          pe.event.actor = "guard";
          pe.event.action = "revert";
          pe.event.reason = p.value("reason", "");
          pe.event.detail = p.value("detail", json());
          pending_.push_back(std::move(pe));
        }
      }
    }
  }
  bool done = false;
  EtcdStatus status;
  int64_t revision = 0;
  std::vector<EtcdKv> kvs;
  etcd_->range(prefix_, prefix_range_end(prefix_),
               [&](const EtcdStatus& st, int64_t rev, std::vector<EtcdKv> got, bool) {
                 status = st;
                 revision = rev;
                 kvs = std::move(got);
                 done = true;
               });
  // Before any listener takes traffic: the fleet's state, or the cache when etcd is away.
  while (!done) uv_run(loop_, UV_RUN_ONCE);
  if (status.ok()) {
    load_all(kvs, revision, false);
    log(LogLevel::kInfo, "fleet: replica %s joined %s at revision %lld (%zu services shared)",
                 replica_.c_str(), prefix_.c_str(), static_cast<long long>(revision),
                 shared_.size());
    save_cache();
  } else {
    calls_up_ = false;
    last_error_ = status_text(status);
    std::string why;
    std::optional<json> cached = files_.load_state(&why);
    if (cached && cached->contains("fleet") && (*cached)["fleet"].is_object()) {
      const json& f = (*cached)["fleet"];
      applied_revision_ = f.value("revision", int64_t{0});
      if (f.contains("shared") && f["shared"].is_object()) {
        for (const auto& [name, v] : f["shared"].items()) {
          Shared s;
          std::string bad;
          if (!v.is_object() || !s.rt.read_shared(v.value("state", json::object()), &bad))
            continue;
          s.mod_revision = v.value("mod_revision", int64_t{0});
          s.writer = v.value("writer", "");
          shared_[name] = std::move(s);
        }
      }
      log(LogLevel::kInfo,
                   "fleet: %s; serving the cached fleet state from %s (revision %lld) "
                   "until etcd answers",
                   last_error_.c_str(), files_.dir().c_str(),
                   static_cast<long long>(applied_revision_));
    } else {
      log(LogLevel::kWarn,
                   "fleet: %s; no cached fleet state in %s: starting from the "
                   "configuration until etcd answers",
                   last_error_.c_str(), files_.dir().c_str());
    }
  }
  derive_all(false);
  start_watch(applied_revision_ ? applied_revision_ + 1 : 0);
  uv_timer_init(loop_, &timer_);
  timer_.data = this;
  uv_timer_start(&timer_, on_timer, 0, kTimerMs);
  timer_started_ = true;
  return true;
}

void FleetStore::load_all(const std::vector<EtcdKv>& kvs, int64_t revision, bool notify) {
  shared_.clear();
  members_.clear();
  events_.clear();
  leader_.clear();
  for (const auto& kv : kvs) apply_kv(kv, false, false);
  std::sort(events_.begin(), events_.end(), [](const json& a, const json& b) {
    return a["seq"].get<int64_t>() < b["seq"].get<int64_t>();
  });
  while (events_.size() > kKeptEvents) events_.pop_front();
  applied_revision_ = revision;
  derive_all(notify);
}

void FleetStore::start_watch(int64_t from_revision) {
  EtcdWatchHandler h;
  h.on_events = [this](int64_t revision, const std::vector<EtcdEvent>& events) {
    for (const auto& e : events) apply_kv(e.kv, e.type == EtcdEvent::Type::kDelete, true);
    applied_revision_ = std::max(applied_revision_, revision);
  };
  h.on_progress = [this](int64_t revision) {
    applied_revision_ = std::max(applied_revision_, revision);
  };
  h.on_compacted = [this](int64_t compact_revision) {
    log(LogLevel::kWarn, "fleet: watch history compacted at %lld: reading the state again",
                 static_cast<long long>(compact_revision));
    watch_.reset();
    etcd_->range(prefix_, prefix_range_end(prefix_),
                 [this](const EtcdStatus& st, int64_t rev, const std::vector<EtcdKv>& kvs, bool) {
                   if (stopping_) return;
                   if (st.ok()) {
                     load_all(kvs, rev, true);
                     save_cache();
                     start_watch(rev + 1);
                   } else {
                     start_watch(applied_revision_ + 1);
                   }
                 });
  };
  h.on_state = [this](bool up, const EtcdStatus& why) {
    if (up == watch_up_) return;
    watch_up_ = up;
    if (up) {
      calls_up_ = true;
      log(LogLevel::kInfo, "fleet: watching %s on %s", prefix_.c_str(),
                   etcd_->current_endpoint().c_str());
    } else {
      last_error_ = status_text(why);
      log(LogLevel::kWarn, "fleet: store unreachable (%s): serving the last state applied",
                   last_error_.c_str());
    }
    if (listener_.on_status) listener_.on_status();
  };
  watch_ = etcd_->watch(prefix_, prefix_range_end(prefix_), from_revision, std::move(h));
}

void FleetStore::apply_kv(const EtcdKv& kv, bool deleted, bool notify) {
  if (!std::string_view(kv.key).starts_with(prefix_)) return;
  const std::string rest = kv.key.substr(prefix_.size());
  if (rest.starts_with("services/")) {
    const std::string name = rest.substr(9);
    auto it = shared_.find(name);
    if (deleted) {
      if (it == shared_.end()) return;
      shared_.erase(it);
    } else {
      if (it != shared_.end() && it->second.mod_revision >= kv.mod_revision) return;  // had it
      json j = json::parse(kv.value, nullptr, false);
      Shared s;
      std::string bad;
      if (!j.is_object() || !s.rt.read_shared(j.value("state", json::object()), &bad)) {
        log(LogLevel::kWarn, "fleet: ignoring %s: not a service state weir wrote",
                     kv.key.c_str());
        return;
      }
      s.mod_revision = kv.mod_revision;
      s.writer = j.value("replica", "");
      shared_[name] = std::move(s);
    }
    if (notify && find_service(*config_, name)) {
      derive(name, true);
      save_cache();
    }
  } else if (rest.starts_with("events/")) {
    if (deleted) return;  // the leader trims old events; the view keeps its own bound
    json ev = json::parse(kv.value, nullptr, false);
    if (!ev.is_object()) return;
    ev["seq"] = kv.mod_revision;
    if (!events_.empty() && events_.back()["seq"].get<int64_t>() >= kv.mod_revision && notify)
      return;
    events_.push_back(std::move(ev));
    while (events_.size() > kKeptEvents) events_.pop_front();
  } else if (rest == "leader") {
    const std::string before = leader_;
    leader_ = deleted ? "" : kv.value;
    leader_lease_ = deleted ? 0 : kv.lease;
    if (leader_ != before) {
      log(LogLevel::kInfo, "fleet: leader is %s", leader_.empty() ? "(none)" : leader_.c_str());
      if (listener_.on_status) listener_.on_status();
    }
    if (deleted && notify) campaign();
  } else if (rest.starts_with("replicas/")) {
    const std::string name = rest.substr(9);
    if (deleted) {
      members_.erase(name);
      remote_.erase(name);
      return;
    }
    json info = json::parse(kv.value, nullptr, false);
    if (!info.is_object()) return;
    if (name != replica_ && info.contains("windows") && info["windows"].is_object()) {
      // Their wall-clock seconds in this process's monotonic seconds.
      const int64_t offset = unix_time_ms() / 1000 - static_cast<int64_t>(mono_ms() / 1000);
      for (const auto& [key, seconds] : info["windows"].items()) {
        if (!seconds.is_array()) continue;
        health::StatsWindow& w = remote_[name][key];
        for (const auto& b : seconds) {
          if (!b.is_object() || !b.contains("s") || !b["s"].is_number_integer()) continue;
          const int64_t local = b["s"].get<int64_t>() - offset;
          if (local <= 0) continue;
          health::Sample d;
          d.requests = b.value("q", uint64_t{0});
          if (b.contains("r") && b["r"].is_array() && b["r"].size() == d.responses.size()) {
            for (size_t i = 0; i < d.responses.size(); ++i)
              d.responses[i] = b["r"][i].is_number_unsigned() ? b["r"][i].get<uint64_t>() : 0;
          }
          if (b.contains("f") && b["f"].is_array() && b["f"].size() == d.failures.size()) {
            for (size_t i = 0; i < d.failures.size(); ++i)
              d.failures[i] = b["f"][i].is_number_unsigned() ? b["f"][i].get<uint64_t>() : 0;
          }
          if (b.contains("t")) unsparse(b["t"], d.total_latency);
          if (b.contains("h")) unsparse(b["h"], d.headers_latency);
          w.add(static_cast<uint64_t>(local), d);
        }
      }
    }
    info.erase("windows");
    members_[name] = {std::move(info), kv.mod_revision, mono_ms()};
  }
}

void FleetStore::derive(const std::string& service, bool notify) {
  const config::Service* cs = find_service(*config_, service);
  if (!cs) return;
  ServiceRuntime rt;
  const std::string vs = version_set(*cs);
  auto sh = shared_.find(service);
  bool mismatch = false;
  if (sh != shared_.end()) {
    if (sh->second.rt.version_set.empty() || sh->second.rt.version_set == vs) {
      rt = sh->second.rt;
    } else {
      mismatch = true;
    }
    rt.state_version = static_cast<uint64_t>(sh->second.mod_revision);
  } else {
    rt.state_version = 0;  // no key yet: the first write creates it
  }
  rt.version_set = vs;
  if (mismatch != (mismatched_.count(service) > 0)) {
    if (mismatch) {
      mismatched_.insert(service);
      log(LogLevel::kWarn,
                   "fleet: service %s: the fleet's versions (%s) differ from this "
                   "configuration's (%s): it runs on the configuration here and is not written "
                   "from here",
                   service.c_str(), sh->second.rt.version_set.c_str(), vs.c_str());
    } else {
      mismatched_.erase(service);
      log(LogLevel::kInfo, "fleet: service %s matches the fleet again", service.c_str());
    }
  }
  for (const auto& p : pending_) {
    AuditEvent ignored;
    if (p.service == service && find_service(*config_, service)) {
      bool known = std::any_of(cs->versions.begin(), cs->versions.end(),
                               [&](const config::Version& v) { return v.name == p.version; });
      if (known) revert_in(*cs, p.version, 0, rt, ignored);
    }
  }
  const ServiceRuntime* old = state_.find(service);
  const bool changed = !old || !old->same_shared(rt) || old->state_version != rt.state_version;
  state_.set(service, std::move(rt));
  if (changed && notify && listener_.on_state) listener_.on_state(service);
}

void FleetStore::derive_all(bool notify) {
  RuntimeState fresh;
  for (const auto& svc : config_->services) {
    if (const ServiceRuntime* rt = state_.find(svc.name)) fresh.set(svc.name, *rt);
  }
  state_ = std::move(fresh);
  for (const auto& svc : config_->services) derive(svc.name, notify);
}

void FleetStore::save_cache() {
  json shared = json::object();
  for (const auto& [name, s] : shared_) {
    shared[name] = {{"state", s.rt.shared_json()},
                    {"mod_revision", s.mod_revision},
                    {"writer", s.writer}};
  }
  json doc = state_.to_json();
  doc["fleet"] = {{"prefix", prefix_}, {"revision", applied_revision_}, {"shared", shared}};
  std::string error;
  if (!files_.save_state(doc, &error))
    log(LogLevel::kWarn, "fleet: cannot cache the fleet state: %s", error.c_str());
}

void FleetStore::save_pending() {
  json list = json::array();
  for (const auto& p : pending_) {
    list.push_back({{"service", p.service},
                    {"version", p.version},
                    {"reason", p.event.reason},
                    {"detail", p.event.detail}});
  }
  std::string error;
  if (!write_file_atomic(files_.dir() + "/fleet-pending.json", list.dump() + "\n", &error))
    log(LogLevel::kWarn, "fleet: cannot keep the pending reverts: %s", error.c_str());
}

void FleetStore::commit(ServiceChange change, CommitDone done) {
  auto a = std::make_shared<Attempt>();
  a->change = std::move(change);
  a->done = std::move(done);
  try_commit(a);
}

void FleetStore::try_commit(const std::shared_ptr<Attempt>& a) {
  const std::string svc = a->change.service;
  if (stopping_) {
    finish(a, {503, "store_unavailable", "weir is shutting down; nothing changed"});
    return;
  }
  if (mismatched_.count(svc)) {
    finish(a, {409, "config_mismatch",
               "service " + svc + ": this replica's configuration has other versions than the "
               "fleet's; change it on a replica whose configuration matches, or deploy the "
               "same configuration here"});
    return;
  }
  // The base is the shared state, without reverts only kept here: those are written as their
  // own changes.
  RuntimeState base;
  {
    ServiceRuntime rt;
    rt.state_version = 0;  // no key yet
    auto sh = shared_.find(svc);
    if (sh != shared_.end()) {
      rt = sh->second.rt;
      rt.state_version = static_cast<uint64_t>(sh->second.mod_revision);
    }
    if (const config::Service* cs = find_service(*config_, svc)) rt.version_set = version_set(*cs);
    if (find_service(*config_, svc)) base.set(svc, rt);
  }
  CommitResult refused;
  bool unchanged = false;
  ServiceChange& change = a->change;
  std::optional<ServiceRuntime> next = apply_change(base, change, &unchanged, &refused);
  if (!next) {
    finish(a, refused);
    return;
  }
  if (unchanged) {
    finish(a, {});
    return;
  }
  const int64_t expected = static_cast<int64_t>(base.find(svc)->state_version);
  AuditEvent ev = change.event;
  ev.service = svc;
  ev.time = utc_timestamp_ms();
  json evj = ev.to_json();
  evj.erase("seq");
  evj["replica"] = replica_;
  char name[64];
  std::snprintf(name, sizeof name, "%016lld-", static_cast<long long>(unix_time_ms()));
  EtcdCas cas;
  cas.key = key("services/" + svc);
  cas.value = json{{"state", next->shared_json()}, {"replica", replica_}, {"time", ev.time}}.dump();
  cas.expected_mod_revision = expected;
  cas.also.push_back(EtcdOp::put(
      key("events/" + std::string(name) + replica_ + "-" + std::to_string(++event_counter_)),
      evj.dump()));
  auto written = [this, a, svc, state = *next](int64_t revision) {
    auto it = shared_.find(svc);
    if (it == shared_.end() || it->second.mod_revision < revision) {
      Shared s;
      s.rt = state;
      s.mod_revision = revision;
      s.writer = replica_;
      shared_[svc] = std::move(s);
    }
    calls_up_ = true;
    derive(svc, true);
    save_cache();
    std::string ignored;
    AuditEvent local = a->change.event;
    local.service = svc;
    files_.append(local, &ignored);  // this replica's own trail, beside the fleet's
    finish(a, {});
  };
  auto unavailable = [this, a](const EtcdStatus& st) {
    if (st.kind == EtcdStatus::Kind::kUnavailable || st.kind == EtcdStatus::Kind::kIndeterminate)
      calls_up_ = false;
    last_error_ = status_text(st);
    if (!a->change.revert_version.empty()) {
      keep_locally(a->change);
      finish(a, {});
      return;
    }
    finish(a, {503, "store_unavailable", last_error_ + "; nothing changed"});
  };
  etcd_->cas(cas, [this, a, svc, expected, value = cas.value, written, unavailable](
                      const EtcdStatus& st, bool succeeded, int64_t revision,
                      std::optional<EtcdKv> current) {
    if (stopping_) return;
    if (st.ok() && succeeded) {
      written(revision);
      return;
    }
    if (st.ok()) {
      // Someone committed first (another controller, or another replica's guard).
      calls_up_ = true;
      if (current) {
        apply_kv(*current, false, true);
      } else if (shared_.erase(svc)) {
        derive(svc, true);
      }
      if (a->change.expected) {
        const ServiceRuntime* rt = state_.find(svc);
        finish(a, {412, "precondition_failed",
                   "the service's state version is \"" +
                       std::to_string(rt ? rt->state_version : 0) +
                       "\" now (changed meanwhile, maybe on another replica); GET it again and "
                       "retry"});
        return;
      }
      if (++a->tries >= kMaxAttempts) {
        finish(a, {409, "conflict", "the service changed under " +
                                        std::to_string(kMaxAttempts) +
                                        " attempts in a row; retry"});
        return;
      }
      try_commit(a);
      return;
    }
    if (st.kind != EtcdStatus::Kind::kIndeterminate) {
      unavailable(st);
      return;
    }
    // The write may have been applied: read what is there now, then decide.
    etcd_->range(key("services/" + svc), "",
                 [this, a, svc, expected, value, written, unavailable](
                     const EtcdStatus& st2, int64_t, std::vector<EtcdKv> kvs, bool) {
                   if (stopping_) return;
                   if (!st2.ok()) {
                     unavailable(st2);
                     return;
                   }
                   if (!kvs.empty() && kvs[0].value == value && kvs[0].mod_revision > expected) {
                     written(kvs[0].mod_revision);
                     return;
                   }
                   if (!kvs.empty()) apply_kv(kvs[0], false, true);
                   if (++a->tries >= kMaxAttempts) {
                     unavailable(st2);
                     return;
                   }
                   try_commit(a);
                 });
  });
}

void FleetStore::finish(const std::shared_ptr<Attempt>& a, const CommitResult& r) {
  CommitDone done = std::move(a->done);
  if (done) done(r);
}

void FleetStore::keep_locally(const ServiceChange& change) {
  for (const auto& p : pending_) {
    if (p.service == change.service && p.version == change.revert_version) return;
  }
  Pending p{change.service, change.revert_version, change.event};
  p.event.service = change.service;
  pending_.push_back(p);
  save_pending();
  std::string ignored;
  AuditEvent local = p.event;
  local.detail["pending"] = "applied here; written to etcd when it answers";
  files_.append(local, &ignored);
  log(LogLevel::kWarn,
               "fleet: %s: the revert of %s/%s is applied here and kept in %s until etcd "
               "takes it",
               last_error_.c_str(), change.service.c_str(), change.revert_version.c_str(),
               files_.dir().c_str());
  derive(change.service, true);
}

void FleetStore::retry_pending() {
  if (retrying_ || pending_.empty() || stopping_) return;
  const Pending p = pending_.front();
  const config::Service* cs = find_service(*config_, p.service);
  if (!cs || mismatched_.count(p.service)) {
    pending_.erase(pending_.begin());
    save_pending();
    derive(p.service, true);
    return;
  }
  retrying_ = true;
  ServiceChange sc;
  sc.service = p.service;
  sc.event = p.event;
  sc.apply = [svc = *cs, version = p.version](ServiceRuntime& rt, AuditEvent& ev) {
    return revert_in(svc, version, 0, rt, ev);
  };
  commit(std::move(sc), [this, p](const CommitResult& r) {
    retrying_ = false;
    if (!r.ok()) return;  // still away: the next tick tries again
    std::erase_if(pending_, [&](const Pending& q) {
      return q.service == p.service && q.version == p.version;
    });
    save_pending();
    log(LogLevel::kInfo, "fleet: the revert of %s/%s reached etcd", p.service.c_str(),
                 p.version.c_str());
    derive(p.service, true);
  });
}

bool FleetStore::reconfigure(const config::Config& next, AuditEvent ev,
                             std::vector<std::string>* reset, std::string* error) {
  (void)error;
  config_ = std::make_shared<const config::Config>(next);
  reset->clear();  // the shared state is the fleet's: a local config change resets none of it
  derive_all(false);
  ev.detail["reset_services"] = json::array();
  append(std::move(ev));
  return true;
}

void FleetStore::append(AuditEvent ev) {
  std::string ignored;
  AuditEvent local = ev;
  files_.append(local, &ignored);
  ev.time = local.time;
  json evj = ev.to_json();
  evj.erase("seq");
  evj["replica"] = replica_;
  char name[64];
  std::snprintf(name, sizeof name, "%016lld-", static_cast<long long>(unix_time_ms()));
  etcd_->put(key("events/" + std::string(name) + replica_ + "-" + std::to_string(++event_counter_)),
             evj.dump(), 0, [](const EtcdStatus&, int64_t) {});
}

std::vector<json> FleetStore::events_since(uint64_t since, size_t limit) const {
  std::vector<json> out;
  for (const auto& e : events_) {
    if (e["seq"].get<int64_t>() > static_cast<int64_t>(since)) out.push_back(e);
  }
  if (out.size() > limit) out.erase(out.begin(), out.end() - static_cast<ptrdiff_t>(limit));
  return out;
}

bool FleetStore::leads() const {
  return !leader_.empty() && leader_ == replica_ && lease_id_ != 0 && leader_lease_ == lease_id_ &&
         mono_ms() - lease_ok_ms_ < static_cast<uint64_t>(lease_ttl_s_) * 1000;
}

void FleetStore::on_timer(uv_timer_t* t) {
  auto* self = static_cast<FleetStore*>(t->data);
  if (self->stopping_) return;
  const uint64_t tick = ++self->ticks_;
  const uint64_t now = mono_ms();
  if (self->lease_id_ == 0) {
    self->grant_lease();
  } else if (now - self->lease_ok_ms_ >= uint64_t{self->lease_ttl_s_} * 1000 / 3) {
    self->keepalive();
  }
  if (tick % std::max<uint64_t>(1, self->publish_ms_ / kTimerMs) == 0) self->publish_member();
  if (tick % 10 == 0) {
    self->retry_pending();
    if (self->leader_.empty()) self->campaign();
  }
}

void FleetStore::grant_lease() {
  if (campaigning_) return;
  campaigning_ = true;
  etcd_->lease_grant(lease_ttl_s_, [this](const EtcdStatus& st, int64_t id, int64_t) {
    campaigning_ = false;
    if (stopping_ || !st.ok()) return;
    lease_id_ = id;
    lease_ok_ms_ = mono_ms();
    publish_member();
    campaign();
  });
}

void FleetStore::keepalive() {
  const int64_t id = lease_id_;
  lease_ok_ms_ = mono_ms() - uint64_t{lease_ttl_s_} * 1000 / 3 + kTimerMs * 5;  // not every tick
  etcd_->lease_keepalive(id, [this, id](const EtcdStatus& st, int64_t, int64_t ttl) {
    if (stopping_ || id != lease_id_) return;
    if (!st.ok()) return;  // etcd away: leads() lapses after the TTL
    if (ttl > 0) {
      lease_ok_ms_ = mono_ms();
      return;
    }
    log(LogLevel::kWarn, "fleet: lease %lld expired: joining again",
                 static_cast<long long>(id));
    lease_id_ = 0;
    grant_lease();
  });
}

void FleetStore::campaign() {
  if (lease_id_ == 0 || !leader_.empty() || stopping_) return;
  EtcdTxn txn;
  EtcdCompare c;
  c.key = key("leader");
  c.target = EtcdCompare::Target::kVersion;
  c.number = 0;
  txn.compare.push_back(c);
  txn.success.push_back(EtcdOp::put(key("leader"), replica_, lease_id_));
  txn.failure.push_back(EtcdOp::range(key("leader")));
  const int64_t lease = lease_id_;
  etcd_->txn(txn, [this, lease](const EtcdStatus& st, const EtcdTxnResult& r) {
    if (stopping_ || !st.ok()) return;
    if (r.succeeded) {
      if (leader_ != replica_) log(LogLevel::kInfo, "fleet: replica %s leads", replica_.c_str());
      leader_ = replica_;
      leader_lease_ = lease;
    } else if (!r.responses.empty() && !r.responses[0].kvs.empty()) {
      leader_ = r.responses[0].kvs[0].value;
      leader_lease_ = r.responses[0].kvs[0].lease;
    }
    if (listener_.on_status) listener_.on_status();
  });
}

json FleetStore::member_info() const {
  json mismatch = json::array();
  for (const auto& s : mismatched_) mismatch.push_back(s);
  return {{"name", replica_},
          {"admin_address", admin_address_},
          {"weir_version", kWeirVersion},
          {"applied_revision", applied_revision_},
          {"healthy", calls_up_},  // it reached etcd (its key is the proof)
          {"last_seen", utc_timestamp_ms()},
          {"config_mismatch", mismatch},
          {"pending_reverts", pending_.size()}};
}

void FleetStore::publish_member() {
  if (lease_id_ == 0 || publishing_ || stopping_) return;
  json info = member_info();
  json windows = json::object();
  const uint64_t now_s = static_cast<uint64_t>(unix_time_ms() / 1000);
  for (auto it = outgoing_.begin(); it != outgoing_.end();) {
    json seconds = json::array();
    auto& per_second = it->second;
    for (auto s = per_second.begin(); s != per_second.end();) {
      // The current second is still being counted: it goes with the next publish.
      if (s->first >= now_s) break;
      if (now_s - s->first <= kMaxSecondsPerKey) {
        const health::Sample& d = s->second;
        seconds.push_back({{"s", s->first},
                           {"q", d.requests},
                           {"r", d.responses},
                           {"f", d.failures},
                           {"t", sparse(d.total_latency)},
                           {"h", sparse(d.headers_latency)}});
      }
      s = per_second.erase(s);
    }
    if (!seconds.empty() && windows.size() < kMaxWindowKeys) windows[it->first] = seconds;
    it = per_second.empty() ? outgoing_.erase(it) : std::next(it);
  }
  info["windows"] = std::move(windows);
  publishing_ = true;
  const int64_t lease = lease_id_;
  etcd_->put(key("replicas/" + replica_), info.dump(), lease,
             [this, lease](const EtcdStatus& st, int64_t) {
               publishing_ = false;
               if (stopping_) return;
               if (st.kind == EtcdStatus::Kind::kRejected && lease == lease_id_) {
                 lease_id_ = 0;  // "requested lease not found": join again with a new one
               }
             });
}

void FleetStore::share_window(const std::string& key, uint64_t unix_second,
                              const health::Sample& delta) {
  if (delta.empty()) return;
  outgoing_[key][unix_second].add(delta);
}

std::vector<const health::StatsWindow*> FleetStore::remote_windows(const std::string& key) const {
  std::vector<const health::StatsWindow*> out;
  for (const auto& [name, windows] : remote_) {
    if (name == replica_ || !members_.count(name)) continue;
    auto it = windows.find(key);
    if (it != windows.end()) out.push_back(&it->second);
  }
  return out;
}

json FleetStore::fleet_json() const {
  json replicas = json::array();
  bool self_listed = false;
  for (const auto& [name, m] : members_) {
    json r = m.info;
    if (name == replica_) {
      r = member_info();
      self_listed = true;
    }
    const int64_t applied = r.value("applied_revision", int64_t{0});
    r["lag"] = std::max<int64_t>(0, applied_revision_ - applied);
    r["name"] = name;
    replicas.push_back(std::move(r));
  }
  if (!self_listed) {
    json r = member_info();
    r["lag"] = 0;
    replicas.push_back(std::move(r));
  }
  json pending = json::array();
  for (const auto& p : pending_) pending.push_back({{"service", p.service}, {"version", p.version}});
  json mismatch = json::array();
  for (const auto& s : mismatched_) mismatch.push_back(s);
  return {{"self", replica_},
          {"leader", leader_.empty() ? json() : json(leader_)},
          {"leads", leads()},
          {"prefix", prefix_},
          {"replicas", replicas},
          {"config_mismatch", mismatch},
          {"pending_reverts", pending},
          {"store",
           {{"kind", "etcd"},
            {"endpoints", config_->fleet.endpoints},
            {"endpoint", etcd_->current_endpoint()},
            {"up", up()},
            {"revision", applied_revision_},
            {"last_error", up() ? json() : json(last_error_)}}}};
}

ControlStore::FleetFigures FleetStore::figures() const {
  FleetFigures f;
  f.present = true;
  f.store_up = up();
  f.leader = leads();
  f.applied_revision = applied_revision_;
  f.replicas = members_.size() + (members_.count(replica_) ? 0 : 1);
  return f;
}

void FleetStore::stop() {
  if (stopping_) return;
  stopping_ = true;
  if (timer_started_) {
    uv_timer_stop(&timer_);
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
    timer_started_ = false;
  }
  watch_.reset();
  if (lease_id_ == 0) {
    etcd_->close();
    return;
  }
  // Leadership and membership go with the lease at once, not after the TTL.
  etcd_->lease_revoke(lease_id_, [this](const EtcdStatus&) { etcd_->close(); });
}

}  // namespace weir::proxy
