#include "proxy/worker.h"

#include <algorithm>
#include <cstdio>

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "proxy/client_conn.h"
#include "proxy/exchange.h"
#include "proxy/log.h"

namespace weir::proxy {

Worker::Worker(unsigned index, std::vector<int> listen_fds,
               std::shared_ptr<const routing::Snapshot> snap)
    : index_(index),
      listen_fds_(std::move(listen_fds)),
      snap_(std::move(snap)),
      picker_(0x5eed0000ULL + index * 0x9e3779b9ULL + static_cast<uint64_t>(uv_hrtime())),
      pool_(*this),
      mirrors_(*this),
      read_buf_(new char[kReadBufferSize]),
      rng_(static_cast<uint64_t>(uv_hrtime()) ^ (static_cast<uint64_t>(index) << 40)) {
  adopt_routing(snap_);
}

void Worker::adopt_routing(std::shared_ptr<const routing::Snapshot> snap) {
  // In-flight exchanges keep the snapshot they pinned; new requests see this one.
  snap_ = std::move(snap);
  picker_.reset(*snap_);
  live_.assign(snap_->endpoint_count, false);
  for (const auto& svc : snap_->services) {
    for (uint32_t i = 0; i < svc.versions.size(); ++i) {
      const auto& v = svc.versions[i];
      // A mirror target keeps its pooled connections even at weight 0: copies reuse them.
      const bool mirrored = static_cast<int32_t>(i) == svc.mirror && svc.config->mirror.percent;
      if (v.weight == 0 && i != svc.stable && !mirrored) continue;
      for (const auto& ep : v.endpoints) {
        if (ep.healthy) live_[ep.id] = true;
      }
    }
  }
  pool_.close_idle_except(live_);
}

Worker::~Worker() = default;

uint64_t Worker::next_random() {
  uint64_t z = (rng_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void Worker::start() {
  uv_loop_init(&loop_);
  uv_async_init(&loop_, &async_, on_async);
  async_.data = this;
  uv_check_init(&loop_, &check_);
  check_.data = this;
  uv_check_start(&check_, on_check);
  uv_idle_init(&loop_, &wake_);
  flush_list_.init(&wake_);
  uv_timer_init(&loop_, &drain_timer_);
  drain_timer_.data = this;
  uv_timer_init(&loop_, &access_timer_);
  access_timer_.data = this;
  if (access_log_) {
    uv_timer_start(&access_timer_, on_access_timer, AccessLog::kFlushIntervalMs,
                   AccessLog::kFlushIntervalMs);
    // A flush timer alone must not keep the loop (and a draining worker) alive.
    uv_unref(reinterpret_cast<uv_handle_t*>(&access_timer_));
  }
  // listen_fds_ holds one fd per configured listener, in config order.
  for (size_t i = 0; i < listen_fds_.size(); ++i) {
    listen_on(snap_->config->listeners[i].name, listen_fds_[i]);
  }
  thread_ = std::thread([this] { run(); });
}

void Worker::listen_on(std::string name, int fd) {
  auto tcp = std::make_unique<uv_tcp_t>();
  uv_tcp_init(&loop_, tcp.get());
  tcp->data = this;
  uv_tcp_open(tcp.get(), fd);
  int rc = uv_listen(reinterpret_cast<uv_stream_t*>(tcp.get()), 1024, on_connection);
  if (rc < 0) {
    log(LogLevel::kError, "worker %u: listen: %s", index_, uv_strerror(rc));
  }
  listeners_.push_back(std::move(tcp));
  listener_names_.push_back(std::move(name));
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::run() {
  set_log_worker(static_cast<int>(index_));
  uv_run(&loop_, UV_RUN_DEFAULT);
  uv_loop_close(&loop_);
}

uint32_t Worker::listener_index(size_t socket) const {
  // Listeners are known by name: a reload may have moved them within the snapshot's list.
  const auto& configured = snap_->config->listeners;
  for (size_t j = 0; j < configured.size(); ++j) {
    if (configured[j].name == listener_names_[socket]) return static_cast<uint32_t>(j);
  }
  return UINT32_MAX;
}

void Worker::on_connection(uv_stream_t* server, int status) {
  auto* self = static_cast<Worker*>(server->data);
  if (status < 0 || self->draining_) return;
  for (size_t i = 0; i < self->listeners_.size(); ++i) {
    if (reinterpret_cast<uv_stream_t*>(self->listeners_[i].get()) == server) {
      ClientConn::accept(*self, server, self->listener_index(i));
      return;
    }
  }
}

void Worker::accept_backlog(size_t socket) {
  uv_os_fd_t fd = -1;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(listeners_[socket].get()), &fd) != 0) return;
  const uint32_t listener = listener_index(socket);
  // Bounded: a flood arriving meanwhile must not keep shutdown from closing the socket.
  for (int n = 0; n < 4096; ++n) {
    int c = ::accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0) {
      if (errno == EINTR) continue;
      return;  // EAGAIN: the queue is empty
    }
    ClientConn::adopt(*this, c, listener);
  }
}

void Worker::post_snapshot(std::shared_ptr<const routing::Snapshot> snap,
                           std::vector<ListenFd> open) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    inbox_snap_ = std::move(snap);
    for (auto& l : open) inbox_listeners_.push_back(std::move(l));
    snap_posted_.store(true, std::memory_order_release);
  }
  uv_async_send(&async_);
}

