#include "proxy/metrics.h"

#include <doctest/doctest.h>

#include "proxy/http_util.h"

namespace weir::proxy {
namespace {

TEST_CASE("metrics: counters are summed over workers and weights are the effective ones") {
  WorkerStats a, b;
  a.responses_by_class[2].inc(3);
  b.responses_by_class[2].inc(4);
  b.responses_by_class[5].inc();
  b.generated_by_status[WorkerStats::generated_slot(503)].inc();
  a.upstream_connect_failures.inc(2);
  a.connections_active[0].inc();
  b.connections_active[0].inc();
  b.connections_active[1].inc(3);
  b.connections_active[WorkerStats::listener_slot(UINT32_MAX)].inc();

  config::Config c;
  config::Service s;
  s.name = "shop";
  s.stable = "blue";
  s.versions = {{"blue", 90, {}, {}, {}}, {"green", 10, {}, {}, {}}};
  c.services.push_back(s);
  RuntimeState rt;
  rt.reconcile(c);
  rt.find("shop")->weights = {{"green", 40}};

  VersionMetrics vm;
  vm.service = "shop";
  vm.version = "green";
  vm.responses[2] = 5;
  vm.failures[1] = 2;
  vm.latency.assign(health::Histogram::kBuckets, 0);
  vm.latency[health::Histogram::index(800)] = 3;        // 0.8 ms
  vm.latency[health::Histogram::index(40'000)] = 2;     // 40 ms
  vm.latency[health::Histogram::index(60'000'000)] = 1;  // 60 s
  MetricsSource source{{&a, &b}, &c, &rt, 2, 1, {vm}, {"public", "internal"},
                       {{"shop", "blue", "10.0.0.1:80", false, false},
                        {"shop", "green", "10.0.0.2:80", true, false},
                        {"shop", "green", "10.0.0.3:80", false, true}},
                       {{"shop", "green", "reverted", 2}}};
  std::string text = render_metrics(source);
  auto has = [&](const std::string& line) {
    CAPTURE(line);
    CHECK(text.find("\n" + line + "\n") != std::string::npos);
  };
  has("# TYPE weir_responses_total counter");
  has("weir_responses_total{code_class=\"2xx\"} 7");
  has("weir_responses_total{code_class=\"5xx\"} 1");
  has("weir_requests_total{service=\"shop\",version=\"green\",code_class=\"2xx\"} 5");
  has("weir_upstream_errors_total{service=\"shop\",version=\"green\",kind=\"reset\"} 2");
  has("# TYPE weir_request_duration_seconds histogram");
  has("weir_request_duration_seconds_bucket{service=\"shop\",version=\"green\",le=\"0.001\"} 3");
  has("weir_request_duration_seconds_bucket{service=\"shop\",version=\"green\",le=\"0.03\"} 3");
  has("weir_request_duration_seconds_bucket{service=\"shop\",version=\"green\",le=\"0.00075\"} 0");
  has("weir_request_duration_seconds_bucket{service=\"shop\",version=\"green\",le=\"0.05\"} 5");
  has("weir_request_duration_seconds_bucket{service=\"shop\",version=\"green\",le=\"10\"} 5");
  has("weir_request_duration_seconds_bucket{service=\"shop\",version=\"green\",le=\"+Inf\"} 6");
  has("weir_request_duration_seconds_count{service=\"shop\",version=\"green\"} 6");
  has("weir_local_replies_total{reason=\"unavailable\"} 1");
  has("weir_upstream_connect_failures_total 2");
  has("# TYPE weir_connections_active gauge");
  has("weir_connections_active{listener=\"public\"} 2");
  has("weir_connections_active{listener=\"internal\"} 3");
  has("weir_connections_active{listener=\"(removed)\"} 1");
  has("# TYPE weir_endpoint_healthy gauge");
  has("weir_endpoint_healthy{service=\"shop\",version=\"blue\",endpoint=\"10.0.0.1:80\"} 1");
  has("weir_endpoint_healthy{service=\"shop\",version=\"green\",endpoint=\"10.0.0.2:80\"} 0");
  has("weir_endpoint_healthy{service=\"shop\",version=\"green\",endpoint=\"10.0.0.3:80\"} 0");
  has("weir_endpoint_unhealthy{service=\"shop\",version=\"green\",endpoint=\"10.0.0.2:80\","
      "reason=\"probe\"} 1");
  has("weir_endpoint_unhealthy{service=\"shop\",version=\"green\",endpoint=\"10.0.0.2:80\","
      "reason=\"ejected\"} 0");
  has("weir_endpoint_unhealthy{service=\"shop\",version=\"green\",endpoint=\"10.0.0.3:80\","
      "reason=\"ejected\"} 1");
  has("weir_guard_state{service=\"shop\",version=\"green\",state=\"reverted\"} 1");
  for (const char* st : {"pass", "hold", "fail", "disabled"})
    has(std::string("weir_guard_state{service=\"shop\",version=\"green\",state=\"") + st +
        "\"} 0");
  has("# TYPE weir_reverts_total counter");
  has("weir_reverts_total{service=\"shop\",version=\"green\"} 2");
  has("weir_version_weight{service=\"shop\",version=\"blue\"} 90");
  has("weir_version_weight{service=\"shop\",version=\"green\"} 40");
  has("weir_config_reloads_total{result=\"ok\"} 2");
  has("weir_config_reloads_total{result=\"error\"} 1");
  CHECK(text.starts_with("# HELP weir_build_info"));
}

TEST_CASE("metrics: sub-millisecond buckets, the head histogram, TLS, HTTP/2, bytes, process") {
  WorkerStats a, b;
  a.tls_handshakes.inc(4);
  b.tls_handshake_failures[2].inc(3);  // protocol
  a.tls_handshake_failures[0].inc();   // timeout
  b.h2_connections.inc(2);
  b.h2_streams.inc(9);
  a.h2_abuse_closes.inc();
  config::Config c;
  RuntimeState rt;
  VersionMetrics vm;
  vm.service = "shop";
  vm.version = "blue";
  vm.latency.assign(health::Histogram::kBuckets, 0);
  vm.head_latency.assign(health::Histogram::kBuckets, 0);
  vm.latency[health::Histogram::index(53)] = 4;  // a fast service: 53 us
  vm.latency[health::Histogram::index(120)] = 1;
  vm.head_latency[health::Histogram::index(45)] = 5;
  vm.request_bytes = 100;
  vm.response_bytes = 2500;
  MetricsSource source{{&a, &b}, &c, &rt, 1, 0, {vm}};
  source.last_reload_ok_s = 1765000000.5;
  std::string text = render_metrics(source);
  auto has = [&](const std::string& line) {
    CAPTURE(line);
    CHECK(text.find("\n" + line + "\n") != std::string::npos);
  };
  const std::string sv = "service=\"shop\",version=\"blue\"";
  has("weir_request_duration_seconds_bucket{" + sv + ",le=\"5e-05\"} 0");
  has("weir_request_duration_seconds_bucket{" + sv + ",le=\"0.0001\"} 4");
  has("weir_request_duration_seconds_bucket{" + sv + ",le=\"0.00015\"} 5");
  has("# TYPE weir_response_head_duration_seconds histogram");
  has("weir_response_head_duration_seconds_bucket{" + sv + ",le=\"5e-05\"} 5");
  has("weir_response_head_duration_seconds_count{" + sv + "} 5");
  has("weir_request_body_bytes_total{" + sv + "} 100");
  has("weir_response_body_bytes_total{" + sv + "} 2500");
  has("weir_tls_handshakes_total 4");
  has("weir_tls_handshake_failures_total{reason=\"protocol\"} 3");
  has("weir_tls_handshake_failures_total{reason=\"timeout\"} 1");
  has("weir_tls_handshake_failures_total{reason=\"peer_closed\"} 0");
  has("weir_http2_connections_total 2");
  has("weir_http2_streams_total 9");
  has("weir_http2_abuse_closes_total 1");
  has("weir_config_last_reload_success_timestamp_seconds 1765000000.5");
  has("# TYPE process_cpu_seconds_total counter");
  has("# TYPE process_resident_memory_bytes gauge");
  has("# TYPE process_start_time_seconds gauge");
}

TEST_CASE("metrics: process figures from /proc") {
  ProcessMetrics p = read_process_metrics();
  CHECK(p.resident_bytes > 1 << 20);
  CHECK(p.virtual_bytes >= p.resident_bytes);
  CHECK(p.open_fds >= 3);  // stdin, stdout, stderr at least
  CHECK(p.max_fds >= p.open_fds);
  CHECK(p.cpu_seconds >= 0);
  const double now = static_cast<double>(unix_time_ms()) / 1000.0;
  CHECK(p.start_time_seconds > now - 3600);
  CHECK(p.start_time_seconds <= now + 1);
}

TEST_CASE("metrics: mirror copies by result, and those under way") {
  config::Config c;
  RuntimeState rt;
  MetricsSource src;
  src.config = &c;
  src.runtime = &rt;
  MirrorMetrics m;
  m.service = "shop";
  m.version = "green";
  m.totals.sent = 10;
  m.totals.responses[2] = 6;
  m.totals.responses[5] = 1;
  m.totals.failures[static_cast<size_t>(health::FailureKind::kTimeout)] = 2;
  m.totals.skipped_body = 3;
  m.totals.dropped = 4;
  m.totals.cancelled = 5;
  src.mirrors.push_back(m);
  std::string text = render_metrics(src);
  auto has = [&](const std::string& line) {
    CAPTURE(line);
    CHECK(text.find("\n" + line + "\n") != std::string::npos);
  };
  const std::string l = "{service=\"shop\",version=\"green\",result=";
  has("# TYPE weir_mirror_requests_total counter");
  has("weir_mirror_requests_total" + l + "\"2xx\"} 6");
  has("weir_mirror_requests_total" + l + "\"5xx\"} 1");
  has("weir_mirror_requests_total" + l + "\"timeout\"} 2");
  has("weir_mirror_requests_total" + l + "\"connect\"} 0");
  has("weir_mirror_requests_total" + l + "\"skipped_body\"} 3");
  has("weir_mirror_requests_total" + l + "\"dropped\"} 4");
  has("weir_mirror_requests_total" + l + "\"no_endpoint\"} 0");
  has("weir_mirror_requests_total" + l + "\"cancelled\"} 5");
  has("# TYPE weir_mirror_in_flight gauge");
  has("weir_mirror_in_flight{service=\"shop\",version=\"green\"} 1");  // 10 sent, 9 ended
}

}  // namespace
}  // namespace weir::proxy
