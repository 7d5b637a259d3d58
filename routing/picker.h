// Per-worker version and endpoint choice. Owns the mutable state of choosing (PRNG,
// round-robin cursors, short-lived failure marks) so the snapshot itself stays immutable.
// One Picker per worker thread; not thread-safe by design (no locks on the request path).
#pragma once

#include <cstdint>
#include <vector>

#include "routing/snapshot.h"

namespace weir::routing {

class Picker {
 public:
  explicit Picker(uint64_t seed);

  // Adopts a new snapshot's sizes; cursors of versions that still exist restart at 0.
  void reset(const Snapshot& snap);

  // Weighted random over versions with weight > 0. A version whose endpoints are all marked
  // failed hands its share to the stable version, then to any usable version. nullptr only when
  // the service has no version with both weight and a usable endpoint.
  const Version* pick_version(const Service& svc, uint64_t now_ms);

  // Round-robin over the version's endpoints, skipping `exclude_id` and endpoints marked failed;
  // when every endpoint is marked, the marks are ignored (better a try than a certain 503).
  // nullptr only for a version without endpoints, or when `exclude_id` is its only endpoint.
  const Endpoint* pick_endpoint(const Version& version, uint64_t now_ms,
                                uint32_t exclude_id = kNoEndpoint);

  // A connect failure: skip this endpoint on this worker until `until_ms`.
  void mark_failed(uint32_t endpoint_id, uint64_t until_ms);
  void mark_ok(uint32_t endpoint_id);
  bool usable(uint32_t endpoint_id, uint64_t now_ms) const;

  static constexpr uint32_t kNoEndpoint = UINT32_MAX;

 private:
  uint64_t next_random();
  bool version_usable(const Version& v, uint64_t now_ms) const;

  uint64_t rng_state_;
  std::vector<uint32_t> cursor_;        // by Version::index
  std::vector<uint64_t> failed_until_;  // by Endpoint::id
};

}  // namespace weir::routing