void Worker::post_tls(std::shared_ptr<const TlsSet> tls) {
  if (!thread_.joinable()) {
    tls_ = std::move(tls);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    inbox_tls_ = std::move(tls);
  }
  uv_async_send(&async_);
}

std::shared_ptr<const TlsContext> Worker::tls_for(uint32_t listener) const {
  if (!tls_ || listener >= tls_->listeners.size()) return nullptr;
  return tls_->listeners[listener];
}

void Worker::post_shutdown(uint64_t drain_ms) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    inbox_shutdown_ = true;
    inbox_drain_ms_ = drain_ms;
  }
  uv_async_send(&async_);
}

void Worker::on_async(uv_async_t* h) {
  auto* self = static_cast<Worker*>(h->data);
  std::shared_ptr<const routing::Snapshot> snap;
  std::vector<ListenFd> open;
  std::shared_ptr<const TlsSet> tls;
  bool shutdown = false;
  uint64_t drain_ms = 0;
  {
    std::lock_guard<std::mutex> lock(self->mu_);
    snap.swap(self->inbox_snap_);
    open.swap(self->inbox_listeners_);
    self->snap_posted_.store(false, std::memory_order_relaxed);
    tls.swap(self->inbox_tls_);
    shutdown = self->inbox_shutdown_;
    self->inbox_shutdown_ = false;
    drain_ms = self->inbox_drain_ms_;
  }
  if (snap) self->adopt(std::move(snap), std::move(open));
  if (tls) self->tls_ = std::move(tls);  // connections keep the contexts they started with
  if (shutdown) self->begin_shutdown(drain_ms);
}

const std::shared_ptr<const routing::Snapshot>& Worker::current_snapshot() {
  if (!snap_posted_.load(std::memory_order_acquire)) return snap_;
  std::shared_ptr<const routing::Snapshot> snap;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Adopting here runs inside a connection's callback: only a routing change is safe to take
    // now; one that opens or closes listeners (and may drain connections) waits for on_async.
    const auto& was = snap_->config->listeners;
    const auto& now = inbox_snap_ ? inbox_snap_->config->listeners : was;
    bool same_listeners = inbox_listeners_.empty() && was.size() == now.size() &&
                          std::equal(was.begin(), was.end(), now.begin(),
                                     [](const config::Listener& a, const config::Listener& b) {
                                       return a.name == b.name;
                                     });
    if (inbox_snap_ && same_listeners && !draining_) {
      snap.swap(inbox_snap_);
      snap_posted_.store(false, std::memory_order_relaxed);
    }
  }
  if (snap) adopt(std::move(snap), {});
  return snap_;
}

