#include "proxy/server.h"

#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <thread>

#include "proxy/metrics.h"

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
  sockaddr_storage addr{};
  if (!resolve_endpoint(l.address.host, l.address.port, &addr, error)) {
    *error = "listener " + l.name + ": " + *error;
    return false;
  }
  // Each worker gets its own socket on the same address (SO_REUSEPORT, set by hand because
  // libuv 1.44 has no flag for it), so the kernel spreads connections with no shared accept.
  auto fail = [&](std::string why) {
    *error = "listener " + l.name + ": " + why + ": " + std::strerror(errno);
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
    if (w == 0) {
      // Port 0: the first socket picks the port, its siblings join it.
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    }
    fds->push_back(fd);
  }
  uint16_t port = ntohs(addr.ss_family == AF_INET6
                            ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                            : reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  config::HostPort bound{l.address.host, port};
  std::fprintf(stderr, "weir: listener %s listening on %s\n", l.name.c_str(),
               bound.to_string().c_str());
  return true;
}

bool Server::open_listeners(std::string* error) {
  fds_.assign(worker_count_, {});
  for (const auto& l : config_->listeners) {
    std::vector<int> fds;
    if (!open_listener(l, &fds, error)) return false;
    for (unsigned w = 0; w < worker_count_; ++w) fds_[w].push_back(fds[w]);
  }
  return true;
}

bool Server::open_state(std::string* error) {
  store_ = std::make_unique<StateStore>(config_->admin.state_dir);
  if (!store_->open(error)) return false;
  std::string why;
  if (auto saved = store_->load_state(&why)) {
    auto loaded = RuntimeState::from_json(*saved, &why);
    if (!loaded) {
      *error = store_->dir() + "/state.json: " + why;
      return false;
    }
    runtime_ = std::move(*loaded);
  } else if (!why.empty()) {
    *error = why;
    return false;
  }
  // The config may have changed while weir was down: overrides for a changed version set go.
  std::vector<std::string> reset = runtime_.reconcile(*config_);
  for (const auto& name : reset) {
    AuditEvent ev;
    ev.actor = "startup";
    ev.action = "reset_overrides";
    ev.service = name;
    ev.reason = "the service's set of versions changed in the configuration";
    if (!store_->append(ev, error)) return false;
    std::fprintf(stderr, "weir: %s: runtime weights reset: its versions changed\n", name.c_str());
  }
  return store_->save_state(runtime_.to_json(), error);
}

std::shared_ptr<const routing::Snapshot> Server::build(const config::Config& config,
                                                       const RuntimeState& runtime,
                                                       std::string* error) {
  auto effective = std::make_shared<const config::Config>(runtime.apply(config));
  return routing::build_snapshot(effective, registry_, ++generation_, resolve_endpoint, error);
}

void Server::publish(std::shared_ptr<const routing::Snapshot> snap) {
  for (auto& w : workers_) w->post_snapshot(snap);
}

