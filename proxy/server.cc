#include "proxy/server.h"

#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>
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

std::shared_ptr<const routing::Snapshot> Server::build(
    std::shared_ptr<const config::Config> config, std::string* error) {
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
  return routing::build_snapshot(std::move(config), registry_, ++generation_, resolve_endpoint,
                                 error, &health);
}

void Server::publish(std::shared_ptr<const routing::Snapshot> snap) {
  snap_ = std::move(snap);
  for (auto& w : workers_) w->post_snapshot(snap_);
  if (prober_) prober_->sync(*snap_);
}

void Server::republish(const char* why) {
  if (stopping_) return;
  std::string error;
  auto snap = build(config_, &error);
  if (!snap) {
    std::fprintf(stderr, "weir: snapshot after %s failed: %s\n", why, error.c_str());
    return;
  }
  publish(std::move(snap));
}

void Server::evaluate_outliers() {
  if (!snap_ || stopping_) return;
  const uint64_t now = uv_now(&loop_);
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
        std::fprintf(stderr, "weir: outlier: %s/%s endpoint %s is %s (%s)\n", svc.name.c_str(),
                     v.name.c_str(), v.endpoints[e.index].address.c_str(),
                     e.ejected ? "ejected" : "back", e.why.c_str());
        changed = true;
      }
    }
  }
  if (changed) republish("an ejection change");
}

void Server::note_ramps(const config::Config& prev, const config::Config& next) {
  const uint64_t now = std::max<uint64_t>(1, uv_now(&loop_));
  std::map<std::string, uint32_t> old_weight;
  std::set<std::string> old_endpoints;
  for (const auto& svc : prev.services) {
    for (const auto& v : svc.versions) {
      old_weight[svc.name + "/" + v.name] = v.weight;
      for (const auto& ep : v.endpoints) old_endpoints.insert(ep.to_string());
    }
  }
  for (const auto& svc : next.services) {
    for (const auto& v : svc.versions) {
      const std::string key = svc.name + "/" + v.name;
      auto it = old_weight.find(key);
      if (v.weight > 0 && (it == old_weight.end() || it->second == 0)) version_ramp_[key] = now;
      for (const auto& ep : v.endpoints) {
        if (old_endpoints.count(ep.to_string())) continue;
        uint32_t id = registry_.id_for(ep.to_string());
        if (endpoint_ramp_.size() <= id) endpoint_ramp_.resize(id + 1, 0);
        endpoint_ramp_[id] = now;
      }
    }
  }
}

int Server::run() {
  ::signal(SIGPIPE, SIG_IGN);
  worker_count_ = config_->proxy.workers;
  if (worker_count_ == 0) worker_count_ = std::max(1u, std::thread::hardware_concurrency());
  uv_loop_init(&loop_);
  std::string error;
  auto snap = build(config_, &error);
  if (!snap) {
    std::fprintf(stderr, "weir: %s\n", error.c_str());
    uv_loop_close(&loop_);
    return 1;
  }
  if (!open_listeners(&error)) {
    std::fprintf(stderr, "weir: %s\n", error.c_str());
    uv_loop_close(&loop_);
    return 1;
  }
  prober_ = std::make_unique<HealthProber>(&loop_, [this](uint32_t id, bool healthy) {
    if (healthy) {
      // A revived endpoint ramps up again under slow start.
      if (endpoint_ramp_.size() <= id) endpoint_ramp_.resize(id + 1, 0);
      endpoint_ramp_[id] = std::max<uint64_t>(1, uv_now(&loop_));
    }
    republish("a health change");
  });
  uv_timer_init(&loop_, &outlier_timer_);
  outlier_timer_.data = this;
  uv_timer_start(
      &outlier_timer_,
      [](uv_timer_t* t) { static_cast<Server*>(t->data)->evaluate_outliers(); }, 100, 100);
  for (uv_signal_t* s : {&sigterm_, &sigint_, &sighup_}) {
    uv_signal_init(&loop_, s);
    s->data = this;
  }
  uv_signal_start(&sigterm_, on_signal, SIGTERM);
  uv_signal_start(&sigint_, on_signal, SIGINT);
  uv_signal_start(&sighup_, on_signal, SIGHUP);
  for (unsigned w = 0; w < worker_count_; ++w) {
    workers_.push_back(std::make_unique<Worker>(w, fds_[w], snap));
    fds_[w].clear();  // the worker's uv_tcp_t owns them now
  }
  for (auto& w : workers_) w->start();
  publish(snap);
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
  if (prober_) prober_->stop();
  uv_close(reinterpret_cast<uv_handle_t*>(&outlier_timer_), nullptr);
  for (uv_signal_t* s : {&sigterm_, &sigint_, &sighup_}) {
    uv_close(reinterpret_cast<uv_handle_t*>(s), nullptr);
  }
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
  std::string error;
  note_ramps(*config_, *next);
  auto snap = build(next, &error);
  if (!snap) {
    std::fprintf(stderr, "weir: reload failed, keeping the running configuration: %s\n",
                 error.c_str());
    return;
  }
  config_ = next;
  publish(snap);
  std::fprintf(stderr, "weir: reloaded %s (generation %llu)\n", config_->path.c_str(),
               static_cast<unsigned long long>(generation_));
}

}  // namespace weir::proxy
