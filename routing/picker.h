// Per-worker version and endpoint choice. Owns the mutable state of choosing (PRNG, smooth
// weighted round-robin credits, round-robin cursors, outstanding-request counts, short-lived
// failure marks) so the snapshot itself stays immutable.
// One Picker per worker thread; not thread-safe by design (no locks on the request path).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "routing/snapshot.h"

namespace weir::routing {

// What the picker may look at in a request, independent of the protocol that carried it.
struct RequestInfo {
  const void* ctx = nullptr;
  // First value of header `lower_name` (names are matched case-insensitively), "" if absent.
  std::string_view (*header)(const void* ctx, std::string_view lower_name) = nullptr;
  std::string_view client_ip;

  std::string_view get(std::string_view lower_name) const {
    return header ? header(ctx, lower_name) : std::string_view();
  }
};

// The outcome of version choice.
struct Choice {
  enum class Reason : uint8_t { kOverride, kSticky, kWeighted, kFallback, kNone };
  const Version* version = nullptr;  // nullptr: answer 503 with `why`
  const char* why = "";
  Reason reason = Reason::kNone;
  int32_t assign_bucket = -1;  // >= 0: tell the client to keep this bucket (assign_cookie)
};

inline constexpr uint32_t kBuckets = 10000;

// The value of cookie `name` in a Cookie header ("a=1; b=2"), "" when absent.
std::string_view cookie_value(std::string_view cookie_header, std::string_view name);
// The sticky bucket of `key` in [0, kBuckets): a salted 64-bit FNV-1a hash, so a user keeps
// the bucket across workers, restarts and weight changes.
uint32_t sticky_bucket(std::string_view salt, std::string_view key);

class Picker {
 public:
  explicit Picker(uint64_t seed);

  // Adopts a new snapshot's sizes; per-version state restarts.
  void reset(const Snapshot& snap);

  // Override, then sticky bucket, then smooth weighted round-robin; a version that cannot
  // serve hands its share to stable, then to any version that can.
  Choice choose(const Service& svc, const RequestInfo& req, uint64_t now_ms);
  // Weighted choice only (no request data); nullptr when nothing can serve.
  const Version* pick_version(const Service& svc, uint64_t now_ms);
  // The version owning `bucket` under the service's weights at `now_ms` (slow start applies).
  const Version* version_for_bucket(const Service& svc, uint32_t bucket, uint64_t now_ms) const;

  // Round-robin (or power-of-two-choices least-request, per the service's `balance`) over the
  // version's healthy endpoints, skipping `exclude_id` and endpoints marked failed; when every
  // healthy endpoint is marked, the marks are ignored (better a try than a certain 503).
  const Endpoint* pick_endpoint(const Version& version, uint64_t now_ms,
                                uint32_t exclude_id = kNoEndpoint);

  // A request to `endpoint_id` started / ended (least_request counts these).
  void on_request_start(uint32_t endpoint_id);
  void on_request_end(uint32_t endpoint_id);
  uint32_t outstanding(uint32_t endpoint_id) const;

  // A connect failure: skip this endpoint on this worker until `until_ms`.
  void mark_failed(uint32_t endpoint_id, uint64_t until_ms);
  void mark_ok(uint32_t endpoint_id);
  bool usable(uint32_t endpoint_id, uint64_t now_ms) const;

  static constexpr uint32_t kNoEndpoint = UINT32_MAX;

 private:
  uint64_t next_random();
  bool version_has(const Version& v, uint64_t now_ms, bool honour_marks) const;
  // Effective weights (×1000, slow start applied) with unusable versions' share moved to
  // stable (or the first usable version); false when no version can serve.
  bool serving_weights(const Service& svc, uint64_t now_ms, bool honour_marks);
  const Version* smooth_pick(const Service& svc);
  const Version* fallback(const Service& svc, const Version* wanted, uint64_t now_ms);
  // Probability weight in [0.1, 1] of something ramping up since `start_ms`.
  double ramp(uint64_t start_ms, uint64_t now_ms, uint32_t slow_start_ms) const;
  bool endpoint_ok(const Endpoint& ep, uint64_t now_ms, bool honour_marks) const;

  uint64_t rng_state_;
  std::vector<uint32_t> cursor_;        // by Version::index
  std::vector<int64_t> credit_;         // by Version::index: smooth weighted round-robin
  std::vector<uint64_t> failed_until_;  // by Endpoint::id
  std::vector<uint32_t> outstanding_;   // by Endpoint::id
  std::vector<int64_t> weights_;        // scratch: by position in Service::versions
  std::vector<const Endpoint*> candidates_;  // scratch for least_request
};

}  // namespace weir::routing
