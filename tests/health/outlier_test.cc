#include "health/outlier.h"

#include <doctest/doctest.h>

#include <vector>

namespace weir::health {
namespace {

config::OutlierDetection policy(uint32_t percent) {
  config::OutlierDetection p;
  p.enabled = true;
  p.consecutive_failures = 5;
  p.ejection_ms = 1000;
  p.max_ejection_ms = 2500;
  p.max_ejection_percent = percent;
  return p;
}

TEST_CASE("outlier: eject at the threshold, return after ejection_ms, growing each time") {
  std::vector<EjectionState> st(4);
  std::vector<uint32_t> streaks{4, 0, 0, 0};
  std::vector<EjectionEvent> ev;
  evaluate_ejections(policy(50), streaks, st, 0, &ev);
  CHECK(ev.empty());
  streaks[0] = 5;
  evaluate_ejections(policy(50), streaks, st, 100, &ev);
  REQUIRE(ev.size() == 1);
  CHECK(ev[0].ejected);
  CHECK(ev[0].why == "5 consecutive failures; ejected for 1000 ms (ejection 1)");
  CHECK(st[0].ejected);
  ev.clear();
  evaluate_ejections(policy(50), streaks, st, 1099, &ev);
  CHECK(ev.empty());
  streaks[0] = 0;  // workers restart the streak in the new epoch
  evaluate_ejections(policy(50), streaks, st, 1100, &ev);
  REQUIRE(ev.size() == 1);
  CHECK_FALSE(ev[0].ejected);
  CHECK_FALSE(st[0].ejected);
  CHECK(st[0].epoch == 1);
  ev.clear();
  streaks[0] = 5;
  evaluate_ejections(policy(50), streaks, st, 2000, &ev);
  CHECK(st[0].until_ms == 4000);  // second ejection: twice as long
  streaks[0] = 0;
  evaluate_ejections(policy(50), streaks, st, 4000, &ev);
  streaks[0] = 5;
  evaluate_ejections(policy(50), streaks, st, 5000, &ev);
  CHECK(st[0].until_ms == 7500);  // capped at max_ejection_ms
}

TEST_CASE("outlier: never more than max_ejection_percent of a version's endpoints") {
  std::vector<EjectionState> st(4);
  std::vector<uint32_t> streaks{9, 9, 9, 9};
  std::vector<EjectionEvent> ev;
  evaluate_ejections(policy(50), streaks, st, 0, &ev);
  CHECK(ev.size() == 2);
  CHECK(st[0].ejected);
  CHECK(st[1].ejected);
  CHECK_FALSE(st[2].ejected);
  ev.clear();
  evaluate_ejections(policy(50), streaks, st, 10, &ev);
  CHECK(ev.empty());

  std::vector<EjectionState> lone(1);
  std::vector<uint32_t> one{9};
  evaluate_ejections(policy(50), one, lone, 0, &ev);
  CHECK_FALSE(lone[0].ejected);  // 50% of one endpoint is none
  evaluate_ejections(policy(100), one, lone, 0, &ev);
  CHECK(lone[0].ejected);
}

}  // namespace
}  // namespace weir::health