int Server::run() {
  ::signal(SIGPIPE, SIG_IGN);
  worker_count_ = config_->proxy.workers;
  if (worker_count_ == 0) worker_count_ = std::max(1u, std::thread::hardware_concurrency());
  std::string error;
  if (!open_state(&error)) {
    std::fprintf(stderr, "weir: state: %s\n", error.c_str());
    return 1;
  }
  auto snap = build(*config_, runtime_, &error);
  if (!snap) {
    std::fprintf(stderr, "weir: %s\n", error.c_str());
    return 1;
  }
  if (!config_->proxy.access_log.empty() &&
      !(access_log_ = AccessLog::open(config_->proxy.access_log, &error))) {
    std::fprintf(stderr, "weir: %s\n", error.c_str());
    return 1;
  }
  if (!open_listeners(&error)) {
    std::fprintf(stderr, "weir: %s\n", error.c_str());
    return 1;
  }
  uv_loop_init(&loop_);
  if (config_->admin.enabled) {
    api_ = std::make_unique<AdminApi>(*this);
    admin_ = std::make_unique<AdminServer>(&loop_, *api_);
    config::HostPort bound;
    if (!admin_->start(config_->admin.address, &bound, &error)) {
      std::fprintf(stderr, "weir: %s\n", error.c_str());
      admin_->stop();
      uv_run(&loop_, UV_RUN_DEFAULT);
      uv_loop_close(&loop_);
      return 1;
    }
    std::fprintf(stderr, "weir: admin listening on %s\n", bound.to_string().c_str());
  }
  for (uv_signal_t* s : {&sigterm_, &sigint_, &sighup_, &sigusr1_}) {
    uv_signal_init(&loop_, s);
    s->data = this;
  }
  uv_signal_start(&sigterm_, on_signal, SIGTERM);
  uv_signal_start(&sigint_, on_signal, SIGINT);
  uv_signal_start(&sighup_, on_signal, SIGHUP);
  uv_signal_start(&sigusr1_, on_signal, SIGUSR1);
  for (unsigned w = 0; w < worker_count_; ++w) {
    workers_.push_back(std::make_unique<Worker>(w, fds_[w], snap));
    workers_.back()->set_access_log(access_log_.get());
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
    self->reload("signal");
  } else if (signum == SIGUSR1) {
    // logrotate moved the access log: write to a new file at the configured path.
    std::string error;
    if (self->access_log_ && !self->access_log_->reopen(&error))
      std::fprintf(stderr, "weir: %s; still writing to the old file\n", error.c_str());
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
  for (uv_signal_t* s : {&sigterm_, &sigint_, &sighup_, &sigusr1_}) {
    uv_close(reinterpret_cast<uv_handle_t*>(s), nullptr);
  }
  if (admin_) admin_->stop();
}

bool Server::commit(RuntimeState next, AuditEvent event, std::string* error) {
  auto snap = build(*config_, next, error);
  if (!snap) return false;
  // Durable first: the state file, then the audit record; only then does traffic move.
  if (!store_->save_state(next.to_json(), error)) return false;
  if (!store_->append(event, error)) {
    std::string ignored;
    store_->save_state(runtime_.to_json(), &ignored);
    return false;
  }
  runtime_ = std::move(next);
  publish(std::move(snap));
  std::fprintf(stderr, "weir: %s %s by %s: %s\n", event.action.c_str(), event.service.c_str(),
               event.actor.c_str(), event.after.dump().c_str());
  return true;
}

std::vector<nlohmann::json> Server::events_since(uint64_t since, size_t limit) const {
  return store_->events_since(since, limit);
}

std::string Server::metrics_text() {
  MetricsSource source;
  for (const auto& w : workers_) source.workers.push_back(&w->stats());
  source.config = config_.get();
  source.runtime = &runtime_;
  source.reloads_ok = reloads_ok_;
  source.reloads_failed = reloads_failed_;
  return render_metrics(source);
}

void Server::annotate(ServiceStateView&) const {
  // Endpoint health, per-version stats windows and guard/rollout state are filled here once
  // those parts of the control plane exist.
}

ReloadOutcome Server::reload(const std::string& actor) {
  ReloadOutcome out;
  auto fail = [&](std::vector<std::string> errors) {
    ++reloads_failed_;
    std::fprintf(stderr, "weir: reload failed, keeping the running configuration:\n");
    for (const auto& e : errors) std::fprintf(stderr, "  %s\n", e.c_str());
    AuditEvent ev;
    ev.actor = actor;
    ev.action = "reload_failed";
    ev.detail = {{"errors", errors}};
    std::string ignored;
    store_->append(ev, &ignored);
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
  RuntimeState next_runtime = runtime_;
  out.reset_services = next_runtime.reconcile(*next);
  std::string error;
  auto snap = build(*next, next_runtime, &error);
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
  if (!store_->save_state(next_runtime.to_json(), &error)) {
    close_opened();
    return fail({error});
  }
  AuditEvent ev;
  ev.actor = actor;
  ev.action = "reload";
  ev.detail = {{"generation", generation_}, {"reset_services", out.reset_services}};
  if (!out.reset_services.empty())
    ev.reason = "runtime weights reset where a service's set of versions changed";
  if (!store_->append(ev, &error)) {
    std::string ignored;
    store_->save_state(runtime_.to_json(), &ignored);
    close_opened();
    return fail({error});
  }
  for (const auto& l : config_->listeners) {
    bool kept = std::any_of(next->listeners.begin(), next->listeners.end(),
                            [&](const config::Listener& n) {
                              return n.name == l.name &&
                                     n.address.to_string() == l.address.to_string();
                            });
    if (!kept) std::fprintf(stderr, "weir: listener %s closed\n", l.name.c_str());
  }
  for (unsigned w = 0; w < worker_count_; ++w) workers_[w]->post_snapshot(snap, std::move(open[w]));
  config_ = next;
  runtime_ = std::move(next_runtime);
  ++reloads_ok_;
  out.ok = true;
  out.generation = generation_;
  for (const auto& name : out.reset_services)
    std::fprintf(stderr, "weir: %s: runtime weights reset: its versions changed\n", name.c_str());
  std::fprintf(stderr, "weir: reloaded %s (generation %llu)\n", config_->path.c_str(),
               static_cast<unsigned long long>(generation_));
  return out;
}

}  // namespace weir::proxy
