#include "proxy/admin_api.h"
#include "proxy/file_store.h"

#include <doctest/doctest.h>

#include "health/histogram.h"

namespace weir::proxy {
namespace {

// sha256("w") and sha256("r")
constexpr const char* kWriteDigest =
    "50e721e49c013f00c62cf59f2163542a9d8df02464efeb615d31051b0fddc326";
constexpr const char* kReadDigest =
    "454349e422f05297191ead13e21d3db520e5abef52055e4964b82fb213f593a1";

config::AdminToken token(std::string name, config::AdminToken::Scope scope, const char* hex) {
  config::AdminToken t;
  t.name = std::move(name);
  t.scope = scope;
  for (size_t i = 0; i < 32; ++i) {
    t.sha256[i] = static_cast<uint8_t>(std::stoul(std::string(hex + i * 2, 2), nullptr, 16));
  }
  return t;
}

// An AdminHost over plain members; commit can be made to fail.
class FakeHost : public AdminHost {
 public:
  FakeHost() {
    config_.admin.enabled = true;
    config_.admin.tokens = {token("ci", config::AdminToken::Scope::kWrite, kWriteDigest),
                            token("viewer", config::AdminToken::Scope::kRead, kReadDigest)};
    config::Service s;
    s.name = "shop";
    s.stable = "blue";
    s.versions = {{"blue", 90, {{"127.0.0.1", 1}}, {}, {}},
                  {"green", 10, {{"127.0.0.1", 2}}, {}, {}}};
    config_.services.push_back(s);
    runtime_.reconcile(config_);
  }
  const config::Config& configured() const override { return config_; }
  const RuntimeState& runtime() const override { return runtime_; }
  // As a store does: the If-Match check and the change, through apply_change; then "persisted".
  void commit(ServiceChange change, CommitDone done) override {
    if (fail_commit) {
      done({500, "persist_failed", "disk full"});
      return;
    }
    CommitResult r;
    bool unchanged = false;
    std::optional<ServiceRuntime> next = apply_change(runtime_, change, &unchanged, &r);
    if (next && !unchanged) {
      ++next->state_version;
      runtime_.set(change.service, std::move(*next));
      events.push_back(change.event.to_json());
    }
    done(r);
  }
  ReloadOutcome reload(const std::string&) override { return {}; }
  std::vector<nlohmann::json> events_since(uint64_t, size_t) const override { return events; }
  std::string metrics_text() override { return "weir_up 1\n"; }
  void annotate(ServiceStateView& v) const override { v.guard = "pass"; }
  void rollout_command(const std::string& service, const std::string& op, const std::string&,
                       const std::string&, CommitDone done) override {
    rollout_ops.push_back(service + " " + op);
    if (op == "pause") {
      done({409, "rollout_refused", "only a running rollout can be paused"});
      return;
    }
    done({});
  }
  std::string explain_json(const std::string& service) const override {
    return "{\"service\":\"" + service + "\",\"decisions\":[]}";
  }
  StatsClock stats_clock() const override { return clock; }
  const health::StatsWindow* stats_window(const std::string& service,
                                          const std::string& version) const override {
    auto it = windows.find(service + "/" + version);
    return it == windows.end() ? nullptr : &it->second;
  }
  std::vector<std::string> rollout_ops;
  StatsClock clock;
  std::map<std::string, health::StatsWindow> windows;  // "service/version"

