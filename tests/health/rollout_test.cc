#include "health/rollout.h"

#include <doctest/doctest.h>

namespace weir::health {
namespace {

config::RolloutConfig plan(std::vector<uint32_t> steps, uint32_t step_s = 10,
                           uint32_t max_step_s = 60) {
  config::RolloutConfig p;
  p.present = true;
  p.version = "green";
  for (uint32_t w : steps) {
    config::RolloutStep s;
    s.weight = w;
    p.steps.push_back(s);
  }
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
  CHECK(err.find("only a running or waiting rollout") == 0);
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

namespace weir::health {
namespace {

config::RolloutStep weight_step(uint32_t w, uint32_t step_s = 0) {
  config::RolloutStep s;
  s.weight = w;
  s.step_s = step_s;
  return s;
}

config::RolloutStep pause_step(uint32_t pause_s = 0) {
  config::RolloutStep s;
  s.pause = true;
  s.pause_s = pause_s;
  return s;
}

config::RolloutConfig gated(std::vector<config::RolloutStep> steps, uint32_t step_s = 10) {
  config::RolloutConfig p;
  p.present = true;
  p.version = "green";
  p.steps = std::move(steps);
  p.step_s = step_s;
  p.max_step_s = 600;
  return p;
}

TEST_CASE("rollout: a caller's hold keeps a start waiting until it lifts") {
  Rollout r(gated({weight_step(10), weight_step(100)}));
  std::string err;
  Rollout::Action a = r.start(0, &err, {"pre-rollout hook smoke: no answer yet"}, "ci");
  CHECK(err.empty());
  CHECK_FALSE(a.change);
  CHECK(r.state() == RolloutState::kWaiting);
  CHECK(r.weight() == 0);
  CHECK(r.next_transition() == Transition::kStart);
  CHECK(r.waiting_for() == std::vector<std::string>{"pre-rollout hook smoke: no answer yet"});
  CHECK_FALSE(r.tick(1000, {"pre-rollout hook smoke: no answer yet"}).change);
  a = r.tick(2000);
  CHECK(a.change);
  CHECK(a.weight == 10);
  CHECK(r.state() == RolloutState::kRunning);
  CHECK(r.waiting_for().empty());
}

TEST_CASE("rollout: a held promotion waits, the guard keeps judging, a failure re-bakes") {
  Rollout r(gated({weight_step(10), weight_step(100)}, 10));
  std::string err;
  r.start(0, &err);
  const Holds confirm = {"confirm-promotion hook: not 2xx yet"};
  for (uint64_t t = 1; t <= 11; ++t) r.on_verdict(Verdict::kPass, t * 1000, confirm);
  CHECK(r.state() == RolloutState::kWaiting);
  CHECK(r.next_transition() == Transition::kPromotion);
  CHECK(r.waiting_for() == confirm);
  // A hold verdict while waiting is no evidence against the step.
  CHECK_FALSE(r.on_verdict(Verdict::kHold, 12000, confirm).promote);
  CHECK(r.state() == RolloutState::kWaiting);
  // A failure sends it back to running: the step has to pass again.
  Rollout::Action a = r.on_verdict(Verdict::kFail, 13000, confirm);
  CHECK(a.event == "rollout_running");
  CHECK(r.state() == RolloutState::kRunning);
  CHECK_FALSE(feed(r, Verdict::kPass, 14, 20).promote);  // not a whole bake since the failure
  for (uint64_t t = 21; t <= 24; ++t) r.on_verdict(Verdict::kPass, t * 1000, confirm);
  CHECK(r.state() == RolloutState::kWaiting);
  // The hold lifts: promoted at once.
  CHECK(r.on_verdict(Verdict::kPass, 25000).promote);
  CHECK(r.state() == RolloutState::kPromoted);
}

TEST_CASE("rollout: a revert still aborts a waiting rollout; pause and resume it") {
  Rollout r(gated({weight_step(10), weight_step(100)}, 1));
  std::string err;
  r.start(0, &err, {"window"});
  CHECK(r.state() == RolloutState::kWaiting);
  r.pause(&err);
  CHECK(err.empty());
  CHECK(r.state() == RolloutState::kPaused);
  CHECK(r.waiting_for().empty());
  r.resume(5000, &err);
  CHECK(r.state() == RolloutState::kRunning);
  r.tick(6000, {"window"});
  CHECK(r.state() == RolloutState::kWaiting);
  Rollout::Action a = r.abort("guard reverted green");
  CHECK(a.change);
  CHECK(a.weight == 0);
  CHECK(r.state() == RolloutState::kAborted);
}

TEST_CASE("rollout: an indefinite pause waits for resume; a timed pause ends by itself") {
  Rollout r(gated({weight_step(5), pause_step(), weight_step(25, 3), pause_step(30),
                   weight_step(100)}, 2));
  std::string err;
  r.start(0, &err, {}, "ci");
  feed(r, Verdict::kPass, 1, 3);
  CHECK(r.step() == 1);
  CHECK(r.state() == RolloutState::kWaiting);
  CHECK(r.weight() == 5);  // a pause keeps the previous step's weight
  REQUIRE(r.waiting_for().size() == 1);
  CHECK(r.waiting_for()[0].find("a resume") == 0);
  CHECK_FALSE(r.tick(100000).change);  // nothing but a resume ends it
  Rollout::Action a = r.resume(100000, &err);
  CHECK(err.empty());
  CHECK(a.change);
  CHECK(a.weight == 25);
  CHECK(r.step() == 2);
  // The step's own step_s (3 s), not the plan's 2 s.
  CHECK_FALSE(feed(r, Verdict::kPass, 101, 103).change);
  feed(r, Verdict::kPass, 104, 104);
  CHECK(r.step() == 3);
  CHECK(r.state() == RolloutState::kRunning);
  CHECK(r.weight() == 25);
  // A timed pause needs no verdicts: ticks end it after pause_s.
  CHECK_FALSE(r.tick(133000).promote);
  CHECK(r.tick(134000).promote);
  CHECK(r.state() == RolloutState::kPromoted);
}

TEST_CASE("rollout: a position survives save and restore, wait and approvals included") {
  config::RolloutConfig p = gated({weight_step(5), pause_step(), weight_step(100)});
  p.approvals = 1;
  Rollout r(p);
  std::string err;
  r.start(0, &err, {}, "ci");
  feed(r, Verdict::kPass, 1, 11);
  REQUIRE(r.state() == RolloutState::kWaiting);
  Rollout copy(p);
  CHECK(copy.restore(r.position()));
  CHECK(copy.state() == RolloutState::kWaiting);
  CHECK(copy.waiting_for() == r.waiting_for());
  CHECK(copy.started_by() == "ci");
  bool forbidden = false;
  copy.approve("ci", "", 20000, &err, &forbidden);
  CHECK(forbidden);
  err.clear();
  Rollout::Action a = copy.approve("alice", "looks good", 20000, &err, &forbidden);
  CHECK(err.empty());
  CHECK(a.promote);  // the approval also resumed the pause, and it was the promotion's gate
  REQUIRE(a.approvals.size() == 1);
  CHECK(a.approvals[0].actor == "alice");
}

}  // namespace
}  // namespace weir::health
