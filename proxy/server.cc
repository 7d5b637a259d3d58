#include "proxy/server.h"

#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "proxy/cpu_count.h"
#include "proxy/file_store.h"
#include "proxy/fleet_store.h"
#include "proxy/log.h"
#include "proxy/metrics.h"
#include "proxy/port_claim.h"

namespace weir::proxy {

bool resolve_endpoint(const std::string& host, uint16_t port, sockaddr_storage* out,
                      std::string* error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string h = host;
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  std::string service = std::to_string(port);
  int rc = getaddrinfo(h.c_str(), service.c_str(), &hints, &res);
  if (rc != 0 || !res) {
    *error = std::string("cannot resolve '") + host + "': " + gai_strerror(rc);
    return false;
  }
  std::memcpy(out, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  return true;
}

Server::Server(std::shared_ptr<const config::Config> config) : config_(std::move(config)) {}

Server::~Server() {
  for (auto& per_worker : fds_) {
    for (int fd : per_worker) {
      if (fd >= 0) ::close(fd);
    }
  }
}

bool Server::open_listener(const config::Listener& l, std::vector<int>* fds, std::string* error) {
  // Both sockets set SO_REUSEPORT (for binary upgrades), so the kernel would let a listener
  // share the admin port and split its connections with the admin API: refuse that here.
  // "file:line:col: listener NAME: " starts every error.
  const std::string who = config::Error{l.loc, "", ""}.to_string() + "listener " + l.name + ": ";
  const config::HostPort& admin = admin_bound_.port ? admin_bound_ : config_->admin.address;
  auto wildcard = [](const std::string& h) { return h == "0.0.0.0" || h == "::" || h == "[::]"; };
  if (config_->admin.enabled && admin.port != 0 && l.address.port == admin.port &&
      (l.address.host == admin.host || wildcard(l.address.host) || wildcard(admin.host))) {
    *error = who + "bind " + l.address.to_string() +
             ": the admin listener uses this port";
    return false;
  }
  sockaddr_storage addr{};
  if (!resolve_endpoint(l.address.host, l.address.port, &addr, error) ||
      !claim_listen_port(addr, true, error)) {
    *error = who + *error;
    return false;
  }
  // Each worker gets its own socket on the same address (SO_REUSEPORT, set by hand because
  // libuv 1.44 has no flag for it), so the kernel spreads connections with no shared accept.
  auto fail = [&](const std::string& why) {
    *error = who + why + ": " + std::strerror(errno);
    for (int fd : *fds) ::close(fd);
    fds->clear();
    return false;
  };
  for (unsigned w = 0; w < worker_count_; ++w) {
    int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
      if (fd >= 0) ::close(fd);
      return fail("socket");
    }
    socklen_t len = addr.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
      int err = errno;
      ::close(fd);
      errno = err;
      return fail("bind " + l.address.to_string());
    }
    if (w == 0 && l.address.port == 0) {
      // Port 0: the first socket picks the port, its siblings join it, no other weir may.
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
      if (!claim_listen_port(addr, false, error)) {
        ::close(fd);
        *error = who + *error;
        return false;
      }
    }
    // Listening already here: once weir says the listener exists (startup line, reload
    // answer), connections queue in the backlog until the worker's loop takes the socket.
    if (::listen(fd, 1024) != 0) {
      int err = errno;
      ::close(fd);
      errno = err;
      return fail("listen " + l.address.to_string());
    }
    fds->push_back(fd);
  }
  uint16_t port = ntohs(addr.ss_family == AF_INET6
                            ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                            : reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  config::HostPort bound{l.address.host, port};
  log(LogLevel::kInfo, "listener %s listening on %s", l.name.c_str(),
               bound.to_string().c_str());
  return true;
}

bool Server::open_listeners(std::string* error) {
  fds_.assign(worker_count_, {});
  // The admin listener binds later, with SO_REUSEPORT too: claim its port first.
  sockaddr_storage admin{};
  if (config_->admin.enabled && config_->admin.address.port != 0 &&
      (!resolve_endpoint(config_->admin.address.host, config_->admin.address.port, &admin,
                         error) ||
       !claim_listen_port(admin, true, error))) {
    *error = config::Error{config_->admin.loc, "", ""}.to_string() + "admin: " + *error;
    return false;
  }
  for (const auto& l : config_->listeners) {
    std::vector<int> fds;
    if (!open_listener(l, &fds, error)) return false;
    for (unsigned w = 0; w < worker_count_; ++w) fds_[w].push_back(fds[w]);
  }
  // Listeners a reload adds are new ports: no upgrade shares them.
  set_start_claim_mode(ClaimMode::kExclusive);
  return true;
}

bool Server::open_state(std::string* error) {
  if (config_->fleet.enabled) {
    store_ = std::make_unique<FleetStore>(&loop_, *config_, config_->admin.address.to_string());
  } else {
    store_ = std::make_unique<FileStore>(config_->admin.state_dir);
  }
  if (!store_->open(*config_, error)) return false;
  rollout_driver_ = std::make_unique<RolloutDriver>(*store_);
  guard_runner_ = std::make_unique<GuardRunner>(
      *store_, *rollout_driver_,
      [this](const routing::Service& s, const routing::Version& v, uint64_t second,
             uint32_t window_s) {
        // A fleet judges every replica's traffic of the version together.
        std::vector<const health::StatsWindow*> windows =
            store_->remote_windows(s.name + "/" + v.name);
        windows.push_back(stats_.window(v.stats_id));
        return health::StatsWindow::summarize(windows, second, window_s);
      });
  hooks_ = std::make_unique<HookRunner>(&loop_, *store_);
  release_hooks_ = std::make_unique<ReleaseHooks>(
      *hooks_, [this](const std::string& service, const std::string& actor,
                      const std::string& reason) {
        rollout_driver_->command(service, "abort", actor, reason, [service](const CommitResult& r) {
          if (!r.ok())
            std::fprintf(stderr, "weir: rollout: service %s: the hook's abort failed: %s\n",
                         service.c_str(), r.error.c_str());
        });
      });
  kpi_ = std::make_unique<KpiRunner>(&loop_);
  guard_runner_->set_checks([this](const config::Service& s, const std::string& version,
                                   const std::string& stable, uint64_t now_ms) {
    std::vector<health::ExternalCheck> out =
        kpi_->checks(s, {s.name, version, stable, s.guard.window_s}, now_ms);
    const health::Rollout* r = rollout_driver_->rollout(s.name);
    if (r && r->state() == health::RolloutState::kRunning && r->entered() &&
        r->plan().version == version) {
      for (auto& c : release_hooks_->rollout_checks(s, rollout_info(s, *r), now_ms))
        out.push_back(std::move(c));
    }
    return out;
  });
  rollout_driver_->set_holds([this](const std::string& service, const health::Rollout& r) {
    health::Holds out;
    for (const auto& s : config_->services) {
      if (s.name != service || s.hooks.empty()) continue;
      if (r.state() != health::RolloutState::kRunning && r.state() != health::RolloutState::kWaiting) {
        // Not started yet: the start goes on into waiting, and the hooks run from there.
        for (const auto& h : s.hooks) {
          if (h.type == config::Hook::Type::kPreRollout ||
              h.type == config::Hook::Type::kConfirmRollout)
            out.push_back(std::string(config::to_string(h.type)) + " hook " + h.name +
                          ": not run yet");
        }
        return out;
      }
      return release_hooks_->holds(s, rollout_info(s, r), uv_hrtime() / 1000000);
    }
    return out;
  });
  ControlStore::Listener l;
  l.on_state = [this](const std::string& service) { on_store_state(service); };
  l.on_status = [] {};
  store_->set_listener(std::move(l));
  rollout_driver_->configure(*config_);
  hooks_->configure(*config_);
  kpi_->configure(*config_);
  return true;
}

void Server::on_store_state(const std::string& service) {
  rollout_driver_->on_state(service);
  guard_runner_->on_state(*config_, service);
  if (stopping_ || !snap_) return;
  note_ramps(*snap_->config, store_->state().apply(*config_));
  republish("a state change");
}

namespace {
// The control thread decides ejections, folds statistics and runs guards on this tick: 100 ms
// ejects a failing endpoint promptly and keeps a revert within a fraction of a second of its
// last consecutive breach (each guard still runs at its own interval_ms).
constexpr uint64_t kTickMs = 100;
// The clock of ramps, ejections, guards and rollouts: the same monotonic milliseconds as the
// workers' uv_now(), so slow-start ramps compare across loops.
uint64_t monotonic_ms() { return uv_hrtime() / 1000000; }
}  // namespace

std::shared_ptr<const routing::Snapshot> Server::build(const config::Config& config,
                                                       const RuntimeState& runtime,
                                                       std::string* error, const TlsSet* tls) {
  auto effective = std::make_shared<const config::Config>(runtime.apply(config));
  routing::HealthInput health;
  health.endpoints.resize(registry_.size());
  for (uint32_t id = 0; id < health.endpoints.size(); ++id) {
    routing::EndpointStatus& st = health.endpoints[id];
    st.healthy = !prober_ || prober_->healthy(id);
    if (id < ejection_.size()) {
      st.ejected = ejection_[id].ejected;
      st.eject_epoch = ejection_[id].epoch;
    }
    if (id < endpoint_ramp_.size()) st.ramp_start_ms = endpoint_ramp_[id];
  }
  health.version_ramp_start = version_ramp_;
  if (!tls) tls = tls_.get();
  return routing::build_snapshot(effective, registry_, ++generation_, resolve_endpoint, error,
                                 &health, tls ? &tls->upstreams : nullptr);
}

void Server::publish(std::shared_ptr<const routing::Snapshot> snap,
                     std::vector<std::vector<ListenFd>> open) {
  snap_ = std::move(snap);
  open.resize(workers_.size());
  for (size_t w = 0; w < workers_.size(); ++w) {
    workers_[w]->post_snapshot(snap_, std::move(open[w]));
  }
  if (prober_) prober_->sync(*snap_);
}

void Server::republish(const char* why) {
  if (stopping_) return;
  std::string error;
  auto snap = build(*config_, store_->state(), &error);
  if (!snap) {
    log(LogLevel::kWarn, "snapshot after %s failed: %s", why, error.c_str());
    return;
  }
  publish(std::move(snap));
}

void Server::on_tick(uv_timer_t* t) {
  auto* self = static_cast<Server*>(t->data);
  if (self->stopping_) return;
  const uint64_t now = monotonic_ms();
  self->evaluate_outliers();
  self->collect_stats(now / 1000);
  self->guard_runner_->tick(self->snap_, *self->config_, now, now / 1000);
  self->guard_runner_->advance_ramps(*self->config_, static_cast<uint64_t>(unix_time_ms()));
  self->rollout_driver_->tick(static_cast<uint64_t>(unix_time_ms()));
  self->hooks_->tick(now);
  for (const auto& s : self->config_->services) {
    const health::Rollout* r = self->rollout_driver_->rollout(s.name);
    if (s.hooks.empty() || !r) continue;
    const auto st = r->state();
    if (st == health::RolloutState::kRunning || st == health::RolloutState::kWaiting ||
        st == health::RolloutState::kPaused)
      self->release_hooks_->poll_rollback(s, self->rollout_info(s, *r), now);
  }
}

ReleaseHooks::RolloutInfo Server::rollout_info(const config::Service& s,
                                               const health::Rollout& r) {
  using S = health::RolloutState;
  const bool active = r.state() == S::kRunning || r.state() == S::kWaiting || r.state() == S::kPaused;
  auto& [run, was_active] = rollout_runs_[s.name];
  if (active && !was_active) ++run;
  was_active = active;
  ReleaseHooks::RolloutInfo info;
  info.version = r.plan().version;
  info.stable = store_->state().stable(s);
  info.run = run;
  info.step = r.step();
  info.weight = r.weight();
  switch (r.next_transition()) {
    case health::Transition::kStart: info.phase = "start"; break;
    case health::Transition::kIncrease: info.phase = "increase"; break;
    case health::Transition::kPromotion: info.phase = "promotion"; break;
    default: info.phase = "step"; break;
  }
  return info;
}

void Server::evaluate_outliers() {
  const uint64_t now = monotonic_ms();
  bool changed = false;
  std::vector<uint32_t> streaks;
  std::vector<health::EjectionState> states;
  std::vector<health::EjectionEvent> events;
  for (const auto& svc : snap_->services) {
    if (!svc.config || !svc.config->outlier.enabled) continue;
    for (const auto& v : svc.versions) {
      streaks.assign(v.endpoints.size(), 0);
      states.assign(v.endpoints.size(), {});
      for (size_t i = 0; i < v.endpoints.size(); ++i) {
        const uint32_t id = v.endpoints[i].id;
        if (ejection_.size() <= id) ejection_.resize(id + 1);
        states[i] = ejection_[id];
        // Each worker's streak is unbroken, so their sum is a run of failures with no success
        // in between on any worker.
        for (auto& w : workers_) streaks[i] += w->streaks().streak(id, states[i].epoch);
      }
      events.clear();
      health::evaluate_ejections(svc.config->outlier, streaks, states, now, &events);
      for (size_t i = 0; i < v.endpoints.size(); ++i) ejection_[v.endpoints[i].id] = states[i];
      for (const auto& e : events) {
        log(LogLevel::kInfo, "outlier: %s/%s endpoint %s is %s (%s)", svc.name.c_str(),
                     v.name.c_str(), v.endpoints[e.index].address.c_str(),
                     e.ejected ? "ejected" : "back", e.why.c_str());
        changed = true;
      }
    }
  }
  if (changed) republish("an ejection change");
}

void Server::note_ramps(const config::Config& prev, const config::Config& next) {
  const uint64_t now = std::max<uint64_t>(1, monotonic_ms());
  std::map<std::string, uint32_t> old_weight;
  std::set<std::string> old_endpoints;
  for (const auto& svc : prev.services) {
    for (const auto& v : svc.versions) {
      old_weight[svc.name + "/" + v.name] = v.weight;
      for (const auto& ep : v.endpoints) old_endpoints.insert(routing::endpoint_key(v, ep));
    }
  }
  for (const auto& svc : next.services) {
    for (const auto& v : svc.versions) {
      const std::string key = svc.name + "/" + v.name;
      auto it = old_weight.find(key);
      if (v.weight > 0 && (it == old_weight.end() || it->second == 0)) version_ramp_[key] = now;
      for (const auto& ep : v.endpoints) {
        const std::string key = routing::endpoint_key(v, ep);
        if (old_endpoints.count(key)) continue;
        uint32_t id = registry_.id_for(key);
        if (endpoint_ramp_.size() <= id) endpoint_ramp_.resize(id + 1, 0);
        endpoint_ramp_[id] = now;
      }
    }
  }
}

void Server::collect_stats(uint64_t second) {
  const auto unix_second = static_cast<uint64_t>(unix_time_ms() / 1000);
  for (const auto& svc : snap_->services) {
    // Guarded versions' traffic is shared with the fleet (a no-op for a single replica).
    const bool guarded = svc.config && svc.config->guard.enabled;
    for (const auto& v : svc.versions) {
      // A version no worker has served yet has nothing to fold (and gets no window): with
      // thousands of configured versions the tick costs what the ones with traffic cost.
      bool served = false;
      for (auto& w : workers_) served = served || w->stats().versions.find(v.stats_id);
      if (!served && !guarded && !stats_.has(v.stats_id)) continue;
      health::Sample sum;
      for (auto& w : workers_) {
        if (const auto* c = w->stats().versions.find(v.stats_id)) sum.add(*c);
      }
      health::Sample delta = stats_.fold(second, v.stats_id, sum);
      if (guarded) store_->share_window(svc.name + "/" + v.name, unix_second, delta);
    }
  }
}

void Server::commit(ServiceChange change, CommitDone done) {
  const std::string what = change.event.action + " " + change.service + " by " + change.event.actor;
  store_->commit(std::move(change), [what, done = std::move(done)](const CommitResult& r) {
    if (r.ok()) {
      log(LogLevel::kInfo, "%s", what.c_str());
    } else {
      log(LogLevel::kWarn, "%s refused (%d): %s", what.c_str(), r.status, r.error.c_str());
    }
    done(r);
  });
}

void Server::rollout_command(const std::string& service, const std::string& op,
                             const std::string& actor, const std::string& reason,
                             CommitDone done) {
  rollout_driver_->command(service, op, actor, reason, std::move(done));
}

std::string Server::explain_json(const std::string& service) const {
  for (const auto& s : config_->services) {
    if (s.name != service) continue;
    nlohmann::json out = nlohmann::json::parse(guard_runner_->explain_json(s));
    out["queries"] = kpi_->explain(s.name);
    out["hooks"] = hooks_->explain(s.name);
    out["gates"] = release_hooks_->explain(s.name);
    return out.dump();
  }
  return "";
}

int Server::run() {
  ::signal(SIGPIPE, SIG_IGN);
  worker_count_ = config_->proxy.workers;
  if (worker_count_ == 0) worker_count_ = available_cpus();
  std::string error;
  // Early: a fleet store reads etcd on this loop before any listener takes traffic.
  uv_loop_init(&loop_);
  if (!open_state(&error)) {
    log(LogLevel::kError, "state: %s", error.c_str());
    return 1;
  }
  std::vector<config::Error> tls_errors;
  tls_ = build_tls_set(*config_, &tls_errors);
  if (!tls_) {
    for (const auto& e : tls_errors) log(LogLevel::kError, "%s", e.to_string().c_str());
    log(LogLevel::kError, "not starting: a certificate, key or CA file cannot be used");
    return 1;
  }
  auto snap = build(*config_, store_->state(), &error);
  if (!snap) {
    log(LogLevel::kError, "%s", error.c_str());
    return 1;
  }
  if (!config_->proxy.access_log.empty() &&
      !(access_log_ = AccessLog::open(config_->proxy.access_log, &error))) {
    log(LogLevel::kError, "%s", error.c_str());
    return 1;
  }
  snap_ = snap;
  rollout_driver_->auto_start();
  if (!open_listeners(&error)) {
    log(LogLevel::kError, "%s", error.c_str());
    return 1;
  }
  prober_ = std::make_unique<HealthProber>(&loop_, [this](uint32_t id, bool healthy) {
    if (healthy) {
      // A revived endpoint ramps up again under slow start.
      if (endpoint_ramp_.size() <= id) endpoint_ramp_.resize(id + 1, 0);
      endpoint_ramp_[id] = std::max<uint64_t>(1, monotonic_ms());
    }
    republish("a health change");
  });
  if (config_->admin.enabled) {
    api_ = std::make_unique<AdminApi>(*this);
    admin_ = std::make_unique<AdminServer>(&loop_, *api_);
    admin_->set_tls(tls_->admin);
    config::HostPort& bound = admin_bound_;
    // A kernel-picked admin port is claimed once known, so no other weir joins it.
    if (!admin_->start(config_->admin.address, &bound, &error) ||
        (config_->admin.address.port == 0 &&
         !process_port_claims().claim(bound.port, ClaimMode::kExclusive, &error))) {
      log(LogLevel::kError, "admin: %s", error.c_str());
      admin_->stop();
      uv_run(&loop_, UV_RUN_DEFAULT);
      uv_loop_close(&loop_);
      return 1;
    }
    log(LogLevel::kInfo, "admin listening on %s", bound.to_string().c_str());
    store_->set_admin_address(bound.to_string());
  }
  for (uv_signal_t* s : {&sigterm_, &sigint_, &sigquit_, &sighup_, &sigusr1_}) {
    uv_signal_init(&loop_, s);
    s->data = this;
  }
  uv_signal_start(&sigterm_, on_signal, SIGTERM);
  uv_signal_start(&sigint_, on_signal, SIGINT);
  // SIGQUIT: the old process of a binary upgrade (a new weir already listens on its ports).
  uv_signal_start(&sigquit_, on_signal, SIGQUIT);
  uv_signal_start(&sighup_, on_signal, SIGHUP);
  uv_signal_start(&sigusr1_, on_signal, SIGUSR1);
  uv_timer_init(&loop_, &tick_);
  tick_.data = this;
  uv_timer_start(&tick_, on_tick, kTickMs, kTickMs);
  for (unsigned w = 0; w < worker_count_; ++w) {
    workers_.push_back(std::make_unique<Worker>(w, fds_[w], snap_));
    workers_.back()->post_tls(tls_);
    workers_.back()->set_access_log(access_log_.get());
    fds_[w].clear();  // the worker's uv_tcp_t owns them now
  }
  for (auto& w : workers_) w->start();
  prober_->sync(*snap_);
  log(LogLevel::kInfo, "ready (%u workers)", worker_count_);
  uv_run(&loop_, UV_RUN_DEFAULT);
  for (auto& w : workers_) w->join();
  uv_loop_close(&loop_);
  log(LogLevel::kInfo, "stopped");
  return 0;
}

void Server::on_signal(uv_signal_t* h, int signum) {
  auto* self = static_cast<Server*>(h->data);
  if (signum == SIGHUP) {
    self->reload("signal");
  } else if (signum == SIGUSR1) {
    // logrotate moved the access log: write to a new file at the configured path.
    std::string error;
    if (self->access_log_ && !self->access_log_->reopen(&error))
      log(LogLevel::kWarn, "%s; still writing to the old file", error.c_str());
  } else {
    self->shutdown();
  }
}

void Server::shutdown() {
  if (stopping_) return;
  stopping_ = true;
  log(LogLevel::kInfo, "shutting down (drain up to %u ms)",
               config_->proxy.drain_timeout_ms);
  for (auto& w : workers_) w->post_shutdown(config_->proxy.drain_timeout_ms);
  for (uv_signal_t* s : {&sigterm_, &sigint_, &sigquit_, &sighup_, &sigusr1_}) {
    uv_close(reinterpret_cast<uv_handle_t*>(s), nullptr);
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&tick_), nullptr);
  if (prober_) prober_->stop();
  if (admin_) admin_->stop();
  hooks_->close();
  kpi_->close();
  store_->stop();
}

