// Which requests get a shadow copy. Per-worker and deterministic: an accumulator per mirror
// target adds `percent` for every eligible request and mirrors each time it passes 100, so 10%
// is exactly every tenth request rather than a random 10% that can come in bursts.
// One MirrorSampler per worker thread (owned by proxy::Mirrors); not thread-safe by design.
#pragma once

#include <cstdint>
#include <vector>

namespace weir::routing {

class MirrorSampler {
 public:
  // One eligible request for the mirror target `id` (a Version::stats_id, stable across
  // snapshots, so a reload does not restart the count) at `percent` (0..100): true when this
  // one is copied. Over any run of n eligible requests, floor(n * percent / 100) or one more
  // are copied.
  bool take(uint32_t id, uint32_t percent);

 private:
  std::vector<uint32_t> credit_;  // by id, always < 100 between calls
};

}  // namespace weir::routing
