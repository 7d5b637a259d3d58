#include "proxy/server.h"

#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <thread>

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

bool Server::open_listeners(std::string* error) {
  fds_.assign(worker_count_, {});
  for (const auto& l : config_->listeners) {
    sockaddr_storage addr{};
    if (!resolve_endpoint(l.address.host, l.address.port, &addr, error)) {
      *error = "listener " + l.name + ": " + *error;
      return false;
    }
    // Each worker gets its own socket on the same address (SO_REUSEPORT, set by hand because
    // libuv 1.44 has no flag for it), so the kernel spreads connections with no shared accept.
    for (unsigned w = 0; w < worker_count_; ++w) {
      int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      int one = 1;
      if (fd < 0 || ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
          ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
        *error = "listener " + l.name + ": socket: " + std::strerror(errno);
        if (fd >= 0) ::close(fd);
        return false;
      }
      socklen_t len = addr.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
      if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
        *error = "listener " + l.name + ": bind " + l.address.to_string() + ": " +
                 std::strerror(errno);
        ::close(fd);
        return false;
      }
      if (w == 0) {
        // Port 0: the first socket picks the port, its siblings join it.
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
      }
      fds_[w].push_back(fd);
    }
    uint16_t port = ntohs(addr.ss_family == AF_INET6
                              ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                              : reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
    config::HostPort bound{l.address.host, port};
    std::fprintf(stderr, "weir: listener %s listening on %s\n", l.name.c_str(),
                 bound.to_string().c_str());
  }
  return true;
}

std::shared_ptr<const routing::Snapshot> Server::build(std::string* error) {
  std::shared_ptr<const config::Config> effective = config_;
  if (!weight_overrides_.empty() || !stable_overrides_.empty()) {
    auto copy = std::make_shared<config::Config>(*config_);
    for (auto& svc : copy->services) {
      if (auto st = stable_overrides_.find(svc.name); st != stable_overrides_.end()) {
        svc.stable = st->second;
      }
      auto it = weight_overrides_.find(svc.name);
      if (it == weight_overrides_.end()) continue;
      for (auto& v : svc.versions) {
        auto w = it->second.find(v.name);
        if (w != it->second.end()) v.weight = w->second;
      }
    }
    effective = std::move(copy);
  }
  return routing::build_snapshot(effective, registry_, ++generation_, resolve_endpoint, error);
}

void Server::publish(std::shared_ptr<const routing::Snapshot> snap) {
  snap_ = snap;
  for (auto& w : workers_) w->post_snapshot(snap);
}

namespace {
// The control thread folds statistics and runs guards on this tick; 250 ms keeps a revert
// within a fraction of a second of its last consecutive breach.
constexpr uint64_t kTickMs = 250;
uint64_t monotonic_ms() { return uv_hrtime() / 1000000; }
}  // namespace

void Server::on_tick(uv_timer_t* t) {
  auto* self = static_cast<Server*>(t->data);
  const uint64_t now = monotonic_ms();
  self->collect_stats(now / 1000);
  self->run_guards(now, now / 1000);
}

void Server::collect_stats(uint64_t second) {
  for (const auto& svc : snap_->services) {
    for (const auto& v : svc.versions) {
      health::Sample sum;
      for (auto& w : workers_) {
        if (const auto* c = w->stats().versions.find(v.stats_id)) sum.add(*c);
      }
      stats_.fold(second, v.stats_id, sum);
    }
  }
}