// Slow-start ramps noted for a change that may still be refused: restored unless kept.
class Server::RampTransaction {
 public:
  explicit RampTransaction(Server& s)
      : s_(s), endpoint_ramp_(s.endpoint_ramp_), version_ramp_(s.version_ramp_) {}
  ~RampTransaction() {
    if (kept_) return;
    s_.endpoint_ramp_ = std::move(endpoint_ramp_);
    s_.version_ramp_ = std::move(version_ramp_);
  }
  void keep() { kept_ = true; }

 private:
  Server& s_;
  std::vector<uint64_t> endpoint_ramp_;
  std::map<std::string, uint64_t> version_ramp_;
  bool kept_ = false;
};

std::vector<nlohmann::json> Server::events_since(uint64_t since, size_t limit) const {
  return store_->events_since(since, limit);
}

std::string Server::metrics_text() {
  MetricsSource source;
  for (const auto& w : workers_) source.workers.push_back(&w->stats());
  source.config = config_.get();
  source.runtime = &store_->state();
  source.reloads_ok = reloads_ok_;
  source.reloads_failed = reloads_failed_;
  source.fleet = store_->figures();
  for (const auto& f : kpi_->figures()) source.kpi_queries.push_back({f.service, f.query, f.sent, f.errors});
  {
    const HookRunner::Figures hf = hooks_->figures();
    source.hooks = {hf.calls, hf.failures, hf.dropped, hf.queued};
  }
  source.last_reload_ok_s = static_cast<double>(last_reload_ok_ms_) / 1000.0;
  for (const auto& svc : snap_->services) {
    for (const auto& v : svc.versions) {
      VersionMetrics& m = source.versions.emplace_back();
      m.service = svc.name;
      m.version = v.name;
      m.latency.assign(health::Histogram::kBuckets, 0);
      m.head_latency.assign(health::Histogram::kBuckets, 0);
      for (const auto& w : workers_) {
        const health::VersionCounters* c = w->stats().versions.find(v.stats_id);
        if (!c) continue;
        for (size_t i = 0; i < 6; ++i) m.responses[i] += c->responses[i].get();
        for (size_t i = 0; i < 3; ++i) m.failures[i] += c->failures[i].get();
        for (size_t i = 0; i < health::Histogram::kBuckets; ++i) {
          m.latency[i] += c->total_latency[i].get();
          m.head_latency[i] += c->headers_latency[i].get();
        }
        m.request_bytes += c->request_bytes.get();
        m.response_bytes += c->response_bytes.get();
      }
    }
  }
  for (const auto& l : snap_->config->listeners) source.listeners.push_back(l.name);
  for (const auto& svc : snap_->services) {
    const config::Service* cs = svc.config;
    if (!cs) continue;
    for (const auto& v : svc.versions) {
      for (const auto& ep : v.endpoints) {
        EndpointMetrics& e = source.endpoints.emplace_back();
        e.service = svc.name;
        e.version = v.name;
        e.endpoint = ep.address;
        e.probe_failing = prober_ && !prober_->healthy(ep.id);
        e.ejected = ep.id < ejection_.size() && ejection_[ep.id].ejected;
      }
    }
    if (!cs->guard.enabled) continue;
    for (const auto& v : cs->versions) {
      if (v.name == store_->state().stable(*cs)) continue;
      GuardMetrics& g = source.guards.emplace_back();
      g.service = svc.name;
      g.version = v.name;
      g.state = guard_runner_->state(*cs, v.name);
      g.reverts = guard_runner_->reverts(svc.name, v.name);
      g.dry_run_reverts = guard_runner_->dry_run_reverts(svc.name, v.name);
    }
  }
  const uint64_t now_wall = static_cast<uint64_t>(unix_time_ms());
  for (const auto& [service, state] : rollout_driver_->states()) {
    const nlohmann::json d = rollout_driver_->detail(service, now_wall);
    source.rollouts.push_back(
        {service, state, state == "waiting" ? d.value("waiting_for", nlohmann::json::array()).size() : 0});
  }
  for (const auto& svc : snap_->services) {
    if (svc.mirror < 0) continue;
    const routing::Version& target = svc.versions[static_cast<size_t>(svc.mirror)];
    source.mirrors.push_back({svc.name, target.name, mirror_totals(target.stats_id)});
  }
  return render_metrics(source);
}

