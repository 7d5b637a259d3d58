#include "health/stats_window.h"

namespace weir::health {

void Sample::add(const VersionCounters& c) {
  requests += c.requests.get();
  for (size_t i = 0; i < responses.size(); ++i) responses[i] += c.responses[i].get();
  for (size_t i = 0; i < failures.size(); ++i) failures[i] += c.failures[i].get();
  for (size_t i = 0; i < Histogram::kBuckets; ++i) {
    headers_latency[i] += c.headers_latency[i].get();
    total_latency[i] += c.total_latency[i].get();
  }
}

void Sample::add(const Sample& o) {
  requests += o.requests;
  for (size_t i = 0; i < responses.size(); ++i) responses[i] += o.responses[i];
  for (size_t i = 0; i < failures.size(); ++i) failures[i] += o.failures[i];
  for (size_t i = 0; i < Histogram::kBuckets; ++i) {
    headers_latency[i] += o.headers_latency[i];
    total_latency[i] += o.total_latency[i];
  }
}

Sample Sample::minus(const Sample& earlier) const {
  // Counters only grow, but a worker's relaxed stores may be seen a little out of step; clamp
  // at zero rather than wrap.
  auto sub = [](uint64_t a, uint64_t b) { return a > b ? a - b : 0; };
  Sample d;
  d.requests = sub(requests, earlier.requests);
  for (size_t i = 0; i < responses.size(); ++i) d.responses[i] = sub(responses[i], earlier.responses[i]);
  for (size_t i = 0; i < failures.size(); ++i) d.failures[i] = sub(failures[i], earlier.failures[i]);
  for (size_t i = 0; i < Histogram::kBuckets; ++i) {
    d.headers_latency[i] = sub(headers_latency[i], earlier.headers_latency[i]);
    d.total_latency[i] = sub(total_latency[i], earlier.total_latency[i]);
  }
  return d;
}

bool Sample::all_zero() const {
  if (requests != 0) return false;
  for (uint64_t n : responses) if (n) return false;
  for (uint64_t n : failures) if (n) return false;
  for (size_t i = 0; i < Histogram::kBuckets; ++i) {
    if (headers_latency[i] | total_latency[i]) return false;
  }
  return true;
}

namespace {

// Adds `dense` into `out`, a sparse histogram sorted by bucket index.
void add_sparse(const std::vector<uint64_t>& dense,
                std::vector<std::pair<uint16_t, uint32_t>>* out) {
  std::vector<std::pair<uint16_t, uint32_t>> merged;
  size_t j = 0;
  for (size_t i = 0; i < dense.size(); ++i) {
    uint64_t n = dense[i];
    if (j < out->size() && (*out)[j].first == i) n += (*out)[j++].second;
    if (n) merged.emplace_back(static_cast<uint16_t>(i), static_cast<uint32_t>(n));
  }
  *out = std::move(merged);
}

}  // namespace

void StatsWindow::add(uint64_t second, const Sample& delta) {
  // A window is made by its first traffic (an idle version costs nothing); from then on an idle
  // second is recorded too, so a second weir counted as empty differs from one it never counted.
  if (ring_.empty()) {
    if (delta.all_zero()) return;
    ring_.resize(kSeconds);
  }
  Bucket& b = ring_[second % kSeconds];
  // The control thread folds several times a second: later deltas of the same second add up,
  // while a slot last used a lap (600 s) ago starts over.
  if (b.second != second) {
    b = Bucket{};
    b.second = second;
  }
  b.requests += delta.requests;
  for (size_t i = 0; i < b.responses.size(); ++i) b.responses[i] += delta.responses[i];
  for (size_t i = 0; i < b.failures.size(); ++i) b.failures[i] += delta.failures[i];
  add_sparse(delta.headers_latency, &b.headers);
  add_sparse(delta.total_latency, &b.total);
}

size_t StatsWindow::footprint() const {
  size_t n = sizeof(*this) + ring_.capacity() * sizeof(Bucket);
  for (const Bucket& b : ring_) {
    n += (b.headers.capacity() + b.total.capacity()) * sizeof(std::pair<uint16_t, uint32_t>);
  }
  return n;
}

Summary StatsWindow::summarize(uint64_t now_second, uint32_t window_s) const {
  return summarize(std::vector<const StatsWindow*>{this}, now_second, window_s);
}

Summary StatsWindow::summarize(const std::vector<const StatsWindow*>& windows,
                               uint64_t now_second, uint32_t window_s) {
  Summary s;
  if (window_s > kSeconds) window_s = kSeconds;
  s.window_s = window_s;
  std::vector<uint64_t> headers(Histogram::kBuckets), total(Histogram::kBuckets);
  for (const StatsWindow* w : windows) {
    if (!w || w->ring_.empty()) continue;
    for (uint32_t k = 0; k < window_s && k <= now_second; ++k) {
      const Bucket& b = w->ring_[(now_second - k) % kSeconds];
      if (b.second != now_second - k) continue;  // a second with no fold (or overwritten)
      ++s.counted_s;
      s.requests += b.requests;
      for (size_t i = 0; i < 6; ++i) s.responses[i] += b.responses[i];
      for (size_t i = 0; i < 3; ++i) s.failures[i] += b.failures[i];
      for (auto [i, n] : b.headers) headers[i] += n;
      for (auto [i, n] : b.total) total[i] += n;
    }
  }
  for (uint64_t n : s.responses) s.completed += n;
  s.errors = s.responses[5] + s.responses[0];
  s.error_rate = s.completed ? static_cast<double>(s.errors) / static_cast<double>(s.completed) : 0;
  for (size_t i = 0; i < total.size(); ++i) {
    if (total[i]) s.latency.emplace_back(static_cast<uint32_t>(i), total[i]);
  }
  s.p50_us = Histogram::percentile(total, 0.50);
  s.p90_us = Histogram::percentile(total, 0.90);
  s.p99_us = Histogram::percentile(total, 0.99);
  s.headers_p50_us = Histogram::percentile(headers, 0.50);
  s.headers_p99_us = Histogram::percentile(headers, 0.99);
  return s;
}

Sample StatsCollector::fold(uint64_t second, uint32_t id, const Sample& cumulative) {
  // A new id starts from zero: worker counters start at zero in this process, so what they hold
  // at the first fold is traffic since start (or since a reload added the version), not history.
  Entry& e = entries_[id];
  Sample delta = cumulative.minus(e.previous);
  e.window.add(second, delta);
  e.previous = cumulative;
  return delta;
}

const StatsWindow* StatsCollector::window(uint32_t id) const {
  auto it = entries_.find(id);
  return it == entries_.end() ? nullptr : &it->second.window;
}

}  // namespace weir::health
