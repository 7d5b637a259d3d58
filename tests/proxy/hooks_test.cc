#include "proxy/hooks.h"

#include <doctest/doctest.h>

#include <atomic>
#include <mutex>

#include "proxy/file_store.h"
#include "tests/proxy/fake_http_server.h"

namespace weir::proxy {
namespace {

using nlohmann::json;
using test::FakeHttpServer;
using test::run_until;
using test::ServerConn;
using test::ServerRequest;

// A hook receiver: answers each request with the next status of `script` (the last repeats),
// and keeps what it got.
struct Receiver {
  std::mutex mu;
  std::vector<ServerRequest> got;
  std::vector<int> script;
  FakeHttpServer server;
  explicit Receiver(std::vector<int> s)
      : script(std::move(s)), server([this](ServerConn& c, int) {
          while (auto r = c.read_request()) {
            int status;
            {
              std::lock_guard<std::mutex> lock(mu);
              got.push_back(*r);
              status = script[std::min(got.size(), script.size()) - 1];
            }
            c.respond(status, "{\"answer\":" + std::to_string(status) + "}");
          }
        }) {}
  size_t count() {
    std::lock_guard<std::mutex> lock(mu);
    return got.size();
  }
  ServerRequest at(size_t i) {
    std::lock_guard<std::mutex> lock(mu);
    return got.at(i);
  }
};

config::Hook hook(const std::string& name, config::Hook::Type type, const std::string& url) {
  config::Hook h;
  h.name = name;
  h.type = type;
  h.target.url = url;
  h.target.timeout_ms = 2000;
  h.target.headers.push_back({"Authorization", "Bearer sekret", config::HookHeader::Source::kEnv,
                              "TOKEN"});
  h.backoff_ms = 10;
  h.interval_ms = 100;
  h.metadata = {{"team", "shop"}};
  return h;
}

config::Service service(std::vector<config::Hook> hooks) {
  config::Service s;
  s.name = "shop";
  s.stable = "blue";
  s.override_header = "x-weir-version";
  for (const char* n : {"blue", "canary"}) {
    config::Version v;
    v.name = n;
    v.weight = 50;
    v.endpoints.push_back({"127.0.0.1", 1});
    s.versions.push_back(v);
  }
  s.hooks = std::move(hooks);
  return s;
}

struct Fixture {
  uv_loop_t loop{};
  config::Config cfg;
  FileStore store{""};
  std::unique_ptr<HookRunner> runner;
  uint64_t now = 0;
  explicit Fixture(config::Service svc) {
    uv_loop_init(&loop);
    cfg.services.push_back(std::move(svc));
    std::string error;
    REQUIRE(store.open(cfg, &error));
    runner = std::make_unique<HookRunner>(&loop, store);
    runner->configure(cfg);
  }
  ~Fixture() {
    runner->close();
    runner.reset();
    test::drain(&loop);
    uv_loop_close(&loop);
  }
  // Runs the loop, ticking the runner every 10 ms of its clock, until done().
  bool run(const std::function<bool()>& done) {
    return run_until(&loop, [&] {
      now += 10;
      runner->tick(now);
      return done();
    });
  }
  void commit_weights(uint32_t canary) {
    ServiceChange sc;
    sc.service = "shop";
    sc.event.actor = "ops";
    sc.event.action = "set_weights";
    sc.event.reason = "ramp";
    sc.apply = [canary](ServiceRuntime& rt, AuditEvent& ev) {
      rt.weights = {{"blue", 100 - canary}, {"canary", canary}};
      ev.after = {{"weights", rt.weights}};
      return std::string();
    };
    bool done = false;
    store.commit(std::move(sc), [&](const CommitResult& r) {
      CHECK(r.ok());
      done = true;
    });
    REQUIRE(run_until(&loop, [&] { return done; }));
  }
  std::vector<json> audit(const std::string& action) {
    std::vector<json> out;
    for (const auto& e : store.events_since(0, 1000))
      if (e.value("action", "") == action) out.push_back(e);
    return out;
  }
};

}  // namespace

TEST_CASE("hooks: an event hook gets every audited change, Slack-style, retried with backoff") {
  Receiver rx({500, 200});
  config::Hook h = hook("notify", config::Hook::Type::kEvent, rx.server.url("/slack"));
  h.slack = true;
  h.retries = 2;
  Fixture f(service({h}));
  f.commit_weights(10);
  REQUIRE(f.run([&] { return rx.count() == 2 && f.runner->explain("shop").size() == 1; }));
  ServerRequest first = rx.at(0), second = rx.at(1);
  CHECK(first.method == "POST");
  CHECK(first.path == "/slack");
  CHECK(first.header("authorization") == "Bearer sekret");
  CHECK(first.header("content-type") == "application/json");
  CHECK(first.body == second.body);  // the retry sends the same event
  json body = json::parse(first.body);
  CHECK(body["text"] == "weir: shop: set_weights by ops (weights now blue 90, canary 10): ramp");
  json calls = f.runner->explain("shop");
  CHECK(calls[0]["status"] == 200);
  CHECK(calls[0]["attempts"] == 2);
  CHECK(calls[0]["excerpt"] == "{\"answer\":200}");
  // The call is audited, and its own audit record triggers no further event.
  auto audited = f.audit("hook_call");
  REQUIRE(audited.size() == 1);
  CHECK(audited[0]["actor"] == "hook:notify");
  CHECK(audited[0]["reason"].get<std::string>().find("HTTP 200") != std::string::npos);
  // Never a header value in the evidence.
  CHECK(audited[0].dump().find("sekret") == std::string::npos);
  CHECK(calls.dump().find("sekret") == std::string::npos);
  f.run([] { return false; });
  CHECK(rx.count() == 2);
}

TEST_CASE("hooks: the JSON event body carries the audit event and the metadata; failures end") {
  Receiver rx({503});
  config::Hook h = hook("audit-sink", config::Hook::Type::kEvent, rx.server.url("/e"));
  h.retries = 1;
  Fixture f(service({h}));
  f.commit_weights(20);
  REQUIRE(f.run([&] { return f.runner->explain("shop").size() == 1; }));
  CHECK(rx.count() == 2);  // one call and one retry
  json body = json::parse(rx.at(0).body);
  CHECK(body["service"] == "shop");
  CHECK(body["event"]["action"] == "set_weights");
  CHECK(body["metadata"]["team"] == "shop");
  CHECK(f.runner->figures().failures == 1);
  CHECK(f.runner->explain("shop")[0]["ok"] == false);
}

TEST_CASE("hooks: events from before the runner started are not sent") {
  Receiver rx({200});
  config::Service svc = service({hook("n", config::Hook::Type::kEvent, rx.server.url("/"))});
  Fixture f(svc);
  f.commit_weights(5);
  HookRunner late(&f.loop, f.store);
  late.configure(f.cfg);  // starts after the change
  f.runner->close();
  test::run_for(&f.loop, 50);
  for (int i = 0; i < 10; ++i) late.tick(f.now += 10);
  test::run_for(&f.loop, 100);
  late.close();
  CHECK(rx.count() == 0);
}

TEST_CASE("hooks: confirm-promotion holds until a 2xx; each gate asks again") {
  Receiver rx({403, 403, 200});
  config::Hook h = hook("approve", config::Hook::Type::kConfirmPromotion, rx.server.url("/gate"));
  Fixture f(service({h}));
  std::vector<std::string> aborted;
  ReleaseHooks gates(*f.runner, [&](const std::string&, const std::string& actor,
                                    const std::string& why) { aborted.push_back(actor + " " + why); });
  const config::Service& svc = f.cfg.services[0];
  ReleaseHooks::RolloutInfo r{"canary", "blue", 77, 2, 50, "promotion"};
  auto holds = gates.holds(svc, r, f.now);
  REQUIRE(holds.size() == 1);
  CHECK(holds[0] == "confirm-promotion hook approve: no 2xx yet");
  REQUIRE(f.run([&] { return gates.holds(svc, r, f.now).empty(); }));
  CHECK(rx.count() == 3);
  json body = json::parse(rx.at(0).body);
  CHECK(body["type"] == "confirm-promotion");
  CHECK(body["version"] == "canary");
  CHECK(body["weight"] == 50);
  CHECK(body["override"]["header"] == "x-weir-version");
  CHECK(body["override"]["value"] == "canary");
  // Other phases are not held by it.
  r.phase = "increase";
  CHECK(gates.holds(svc, r, f.now).empty());
  // A new gate (another step) asks again: the receiver says yes at once now.
  r.phase = "promotion";
  r.step = 3;
  CHECK(gates.holds(svc, r, f.now).size() == 1);
  REQUIRE(f.run([&] { return gates.holds(svc, r, f.now).empty(); }));
  CHECK(aborted.empty());
  // Gate by gate, the first answer and the change to 2xx are audited, not every poll; a 403 is
  // an answer, not retried.
  CHECK(f.audit("hook_call").size() == 3);
}

TEST_CASE("hooks: pre-rollout failing `threshold` times aborts; a rollback 2xx aborts") {
  Receiver smoke({500});
  Receiver rollback({404, 404, 200});
  config::Hook pre = hook("smoke", config::Hook::Type::kPreRollout, smoke.server.url("/smoke"));
  pre.threshold = 2;
  pre.retries = 0;
  config::Hook rb = hook("stop", config::Hook::Type::kRollback, rollback.server.url("/rb"));
  Fixture f(service({pre, rb}));
  std::vector<std::string> aborted;
  ReleaseHooks gates(*f.runner, [&](const std::string& s, const std::string& actor,
                                    const std::string& why) {
    aborted.push_back(s + " " + actor + ": " + why);
  });
  const config::Service& svc = f.cfg.services[0];
  ReleaseHooks::RolloutInfo r{"canary", "blue", 5, 0, 0, "start"};
  CHECK(gates.holds(svc, r, f.now) == std::vector<std::string>{"pre-rollout hook smoke: running"});
  REQUIRE(f.run([&] {
    gates.holds(svc, r, f.now);
    return !aborted.empty();
  }));
  CHECK(smoke.count() == 2);
  CHECK(aborted[0].starts_with("shop hook:smoke: pre-rollout hook smoke failed 2 time(s) "
                               "(threshold 2)"));
  aborted.clear();
  REQUIRE(f.run([&] {
    gates.poll_rollback(svc, r, f.now);
    return !aborted.empty();
  }));
  CHECK(rollback.count() == 3);
  CHECK(aborted[0].starts_with("shop hook:stop: rollback hook stop answered HTTP 200"));
  json ex = gates.explain("shop");
  CHECK(ex.size() == 2);
}

TEST_CASE("hooks: a rollout hook is an external check that follows its latest answer") {
  Receiver rx({200, 500});
  Fixture f(service({hook("load", config::Hook::Type::kRollout, rx.server.url("/t"))}));
  ReleaseHooks gates(*f.runner, [](const std::string&, const std::string&, const std::string&) {});
  const config::Service& svc = f.cfg.services[0];
  ReleaseHooks::RolloutInfo r{"canary", "blue", 5, 1, 10, "increase"};
  auto c = gates.rollout_checks(svc, r, f.now);
  REQUIRE(c.size() == 1);
  CHECK(c[0].verdict == health::Verdict::kHold);
  CHECK(c[0].name == "rollout hook load");
  REQUIRE(f.run([&] { return gates.rollout_checks(svc, r, f.now)[0].verdict == health::Verdict::kPass; }));
  REQUIRE(f.run([&] { return gates.rollout_checks(svc, r, f.now)[0].verdict == health::Verdict::kFail; }));
  CHECK(gates.rollout_checks(svc, r, f.now)[0].reason.starts_with("HTTP 500"));
}

TEST_CASE("hooks: post-rollout fires when a rollout is promoted or aborted") {
  Receiver rx({200});
  Fixture f(service({hook("after", config::Hook::Type::kPostRollout, rx.server.url("/p"))}));
  ServiceChange sc;
  sc.service = "shop";
  sc.event.actor = "guard";
  sc.event.action = "rollout_abort";
  sc.event.reason = "guard reverted canary";
  sc.apply = [](ServiceRuntime& rt, AuditEvent& ev) {
    rt.rollout = {{"state", "aborted"}, {"step", 1}};
    ev.after = {{"rollout", rt.rollout}};
    return std::string();
  };
  f.store.commit(std::move(sc), [](const CommitResult&) {});
  REQUIRE(f.run([&] { return rx.count() == 1; }));
  json body = json::parse(rx.at(0).body);
  CHECK(body["type"] == "post-rollout");
  CHECK(body["outcome"] == "aborted");
  CHECK(body["reason"] == "guard reverted canary");
  f.commit_weights(0);  // not a rollout's end
  f.run([&] { return false; });
  CHECK(rx.count() == 1);
}

TEST_CASE("hooks: slack_text of a revert names the reason") {
  json e = {{"service", "shop"}, {"action", "revert"}, {"actor", "guard"},
            {"reason", "query checkout: value 5 above max 1"},
            {"after", {{"weights", {{"blue", 100}, {"canary", 0}}}}}};
  CHECK(slack_text(e) == "weir: shop: revert by guard (weights now blue 100, canary 0): query "
                         "checkout: value 5 above max 1");
}

}  // namespace weir::proxy
