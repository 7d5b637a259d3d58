#include "routing/mirror_sampler.h"

namespace weir::routing {

bool MirrorSampler::take(uint32_t id, uint32_t percent) {
  if (percent == 0) return false;
  if (percent >= 100) return true;
  if (id >= credit_.size()) credit_.resize(id + 1, 0);
  uint32_t& credit = credit_[id];
  credit += percent;
  if (credit < 100) return false;
  credit -= 100;
  return true;
}

}  // namespace weir::routing
