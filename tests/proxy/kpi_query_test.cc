#include "proxy/kpi_query.h"

#include <doctest/doctest.h>

#include <atomic>
#include <mutex>

#include "tests/proxy/fake_http_server.h"

namespace weir::proxy {
namespace {

using test::FakeHttpServer;
using test::ServerConn;

config::KpiQuery query(std::optional<double> max, std::optional<double> min = std::nullopt) {
  config::KpiQuery q;
  q.name = "checkout";
  q.query = "x";
  q.max = max;
  q.min = min;
  return q;
}

std::string vector_answer(const std::vector<std::string>& values) {
  std::string r;
  for (const auto& v : values)
    r += std::string(r.empty() ? "" : ",") + "{\"metric\":{},\"value\":[1.5,\"" + v + "\"]}";
  return "{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[" + r + "]}}";
}

}  // namespace

TEST_CASE("kpi_query: placeholders expand; the query is percent-encoded") {
  KpiVars v{"shop", "canary", "blue", 30};
  CHECK(expand_query("rate(x{service=\"{{service}}\",version=\"{{version}}\"}[{{window}}]) / "
                     "rate(x{version=\"{{stable}}\"}[{{window}}])",
                     v) ==
        "rate(x{service=\"shop\",version=\"canary\"}[30s]) / rate(x{version=\"blue\"}[30s])");
  CHECK(expand_query("no placeholders", v) == "no placeholders");
  CHECK(expand_query("open {{version", v) == "open {{version");
  CHECK(percent_encode("sum(x{a=\"b c\"})+1") == "sum%28x%7Ba%3D%22b%20c%22%7D%29%2B1");
  CHECK(percent_encode("Az09-._~") == "Az09-._~");
}

TEST_CASE("kpi_query: answers: vector, scalar, no data, NaN, errors") {
  KpiAnswer a = parse_answer(200, vector_answer({"0.5", "2"}));
  CHECK(a.kind == KpiAnswer::Kind::kValue);
  CHECK(a.low == 0.5);
  CHECK(a.high == 2);
  CHECK(a.series == 2);
  a = parse_answer(200, R"({"status":"success","data":{"resultType":"scalar","result":[1,"7"]}})");
  CHECK(a.kind == KpiAnswer::Kind::kValue);
  CHECK(a.high == 7);
  CHECK(parse_answer(200, vector_answer({})).kind == KpiAnswer::Kind::kNoData);
  CHECK(parse_answer(200, vector_answer({"NaN"})).kind == KpiAnswer::Kind::kNoData);
  a = parse_answer(400, R"({"status":"error","errorType":"bad_data","error":"parse error"})");
  CHECK(a.kind == KpiAnswer::Kind::kError);
  CHECK(a.error == "HTTP 400: bad_data: parse error");
  CHECK(parse_answer(502, "<html>").kind == KpiAnswer::Kind::kError);
  a = parse_answer(200, R"({"status":"success","data":{"resultType":"matrix","result":[]}})");
  CHECK(a.kind == KpiAnswer::Kind::kError);
  CHECK(a.error.find("not a vector or scalar") != std::string::npos);
  CHECK(parse_answer(200, vector_answer({"abc"})).kind == KpiAnswer::Kind::kError);
}

TEST_CASE("kpi_query: judging: max against the highest, min against the lowest, no data") {
  using V = health::Verdict;
  KpiAnswer a = parse_answer(200, vector_answer({"0.5", "2"}));
  health::ExternalCheck c = judge(query(1.0), a);
  CHECK(c.verdict == V::kFail);
  CHECK(c.name == "query checkout");
  CHECK(c.reason == "value 2 above max 1");
  CHECK(judge(query(3.0), a).verdict == V::kPass);
  CHECK(judge(query(3.0), a).reason == "value 2 within max 3");
  CHECK(judge(query(std::nullopt, 1.0), a).reason == "value 0.5 below min 1");
  KpiAnswer none = parse_answer(200, vector_answer({}));
  config::KpiQuery q = query(1.0);
  CHECK(judge(q, none).verdict == V::kHold);
  q.on_no_data = config::KpiQuery::NoData::kFail;
  CHECK(judge(q, none).verdict == V::kFail);
  CHECK(judge(q, none).reason == "no data (on_no_data = fail)");
  q.on_no_data = config::KpiQuery::NoData::kPass;
  CHECK(judge(q, none).verdict == V::kPass);
  // An error is a hold whatever on_no_data says.
  CHECK(judge(q, parse_answer(500, "x")).verdict == V::kHold);
}

TEST_CASE("kpi_query: KpiRunner queries Prometheus' API, holds until it answers, counts errors") {
  std::mutex mu;
  std::vector<std::string> paths;
  std::atomic<int> mode{0};  // 0: value 5, 1: error 503, 2: silent (timeout)
  FakeHttpServer server([&](ServerConn& c, int) {
    while (auto r = c.read_request()) {
      {
        std::lock_guard<std::mutex> lock(mu);
        paths.push_back(r->path);
      }
      if (mode == 0) {
        c.respond(200, vector_answer({"5"}));
      } else if (mode == 1) {
        c.respond(503, "{\"status\":\"error\",\"errorType\":\"unavailable\",\"error\":\"busy\"}");
      } else {
        c.wait_closed(3000);
        return;
      }
    }
  });
  uv_loop_t loop;
  uv_loop_init(&loop);
  {
    KpiRunner runner(&loop);
    config::Config cfg;
    config::Service svc;
    svc.name = "shop";
    svc.guard.interval_ms = 100;
    config::KpiQuery q = query(1.0);
    q.query = "sum(fail{version=\"{{version}}\"})";
    q.target.url = server.url("/prom/");
    q.target.timeout_ms = 300;
    svc.guard.queries.push_back(q);
    cfg.services.push_back(svc);
    runner.configure(cfg);
    KpiVars vars{"shop", "canary", "blue", 30};
    uint64_t now = 1000;
    auto checks = runner.checks(svc, vars, now);
    REQUIRE(checks.size() == 1);
    CHECK(checks[0].verdict == health::Verdict::kHold);
    CHECK(checks[0].reason == "no answer yet");
    REQUIRE(test::run_until(&loop, [&] {
      return runner.checks(svc, vars, now).at(0).verdict == health::Verdict::kFail;
    }));
    CHECK(runner.checks(svc, vars, now)[0].reason == "value 5 above max 1");
    {
      std::lock_guard<std::mutex> lock(mu);
      REQUIRE_FALSE(paths.empty());
      CHECK(paths[0] == "/prom/api/v1/query?query=sum%28fail%7Bversion%3D%22canary%22%7D%29");
    }
    auto ex = runner.explain("shop");
    REQUIRE(ex.size() == 1);
    CHECK(ex[0]["query"] == "sum(fail{version=\"canary\"})");
    CHECK(ex[0]["value"] == 5.0);
    CHECK(ex[0]["status"] == 200);
    CHECK(ex[0]["answer"].get<std::string>().find("\"status\":\"success\"") != std::string::npos);
    // An error answer holds and is counted.
    mode = 1;
    now += 100;
    REQUIRE(test::run_until(&loop, [&] {
      return runner.checks(svc, vars, now).at(0).verdict == health::Verdict::kHold;
    }));
    CHECK(runner.checks(svc, vars, now)[0].reason.find("busy") != std::string::npos);
    CHECK(runner.figures().at(0).errors == 1);
    // A timeout holds too.
    mode = 2;
    now += 100;
    runner.checks(svc, vars, now);
    REQUIRE(test::run_until(&loop, [&] { return runner.figures().at(0).errors == 2; }));
    CHECK(runner.checks(svc, vars, now)[0].reason.find("timeout") != std::string::npos);
    runner.close();
  }
  test::drain(&loop);
  uv_loop_close(&loop);
}

}  // namespace weir::proxy