  config::Config config_;
  RuntimeState runtime_;
  std::vector<nlohmann::json> events;
  bool fail_commit = false;
};

// The answer to `req`; the fake host commits at once, so it is there when handle returns.
AdminResponse call(AdminApi& api, const AdminRequest& req) {
  std::optional<AdminResponse> out;
  api.handle(req, [&](AdminResponse r) { out = std::move(r); });
  REQUIRE(out.has_value());
  return *out;
}

AdminRequest request(std::string method, std::string path, std::string bearer = "w",
                     std::string body = "", std::string if_match = "") {
  AdminRequest r;
  r.method = std::move(method);
  r.path = std::move(path);
  if (!bearer.empty()) r.headers.emplace_back("authorization", "Bearer " + bearer);
  if (!if_match.empty()) r.headers.emplace_back("if-match", if_match);
  r.body = std::move(body);
  return r;
}

std::string header(const AdminResponse& r, const std::string& name) {
  for (const auto& [n, v] : r.headers) {
    if (n == name) return v;
  }
  return "";
}

TEST_CASE("admin_api: tokens are matched by SHA-256") {
  FakeHost host;
  CHECK(find_token(host.config_.admin.tokens, "w")->name == "ci");
  CHECK(find_token(host.config_.admin.tokens, "r")->name == "viewer");
  CHECK(find_token(host.config_.admin.tokens, "x") == nullptr);
  CHECK(find_token(host.config_.admin.tokens, "") == nullptr);
}

TEST_CASE("admin_api: If-Match forms") {
  CHECK(if_match("*", 7));
  CHECK(if_match("\"7\"", 7));
  CHECK(if_match("7", 7));
  CHECK(if_match("W/\"7\"", 7));
  CHECK(if_match("\"3\", \"7\"", 7));
  CHECK_FALSE(if_match("\"8\"", 7));
  CHECK_FALSE(if_match("\"7x\"", 7));
  CHECK_FALSE(if_match("", 7));
}

TEST_CASE("admin_api: auth, scopes and open paths") {
  FakeHost host;
  AdminApi api(host);
  AdminResponse r = call(api, request("GET", "/api/v1/services", ""));
  CHECK(r.status == 401);
  CHECK(header(r, "WWW-Authenticate").starts_with("Bearer"));
  CHECK(call(api, request("GET", "/api/v1/services", "nope")).status == 401);
  CHECK(call(api, request("GET", "/api/v1/services", "r")).status == 200);
  CHECK(call(api, request("POST", "/api/v1/services/shop/rollback", "r")).status == 403);
  CHECK(call(api, request("GET", "/healthz", "")).status == 200);
  CHECK(call(api, request("GET", "/metrics", "")).status == 401);
  host.config_.admin.open_metrics = true;
  r = call(api, request("GET", "/metrics", ""));
  CHECK(r.status == 200);
  CHECK(r.body == "weir_up 1\n");
  CHECK(r.content_type.starts_with("text/plain; version=0.0.4"));
}

TEST_CASE("admin_api: set weights with If-Match") {
  FakeHost host;
  AdminApi api(host);
  const std::string body = R"({"weights": {"green": 60}, "reason": "ramp"})";
  CHECK(call(api, request("PUT", "/api/v1/services/shop/weights", "w", body)).status == 428);
  AdminResponse r = call(api, request("PUT", "/api/v1/services/shop/weights", "w", body, "\"5\""));
  CHECK(r.status == 412);
  CHECK(header(r, "ETag") == "\"1\"");
  CHECK(host.events.empty());

  r = call(api, request("PUT", "/api/v1/services/shop/weights", "w", body, "\"1\""));
  REQUIRE(r.status == 200);
  CHECK(header(r, "ETag") == "\"2\"");
  auto j = nlohmann::json::parse(r.body);
  CHECK(j["versions"][0]["effective_weight"] == 90);
  CHECK(j["versions"][1]["effective_weight"] == 60);
  CHECK(j["versions"][1]["configured_weight"] == 10);
  CHECK(j["guard"]["state"] == "pass");  // the host's annotation
  REQUIRE(host.events.size() == 1);
  CHECK(host.events[0]["actor"] == "ci");
  CHECK(host.events[0]["reason"] == "ramp");
  CHECK(host.events[0]["after"]["weights"]["green"] == 60);
}

TEST_CASE("admin_api: bad bodies and failed commits change nothing") {
  FakeHost host;
  AdminApi api(host);
  nlohmann::json before = host.runtime_.to_json();
  for (const char* body : {"{", "[]", R"({"weights": 5})", R"({"weights": {"blue": 1.5}})",
                           R"({"weights": {"blue": 0, "green": 0}})", R"({"weights": {}})",
                           R"({"weights": {"x": 1}})", R"({"weights": {"blue": 1}, "why": 1})",
                           R"({"weights": {"blue": 1}, "reason": 5})"}) {
    CAPTURE(body);
    AdminResponse r = call(api, request("PUT", "/api/v1/services/shop/weights", "w", body, "*"));
    CHECK(r.status == 400);
    auto j = nlohmann::json::parse(r.body);
    CHECK(j.contains("error"));
    CHECK(j.contains("detail"));
  }
  host.fail_commit = true;
  AdminResponse r = call(api, request("PUT", "/api/v1/services/shop/weights", "w",
                                       R"({"weights": {"blue": 1}})", "*"));
  CHECK(r.status == 500);
  CHECK(nlohmann::json::parse(r.body)["detail"] == "disk full");
  CHECK(host.runtime_.to_json() == before);
  CHECK(host.events.empty());
}

TEST_CASE("admin_api: promote and rollback") {
  FakeHost host;
  AdminApi api(host);
  AdminResponse r = call(api, 
      request("POST", "/api/v1/services/shop/promote", "w", R"({"version": "green"})"));
  REQUIRE(r.status == 200);
  auto j = nlohmann::json::parse(r.body);
  CHECK(j["stable"] == "green");
  CHECK(j["configured_stable"] == "blue");
  CHECK(j["versions"][0]["effective_weight"] == 0);
  CHECK(j["versions"][1]["effective_weight"] == 100);
  r = call(api, request("POST", "/api/v1/services/shop/rollback", "w", "", "\"1\""));
  CHECK(r.status == 412);
  r = call(api, request("POST", "/api/v1/services/shop/rollback", "w"));
  REQUIRE(r.status == 200);
  j = nlohmann::json::parse(r.body);
  CHECK(j["versions"][1]["effective_weight"] == 100);  // green is stable now
  CHECK(call(api, request("POST", "/api/v1/services/shop/promote", "w", "{}")).status == 400);
}

TEST_CASE("admin_api: routing of paths and methods") {
  FakeHost host;
  AdminApi api(host);
  CHECK(call(api, request("GET", "/api/v1/services/nope")).status == 404);
  CHECK(call(api, request("GET", "/api/v2/services")).status == 404);
  CHECK(call(api, request("GET", "/api/v1/services/shop/frobnicate")).status == 404);
  AdminResponse r = call(api, request("POST", "/api/v1/services/shop"));
  CHECK(r.status == 405);
  CHECK(header(r, "Allow") == "GET");
  CHECK(call(api, request("GET", "/api/v1/reload")).status == 405);
  AdminRequest ev = request("GET", "/api/v1/events");
  ev.query = "since=abc";
  CHECK(call(api, ev).status == 400);
  ev.query = "since=0&limit=5";
  CHECK(call(api, ev).status == 200);
}

TEST_CASE("admin api: rollout operations and explain reach the host") {
  FakeHost host;
  AdminApi api(host);
  AdminResponse r = call(api, request("POST", "/api/v1/services/shop/rollout/start"));
  CHECK(r.status == 200);
  r = call(api, request("POST", "/api/v1/services/shop/rollout/pause"));
  CHECK(r.status == 409);
  CHECK(r.body.find("only a running rollout") != std::string::npos);
  CHECK(host.rollout_ops == std::vector<std::string>{"shop start", "shop pause"});
  r = call(api, request("GET", "/api/v1/services/shop/explain", "r"));
  CHECK(r.status == 200);
  CHECK(nlohmann::json::parse(r.body)["service"] == "shop");
  r = call(api, request("POST", "/api/v1/services/shop/rollout/start", "r"));
  CHECK(r.status == 403);  // a read token cannot steer a rollout
  CHECK(host.rollout_ops.size() == 2);
}

TEST_CASE("admin_api: the guard switch is audited, persisted state, and checks its body") {
  FakeHost host;
  AdminApi api(host);
  const std::string path = "/api/v1/services/shop/guard";
  // No [service.guard]: nothing to switch.
  AdminResponse r = call(api, request("POST", path, "w", R"({"enabled": false})"));
  CHECK(r.status == 409);
  host.config_.services[0].guard.enabled = true;

  nlohmann::json before = host.runtime_.to_json();
  for (const char* body : {"", "{", "[]", "{}", R"({"enabled": "no"})", R"({"enabled": 0})",
                           R"({"enabled": false, "reason": 3})",
                           R"({"enabled": false, "why": "x"})"}) {
    CAPTURE(body);
    r = call(api, request("POST", path, "w", body));
    CHECK(r.status == 400);
    CHECK(nlohmann::json::parse(r.body).contains("detail"));
  }
  CHECK(call(api, request("POST", path, "r", R"({"enabled": false})")).status == 403);
  CHECK(call(api, request("PUT", path, "w", R"({"enabled": false})")).status == 405);
  r = call(api, request("POST", path, "w", R"({"enabled": false})", "\"7\""));
  CHECK(r.status == 412);
  host.fail_commit = true;
  CHECK(call(api, request("POST", path, "w", R"({"enabled": false})")).status == 500);
  host.fail_commit = false;
  CHECK(host.runtime_.to_json() == before);
  CHECK(host.events.empty());

  r = call(api, 
      request("POST", path, "w", R"({"enabled": false, "reason": "flaky probe"})", "\"1\""));
  REQUIRE(r.status == 200);
  CHECK(header(r, "ETag") == "\"2\"");
  auto j = nlohmann::json::parse(r.body);
  CHECK(j["guard"]["state"] == "disabled");
  CHECK(j["guard"]["reason"] == "flaky probe");
  CHECK(host.runtime_.find("shop")->guard_disabled);
  REQUIRE(host.events.size() == 1);
  CHECK(host.events[0]["action"] == "guard_disable");
  CHECK(host.events[0]["actor"] == "ci");
  CHECK(host.events[0]["before"]["guard"] == "enabled");
  CHECK(host.events[0]["after"]["guard"] == "disabled");
  CHECK(host.events[0]["reason"] == "flaky probe");
  // The weights are untouched.
  CHECK(host.runtime_.weights(host.config_.services[0]) ==
        std::map<std::string, uint32_t>{{"blue", 90}, {"green", 10}});

  r = call(api, request("POST", path, "w", R"({"enabled": true})"));
  REQUIRE(r.status == 200);
  CHECK(nlohmann::json::parse(r.body)["guard"]["state"] == "pass");  // the host's verdict again
  CHECK_FALSE(host.runtime_.find("shop")->guard_disabled);
  CHECK(host.events.back()["action"] == "guard_enable");
}

// One second of traffic: `ok` 200s and `failed` 500s, all taking `micros`.
health::Sample second_of(uint64_t ok, uint64_t failed, uint64_t micros) {
  health::Sample s;
  s.requests = ok + failed;
  s.responses[2] = ok;
  s.responses[5] = failed;
  s.total_latency[health::Histogram::index(micros)] = ok + failed;
  return s;
}

TEST_CASE("admin_api: history gives each version's window in steps, oldest first") {
  FakeHost host;
  AdminApi api(host);
  host.clock = {1000, 1'700'000'000'000};  // second 1000 starts at 2023-11-14T22:13:20Z
  health::StatsWindow& blue = host.windows["shop/blue"];
  // Seconds 990..999 are complete; 1000 is still being counted and is left out.
  for (uint64_t sec = 990; sec <= 999; ++sec) blue.add(sec, second_of(10, 0, 2000));
  blue.add(997, second_of(0, 10, 2000));
  blue.add(1000, second_of(500, 500, 2000));
  blue.add(988, health::Sample{});
  AdminRequest req = request("GET", "/api/v1/services/shop/history", "r");
  req.query = "seconds=20&step_s=5";
  AdminResponse r = call(api, req);
  REQUIRE(r.status == 200);
  auto j = nlohmann::json::parse(r.body);
  CHECK(j["service"] == "shop");
  CHECK(j["step_s"] == 5);
  CHECK(j["points"] == 4);
  CHECK(j["end"] == "2023-11-14T22:13:20.000Z");
  CHECK(j["end_ms"] == 1'700'000'000'000);
  REQUIRE(j["versions"].size() == 2);
  const auto& b = j["versions"][0];
  CHECK(b["name"] == "blue");
  // Points end at seconds 984, 989, 994 and 999; nothing was counted before second 988 (an
  // idle second is counted: zero requests, no error rate).
  CHECK(b["requests"] == nlohmann::json::array({nullptr, 0, 50, 60}));
  CHECK(b["error_rate"][0].is_null());  // nothing answered: no rate, not 0
  CHECK(b["error_rate"][2] == 0.0);
  CHECK(b["error_rate"][3].get<double>() == doctest::Approx(10.0 / 60));
  CHECK(b["p99_ms"][1].is_null());
  CHECK(b["p99_ms"][3].get<double>() == doctest::Approx(2.0).epsilon(0.02));
  // A version without a window yet (no statistics tick) has empty points, not an error.
  const auto& g = j["versions"][1];
  CHECK(g["name"] == "green");
  CHECK(g["requests"] == nlohmann::json::array({nullptr, nullptr, nullptr, nullptr}));
  CHECK(g["p99_ms"] == nlohmann::json::array({nullptr, nullptr, nullptr, nullptr}));

  // Defaults: five minutes in 5 s steps.
  req.query = "";
  r = call(api, req);
  REQUIRE(r.status == 200);
  j = nlohmann::json::parse(r.body);
  CHECK(j["points"] == 60);
  CHECK(j["versions"][0]["requests"].size() == 60);
  CHECK(j["versions"][0]["requests"][59] == 60);

  for (const char* q : {"step_s=0", "step_s=61", "step_s=x", "seconds=7&step_s=5",
                        "seconds=601&step_s=1", "seconds=2&step_s=5", "seconds=-5"}) {
    CAPTURE(q);
    req.query = q;
    r = call(api, req);
    CHECK(r.status == 400);
    CHECK(nlohmann::json::parse(r.body)["error"] == "bad_request");
  }
  CHECK(call(api, request("POST", "/api/v1/services/shop/history")).status == 405);
  CHECK(call(api, request("GET", "/api/v1/services/nope/history")).status == 404);
  CHECK(call(api, request("GET", "/api/v1/services/shop/history", "")).status == 401);
}

TEST_CASE("admin_api: a version the guard reverted says so until an operator acts") {
  FakeHost host;
  AdminApi api(host);
  ServiceRuntime rt = *host.runtime_.find("shop");
  rt.weights = {{"blue", 100}, {"green", 0}};
  rt.reverted = {"green"};
  host.runtime_.set("shop", rt);
  auto j = nlohmann::json::parse(call(api, request("GET", "/api/v1/services/shop", "r")).body);
  CHECK(j["versions"][0]["reverted"] == false);
  CHECK(j["versions"][1]["reverted"] == true);
  AdminResponse r = call(api, request("PUT", "/api/v1/services/shop/weights", "w",
                                       R"({"weights": {"green": 5}})", "*"));
  REQUIRE(r.status == 200);
  CHECK(nlohmann::json::parse(r.body)["versions"][1]["reverted"] == false);
}

TEST_CASE("admin api: a version's windows give req/s, and null figures when nothing answered") {
  ServiceStateView v;
  v.name = "shop";
  VersionView busy;
  busy.name = "blue";
  busy.effective_weight = 100;
  busy.stats_10s = WindowStatsView{250, 0.02, 1.5, 9.0};
  busy.stats_60s = WindowStatsView{0, 0, 0, 0};
  v.versions.push_back(busy);
  VersionView unwatched;
  unwatched.name = "green";
  v.versions.push_back(unwatched);
  const nlohmann::json j = v.to_json();
  const auto& w10 = j["versions"][0]["stats"]["10s"];
  CHECK(w10["requests"] == 250);
  CHECK(w10["rps"] == doctest::Approx(25.0));
  CHECK(w10["error_rate"] == doctest::Approx(0.02));
  CHECK(w10["p99_ms"] == doctest::Approx(9.0));
  const auto& w60 = j["versions"][0]["stats"]["60s"];
  CHECK(w60["requests"] == 0);
  CHECK(w60["rps"] == doctest::Approx(0.0));
  for (const char* key : {"error_rate", "p50_ms", "p99_ms"}) {
    CAPTURE(key);
    CHECK(w60[key].is_null());
  }
  CHECK(j["versions"][1]["stats"]["10s"].is_null());
}

}  // namespace
}  // namespace weir::proxy

