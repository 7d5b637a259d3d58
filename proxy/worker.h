// One event-loop thread. Owns its listening sockets (SO_REUSEPORT siblings of the other
// workers'), every client connection it accepts, its upstream pools, its picker and counters.
// Nothing here is touched by another thread except through post_snapshot()/post_shutdown().
#pragma once

#include <uv.h>

#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "config/config.h"
#include "proxy/io_buffer.h"
#include "proxy/stats.h"
#include "proxy/tls_context.h"
#include "proxy/upstream_pool.h"
#include "routing/picker.h"
#include "routing/snapshot.h"

namespace weir::proxy {

class ClientConn;
class Exchange;

class Worker {
 public:
  Worker(unsigned index, std::vector<int> listen_fds, std::shared_ptr<const routing::Snapshot> snap);
  ~Worker();

  void start();  // spawns the thread
  void join();

  // Thread-safe: the snapshot is adopted at the worker's next loop turn.
  void post_snapshot(std::shared_ptr<const routing::Snapshot> snap);
  // Thread-safe: new connections use these TLS contexts from the next loop turn. Before
  // start() it sets them directly.
  void post_tls(std::shared_ptr<const TlsSet> tls);
  // The TLS context of `listener`, or nullptr for a plain listener.
  std::shared_ptr<const TlsContext> tls_for(uint32_t listener) const;
  // Thread-safe: stop accepting, drain connections for up to drain_ms, then end the loop.
  void post_shutdown(uint64_t drain_ms);

  uv_loop_t* loop() { return &loop_; }
  unsigned index() const { return index_; }
  const std::shared_ptr<const routing::Snapshot>& snapshot() const { return snap_; }
  const config::ProxySettings& settings() const { return snap_->config->proxy; }
  routing::Picker& picker() { return picker_; }
  UpstreamPool& pool() { return pool_; }
  WorkerStats& stats() { return stats_; }
  EndpointStreaks& streaks() { return streaks_; }
  FlushList& flush_list() { return flush_list_; }
  uint64_t now_ms() const { return uv_now(const_cast<uv_loop_t*>(&loop_)); }
  uint64_t next_random();
  bool draining() const { return draining_; }
  // false for an endpoint the current snapshot sends no new requests to (removed, or only in
  // versions of weight 0): its connections are closed instead of pooled.
  bool endpoint_live(uint32_t id) const { return id < live_.size() && live_[id]; }

  // Shared read buffer: every read callback consumes its data before returning.
  char* read_buffer() { return read_buf_.get(); }
  static constexpr size_t kReadBufferSize = 64 * 1024;

  // Destroys `ex` after this loop turn's callbacks: an exchange may finish from inside its own
  // upstream callback, where deleting it at once would pull the stack out from under it.
  void retire(std::unique_ptr<Exchange> ex);

  void add_conn(ClientConn* c);
  void remove_conn(ClientConn* c);

 private:
  void run();
  static void on_connection(uv_stream_t* server, int status);
  static void on_async(uv_async_t* h);
  static void on_check(uv_check_t* h);
  static void on_drain_timer(uv_timer_t* h);
  void begin_shutdown(uint64_t drain_ms);
  void adopt(std::shared_ptr<const routing::Snapshot> snap);
  void maybe_finish();
  void finish();

  unsigned index_;
  std::vector<int> listen_fds_;
  uv_loop_t loop_{};
  std::vector<std::unique_ptr<uv_tcp_t>> listeners_;
  std::vector<uint32_t> listener_index_;
  uv_async_t async_{};
  uv_check_t check_{};
  uv_idle_t wake_{};
  uv_timer_t drain_timer_{};
  std::thread thread_;
  std::shared_ptr<const routing::Snapshot> snap_;
  std::shared_ptr<const TlsSet> tls_;
  routing::Picker picker_;
  UpstreamPool pool_;
  WorkerStats stats_;
  EndpointStreaks streaks_;
  std::vector<bool> live_;  // by endpoint id, for the current snapshot
  FlushList flush_list_;
  std::unique_ptr<char[]> read_buf_;
  uint64_t rng_;
  std::vector<ClientConn*> conns_;
  std::vector<std::unique_ptr<Exchange>> graveyard_;
  bool draining_ = false;
  bool finished_ = false;

  std::mutex mu_;  // guards the two mailboxes below
  std::shared_ptr<const routing::Snapshot> inbox_snap_;
  std::shared_ptr<const TlsSet> inbox_tls_;
  bool inbox_shutdown_ = false;
  uint64_t inbox_drain_ms_ = 0;
};

}  // namespace weir::proxy
