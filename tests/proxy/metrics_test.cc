#include "proxy/metrics.h"

#include <doctest/doctest.h>

namespace weir::proxy {
namespace {

TEST_CASE("metrics: counters are summed over workers and weights are the effective ones") {
  WorkerStats a, b;
  a.responses_by_class[2].inc(3);
  b.responses_by_class[2].inc(4);
  b.responses_by_class[5].inc();
  b.generated_by_status[WorkerStats::generated_slot(503)].inc();
  a.upstream_connect_failures.inc(2);
  a.connections_active.inc();
  b.connections_active.inc();

  config::Config c;
  config::Service s;
  s.name = "shop";
  s.stable = "blue";
  s.versions = {{"blue", 90, {}, {}}, {"green", 10, {}, {}}};
  c.services.push_back(s);
  RuntimeState rt;
  rt.reconcile(c);
  rt.find("shop")->weights = {{"green", 40}};

  std::string text = render_metrics({{&a, &b}, &c, &rt, 2, 1});
  auto has = [&](const std::string& line) {
    CAPTURE(line);
    CHECK(text.find("\n" + line + "\n") != std::string::npos);
  };
  has("# TYPE weir_requests_total counter");
  has("weir_requests_total{code_class=\"2xx\"} 7");
  has("weir_requests_total{code_class=\"5xx\"} 1");
  has("weir_local_replies_total{reason=\"unavailable\"} 1");
  has("weir_upstream_errors_total{kind=\"connect\"} 2");
  has("# TYPE weir_connections_active gauge");
  has("weir_connections_active 2");
  has("weir_version_weight{service=\"shop\",version=\"blue\"} 90");
  has("weir_version_weight{service=\"shop\",version=\"green\"} 40");
  has("weir_config_reloads_total{result=\"ok\"} 2");
  has("weir_config_reloads_total{result=\"error\"} 1");
  CHECK(text.starts_with("# HELP weir_build_info"));
}

}  // namespace
}  // namespace weir::proxy
