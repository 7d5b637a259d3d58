// Per-worker counters. Single writer (the worker thread), plain relaxed atomics so the control
// thread can read them without locks; never a shared atomic or a metrics-library call per request.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "health/version_counters.h"

namespace weir::proxy {

struct Counter {
  std::atomic<uint64_t> v{0};
  void inc(uint64_t n = 1) { v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  void dec() { v.store(v.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed); }
  uint64_t get() const { return v.load(std::memory_order_relaxed); }
};

struct WorkerStats {
  Counter connections_accepted;
  // Open client connections by listener index (the snapshot's order); the last slot holds those
  // whose listener a reload removed (and any index beyond it).
  static constexpr uint32_t kListenerSlots = 64;
  Counter connections_active[kListenerSlots];
  static uint32_t listener_slot(uint32_t listener) {
    return listener < kListenerSlots - 1 ? listener : kListenerSlots - 1;
  }
  Counter requests;
  Counter responses_by_class[6];  // index status/100 (0 = aborted before a status)
  Counter generated_by_status[6];  // weir's own errors: 400, 408, 413/414/431, 502, 503, 504
  Counter upstream_connects;
  Counter upstream_connect_failures;
  Counter upstream_reused;
  Counter upstream_retries;
  Counter upstream_tls_failures;  // handshakes with backends that failed (also connect failures)
  health::VersionCounterTable versions;  // by routing::Version::stats_id
  health::EndpointCounterTable endpoints;  // by routing::Endpoint::id
  Counter tls_handshakes;
  Counter tls_handshake_failures[4];  // TlsFailure: timeout, peer closed, protocol, other
  Counter h2_connections;
  Counter h2_streams;
  Counter h2_abuse_closes;  // connections closed for floods, rapid reset or protocol errors

  static int generated_slot(int status) {
    switch (status) {
      case 400: return 0;
      case 408: return 1;
      case 502: return 3;
      case 503: return 4;
      case 504: return 5;
      default: return 2;
    }
  }
};

// Consecutive failures (5xx or connect) per endpoint, for outlier ejection. Written by one
// worker, read by the control thread once a tick. Slots live in fixed chunks allocated on
// first use and never moved, so a reader never sees a resize.
class EndpointStreaks {
 public:
  EndpointStreaks() = default;
  EndpointStreaks(const EndpointStreaks&) = delete;
  EndpointStreaks& operator=(const EndpointStreaks&) = delete;
  ~EndpointStreaks() {
    for (auto& c : chunks_) delete[] c.load(std::memory_order_relaxed);
  }

  // Worker: one response or connect outcome. `epoch` is the endpoint's eject_epoch in the
  // request's snapshot: a new epoch (an ejection ended) starts the streak over.
  void record(uint32_t id, uint32_t epoch, bool failure) {
    Slot* s = slot(id, true);
    if (!s) return;
    uint32_t streak = s->epoch.load(std::memory_order_relaxed) == epoch
                          ? s->streak.load(std::memory_order_relaxed)
                          : 0;
    s->epoch.store(epoch, std::memory_order_relaxed);
    s->streak.store(failure ? streak + 1 : 0, std::memory_order_relaxed);
  }
  // Control thread: the streak counted in `epoch` (0 when the worker has not seen it yet).
  uint32_t streak(uint32_t id, uint32_t epoch) const {
    const Slot* s = const_cast<EndpointStreaks*>(this)->slot(id, false);
    if (!s || s->epoch.load(std::memory_order_relaxed) != epoch) return 0;
    return s->streak.load(std::memory_order_relaxed);
  }

 private:
  struct Slot {
    std::atomic<uint32_t> streak{0};
    std::atomic<uint32_t> epoch{0};
  };
  static constexpr size_t kChunk = 256;
  static constexpr size_t kChunks = 256;  // 65,536 endpoint ids

  Slot* slot(uint32_t id, bool create) {
    if (id >= kChunk * kChunks) return nullptr;
    std::atomic<Slot*>& chunk = chunks_[id / kChunk];
    Slot* c = chunk.load(std::memory_order_acquire);
    if (!c && create) {
      c = new Slot[kChunk];
      chunk.store(c, std::memory_order_release);
    }
    return c ? &c[id % kChunk] : nullptr;
  }

  std::array<std::atomic<Slot*>, kChunks> chunks_{};
};

}  // namespace weir::proxy
