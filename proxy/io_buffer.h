// OutQueue: the write side of one libuv stream. Appends are buffered and coalesced; the worker
// flushes every queue that got data once per loop turn (its uv_check handle), so a response
// head and body, or several pipelined responses, leave in one syscall. At most one uv_write is
// in flight; its buffer lives in the queue until the write callback.
#pragma once

#include <uv.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace weir::proxy {

class OutQueue;

// A worker's free list of byte buffers. A send queue or a request head under construction takes
// one while it holds bytes and gives it back once they are written, so a busy connection
// allocates nothing per request and an idle one holds no buffer. One thread only.
class BufferPool {
 public:
  static constexpr size_t kMaxKept = 256;              // buffers kept for reuse
  static constexpr size_t kMaxCapacity = 64 * 1024;    // larger ones go back to the heap

  // Gives `into` (empty, holding no heap buffer) a pooled buffer, if there is one.
  void take(std::string& into) {
    if (free_.empty() || into.capacity() > kInline) return;
    into.swap(free_.back());
    free_.pop_back();
  }
  // Takes `from`'s buffer back (its contents are dropped); `from` is left empty and holds none.
  void give(std::string& from) {
    if (from.capacity() <= kInline) {
      from.clear();
      return;
    }
    if (free_.size() < kMaxKept && from.capacity() <= kMaxCapacity) {
      from.clear();
      free_.emplace_back().swap(from);
    } else {
      std::string().swap(from);
    }
  }
  size_t kept() const { return free_.size(); }

 private:
  // The short-string buffer (not constexpr: clang does not evaluate std::string() at compile time).
  static inline const size_t kInline = std::string().capacity();
  std::vector<std::string> free_;
};

// Collects queues with unsent data; flushed from the worker's uv_check callback, which libuv runs
// after all I/O callbacks of a loop turn and before any close callback, so a queue in the list
// always belongs to a live (possibly closing) owner.
class FlushList {
 public:
  // Work that produces output once per loop turn instead of once per event (an HTTP/2 send
  // loop, TLS encryption): run at flush time, before the queues it feeds are written, so what a
  // connection's many events produced in one turn leaves as one frame batch, one TLS record
  // run and one syscall. The owner cancels in its destructor.
  class Deferred {
   public:
    virtual void run_deferred() = 0;

   protected:
    ~Deferred() = default;

   private:
    friend class FlushList;
    bool scheduled_ = false;
  };

  // `wake` is started while queues are waiting: an active idle handle keeps the loop from
  // blocking in poll, so data queued from a timer callback leaves in the same loop turn.
  void init(uv_idle_t* wake) { wake_ = wake; }
  // The buffers of the queues this list flushes (one loop, one thread).
  BufferPool& buffers() { return buffers_; }
  void add(OutQueue* q) {
    wake();
    dirty_.push_back(q);
  }
  void defer(Deferred* d) {
    if (d->scheduled_) return;
    wake();
    d->scheduled_ = true;
    deferred_.push_back(d);
  }
  void cancel(Deferred* d);
  // Runs deferred work (in the order it was scheduled; work it schedules runs after it), then
  // writes every dirty queue; again until both are quiet.
  void flush_all();

 private:
  void wake() {
    if (dirty_.empty() && deferred_.empty() && wake_) uv_idle_start(wake_, [](uv_idle_t*) {});
  }

  uv_idle_t* wake_ = nullptr;
  BufferPool buffers_;
  std::vector<OutQueue*> dirty_;
  std::vector<OutQueue*> scratch_;
  std::vector<Deferred*> deferred_;
  size_t deferred_next_ = 0;  // deferred_[deferred_next_..] have yet to run
};

class OutQueue {
 public:
  // Told when queued() falls to the low-water mark after having reached the high-water mark
  // (or to zero after notify_when_empty()), and when a write fails (status < 0, e.g. EPIPE);
  // neither is called after close().
  class Listener {
   public:
    virtual void on_out_drained() = 0;
    virtual void on_out_error(int status) = 0;

   protected:
    ~Listener() = default;
  };

  static constexpr size_t kHighWater = 256 * 1024;
  static constexpr size_t kLowWater = 64 * 1024;

  void init(uv_stream_t* stream, FlushList* flush_list, Listener* listener);

  void append(std::string_view data);
  void append(const char* data, size_t len) { append(std::string_view(data, len)); }
  // Direct access for callers that format into the buffer; call mark_dirty() after. The object
  // stays the same for the queue's life (a TLS engine keeps a pointer to it); only the heap
  // buffer inside comes from and goes back to the worker's pool.
  std::string& buffer() {
    if (pending_.empty() && flush_list_) flush_list_->buffers().take(pending_);
    return pending_;
  }
  void mark_dirty();

  size_t queued() const { return pending_.size() + (inflight_.size() - inflight_off_); }
  // true when the producer should stop; on_out_drained() then follows once it may go on.
  bool congested() {
    if (queued() < kHighWater) return false;
    was_high_ = true;
    return true;
  }
  bool empty() const { return queued() == 0; }
  uint64_t bytes_written() const { return bytes_written_; }
  // Hands over everything not yet written (for a retry on another connection).
  std::string take_unsent();
  void notify_when_empty() { want_empty_ = true; }
  // Holds data back (an upstream socket still connecting) until release_hold().
  void hold() { held_ = true; }
  void release_hold() {
    held_ = false;
    mark_dirty();
  }
  // Stops all callbacks; pending data is dropped. The owner uv_close()s the stream itself.
  void close() { closed_ = true; listener_ = nullptr; }

  void flush();

 private:
  static void on_write(uv_write_t* req, int status);
  void after_progress();

  uv_stream_t* stream_ = nullptr;
  FlushList* flush_list_ = nullptr;
  Listener* listener_ = nullptr;
  std::string pending_;
  std::string inflight_;
  size_t inflight_off_ = 0;
  // Only while bytes wait for the socket (most writes finish in uv_try_write): an idle
  // connection does not carry a write request.
  std::unique_ptr<uv_write_t> req_;
  uint64_t bytes_written_ = 0;
  bool writing_ = false;
  bool dirty_ = false;
  bool closed_ = false;
  bool was_high_ = false;
  bool want_empty_ = false;
  bool held_ = false;
};

}  // namespace weir::proxy