namespace weir::proxy {
namespace {

// sha256("a"): an approve-only token.
constexpr const char* kApproveDigest =
    "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb";

TEST_CASE("admin_api: approving needs the approve scope, and nothing else does") {
  FakeHost host;
  config::AdminToken reviewer = token("reviewer", config::AdminToken::Scope::kRead, kApproveDigest);
  reviewer.approve = true;
  host.config_.admin.tokens.push_back(reviewer);
  AdminApi api(host);
  // A write token without the scope: 403 saying why.
  AdminResponse r = call(api, request("POST", "/api/v1/services/shop/rollout/approve", "w",
                                      R"({"reason": "ok"})"));
  CHECK(r.status == 403);
  CHECK(r.body.find("needs a token with the \\\"approve\\\" scope") != std::string::npos);
  CHECK(call(api, request("POST", "/api/v1/services/shop/rollout/approve", "r")).status == 403);
  CHECK(host.rollout_ops.empty());
  r = call(api, request("POST", "/api/v1/services/shop/rollout/approve", "a",
                        R"({"reason": "reviewed"})"));
  CHECK(r.status == 200);
  CHECK(host.rollout_ops == std::vector<std::string>{"shop approve"});
  // The approve scope writes nothing else.
  CHECK(call(api, request("POST", "/api/v1/services/shop/rollout/start", "a")).status == 403);
  CHECK(call(api, request("POST", "/api/v1/services/shop/rollback", "a")).status == 403);
}

TEST_CASE("admin_api: rollback to the previous release undoes the last promotion") {
  FakeHost host;
  AdminApi api(host);
  AdminResponse r = call(api, request("POST", "/api/v1/services/shop/rollback", "w",
                                      R"({"to": "previous"})"));
  CHECK(r.status == 409);
  CHECK(r.body.find("no_previous_release") != std::string::npos);
  CHECK(r.body.find("no promotion is on record") != std::string::npos);
  CHECK(call(api, request("POST", "/api/v1/services/shop/rollback", "w", R"({"to": "last"})"))
            .status == 400);
  REQUIRE(call(api, request("POST", "/api/v1/services/shop/promote", "w",
                            R"({"version": "green", "reason": "release 2"})"))
              .status == 200);
  auto j = nlohmann::json::parse(call(api, request("GET", "/api/v1/services/shop")).body);
  REQUIRE(j["history"].size() == 1);
  CHECK(j["history"][0]["version"] == "green");
  CHECK(j["history"][0]["previous"] == "blue");
  CHECK(j["history"][0]["actor"] == "ci");
  r = call(api, request("POST", "/api/v1/services/shop/rollback", "w",
                        R"({"to": "previous", "reason": "release 2 is bad"})"));
  REQUIRE(r.status == 200);
  j = nlohmann::json::parse(r.body);
  CHECK(j["stable"] == "blue");
  CHECK(j["versions"][0]["effective_weight"] == 100);
  CHECK(j["versions"][1]["effective_weight"] == 0);
  CHECK(j["history"].empty());
  const nlohmann::json& ev = host.events.back();
  CHECK(ev["action"] == "rollback_to_previous");
  CHECK(ev["detail"]["from"] == "green");
  CHECK(ev["detail"]["to"] == "blue");
  // Nothing further back.
  CHECK(call(api, request("POST", "/api/v1/services/shop/rollback", "w", R"({"to": "previous"})"))
            .status == 409);
  // A previous release no longer configured: 409 naming it.
  ServiceRuntime rt = *host.runtime_.find("shop");
  rt.record_promotion("purple", "blue", "ci", 0);
  host.runtime_.set("shop", rt);
  r = call(api, request("POST", "/api/v1/services/shop/rollback", "w", R"({"to": "previous"})"));
  CHECK(r.status == 409);
  CHECK(r.body.find("\\\"purple\\\", which is no longer configured") != std::string::npos);
}

TEST_CASE("runtime state: the promotion history is bounded and shared") {
  ServiceRuntime rt;
  for (int i = 0; i < 15; ++i) rt.record_promotion("v" + std::to_string(i), "v" + std::to_string(i + 1), "ci", i);
  CHECK(rt.history.size() == ServiceRuntime::kHistory);
  CHECK(rt.history.back()["version"] == "v15");
  rt.record_promotion("v15", "v15", "ci", 0);  // not a change
  CHECK(rt.history.size() == ServiceRuntime::kHistory);
  ServiceRuntime copy;
  std::string err;
  REQUIRE(copy.read_shared(rt.shared_json(), &err));
  CHECK(copy.history == rt.history);
}

}  // namespace
}  // namespace weir::proxy
