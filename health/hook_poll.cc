#include "health/hook_poll.h"

namespace weir::health {

void HookPoll::arm(const std::string& key) {
  if (key == key_) return;
  *this = HookPoll(kind_, interval_ms_, threshold_);
  key_ = key;
}

bool HookPoll::due(uint64_t now_ms) const {
  if (in_flight_) return false;
  if (kind_ != Kind::kRollout && outcome_ != Outcome::kPending) return false;
  return !started_once_ || now_ms - last_start_ms_ >= interval_ms_;
}

void HookPoll::started(uint64_t now_ms) {
  in_flight_ = true;
  started_once_ = true;
  last_start_ms_ = now_ms;
}

void HookPoll::answered(bool ok, std::string summary) {
  in_flight_ = false;
  ++calls_;
  last_ = std::move(summary);
  if (!ok) ++failures_;
  switch (kind_) {
    case Kind::kConfirm:
    case Kind::kRollback:
      if (ok) outcome_ = Outcome::kPassed;
      break;
    case Kind::kPreRollout:
      if (ok) {
        outcome_ = Outcome::kPassed;
      } else if (failures_ >= threshold_) {
        outcome_ = Outcome::kFailed;
      }
      break;
    case Kind::kRollout:
      outcome_ = ok ? Outcome::kPassed : Outcome::kFailed;
      break;
  }
}

}  // namespace weir::health