void Server::run_guards(uint64_t now_ms, uint64_t second) {
  bool changed = false;
  for (size_t si = 0; si < snap_->services.size(); ++si) {
    const routing::Service& svc = snap_->services[si];
    const config::GuardConfig& g = config_->services[si].guard;
    auto ro = rollouts_.find(svc.name);
    const bool rolling = ro != rollouts_.end() && ro->second.state() == health::RolloutState::kRunning;
    if (!g.enabled && !rolling) continue;
    ServiceGuard& sg = guards_[svc.name];
    const uint32_t interval = g.enabled ? g.interval_ms : 1000;
    if (now_ms - sg.last_eval_ms < interval) continue;
    sg.last_eval_ms = now_ms;
    const routing::Version& stable = svc.versions[svc.stable];
    const health::StatsWindow* stable_window = stats_.window(stable.stats_id);
    health::Summary stable_summary =
        stable_window ? stable_window->summarize(second, g.window_s) : health::Summary{};
    for (const auto& v : svc.versions) {
      if (&v == &stable || v.weight == 0) continue;
      // Without a guard a rollout advances on time alone.
      health::Verdict verdict = health::Verdict::kPass;
      if (g.enabled) {
        const health::StatsWindow* w = stats_.window(v.stats_id);
        health::Summary summary = w ? w->summarize(second, g.window_s) : health::Summary{};
        auto [it, fresh] = sg.versions.try_emplace(v.name, v.name);
        health::Evaluation e = it->second.evaluate(
            g, summary, stable_summary, static_cast<uint32_t>(v.endpoints.size()), now_ms);
        verdict = e.verdict;
        if (e.reverted) {
          std::string why;
          for (const auto& r : e.reasons) why += (why.empty() ? "" : "; ") + r;
          std::fprintf(stderr,
                       "weir: guard: service %s version %s reverted to weight 0 after %u "
                       "breaches in a row (window %us): %s\n",
                       svc.name.c_str(), v.name.c_str(), e.breaches_in_a_row, g.window_s,
                       why.c_str());
          weight_overrides_[svc.name][v.name] = 0;
          it->second.reset();
          changed = true;
          if (ro != rollouts_.end() && ro->second.plan().version == v.name) {
            ro->second.abort("guard reverted " + v.name + ": " + why);
            std::fprintf(stderr, "weir: rollout: service %s aborted by the guard\n",
                         svc.name.c_str());
          }
        }
        sg.log.add(std::move(e));
      }
      if (rolling && ro->second.plan().version == v.name &&
          ro->second.state() == health::RolloutState::kRunning) {
        changed |= apply_rollout(svc.name, ro->second.on_verdict(verdict, now_ms));
        if (ro->second.state() == health::RolloutState::kPaused) {
          std::fprintf(stderr, "weir: rollout: service %s %s\n", svc.name.c_str(),
                       ro->second.last_reason().c_str());
        }
      }
    }
  }
  if (changed) rebuild_and_publish("guard");
}

bool Server::apply_rollout(const std::string& service, const health::Rollout::Action& a) {
  if (!a.change && !a.promote) return false;
  const config::Service* cs = nullptr;
  for (const auto& s : config_->services) {
    if (s.name == service) cs = &s;
  }
  if (!cs) return false;
  const std::string& version = cs->rollout.version;
  auto st = stable_overrides_.find(service);
  const std::string stable = st != stable_overrides_.end() ? st->second : cs->stable;
  auto& weights = weight_overrides_[service];
  if (a.promote) {
    for (const auto& v : cs->versions) weights[v.name] = v.name == version ? 100 : 0;
    stable_overrides_[service] = version;
    std::fprintf(stderr, "weir: rollout: service %s promoted %s to stable (%s)\n",
                 service.c_str(), version.c_str(), a.why.c_str());
  } else {
    weights[version] = a.weight;
    weights[stable] = 100 - a.weight;
    std::fprintf(stderr, "weir: rollout: service %s version %s at %u%% (%s)\n", service.c_str(),
                 version.c_str(), a.weight, a.why.c_str());
  }
  return true;
}

void Server::rebuild_and_publish(const char* why) {
  std::string error;
  if (auto snap = build(&error)) {
    publish(snap);
  } else {
    std::fprintf(stderr, "weir: %s: cannot publish the change: %s\n", why, error.c_str());
  }
}

bool Server::rollout_command(const std::string& service, const std::string& op,
                             std::string* error) {
  auto it = rollouts_.find(service);
  if (it == rollouts_.end()) {
    *error = "service " + service + " has no [service.rollout]";
    return false;
  }
  health::Rollout& r = it->second;
  const uint64_t now = monotonic_ms();
  error->clear();
  health::Rollout::Action a;
  if (op == "start") {
    a = r.start(now, error);
  } else if (op == "pause") {
    a = r.pause(error);
  } else if (op == "resume") {
    a = r.resume(now, error);
  } else if (op == "abort") {
    a = r.abort("aborted by an operator");
  } else if (op == "promote") {
    a = r.promote(error);
  } else {
    *error = "unknown rollout operation " + op + " (start, pause, resume, abort, promote)";
    return false;
  }
  if (!error->empty()) return false;
  if (apply_rollout(service, a)) rebuild_and_publish("rollout");
  return true;
}

std::string Server::explain_json(const std::string& service) const {
  for (const auto& s : config_->services) {
    if (s.name != service) continue;
    auto it = guards_.find(service);
    static const health::DecisionLog kEmpty;
    return (it == guards_.end() ? kEmpty : it->second.log).to_json(service, s.guard);
  }
  return "";
}

