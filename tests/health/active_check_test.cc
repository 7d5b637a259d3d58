#include "health/active_check.h"

#include <doctest/doctest.h>

namespace weir::health {
namespace {

config::HealthCheck policy(uint32_t healthy, uint32_t unhealthy) {
  config::HealthCheck p;
  p.enabled = true;
  p.interval_ms = 100;
  p.healthy_threshold = healthy;
  p.unhealthy_threshold = unhealthy;
  return p;
}

TEST_CASE("active check: down after unhealthy_threshold failures in a row, up after passes") {
  ActiveCheck c(policy(2, 3));
  CHECK(c.healthy());
  CHECK_FALSE(c.record(false, "status 503", 100));
  CHECK_FALSE(c.record(false, "status 503", 200));
  CHECK_FALSE(c.record(true, "status 200", 300));  // a pass breaks the streak
  CHECK_FALSE(c.record(false, "timeout after 50 ms", 400));
  CHECK_FALSE(c.record(false, "status 500", 500));
  CHECK(c.healthy());
  CHECK(c.record(false, "connect: connection refused", 600));
  CHECK_FALSE(c.healthy());
  CHECK(c.changed_at_ms() == 600);
  CHECK(c.why() == "3 consecutive failures, last: connect: connection refused");
  CHECK_FALSE(c.record(false, "status 500", 700));  // already down: no new transition
  CHECK_FALSE(c.record(true, "status 200", 800));
  CHECK_FALSE(c.record(false, "status 500", 900));
  CHECK_FALSE(c.record(true, "status 200", 1000));
  CHECK(c.record(true, "status 204", 1100));
  CHECK(c.healthy());
  CHECK(c.why() == "2 consecutive passes, last: status 204");
}

TEST_CASE("active check: thresholds of 1 flip on every change") {
  ActiveCheck c(policy(1, 1));
  CHECK(c.record(false, "x", 1));
  CHECK(c.record(true, "y", 2));
  CHECK_FALSE(c.record(true, "y", 3));
  CHECK(c.record(false, "x", 4));
}

TEST_CASE("active check: expected statuses default to 2xx, else the configured ranges") {
  config::HealthCheck p = policy(1, 1);
  CHECK(status_expected(p, 200));
  CHECK(status_expected(p, 299));
  CHECK_FALSE(status_expected(p, 300));
  CHECK_FALSE(status_expected(p, 199));
  p.expected_status = {{204, 204}, {300, 399}};
  CHECK(status_expected(p, 204));
  CHECK(status_expected(p, 302));
  CHECK_FALSE(status_expected(p, 200));
  CHECK_FALSE(status_expected(p, 400));
}

TEST_CASE("active check: the next probe is one interval away plus bounded jitter") {
  config::HealthCheck p = policy(1, 1);
  CHECK(ActiveCheck(p).next_probe_at(1000, 12345) == 1100);
  p.jitter_ms = 30;
  ActiveCheck c(p);
  uint64_t lo = UINT64_MAX, hi = 0;
  for (uint64_t r = 0; r < 1000; ++r) {
    uint64_t at = c.next_probe_at(1000, r * 7919);
    lo = std::min(lo, at);
    hi = std::max(hi, at);
  }
  CHECK(lo == 1100);
  CHECK(hi == 1130);
}

}  // namespace
}  // namespace weir::health
