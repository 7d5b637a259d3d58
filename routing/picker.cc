#include "routing/picker.h"

#include <algorithm>

namespace weir::routing {

namespace {

constexpr const char* kNoHealthy = "no version of this service has a healthy endpoint";
constexpr int64_t kWeightScale = 1000;  // effective weights keep slow-start fractions exact

}  // namespace

std::string_view cookie_value(std::string_view header, std::string_view name) {
  while (!header.empty()) {
    size_t semi = header.find(';');
    std::string_view pair = header.substr(0, semi);
    header = semi == std::string_view::npos ? std::string_view() : header.substr(semi + 1);
    while (!pair.empty() && (pair.front() == ' ' || pair.front() == '\t')) pair.remove_prefix(1);
    size_t eq = pair.find('=');
    if (eq == std::string_view::npos || pair.substr(0, eq) != name) continue;
    std::string_view value = pair.substr(eq + 1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"')
      value = value.substr(1, value.size() - 2);
    return value;
  }
  return {};
}

uint32_t sticky_bucket(std::string_view salt, std::string_view key) {
  uint64_t h = 0xcbf29ce484222325ULL;
  auto mix = [&h](std::string_view s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 0x100000001b3ULL;
    }
  };
  mix(salt);
  mix(std::string_view("\0", 1));  // "ab"+"c" and "a"+"bc" differ
  mix(key);
  // FNV's low bits are weak: finish with a murmur-style avalanche before the modulo.
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  return static_cast<uint32_t>(h % kBuckets);
}

Picker::Picker(uint64_t seed) : rng_state_(seed ? seed : 0x9e3779b97f4a7c15ULL) {}

void Picker::reset(const Snapshot& snap) {
  cursor_.assign(snap.version_count, 0);
  credit_.assign(snap.version_count, 0);
  if (failed_until_.size() < snap.endpoint_count) failed_until_.resize(snap.endpoint_count, 0);
  if (outstanding_.size() < snap.endpoint_count) outstanding_.resize(snap.endpoint_count, 0);
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

void Picker::on_request_start(uint32_t endpoint_id) {
  if (endpoint_id >= outstanding_.size()) outstanding_.resize(endpoint_id + 1, 0);
  ++outstanding_[endpoint_id];
}

void Picker::on_request_end(uint32_t endpoint_id) {
  if (endpoint_id < outstanding_.size() && outstanding_[endpoint_id] > 0)
    --outstanding_[endpoint_id];
}

uint32_t Picker::outstanding(uint32_t endpoint_id) const {
  return endpoint_id < outstanding_.size() ? outstanding_[endpoint_id] : 0;
}

double Picker::ramp(uint64_t start_ms, uint64_t now_ms, uint32_t slow_start_ms) const {
  if (slow_start_ms == 0 || start_ms == 0 || now_ms >= start_ms + slow_start_ms) return 1.0;
  // Never below 10%: a ramping target must see some traffic to prove itself.
  double f = now_ms <= start_ms ? 0.0 : static_cast<double>(now_ms - start_ms) / slow_start_ms;
  return std::max(0.1, f);
}

bool Picker::endpoint_ok(const Endpoint& ep, uint64_t now_ms, bool honour_marks) const {
  return ep.healthy && (!honour_marks || usable(ep.id, now_ms));
}

bool Picker::version_has(const Version& v, uint64_t now_ms, bool honour_marks) const {
  for (const auto& ep : v.endpoints) {
    if (endpoint_ok(ep, now_ms, honour_marks)) return true;
  }
  return false;
}

bool Picker::serving_weights(const Service& svc, uint64_t now_ms, bool honour_marks) {
  const size_t n = svc.versions.size();
  weights_.assign(n, 0);
  int64_t moved = 0, total = 0;
  for (size_t i = 0; i < n; ++i) {
    const Version& v = svc.versions[i];
    if (v.weight == 0) continue;
    double f = ramp(v.ramp_start_ms, now_ms, v.slow_start_ms);
    int64_t w = std::max<int64_t>(1, static_cast<int64_t>(v.weight * kWeightScale * f));
    if (version_has(v, now_ms, honour_marks)) {
      weights_[i] = w;
      total += w;
    } else {
      moved += w;
    }
  }
  // A version that cannot serve hands its share to stable; if stable cannot either, to the
  // first version (in config order) that can.
  size_t heir = svc.stable;
  if (!version_has(svc.versions[heir], now_ms, honour_marks)) {
    heir = n;
    for (size_t i = 0; i < n && heir == n; ++i) {
      if (weights_[i] > 0) heir = i;
    }
    if (heir == n) return false;
  }
  int64_t extra = (moved > 0 || total == 0) ? std::max<int64_t>(moved, 1) : 0;
  weights_[heir] += extra;
  return total + extra > 0;
}

const Version* Picker::smooth_pick(const Service& svc) {
  // Smooth weighted round-robin (nginx): every version earns its weight in credit per pick, the
  // richest is chosen and pays the total. Over any run of `total` picks each version gets
  // exactly its weight, evenly spread: a 1% version is chosen once in every 100.
  int64_t total = 0;
  const Version* best = nullptr;
  for (size_t i = 0; i < svc.versions.size(); ++i) {
    if (weights_[i] == 0) continue;
    const Version& v = svc.versions[i];
    if (v.index >= credit_.size()) credit_.resize(v.index + 1, 0);
    credit_[v.index] += weights_[i];
    total += weights_[i];
    if (!best || credit_[v.index] > credit_[best->index]) best = &v;
  }
  if (best) credit_[best->index] -= total;
  return best;
}

const Version* Picker::pick_version(const Service& svc, uint64_t now_ms) {
  if (svc.versions.empty()) return nullptr;
  // Versions whose endpoints are all marked failed on this worker are passed over first; when
  // that leaves nothing, the marks are ignored rather than failing without a try.
  if (serving_weights(svc, now_ms, true) || serving_weights(svc, now_ms, false))
    return smooth_pick(svc);
  return nullptr;
}

const Version* Picker::version_for_bucket(const Service& svc, uint32_t bucket,
                                          uint64_t now_ms) const {
  if (svc.versions.empty()) return nullptr;
  uint64_t total = 0;
  for (uint32_t i : svc.bucket_order) {
    const Version& v = svc.versions[i];
    if (v.weight) total += static_cast<uint64_t>(v.weight * kWeightScale *
                                                 ramp(v.ramp_start_ms, now_ms, v.slow_start_ms));
  }
  if (total == 0) return &svc.versions[svc.stable];
  // Version k owns buckets [cum_k * B / total, cum_{k+1} * B / total): stable's range first.
  uint64_t cum = 0;
  for (uint32_t i : svc.bucket_order) {
    const Version& v = svc.versions[i];
    if (v.weight) cum += static_cast<uint64_t>(v.weight * kWeightScale *
                                               ramp(v.ramp_start_ms, now_ms, v.slow_start_ms));
    if (static_cast<uint64_t>(bucket) * total < cum * kBuckets) return &v;
  }
  return &svc.versions[svc.bucket_order.back()];
}

const Version* Picker::fallback(const Service& svc, const Version* wanted, uint64_t now_ms) {
  if (wanted && version_has(*wanted, now_ms, false)) return wanted;
  const Version& stable = svc.versions[svc.stable];
  if (version_has(stable, now_ms, false)) return &stable;
  return pick_version(svc, now_ms);
}

Choice Picker::choose(const Service& svc, const RequestInfo& req, uint64_t now_ms) {
  Choice c;
  const config::Service* cfg = svc.config;
  if (cfg && !svc.versions.empty()) {
    std::string_view name;
    if (!cfg->override_header.empty()) name = req.get(cfg->override_header);
    if (name.empty() && !cfg->override_cookie.empty())
      name = cookie_value(req.get("cookie"), cfg->override_cookie);
    if (!name.empty()) {
      const Version* named = nullptr;
      for (const auto& v : svc.versions) {
        if (v.name == name) named = &v;
      }
      if (named && version_has(*named, now_ms, false)) {
        c.version = named;
        c.reason = Choice::Reason::kOverride;
        return c;
      }
      if (cfg->override_strict) {
        c.why = named ? "the version named by the override has no healthy endpoint"
                      : "the override names no version of this service";
        return c;
      }
    }
    std::string_view key;
    switch (cfg->sticky.source) {
      case config::Sticky::Source::kHeader: key = req.get(cfg->sticky.name); break;
      case config::Sticky::Source::kCookie:
        key = cookie_value(req.get("cookie"), cfg->sticky.name);
        break;
      case config::Sticky::Source::kClientIp: key = req.client_ip; break;
      case config::Sticky::Source::kNone: break;
    }
    int64_t bucket = -1;
    if (!key.empty()) {
      bucket = sticky_bucket(cfg->sticky.salt.empty() ? svc.name : cfg->sticky.salt, key);
    } else if (!cfg->assign_cookie.empty()) {
      std::string_view text = cookie_value(req.get("cookie"), cfg->assign_cookie);
      if (!text.empty() && text.size() <= 5 &&
          std::all_of(text.begin(), text.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
        int64_t b = 0;
        for (char ch : text) b = b * 10 + (ch - '0');
        if (b < kBuckets) bucket = b;
      }
      if (bucket < 0) {
        bucket = static_cast<int64_t>(next_random() % kBuckets);
        c.assign_bucket = static_cast<int32_t>(bucket);
      }
    }
    if (bucket >= 0) {
      const Version* wanted = version_for_bucket(svc, static_cast<uint32_t>(bucket), now_ms);
      c.version = fallback(svc, wanted, now_ms);
      c.reason = c.version == wanted ? Choice::Reason::kSticky : Choice::Reason::kFallback;
      if (!c.version) c.why = kNoHealthy;
      return c;
    }
  }
  c.version = pick_version(svc, now_ms);
  c.reason = c.version ? Choice::Reason::kWeighted : Choice::Reason::kNone;
  if (!c.version) c.why = kNoHealthy;
  return c;
}

const Endpoint* Picker::pick_endpoint(const Version& version, uint64_t now_ms,
                                      uint32_t exclude_id) {
  const size_t n = version.endpoints.size();
  if (n == 0) return nullptr;
  if (version.index >= cursor_.size()) cursor_.resize(version.index + 1, 0);
  uint32_t& cursor = cursor_[version.index];
  for (bool honour_marks : {true, false}) {
    if (version.least_request) {
      // Power of two choices: two distinct random candidates, the less loaded one wins (load
      // divided by its slow-start ramp, so a warming endpoint looks busier than it is).
      candidates_.clear();
      for (const auto& ep : version.endpoints) {
        if (ep.id != exclude_id && endpoint_ok(ep, now_ms, honour_marks))
          candidates_.push_back(&ep);
      }
      if (candidates_.empty()) continue;
      if (candidates_.size() == 1) return candidates_[0];
      size_t a = next_random() % candidates_.size();
      size_t b = next_random() % (candidates_.size() - 1);
      if (b >= a) ++b;
      auto load = [&](const Endpoint* ep) {
        return (outstanding(ep->id) + 1) / ramp(ep->ramp_start_ms, now_ms, version.slow_start_ms);
      };
      return load(candidates_[b]) < load(candidates_[a]) ? candidates_[b] : candidates_[a];
    }
    const Endpoint* ramping = nullptr;
    for (size_t i = 0; i < n; ++i) {
      const Endpoint& ep = version.endpoints[(cursor + i) % n];
      if (ep.id == exclude_id || !endpoint_ok(ep, now_ms, honour_marks)) continue;
      double f = ramp(ep.ramp_start_ms, now_ms, version.slow_start_ms);
      if (f < 1.0 && static_cast<double>(next_random() % 1000) >= f * 1000) {
        // A slow-starting endpoint takes its turn only with probability f.
        if (!ramping) ramping = &ep;
        continue;
      }
      cursor = static_cast<uint32_t>((cursor + i + 1) % n);
      return &ep;
    }
    if (ramping) {
      cursor = static_cast<uint32_t>((cursor + 1) % n);
      return ramping;
    }
  }
  return nullptr;
}

}  // namespace weir::routing
