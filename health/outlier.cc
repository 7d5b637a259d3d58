#include "health/outlier.h"

#include <algorithm>

namespace weir::health {

void evaluate_ejections(const config::OutlierDetection& policy, std::span<const uint32_t> streaks,
                        std::span<EjectionState> states, uint64_t now_ms,
                        std::vector<EjectionEvent>* events) {
  size_t ejected = 0;
  for (size_t i = 0; i < states.size(); ++i) {
    EjectionState& st = states[i];
    if (st.ejected && now_ms >= st.until_ms) {
      st.ejected = false;
      ++st.epoch;
      events->push_back({i, false, "ejection of " + std::to_string(st.times) + " ended"});
    }
    if (st.ejected) ++ejected;
  }
  const size_t cap = states.size() * policy.max_ejection_percent / 100;
  for (size_t i = 0; i < states.size() && i < streaks.size(); ++i) {
    EjectionState& st = states[i];
    if (st.ejected || streaks[i] < policy.consecutive_failures) continue;
    if (ejected + 1 > cap) continue;  // the cap keeps enough endpoints to serve
    ++st.times;
    uint64_t ms = std::min<uint64_t>(uint64_t{policy.ejection_ms} * st.times,
                                     policy.max_ejection_ms);
    st.ejected = true;
    st.until_ms = now_ms + ms;
    ++ejected;
    events->push_back({i, true,
                       std::to_string(streaks[i]) + " consecutive failures; ejected for " +
                           std::to_string(ms) + " ms (ejection " + std::to_string(st.times) +
                           ")"});
  }
}

}  // namespace weir::health
