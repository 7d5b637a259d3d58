// Passive outlier ejection decisions for the endpoints of one version: eject an endpoint after
// `consecutive_failures` 5xx responses or connect failures in a row, for ejection_ms times the
// number of times it has been ejected (capped at max_ejection_ms), and never more than
// max_ejection_percent of the version's endpoints at once. Pure: workers count the streaks,
// the control thread calls evaluate() once a tick with its clock.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "config/config.h"

namespace weir::health {

struct EjectionState {
  bool ejected = false;
  uint32_t times = 0;     // ejections so far (the next one lasts longer)
  uint64_t until_ms = 0;  // while ejected
  uint32_t epoch = 0;     // bumps when an ejection ends: streaks from before it no longer count
};

struct EjectionEvent {
  size_t index;  // into the spans given to evaluate()
  bool ejected;  // false: returned to service
  std::string why;
};

// Updates `states` (one per endpoint of a version) from `streaks` (consecutive failures now,
// counted since the endpoint's current epoch) at `now_ms`; appends what changed to `events`.
void evaluate_ejections(const config::OutlierDetection& policy, std::span<const uint32_t> streaks,
                        std::span<EjectionState> states, uint64_t now_ms,
                        std::vector<EjectionEvent>* events);

}  // namespace weir::health
