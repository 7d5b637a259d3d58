#include "proxy/metrics.h"

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

namespace weir::proxy {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

constexpr const char* kVersion = "0.1.0";

ClientMetric sample(double value, MetricType type, std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric m;
  m.label = std::move(labels);
  if (type == MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  return m;
}

class WeirCollector : public prometheus::Collectable {
 public:
  explicit WeirCollector(const MetricsSource& s) : s_(s) {}

  std::vector<MetricFamily> Collect() const override {
    std::vector<MetricFamily> out;
    auto family = [&](const char* name, const char* help, MetricType type) -> MetricFamily& {
      out.push_back(MetricFamily{name, help, type, {}});
      return out.back();
    };
    auto sum = [&](auto field) {
      uint64_t total = 0;
      for (const WorkerStats* w : s_.workers) total += field(*w).get();
      return static_cast<double>(total);
    };

    auto& build = family("weir_build_info", "weir's version", MetricType::Gauge);
    build.metric.push_back(sample(1, MetricType::Gauge, {{"version", kVersion}}));

    // code_class "none": the client went away before any status was sent.
    static const char* const kClasses[6] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
    auto& requests = family("weir_requests_total",
                            "Responses sent to clients (including weir's own), by status class",
                            MetricType::Counter);
    for (int c = 0; c < 6; ++c) {
      requests.metric.push_back(
          sample(sum([c](const WorkerStats& w) -> const Counter& { return w.responses_by_class[c]; }),
                 MetricType::Counter, {{"code_class", kClasses[c]}}));
    }
    static const char* const kGenerated[6] = {"bad_request",  "timeout",     "limit",
                                              "bad_gateway",  "unavailable", "gateway_timeout"};
    auto& local = family("weir_local_replies_total",
                         "Error responses weir generated itself, by reason", MetricType::Counter);
    for (int i = 0; i < 6; ++i) {
      local.metric.push_back(
          sample(sum([i](const WorkerStats& w) -> const Counter& { return w.generated_by_status[i]; }),
                 MetricType::Counter, {{"reason", kGenerated[i]}}));
    }
    auto& upstream_errors = family("weir_upstream_errors_total", "Failed upstream attempts, by kind",
                                   MetricType::Counter);
    upstream_errors.metric.push_back(sample(
        sum([](const WorkerStats& w) -> const Counter& { return w.upstream_connect_failures; }),
        MetricType::Counter, {{"kind", "connect"}}));
    auto& upstream_conns = family("weir_upstream_connections_total",
                                  "Upstream connections used for a request, new or reused",
                                  MetricType::Counter);
    upstream_conns.metric.push_back(
        sample(sum([](const WorkerStats& w) -> const Counter& { return w.upstream_connects; }),
               MetricType::Counter, {{"reuse", "new"}}));
    upstream_conns.metric.push_back(
        sample(sum([](const WorkerStats& w) -> const Counter& { return w.upstream_reused; }),
               MetricType::Counter, {{"reuse", "reused"}}));
    family("weir_upstream_retries_total", "Requests retried on another endpoint",
           MetricType::Counter)
        .metric.push_back(
            sample(sum([](const WorkerStats& w) -> const Counter& { return w.upstream_retries; }),
                   MetricType::Counter));
    family("weir_connections_accepted_total", "Client connections accepted", MetricType::Counter)
        .metric.push_back(sample(
            sum([](const WorkerStats& w) -> const Counter& { return w.connections_accepted; }),
            MetricType::Counter));
    family("weir_connections_active", "Open client connections", MetricType::Gauge)
        .metric.push_back(sample(
            sum([](const WorkerStats& w) -> const Counter& { return w.connections_active; }),
            MetricType::Gauge));

    auto& weights = family("weir_version_weight", "Effective weight of each version",
                           MetricType::Gauge);
    for (const auto& svc : s_.config->services) {
      for (const auto& v : svc.versions) {
        weights.metric.push_back(sample(s_.runtime->weight(svc, v), MetricType::Gauge,
                                        {{"service", svc.name}, {"version", v.name}}));
      }
    }
    auto& reloads = family("weir_config_reloads_total", "Configuration reloads, by result",
                           MetricType::Counter);
    reloads.metric.push_back(
        sample(static_cast<double>(s_.reloads_ok), MetricType::Counter, {{"result", "ok"}}));
    reloads.metric.push_back(
        sample(static_cast<double>(s_.reloads_failed), MetricType::Counter, {{"result", "error"}}));
    return out;
  }

 private:
  const MetricsSource& s_;
};

}  // namespace

std::string render_metrics(const MetricsSource& source) {
  WeirCollector collector(source);
  return prometheus::TextSerializer().Serialize(collector.Collect());
}

}  // namespace weir::proxy