void Worker::adopt(std::shared_ptr<const routing::Snapshot> snap, std::vector<ListenFd> open) {
  const auto& was = snap_->config->listeners;
  const auto& now = snap->config->listeners;
  auto index_in = [](const std::vector<config::Listener>& ls, const std::string& name) {
    for (size_t j = 0; j < ls.size(); ++j) {
      if (ls[j].name == name) return static_cast<uint32_t>(j);
    }
    return UINT32_MAX;
  };
  if (draining_) {
    // Shutting down: every listener is closed already, and these sockets are not needed.
    for (auto& l : open) ::close(l.fd);
    open.clear();
  }
  // Sockets of listeners that are gone, or that come with a new socket, stop accepting.
  for (size_t i = 0; !draining_ && i < listeners_.size();) {
    const std::string& name = listener_names_[i];
    bool replaced = std::any_of(open.begin(), open.end(),
                                [&](const ListenFd& l) { return l.name == name; });
    if (!replaced && index_in(now, name) != UINT32_MAX) {
      ++i;
      continue;
    }
    uv_close(reinterpret_cast<uv_handle_t*>(listeners_[i].release()),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
    listeners_.erase(listeners_.begin() + static_cast<ptrdiff_t>(i));
    listener_names_.erase(listener_names_.begin() + static_cast<ptrdiff_t>(i));
  }
  for (auto& l : open) listen_on(std::move(l.name), l.fd);
  // Connections follow their listener to its new place in the list; a removed listener's
  // connections finish what they are doing and close.
  std::vector<ClientConn*> orphans;
  for (ClientConn* c : conns_) {
    uint32_t old_index = c->info().listener;
    uint32_t new_index =
        old_index < was.size() ? index_in(now, was[old_index].name) : UINT32_MAX;
    c->set_listener(new_index);
    if (new_index == UINT32_MAX) orphans.push_back(c);
  }
  // In-flight exchanges keep the snapshot they pinned; new requests see this one.
  adopt_routing(std::move(snap));
  for (ClientConn* c : orphans) c->start_drain();
}

void Worker::on_check(uv_check_t* h) {
  auto* self = static_cast<Worker*>(h->data);
  // Retired exchanges go first: one dropped for malformed input must not let its queued
  // upstream bytes leave in this flush.
  self->graveyard_.clear();
  self->flush_list_.flush_all();
  if (self->draining_) self->maybe_finish();
}

void Worker::begin_shutdown(uint64_t drain_ms) {
  if (draining_) return;
  // With SO_REUSEPORT the kernel keeps queueing connections on this socket for as long as it
  // is open, and closing it resets those it queued. So the queue is taken in (these connections
  // are served, then closed like the others) right before the close, and from then on the
  // kernel sends every new connection to the sockets still open: a new weir on the same port.
  for (size_t i = 0; i < listeners_.size(); ++i) accept_backlog(i);
  draining_ = true;
  for (auto& l : listeners_) uv_close(reinterpret_cast<uv_handle_t*>(l.get()), nullptr);
  pool_.close_all();
  // Copy: start_drain may close (and unlink) connections.
  std::vector<ClientConn*> conns = conns_;
  for (ClientConn* c : conns) c->start_drain();
  uv_timer_start(&drain_timer_, on_drain_timer, drain_ms, 0);
  maybe_finish();
}

void Worker::on_drain_timer(uv_timer_t* h) {
  auto* self = static_cast<Worker*>(h->data);
  std::vector<ClientConn*> conns = self->conns_;
  for (ClientConn* c : conns) c->force_close();
}

void Worker::maybe_finish() {
  if (finished_ || !conns_.empty()) return;
  finish();
}

void Worker::finish() {
  finished_ = true;
  pool_.close_all();
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&check_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&wake_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&drain_timer_), nullptr);
  graveyard_.clear();  // retiring exchanges write their last access log lines
  mirrors_.close_all();
  flush_access_log();
  uv_close(reinterpret_cast<uv_handle_t*>(&access_timer_), nullptr);
}

void Worker::log_access(const AccessRecord& r) {
  const config::LogSettings& ls = snap_->config->log;
  append_access_line(access_buf_, r, ls.access_fields, ls.access_format);
  if (access_buf_.size() >= AccessLog::kFlushBytes) flush_access_log();
}

void Worker::log_rejected(const ConnInfo& conn, int status, std::string_view why, bool h2,
                          std::string_view method, std::string_view host, std::string_view path,
                          std::string_view request_id, uint64_t started_ms) {
  if (!access_log_) return;
  AccessRecord r;
  r.flags = kFlagLocalReply;
  r.local_reason = why;
  r.protocol = h2 ? "HTTP/2" : "HTTP/1.1";
  if (conn.listener < snap_->config->listeners.size())
    r.listener = snap_->config->listeners[conn.listener].name;
  r.client = conn.peer_ip;
  r.method = method;
  r.host = host;
  r.path = path;
  r.request_id = request_id;
  r.status = status;
  const uint64_t now = now_ms();
  r.duration_us = started_ms != 0 && started_ms <= now ? (now - started_ms) * 1000 : 0;
  log_access(r);
}

void Worker::flush_access_log() {
  if (!access_log_ || access_buf_.empty()) return;
  access_log_->write(access_buf_);
  access_buf_.clear();
}

void Worker::on_access_timer(uv_timer_t* h) { static_cast<Worker*>(h->data)->flush_access_log(); }

void Worker::retire(std::unique_ptr<Exchange> ex) {
  // Detached from its backend now, not when the graveyard is emptied: a write error in
  // on_check's flush retires an exchange after the graveyard was cleared, its session is freed
  // in the close phase, and the backend's next bytes would reach that freed session.
  ex->abandon();
  graveyard_.push_back(std::move(ex));
}

void Worker::add_conn(ClientConn* c) { conns_.push_back(c); }

void Worker::remove_conn(ClientConn* c) {
  auto it = std::find(conns_.begin(), conns_.end(), c);
  if (it != conns_.end()) {
    *it = conns_.back();
    conns_.pop_back();
  }
  // Close callbacks run after the check phase: finish from here once the last one is gone.
  if (draining_) maybe_finish();
}

}  // namespace weir::proxy
