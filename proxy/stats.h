// Per-worker counters. Single writer (the worker thread), plain relaxed atomics so the control
// thread can read them without locks; never a shared atomic or a metrics-library call per request.
#pragma once

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
  Counter connections_active;
  Counter requests;
  Counter responses_by_class[6];  // index status/100 (0 = aborted before a status)
  Counter generated_by_status[6];  // weir's own errors: 400, 408, 413/414/431, 502, 503, 504
  Counter upstream_connects;
  Counter upstream_connect_failures;
  Counter upstream_reused;
  Counter upstream_retries;
  health::VersionCounterTable versions;  // by routing::Version::stats_id
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

}  // namespace weir::proxy