health::MirrorTotals Server::mirror_totals(uint32_t stats_id) const {
  health::MirrorTotals t;
  for (const auto& w : workers_) {
    if (const health::VersionCounters* c = w->stats().versions.find(stats_id)) t.add(c->mirror);
  }
  return t;
}

StatsClock Server::stats_clock() const {
  // The windows count seconds of the monotonic clock (on_tick); the wall time of the start of
  // the current one is now minus the part of it gone by.
  const uint64_t mono = monotonic_ms();
  return {mono / 1000, unix_time_ms() - static_cast<int64_t>(mono % 1000)};
}

const health::StatsWindow* Server::stats_window(const std::string& service,
                                                const std::string& version) const {
  for (const auto& svc : snap_->services) {
    if (svc.name != service) continue;
    for (const auto& v : svc.versions) {
      if (v.name == version) return stats_.window(v.stats_id);
    }
  }
  return nullptr;
}

void Server::annotate(ServiceStateView& view) const {
  for (const auto& s : config_->services) {
    if (s.name != view.name) continue;
    if (s.guard.enabled) view.guard = guard_runner_->state(s);
    view.rollout = rollout_driver_->state(s.name);
    view.rollout_detail = rollout_driver_->detail(s.name, static_cast<uint64_t>(unix_time_ms()));
    // A running step waits on the guard: its latest word on the version says what for.
    if (view.rollout == "running") {
      if (const health::Evaluation* e = guard_runner_->last_decision(s.name, s.rollout.version))
        view.rollout_detail["last_verdict"] = {
            {"verdict", health::to_string(e->verdict)},
            {"reasons", e->reasons},
            {"time", utc_timestamp_ms(static_cast<int64_t>(e->at_ms))}};
    }
  }
  view.stale = store_->stale();
  // Endpoint health from the published snapshot (it carries every probe and ejection change).
  const uint64_t second = monotonic_ms() / 1000;
  auto window_view = [&](const health::StatsWindow& w, uint32_t seconds) {
    health::Summary sum = w.summarize(second, seconds);
    WindowStatsView out;
    out.requests = sum.completed;
    out.error_rate = sum.error_rate;
    out.p50_ms = static_cast<double>(sum.p50_us) / 1000.0;
    out.p99_ms = static_cast<double>(sum.p99_us) / 1000.0;
    return out;
  };
  for (const auto& svc : snap_->services) {
    if (svc.name != view.name) continue;
    const bool watched = svc.config->outlier.enabled;
    for (auto& vv : view.versions) {
      for (const auto& v : svc.versions) {
        if (v.name != vv.name) continue;
        if (const health::StatsWindow* w = stats_.window(v.stats_id)) {
          vv.stats_10s = window_view(*w, 10);
          vv.stats_60s = window_view(*w, 60);
        }
        if (svc.mirror >= 0 && &v == &svc.versions[static_cast<size_t>(svc.mirror)]) {
          vv.mirror = MirrorView{svc.config->mirror.percent, mirror_totals(v.stats_id)};
        }
        for (auto& epv : vv.endpoints) {
          for (const auto& ep : v.endpoints) {
            if (ep.address != epv.address) continue;
            static constexpr const char* kClasses[] = {"cut", "1xx", "2xx", "3xx", "4xx", "5xx"};
            static constexpr const char* kKinds[] = {"connect", "reset", "timeout"};
            for (const auto& w : workers_) {
              const health::EndpointCounters* c = w->stats().endpoints.find(ep.id);
              if (!c) continue;
              epv.attempts += c->attempts.get();
              for (size_t i = 0; i < 6; ++i) epv.responses[kClasses[i]] += c->responses[i].get();
              for (size_t i = 0; i < 3; ++i) epv.failures[kKinds[i]] += c->failures[i].get();
            }
            if (ep.id < ejection_.size() && ejection_[ep.id].ejected) {
              epv.health = "ejected";
            } else if (prober_ && !prober_->healthy(ep.id)) {
              epv.health = "unhealthy";
            } else if (watched || v.config->health_check.enabled) {
              epv.health = "healthy";
            }
          }
        }
      }
    }
  }
}

