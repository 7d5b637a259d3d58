#include "routing/picker.h"

namespace weir::routing {

Picker::Picker(uint64_t seed) : rng_state_(seed ? seed : 0x9e3779b97f4a7c15ULL) {}

void Picker::reset(const Snapshot& snap) {
  cursor_.assign(snap.version_count, 0);
  if (failed_until_.size() < snap.endpoint_count) failed_until_.resize(snap.endpoint_count, 0);
}

uint64_t Picker::next_random() {
  // splitmix64: tiny state, good enough statistical quality for traffic splitting.
  uint64_t z = (rng_state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

bool Picker::usable(uint32_t endpoint_id, uint64_t now_ms) const {
  return endpoint_id >= failed_until_.size() || failed_until_[endpoint_id] <= now_ms;
}

void Picker::mark_failed(uint32_t endpoint_id, uint64_t until_ms) {
  if (endpoint_id >= failed_until_.size()) failed_until_.resize(endpoint_id + 1, 0);
  failed_until_[endpoint_id] = until_ms;
}

void Picker::mark_ok(uint32_t endpoint_id) {
  if (endpoint_id < failed_until_.size()) failed_until_[endpoint_id] = 0;
}

bool Picker::version_usable(const Version& v, uint64_t now_ms) const {
  for (const auto& ep : v.endpoints) {
    if (usable(ep.id, now_ms)) return true;
  }
  return false;
}

const Version* Picker::pick_version(const Service& svc, uint64_t now_ms) {
  if (svc.versions.empty()) return nullptr;
  if (svc.total_weight > 0) {
    uint64_t r = next_random() % svc.total_weight;
    for (const auto& v : svc.versions) {
      if (r < v.weight) {
        if (version_usable(v, now_ms)) return &v;
        break;
      }
      r -= v.weight;
    }
  }
  // The chosen version cannot serve: its share goes to stable, then to any version that can.
  const Version& stable = svc.versions[svc.stable];
  if (!stable.endpoints.empty() && version_usable(stable, now_ms)) return &stable;
  for (const auto& v : svc.versions) {
    if (v.weight > 0 && version_usable(v, now_ms)) return &v;
  }
  // Nothing is known to work: try the weighted choice anyway rather than fail without trying.
  if (svc.total_weight == 0) return stable.endpoints.empty() ? nullptr : &stable;
  uint64_t r = next_random() % svc.total_weight;
  for (const auto& v : svc.versions) {
    if (r < v.weight) return v.endpoints.empty() ? nullptr : &v;
    r -= v.weight;
  }
  return nullptr;
}

const Endpoint* Picker::pick_endpoint(const Version& version, uint64_t now_ms,
                                      uint32_t exclude_id) {
  const size_t n = version.endpoints.size();
  if (n == 0) return nullptr;
  if (version.index >= cursor_.size()) cursor_.resize(version.index + 1, 0);
  uint32_t& cursor = cursor_[version.index];
  const Endpoint* fallback = nullptr;
  for (size_t i = 0; i < n; ++i) {
    const Endpoint& ep = version.endpoints[(cursor + i) % n];
    if (ep.id == exclude_id) continue;
    if (usable(ep.id, now_ms)) {
      cursor = static_cast<uint32_t>((cursor + i + 1) % n);
      return &ep;
    }
    if (!fallback) fallback = &ep;
  }
  if (fallback) cursor = static_cast<uint32_t>((cursor + 1) % n);
  return fallback;
}

}  // namespace weir::routing
