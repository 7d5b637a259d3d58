#include "health/hook_poll.h"

#include <doctest/doctest.h>

namespace weir::health {

using K = HookPoll::Kind;
using O = HookPoll::Outcome;

TEST_CASE("health/hook_poll: a confirm hook is polled every interval until its first 2xx") {
  HookPoll p(K::kConfirm, 1000);
  p.arm("run1/2/promotion");
  CHECK(p.due(0));
  p.started(0);
  CHECK_FALSE(p.due(5000));  // one call at a time
  p.answered(false, "HTTP 403 in 3 ms");
  CHECK(p.outcome() == O::kPending);
  CHECK_FALSE(p.due(999));
  CHECK(p.due(1000));
  p.started(1000);
  p.answered(true, "HTTP 200 in 2 ms");
  CHECK(p.outcome() == O::kPassed);
  CHECK_FALSE(p.due(100000));  // passed: no more calls for this gate
  CHECK(p.calls() == 2);
  CHECK(p.failures() == 1);
  CHECK(p.last() == "HTTP 200 in 2 ms");
  // The same gate keeps its answer; the next gate starts over.
  p.arm("run1/2/promotion");
  CHECK(p.outcome() == O::kPassed);
  p.arm("run1/3/promotion");
  CHECK(p.outcome() == O::kPending);
  CHECK(p.calls() == 0);
  CHECK(p.due(100000));
}

TEST_CASE("health/hook_poll: pre-rollout fails after `threshold` failed calls") {
  HookPoll p(K::kPreRollout, 500, 2);
  p.arm("run1");
  p.started(0);
  p.answered(false, "HTTP 500");
  CHECK(p.outcome() == O::kPending);
  CHECK(p.due(500));
  p.started(500);
  p.answered(false, "timeout");
  CHECK(p.outcome() == O::kFailed);
  CHECK_FALSE(p.due(10000));
  HookPoll ok(K::kPreRollout, 500, 2);
  ok.arm("run2");
  ok.started(0);
  ok.answered(false, "HTTP 500");
  ok.started(500);
  ok.answered(true, "HTTP 200");
  CHECK(ok.outcome() == O::kPassed);
}

TEST_CASE("health/hook_poll: a rollout hook follows its latest answer; rollback triggers on 2xx") {
  HookPoll r(K::kRollout, 1000);
  r.arm("run1/0");
  r.started(0);
  r.answered(true, "HTTP 200");
  CHECK(r.outcome() == O::kPassed);
  CHECK(r.due(1000));  // called every interval, whatever it said
  r.started(1000);
  r.answered(false, "HTTP 500");
  CHECK(r.outcome() == O::kFailed);
  r.started(2000);
  r.answered(true, "HTTP 204");
  CHECK(r.outcome() == O::kPassed);

  HookPoll b(K::kRollback, 1000);
  b.arm("run1");
  b.started(0);
  b.answered(false, "HTTP 404");
  CHECK(b.outcome() == O::kPending);
  b.started(1000);
  b.answered(true, "HTTP 200");
  CHECK(b.outcome() == O::kPassed);
  CHECK_FALSE(b.due(5000));
}

}  // namespace weir::health