ReloadOutcome Server::reload(const std::string& actor) {
  ReloadOutcome out;
  auto fail = [&](std::vector<std::string> errors) {
    ++reloads_failed_;
    for (const auto& e : errors) {
      log(LogLevel::kError, "reload failed, keeping the running configuration: %s", e.c_str());
    }
    // The embedded (demo) configuration has no file to reload: nothing was tried, so nothing
    // goes to the audit log.
    if (!config_->path.empty()) {
      AuditEvent ev;
      ev.actor = actor;
      ev.action = "reload_failed";
      ev.detail = {{"errors", errors}};
      store_->append(ev);
    }
    out.errors = std::move(errors);
    return out;
  };
  if (config_->path.empty()) return fail({"the embedded configuration cannot be reloaded"});
  config::LoadResult r = config::load_file(config_->path);
  if (!r.config) {
    std::vector<std::string> errors;
    for (const auto& e : r.errors) errors.push_back(e.to_string());
    return fail(std::move(errors));
  }
  auto next = std::make_shared<const config::Config>(std::move(*r.config));
  if (next->proxy.workers != config_->proxy.workers ||
      next->proxy.access_log != config_->proxy.access_log)
    return fail({next->path + ": workers and access_log change only with a restart"});
  const config::AdminSettings &was = config_->admin, &now = next->admin;
  if (was.enabled != now.enabled || was.address.to_string() != now.address.to_string() ||
      was.state_dir != now.state_dir)
    return fail({next->path + ": [admin] address and state_dir change only with a restart"});
  const config::FleetSettings &fw = config_->fleet, &fn = next->fleet;
  if (fw.enabled != fn.enabled || fw.prefix != fn.prefix || fw.endpoints != fn.endpoints ||
      fw.replica != fn.replica)
    return fail({next->path + ": [fleet] changes only with a restart"});
  // Certificates are re-read on every reload; a broken one keeps the running set.
  std::vector<config::Error> tls_errors;
  auto tls = build_tls_set(*next, &tls_errors);
  if (!tls) {
    std::vector<std::string> errors;
    errors.reserve(tls_errors.size());
    for (const auto& e : tls_errors) errors.push_back(e.to_string());
    return fail(std::move(errors));
  }
  // What the store will make of the state under the new config, to build and check first.
  RuntimeState next_runtime = store_->state();
  next_runtime.reconcile(*next);
  std::string error;
  RampTransaction ramps(*this);
  note_ramps(store_->state().apply(*config_), next_runtime.apply(*next));
  auto snap = build(*next, next_runtime, &error, tls.get());
  if (!snap) return fail({error});
  // New listeners, and listeners whose address changed, get new sockets now; so a bind error
  // fails the reload before anything changed. Workers close the sockets of the others.
  std::vector<std::vector<ListenFd>> open(worker_count_);
  auto close_opened = [&] {
    for (auto& per_worker : open)
      for (auto& l : per_worker) ::close(l.fd);
  };
  for (const auto& l : next->listeners) {
    bool kept = std::any_of(config_->listeners.begin(), config_->listeners.end(),
                            [&](const config::Listener& old) {
                              return old.name == l.name &&
                                     old.address.to_string() == l.address.to_string();
                            });
    if (kept) continue;
    std::vector<int> fds;
    if (!open_listener(l, &fds, &error)) {
      close_opened();
      return fail({error});
    }
    for (unsigned w = 0; w < worker_count_; ++w) open[w].push_back({l.name, fds[w]});
  }
  AuditEvent ev;
  ev.actor = actor;
  ev.action = "reload";
  ev.detail = {{"generation", generation_}};
  if (!store_->reconfigure(*next, std::move(ev), &out.reset_services, &error)) {
    close_opened();
    return fail({error});
  }
  for (const auto& l : config_->listeners) {
    bool kept = std::any_of(next->listeners.begin(), next->listeners.end(),
                            [&](const config::Listener& n) {
                              return n.name == l.name &&
                                     n.address.to_string() == l.address.to_string();
                            });
    if (!kept) log(LogLevel::kInfo, "listener %s closed", l.name.c_str());
  }
  ramps.keep();
  config_ = next;
  rollout_driver_->configure(*config_);
  hooks_->configure(*config_);
  kpi_->configure(*config_);
  tls_ = tls;
  for (auto& w : workers_) w->post_tls(tls);
  if (admin_) admin_->set_tls(tls->admin);  // [admin.tls] applies to new admin connections
  publish(std::move(snap), std::move(open));
  ++reloads_ok_;
  last_reload_ok_ms_ = unix_time_ms();
  set_log_format(config_->log.format);
  out.ok = true;
  out.generation = generation_;
  for (const auto& name : out.reset_services)
    log(LogLevel::kWarn, "%s: runtime weights reset: its versions changed", name.c_str());
  log(LogLevel::kInfo, "reloaded %s (generation %llu)", config_->path.c_str(),
               static_cast<unsigned long long>(generation_));
  return out;
}

}  // namespace weir::proxy
