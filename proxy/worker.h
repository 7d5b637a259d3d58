// One event-loop thread. Owns its listening sockets (SO_REUSEPORT siblings of the other
// workers'), every client connection it accepts, its upstream pools, its picker and counters.
// Nothing here is touched by another thread except through post_snapshot()/post_shutdown().
#pragma once

#include <uv.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "config/config.h"
#include "proxy/access_log.h"
#include "proxy/io_buffer.h"
#include "proxy/mirror.h"
#include "proxy/session.h"
#include "proxy/stats.h"
#include "proxy/tls_context.h"
#include "proxy/upstream_pool.h"
#include "routing/picker.h"
#include "routing/snapshot.h"

namespace weir::proxy {

class ClientConn;
class Exchange;

// A listening socket handed to a worker on reload, for the listener `name`.
struct ListenFd {
  std::string name;
  int fd = -1;
};

class Worker {
 public:
  Worker(unsigned index, std::vector<int> listen_fds, std::shared_ptr<const routing::Snapshot> snap);
  ~Worker();

  void start();  // spawns the thread
  void join();

  // Thread-safe: the snapshot is adopted at the worker's next loop turn, together with `open`
  // (sockets for listeners the reload added or moved; the worker owns them from here). Listeners
  // the snapshot no longer has stop accepting, and their connections drain.
  void post_snapshot(std::shared_ptr<const routing::Snapshot> snap, std::vector<ListenFd> open = {});
  // Thread-safe: new connections use these TLS contexts (indexed like the snapshot's listeners)
  // from the next loop turn. Before
  // start() it sets them directly.
  void post_tls(std::shared_ptr<const TlsSet> tls);
  // The TLS context of `listener`, or nullptr for a plain listener.
  std::shared_ptr<const TlsContext> tls_for(uint32_t listener) const;
  // Thread-safe: stop accepting, drain connections for up to drain_ms, then end the loop.
  void post_shutdown(uint64_t drain_ms);

  uv_loop_t* loop() { return &loop_; }
  unsigned index() const { return index_; }
  const std::shared_ptr<const routing::Snapshot>& snapshot() const { return snap_; }
  // The snapshot a new request starts on: a posted one is adopted first, so a request that
  // arrives after the control thread acknowledged a change sees it even when the wake-up is
  // still queued behind this loop turn's other events. (Listener changes wait for the wake-up.)
  const std::shared_ptr<const routing::Snapshot>& current_snapshot();
  const config::ProxySettings& settings() const { return snap_->config->proxy; }
  routing::Picker& picker() { return picker_; }
  UpstreamPool& pool() { return pool_; }
  Mirrors& mirrors() { return mirrors_; }
  WorkerStats& stats() { return stats_; }
  EndpointStreaks& streaks() { return streaks_; }
  FlushList& flush_list() { return flush_list_; }
  // A header list for building a response head that its reader consumes at once.
  std::vector<HeaderField>& header_scratch() { return header_scratch_; }
  uint64_t now_ms() const { return uv_now(const_cast<uv_loop_t*>(&loop_)); }
  uint64_t next_random();
  bool draining() const { return draining_; }
  // false for an endpoint the current snapshot sends no new requests to (removed, or only in
  // versions of weight 0 that are not a mirror target): its connections are closed, not pooled.
  bool endpoint_live(uint32_t id) const { return id < live_.size() && live_[id]; }

  // Shared read buffer: every read callback consumes its data before returning.
  char* read_buffer() { return read_buf_.get(); }
  static constexpr size_t kReadBufferSize = 64 * 1024;

  // Destroys `ex` after this loop turn's callbacks: an exchange may finish from inside its own
  // upstream callback, where deleting it at once would pull the stack out from under it.
  void retire(std::unique_ptr<Exchange> ex);

  // Before start(): log one line per routed request to `log` (nullptr = no access log).
  void set_access_log(AccessLog* log) { access_log_ = log; }
  bool logging() const { return access_log_ != nullptr; }
  void log_access(const AccessRecord& r);
  // A request weir answered itself before routing (400, 408, 413, 414, 431): no Exchange exists
  // to log it, so the session does through this. `started_ms` is when its first byte came
  // (this loop's clock); method, host and path are whatever could be read ("" otherwise).
  // `why` names the check that refused it; `h2` is the client's protocol.
  void log_rejected(const ConnInfo& conn, int status, std::string_view why, bool h2,
                    std::string_view method, std::string_view host, std::string_view path,
                    std::string_view request_id, uint64_t started_ms);

  void add_conn(ClientConn* c);
  void remove_conn(ClientConn* c);

 private:
  void run();
  static void on_connection(uv_stream_t* server, int status);
  // The snapshot index of the listener listeners_[socket] serves (UINT32_MAX: removed).
  uint32_t listener_index(size_t socket) const;
  // Shutdown: accepts what the kernel queued on listeners_[socket] before it is closed.
  void accept_backlog(size_t socket);
  static void on_async(uv_async_t* h);
  static void on_check(uv_check_t* h);
  static void on_drain_timer(uv_timer_t* h);
  static void on_access_timer(uv_timer_t* h);
  void flush_access_log();
  void begin_shutdown(uint64_t drain_ms);
  void adopt(std::shared_ptr<const routing::Snapshot> snap, std::vector<ListenFd> open);
  void listen_on(std::string name, int fd);
  // The routing part of adopting a snapshot: picker state, live endpoints, idle pools.
  void adopt_routing(std::shared_ptr<const routing::Snapshot> snap);
  void maybe_finish();
  void finish();

  unsigned index_;
  std::vector<int> listen_fds_;
  uv_loop_t loop_{};
  std::vector<std::unique_ptr<uv_tcp_t>> listeners_;
  std::vector<std::string> listener_names_;  // parallel to listeners_
  uv_async_t async_{};
  uv_check_t check_{};
  uv_idle_t wake_{};
  uv_timer_t drain_timer_{};
  uv_timer_t access_timer_{};
  AccessLog* access_log_ = nullptr;
  std::string access_buf_;
  std::thread thread_;
  std::shared_ptr<const routing::Snapshot> snap_;
  std::shared_ptr<const TlsSet> tls_;
  routing::Picker picker_;
  UpstreamPool pool_;
  Mirrors mirrors_;
  WorkerStats stats_;
  EndpointStreaks streaks_;
  std::vector<bool> live_;  // by endpoint id, for the current snapshot
  FlushList flush_list_;
  std::vector<HeaderField> header_scratch_;
  std::unique_ptr<char[]> read_buf_;
  uint64_t rng_;
  std::vector<ClientConn*> conns_;
  std::vector<std::unique_ptr<Exchange>> graveyard_;
  bool draining_ = false;
  bool finished_ = false;

  std::atomic<bool> snap_posted_{false};  // inbox_snap_ is set; read per request, rarely true
  std::mutex mu_;  // guards the mailboxes below
  std::shared_ptr<const routing::Snapshot> inbox_snap_;
  std::vector<ListenFd> inbox_listeners_;
  std::shared_ptr<const TlsSet> inbox_tls_;
  bool inbox_shutdown_ = false;
  uint64_t inbox_drain_ms_ = 0;
};

}  // namespace weir::proxy
