// Per-worker, per-version request statistics. One writer (the worker thread) with relaxed
// atomic stores, so the control thread can fold them every second without locks and the
// request path never touches a shared cache line.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>

#include "health/histogram.h"

namespace weir::health {

struct SingleWriterCount {
  std::atomic<uint64_t> v{0};
  void add(uint64_t n = 1) {
    v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  uint64_t get() const { return v.load(std::memory_order_relaxed); }
};

enum class FailureKind : uint8_t { kConnect, kReset, kTimeout };

struct VersionCounters {
  SingleWriterCount requests;
  // By status class (index status/100); [0] counts responses cut after their head was sent.
  std::array<SingleWriterCount, 6> responses;
  std::array<SingleWriterCount, 3> failures;  // by FailureKind, weir-generated
  std::array<SingleWriterCount, Histogram::kBuckets> headers_latency;  // µs to response head
  std::array<SingleWriterCount, Histogram::kBuckets> total_latency;    // µs to response end
};

// Per-worker, per-endpoint counts: each attempt on an endpoint (a retry counts on the endpoint
// it went to), its response class, or weir's failure with it.
struct EndpointCounters {
  SingleWriterCount attempts;
  std::array<SingleWriterCount, 6> responses;  // [0]: cut after the head
  std::array<SingleWriterCount, 3> failures;   // by FailureKind
};

// Counters for every id a worker has served, allocated on first use by the worker and
// published with release stores; readers skip ids that were never used.
template <typename Counters>
class CounterTable {
 public:
  static constexpr uint32_t kCapacity = 4096;

  Counters* get_or_create(uint32_t id) {
    if (id >= kCapacity) return nullptr;
    Counters* c = slots_[id].load(std::memory_order_relaxed);
    if (!c) {
      owned_[id] = std::make_unique<Counters>();
      c = owned_[id].get();
      slots_[id].store(c, std::memory_order_release);
    }
    return c;
  }
  const Counters* find(uint32_t id) const {
    return id < kCapacity ? slots_[id].load(std::memory_order_acquire) : nullptr;
  }

 private:
  std::array<std::atomic<Counters*>, kCapacity> slots_{};
  std::array<std::unique_ptr<Counters>, kCapacity> owned_{};
};

using VersionCounterTable = CounterTable<VersionCounters>;
using EndpointCounterTable = CounterTable<EndpointCounters>;

}  // namespace weir::health
