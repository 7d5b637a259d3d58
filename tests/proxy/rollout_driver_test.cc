#include "proxy/rollout_driver.h"

#include <doctest/doctest.h>
#include <stdlib.h>

#include <filesystem>

#include "proxy/file_store.h"
#include "proxy/http_util.h"

namespace weir::proxy {
namespace {

using nlohmann::json;

// A real single-replica store in a fresh directory, removed afterwards.
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/weir-rollout-driver-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

config::Config rollout_config() {
  config::Config c;
  config::Service s;
  s.name = "shop";
  s.stable = "blue";
  s.versions = {{"blue", 100, {{"127.0.0.1", 1}}, {}, {}},
                {"green", 0, {{"127.0.0.1", 2}}, {}, {}}};
  s.rollout.present = true;
  s.rollout.version = "green";
  for (uint32_t w : {10u, 50u, 100u}) {
    config::RolloutStep step;
    step.weight = w;
    s.rollout.steps.push_back(step);
  }
  s.rollout.step_s = 60;
  s.rollout.max_step_s = 600;
  c.services.push_back(s);
  return c;
}

struct Fixture {
  config::Config config = rollout_config();
  TempDir dir;
  FileStore store{dir.path};
  RolloutDriver driver{store};

  Fixture() {
    std::string error;
    REQUIRE(store.open(config, &error));
    store.set_listener({[this](const std::string& service) { driver.on_state(service); }, {}});
    driver.configure(config);
  }
  CommitResult command(const std::string& op) {
    CommitResult result{0, "", ""};
    driver.command("shop", op, "ci", "", [&](const CommitResult& r) { result = r; });
    return result;
  }
  // When the current step started, as the store holds it.
  uint64_t step_started() const {
    return store.state().find("shop")->rollout["step_started_ms"].get<uint64_t>();
  }
};

}  // namespace

TEST_CASE("rollout driver: an idle rollout shows its plan only") {
  Fixture f;
  const json d = f.driver.detail("shop", 1'000'000);
  CHECK(d["version"] == "green");
  CHECK(d["step_s"] == 60);
  CHECK_FALSE(d.contains("step"));
  CHECK_FALSE(d.contains("pauses_at"));
  CHECK(d["waiting_for"] == json::array());
  CHECK(f.driver.detail("nope", 1'000'000).is_null());
}

TEST_CASE("rollout driver: a running step says how long it ran, passed, and when it moves") {
  Fixture f;
  REQUIRE(f.command("start").ok());
  const uint64_t t0 = f.step_started();
  json d = f.driver.detail("shop", t0 + 5'000);
  CHECK(d["step"] == 0);
  CHECK(d["step_of"] == 3);
  CHECK(d["weight"] == 10);
  CHECK(d["in_step_s"] == doctest::Approx(5.0));
  CHECK(d["passing_s"] == doctest::Approx(0.0));
  CHECK(d["waiting_for"] == json::array({"a passing guard verdict"}));
  CHECK_FALSE(d.contains("advances_at"));
  // max_step_s 600 from the step's start.
  CHECK(d["pauses_at"] == utc_timestamp_ms(static_cast<int64_t>(t0 + 600'000)));
  CHECK(d["pauses_in_s"] == doctest::Approx(595.0));

  // Passing from 10 s into the step: it advances 60 s after that (the later of the two clocks).
  f.driver.on_verdict("shop", health::Judgement{health::Verdict::kPass}, t0 + 10'000);
  f.driver.on_verdict("shop", health::Judgement{health::Verdict::kPass}, t0 + 20'000);
  d = f.driver.detail("shop", t0 + 25'000);
  CHECK(d["in_step_s"] == doctest::Approx(25.0));
  CHECK(d["passing_s"] == doctest::Approx(15.0));
  CHECK(d["waiting_for"] == json::array({"the guard to keep passing until then"}));
  CHECK(d["advances_at"] == utc_timestamp_ms(static_cast<int64_t>(t0 + 70'000)));
  CHECK(d["advances_in_s"] == doctest::Approx(45.0));

  // A hold breaks the run: nothing to advance at until it passes again.
  f.driver.on_verdict("shop", health::Judgement{health::Verdict::kHold}, t0 + 30'000);
  d = f.driver.detail("shop", t0 + 31'000);
  CHECK(d["passing_s"] == doctest::Approx(0.0));
  CHECK_FALSE(d.contains("advances_at"));
}

TEST_CASE("rollout driver: a paused rollout waits for an operator and counts no passes") {
  Fixture f;
  REQUIRE(f.command("start").ok());
  const uint64_t t0 = f.step_started();
  f.driver.on_verdict("shop", health::Judgement{health::Verdict::kPass}, t0 + 1'000);
  REQUIRE(f.command("pause").ok());
  const json d = f.driver.detail("shop", t0 + 500'000);
  CHECK(d["weight"] == 10);
  CHECK(d["in_step_s"] == doctest::Approx(500.0));
  CHECK(d["passing_s"] == doctest::Approx(0.0));
  CHECK(d["waiting_for"] == json::array({"an operator: resume, abort or promote"}));
  CHECK_FALSE(d.contains("advances_at"));
  CHECK_FALSE(d.contains("pauses_at"));
}

}  // namespace weir::proxy
