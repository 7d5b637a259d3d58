#include "health/rollout.h"

#include <doctest/doctest.h>

namespace weir::health {
namespace {

config::RolloutConfig plan(std::vector<uint32_t> steps, uint32_t step_s = 10,
                           uint32_t max_step_s = 60) {
  config::RolloutConfig p;
  p.present = true;
  p.version = "green";
  p.steps = std::move(steps);
  p.step_s = step_s;
  p.max_step_s = max_step_s;
  return p;
}

// Feeds one verdict per second from `from_s` to `to_s` (inclusive); returns the last action
// that changed something.
Rollout::Action feed(Rollout& r, Verdict v, uint64_t from_s, uint64_t to_s) {
  Rollout::Action last;
  for (uint64_t t = from_s; t <= to_s; ++t) {
    Rollout::Action a = r.on_verdict(v, t * 1000);
    if (a.change || a.promote) last = a;
  }
  return last;
}

TEST_CASE("rollout: start sets the first step") {
  Rollout r(plan({5, 50, 100}));
  std::string err;
  Rollout::Action a = r.start(0, &err);
  CHECK(err.empty());
  CHECK(a.change);
  CHECK(a.weight == 5);
  CHECK(r.state() == RolloutState::kRunning);
  r.start(0, &err);
  CHECK(err == "the rollout is already running");
}

TEST_CASE("rollout: a step advances only after passing for its whole bake time") {
  Rollout r(plan({5, 50, 100}, 10));
  std::string err;
  r.start(0, &err);
  CHECK_FALSE(feed(r, Verdict::kPass, 1, 10).change);  // passing since 1 s: 9 s is not enough
  Rollout::Action a = feed(r, Verdict::kPass, 11, 11);
  CHECK(a.change);
  CHECK(a.weight == 50);
  CHECK(r.step() == 1);
}

TEST_CASE("rollout: a hold or a failure restarts the step's passing run") {
  Rollout r(plan({5, 50, 100}, 10, 60));
  std::string err;
  r.start(0, &err);
  feed(r, Verdict::kPass, 1, 8);
  r.on_verdict(Verdict::kHold, 9000);
  CHECK_FALSE(feed(r, Verdict::kPass, 10, 19).change);
  CHECK(feed(r, Verdict::kPass, 20, 20).weight == 50);
  feed(r, Verdict::kPass, 21, 25);
  r.on_verdict(Verdict::kFail, 26000);
  CHECK_FALSE(feed(r, Verdict::kPass, 27, 36).change);
  CHECK(feed(r, Verdict::kPass, 37, 37).promote);
  CHECK(r.state() == RolloutState::kPromoted);
}

TEST_CASE("rollout: a step that never passes long enough pauses at max_step_s") {
  Rollout r(plan({5, 100}, 10, 30));
  std::string err;
  r.start(0, &err);
  feed(r, Verdict::kHold, 1, 29);
  CHECK(r.state() == RolloutState::kRunning);
  r.on_verdict(Verdict::kHold, 30000);
  CHECK(r.state() == RolloutState::kPaused);
  CHECK(r.last_reason().find("max_step_s") != std::string::npos);
  // Paused: verdicts change nothing until an operator resumes.
  CHECK_FALSE(feed(r, Verdict::kPass, 31, 100).change);
  r.resume(100000, &err);
  CHECK(err.empty());
  CHECK_FALSE(feed(r, Verdict::kPass, 101, 109).promote);
  CHECK(feed(r, Verdict::kPass, 110, 111).promote);
}

TEST_CASE("rollout: operator pause, resume, abort and promote") {
  Rollout r(plan({5, 50, 100}));
  std::string err;
  r.pause(&err);
  CHECK(err.find("only a running rollout") == 0);
  err.clear();
  r.resume(0, &err);
  CHECK(err.find("only a paused rollout") == 0);
  err.clear();
  r.start(0, &err);
  r.pause(&err);
  CHECK(r.state() == RolloutState::kPaused);
  Rollout::Action a = r.abort("operator");
  CHECK(a.change);
  CHECK(a.weight == 0);
  CHECK(r.state() == RolloutState::kAborted);
  CHECK_FALSE(r.abort("again").change);  // aborting twice changes nothing

  Rollout p(plan({5, 100}));
  p.start(0, &err);
  a = p.promote(&err);
  CHECK(a.promote);
  CHECK(p.state() == RolloutState::kPromoted);
  p.promote(&err);
  CHECK(err == "the rollout is already promoted");
}

TEST_CASE("rollout: an aborted rollout can start again from its first step") {
  Rollout r(plan({5, 100}));
  std::string err;
  r.start(0, &err);
  r.abort("guard");
  Rollout::Action a = r.start(5000, &err);
  CHECK(err.empty());
  CHECK(a.weight == 5);
}

}  // namespace
}  // namespace weir::health