int Server::run() {
  ::signal(SIGPIPE, SIG_IGN);
  worker_count_ = config_->proxy.workers;
  if (worker_count_ == 0) worker_count_ = std::max(1u, std::thread::hardware_concurrency());
  std::string error;
  auto snap = build(&error);
  if (!snap) {
    std::fprintf(stderr, "weir: %s\n", error.c_str());
    return 1;
  }
  snap_ = snap;
  for (const auto& svc : config_->services) {
    if (!svc.rollout.present) continue;
    rollouts_.emplace(svc.name, health::Rollout(svc.rollout));
    if (svc.rollout.auto_start) {
      std::string why;
      rollout_command(svc.name, "start", &why);
    }
  }
  std::vector<config::Error> tls_errors;
  tls_ = build_tls_set(*config_, &tls_errors);
  if (!tls_) {
    for (const auto& e : tls_errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
    std::fprintf(stderr, "weir: not starting: a certificate or key cannot be used\n");
    return 1;
  }
  if (!open_listeners(&error)) {
    std::fprintf(stderr, "weir: %s\n", error.c_str());
    return 1;
  }
  uv_loop_init(&loop_);
  for (uv_signal_t* s : {&sigterm_, &sigint_, &sighup_}) {
    uv_signal_init(&loop_, s);
    s->data = this;
  }
  uv_signal_start(&sigterm_, on_signal, SIGTERM);
  uv_signal_start(&sigint_, on_signal, SIGINT);
  uv_signal_start(&sighup_, on_signal, SIGHUP);
  uv_timer_init(&loop_, &tick_);
  tick_.data = this;
  uv_timer_start(&tick_, on_tick, kTickMs, kTickMs);
  for (unsigned w = 0; w < worker_count_; ++w) {
    workers_.push_back(std::make_unique<Worker>(w, fds_[w], snap_));
    workers_.back()->post_tls(tls_);
    fds_[w].clear();  // the worker's uv_tcp_t owns them now
  }
  for (auto& w : workers_) w->start();
  std::fprintf(stderr, "weir: ready (%u workers)\n", worker_count_);
  uv_run(&loop_, UV_RUN_DEFAULT);
  for (auto& w : workers_) w->join();
  uv_loop_close(&loop_);
  std::fprintf(stderr, "weir: stopped\n");
  return 0;
}

void Server::on_signal(uv_signal_t* h, int signum) {
  auto* self = static_cast<Server*>(h->data);
  if (signum == SIGHUP) {
    self->reload();
  } else {
    self->shutdown();
  }
}

void Server::shutdown() {
  if (stopping_) return;
  stopping_ = true;
  std::fprintf(stderr, "weir: shutting down (drain up to %u ms)\n",
               config_->proxy.drain_timeout_ms);
  for (auto& w : workers_) w->post_shutdown(config_->proxy.drain_timeout_ms);
  for (uv_signal_t* s : {&sigterm_, &sigint_, &sighup_}) {
    uv_close(reinterpret_cast<uv_handle_t*>(s), nullptr);
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&tick_), nullptr);
}

void Server::reload() {
  if (config_->path.empty()) {
    std::fprintf(stderr, "weir: reload: the embedded configuration cannot be reloaded\n");
    return;
  }
  config::LoadResult r = config::load_file(config_->path);
  if (!r.config) {
    std::fprintf(stderr, "weir: reload failed, keeping the running configuration:\n");
    for (const auto& e : r.errors) std::fprintf(stderr, "  %s\n", e.to_string().c_str());
    return;
  }
  auto next = std::make_shared<const config::Config>(std::move(*r.config));
  bool same_listeners = next->listeners.size() == config_->listeners.size();
  for (size_t i = 0; same_listeners && i < next->listeners.size(); ++i) {
    same_listeners = next->listeners[i].name == config_->listeners[i].name &&
                     next->listeners[i].address.to_string() ==
                         config_->listeners[i].address.to_string();
  }
  if (!same_listeners || next->proxy.workers != config_->proxy.workers) {
    std::fprintf(stderr,
                 "weir: reload failed, keeping the running configuration: listeners and "
                 "workers change only with a restart\n");
    return;
  }
  // Certificates are re-read on every reload; a broken one keeps the running set.
  std::vector<config::Error> tls_errors;
  auto tls = build_tls_set(*next, &tls_errors);
  if (!tls) {
    std::fprintf(stderr, "weir: reload failed, keeping the running configuration:\n");
    for (const auto& e : tls_errors) std::fprintf(stderr, "  %s\n", e.to_string().c_str());
    return;
  }
  std::string error;
  auto previous = config_;
  config_ = next;
  auto snap = build(&error);
  if (!snap) {
    config_ = previous;
    std::fprintf(stderr, "weir: reload failed, keeping the running configuration: %s\n",
                 error.c_str());
    return;
  }
  tls_ = tls;
  for (auto& w : workers_) w->post_tls(tls);
  publish(snap);
  std::fprintf(stderr, "weir: reloaded %s (generation %llu)\n", config_->path.c_str(),
               static_cast<unsigned long long>(generation_));
}

}  // namespace weir::proxy
