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

// Shadow copies sent to a version as a mirror target ([service.mirror]). Kept apart from the
// version's live counters so neither the guard nor the stats windows ever see them. Every copy
// that is sent ends in exactly one response class or failure kind; the rest of the selected
// copies are never sent, for the reason counted.
struct MirrorCounters {
  SingleWriterCount sent;
  std::array<SingleWriterCount, 6> responses;  // complete responses by status/100 ([0] unused)
  std::array<SingleWriterCount, 3> failures;   // by FailureKind (a bad response is a reset)
  SingleWriterCount skipped_body;  // the request body was over max_body_bytes
  SingleWriterCount dropped;       // max_in_flight copies were already under way
  SingleWriterCount no_endpoint;   // the target had no healthy endpoint
  SingleWriterCount cancelled;     // the request body never arrived in full (client gone)
};

// Sums of MirrorCounters over workers, for the admin view and the metrics (control thread).
struct MirrorTotals {
  uint64_t sent = 0;
  std::array<uint64_t, 6> responses{};
  std::array<uint64_t, 3> failures{};
  uint64_t skipped_body = 0, dropped = 0, no_endpoint = 0, cancelled = 0;

  void add(const MirrorCounters& c) {
    sent += c.sent.get();
    for (size_t i = 0; i < responses.size(); ++i) responses[i] += c.responses[i].get();
    for (size_t i = 0; i < failures.size(); ++i) failures[i] += c.failures[i].get();
    skipped_body += c.skipped_body.get();
    dropped += c.dropped.get();
    no_endpoint += c.no_endpoint.get();
    cancelled += c.cancelled.get();
  }
  // Sent and not yet answered or failed. Workers write their counters one at a time, so a
  // reader racing a completion may see the response before the send: never below zero.
  uint64_t in_flight() const {
    uint64_t done = 0;
    for (uint64_t n : responses) done += n;
    for (uint64_t n : failures) done += n;
    return sent > done ? sent - done : 0;
  }
};

struct VersionCounters {
  SingleWriterCount requests;
  // By status class (index status/100); [0] counts responses cut after their head was sent.
  std::array<SingleWriterCount, 6> responses;
  std::array<SingleWriterCount, 3> failures;  // by FailureKind, weir-generated
  std::array<SingleWriterCount, Histogram::kBuckets> headers_latency;  // µs to response head
  std::array<SingleWriterCount, Histogram::kBuckets> total_latency;    // µs to response end
  SingleWriterCount request_bytes;   // request body bytes sent upstream (retries not again)
  SingleWriterCount response_bytes;  // response body bytes from upstream
  MirrorCounters mirror;  // this version as a mirror target; not live traffic
};

// Per-worker, per-endpoint counts: each attempt on an endpoint (a retry counts on the endpoint
// it went to), its response class, or weir's failure with it.
struct EndpointCounters {
  SingleWriterCount attempts;
  std::array<SingleWriterCount, 6> responses;  // [0]: cut after the head
  std::array<SingleWriterCount, 3> failures;   // by FailureKind
};

// Counters for every id a worker has served, allocated on first use by the worker and
// published with release stores; readers skip ids that were never used. The slots come in
// chunks, also allocated on first use and never moved, so a table costs next to nothing for ids
// that take no traffic, however many a configuration has.
template <typename Counters>
class CounterTable {
 public:
  static constexpr uint32_t kChunk = 256;
  static constexpr uint32_t kChunks = 1024;
  static constexpr uint32_t kCapacity = kChunk * kChunks;  // 262,144 ids

  CounterTable() = default;
  CounterTable(const CounterTable&) = delete;
  CounterTable& operator=(const CounterTable&) = delete;
  ~CounterTable() {
    for (auto& chunk : chunks_) {
      Chunk* c = chunk.load(std::memory_order_relaxed);
      if (!c) continue;
      for (auto& slot : c->slots) delete slot.load(std::memory_order_relaxed);
      delete c;
    }
  }

  Counters* get_or_create(uint32_t id) {
    if (id >= kCapacity) return nullptr;
    std::atomic<Chunk*>& chunk = chunks_[id / kChunk];
    Chunk* c = chunk.load(std::memory_order_relaxed);
    if (!c) {
      c = new Chunk();
      chunk.store(c, std::memory_order_release);
    }
    std::atomic<Counters*>& slot = c->slots[id % kChunk];
    Counters* counters = slot.load(std::memory_order_relaxed);
    if (!counters) {
      counters = new Counters();
      slot.store(counters, std::memory_order_release);
    }
    return counters;
  }
  const Counters* find(uint32_t id) const {
    if (id >= kCapacity) return nullptr;
    const Chunk* c = chunks_[id / kChunk].load(std::memory_order_acquire);
    return c ? c->slots[id % kChunk].load(std::memory_order_acquire) : nullptr;
  }

 private:
  struct Chunk {
    std::array<std::atomic<Counters*>, kChunk> slots{};
  };
  std::array<std::atomic<Chunk*>, kChunks> chunks_{};
};

using VersionCounterTable = CounterTable<VersionCounters>;
using EndpointCounterTable = CounterTable<EndpointCounters>;

}  // namespace weir::health
