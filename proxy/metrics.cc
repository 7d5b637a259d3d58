#include "proxy/metrics.h"

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>

#include "health/histogram.h"
#include "proxy/version.h"

namespace weir::proxy {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;


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
    build.metric.push_back(sample(1, MetricType::Gauge, {{"version", kWeirVersion}}));

    // code_class "none": the client went away before any status was sent.
    static const char* const kClasses[6] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
    auto& responses = family("weir_responses_total",
                             "Responses sent to clients (including weir's own), by status class",
                             MetricType::Counter);
    for (int c = 0; c < 6; ++c) {
      responses.metric.push_back(
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
    family("weir_upstream_connect_failures_total", "Upstream connects that failed",
           MetricType::Counter)
        .metric.push_back(sample(
            sum([](const WorkerStats& w) -> const Counter& { return w.upstream_connect_failures; }),
            MetricType::Counter));
    family("weir_upstream_tls_handshake_failures_total",
           "Upstream TLS handshakes that failed (counted in connect failures too)",
           MetricType::Counter)
        .metric.push_back(sample(
            sum([](const WorkerStats& w) -> const Counter& { return w.upstream_tls_failures; }),
            MetricType::Counter));
    add_version_families(out);
    add_mirror_families(out);
    add_release_families(out);
    add_protocol_families(out);
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
    auto& active = family("weir_connections_active", "Open client connections, by listener",
                          MetricType::Gauge);
    constexpr uint32_t kRemoved = WorkerStats::kListenerSlots - 1;
    auto active_in = [&](uint32_t slot) {
      return sum([slot](const WorkerStats& w) -> const Counter& {
        return w.connections_active[slot];
      });
    };
    for (uint32_t i = 0; i < s_.listeners.size() && i < kRemoved; ++i)
      active.metric.push_back(
          sample(active_in(i), MetricType::Gauge, {{"listener", s_.listeners[i]}}));
    // Connections still finishing on a listener that a reload removed.
    if (double removed = active_in(kRemoved); removed > 0)
      active.metric.push_back(sample(removed, MetricType::Gauge, {{"listener", "(removed)"}}));
    add_health_families(out);

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
    if (s_.fleet.present) {
      const auto& f = s_.fleet;
      family("weir_fleet_store_up", "1 while the fleet's store (etcd) answers", MetricType::Gauge)
          .metric.push_back(sample(f.store_up ? 1 : 0, MetricType::Gauge, {}));
      family("weir_fleet_applied_revision", "The store revision this replica has applied",
             MetricType::Gauge)
          .metric.push_back(
              sample(static_cast<double>(f.applied_revision), MetricType::Gauge, {}));
      family("weir_fleet_is_leader", "1 while this replica drives the fleet's timed work",
             MetricType::Gauge)
          .metric.push_back(sample(f.leader ? 1 : 0, MetricType::Gauge, {}));
      family("weir_fleet_replicas", "Replicas of the fleet this one knows of", MetricType::Gauge)
          .metric.push_back(sample(static_cast<double>(f.replicas), MetricType::Gauge, {}));
    }
    family("weir_config_last_reload_success_timestamp_seconds",
           "Unix time of the last configuration load that took effect (start or reload)",
           MetricType::Gauge)
        .metric.push_back(sample(s_.last_reload_ok_s, MetricType::Gauge));
    add_process_families(out);
    return out;
  }

 private:
  // Endpoint health and the guard's state, from the control thread's view.
  void add_health_families(std::vector<MetricFamily>& out) const {
    MetricFamily healthy{"weir_endpoint_healthy",
                         "1 when the endpoint may take traffic: its active check passes (or "
                         "there is none) and outlier detection has not ejected it",
                         MetricType::Gauge, {}};
    MetricFamily unhealthy{"weir_endpoint_unhealthy",
                           "1 for each reason an endpoint is not healthy: probe (failing its "
                           "active check) or ejected (outlier detection)",
                           MetricType::Gauge, {}};
    for (const EndpointMetrics& e : s_.endpoints) {
      std::vector<ClientMetric::Label> labels = {
          {"service", e.service}, {"version", e.version}, {"endpoint", e.endpoint}};
      healthy.metric.push_back(
          sample(e.probe_failing || e.ejected ? 0 : 1, MetricType::Gauge, labels));
      for (auto [reason, on] : {std::pair{"probe", e.probe_failing}, {"ejected", e.ejected}}) {
        auto l = labels;
        l.push_back({"reason", reason});
        unhealthy.metric.push_back(sample(on ? 1 : 0, MetricType::Gauge, std::move(l)));
      }
    }
    MetricFamily state{"weir_guard_state",
                       "The guard's state for each watched version, one-hot over pass, hold, "
                       "fail, reverted and disabled",
                       MetricType::Gauge, {}};
    MetricFamily reverts{"weir_reverts_total", "Guard reverts of each version since start",
                         MetricType::Counter, {}};
    MetricFamily dry{"weir_guard_dry_run_reverts_total",
                     "Reverts a dry-run guard rule would have made, by version, since start "
                     "(traffic was not moved)",
                     MetricType::Counter, {}};
    for (const GuardMetrics& g : s_.guards) {
      std::vector<ClientMetric::Label> labels = {{"service", g.service}, {"version", g.version}};
      for (const char* st : kGuardStates) {
        auto l = labels;
        l.push_back({"state", st});
        state.metric.push_back(sample(g.state == st ? 1 : 0, MetricType::Gauge, std::move(l)));
      }
      reverts.metric.push_back(
          sample(static_cast<double>(g.reverts), MetricType::Counter, labels));
      dry.metric.push_back(
          sample(static_cast<double>(g.dry_run_reverts), MetricType::Counter, labels));
    }
    MetricFamily rollout{"weir_rollout_state",
                         "Each configured rollout's state, one-hot over idle, running, waiting "
                         "(held at a gate), paused, promoted and aborted",
                         MetricType::Gauge, {}};
    MetricFamily waiting{"weir_rollout_waiting_gates",
                         "How many gates (holds) a waiting rollout waits for; 0 otherwise",
                         MetricType::Gauge, {}};
    for (const RolloutMetrics& r : s_.rollouts) {
      for (const char* st : kRolloutStates) {
        rollout.metric.push_back(sample(r.state == st ? 1 : 0, MetricType::Gauge,
                                        {{"service", r.service}, {"state", st}}));
      }
      waiting.metric.push_back(sample(static_cast<double>(r.waiting_for), MetricType::Gauge,
                                      {{"service", r.service}}));
    }
    out.push_back(std::move(healthy));
    out.push_back(std::move(unhealthy));
    out.push_back(std::move(state));
    out.push_back(std::move(reverts));
    out.push_back(std::move(dry));
    if (!s_.rollouts.empty()) {
      out.push_back(std::move(rollout));
      out.push_back(std::move(waiting));
    }
  }

  // Per service and version: requests by status class, upstream errors by kind, and the
  // request duration histogram folded from the log-linear buckets into fixed bounds.
  void add_version_families(std::vector<MetricFamily>& out) const {
    static const char* const kClasses[6] = {"cut", "1xx", "2xx", "3xx", "4xx", "5xx"};
    static const char* const kKinds[3] = {"connect", "reset", "timeout"};
    MetricFamily requests{"weir_requests_total",
                          "Requests routed to each version, by response status class "
                          "(cut: the response broke off after its head)",
                          MetricType::Counter, {}};
    MetricFamily errors{"weir_upstream_errors_total",
                        "Failed upstream attempts of each version, by kind", MetricType::Counter,
                        {}};
    MetricFamily duration{"weir_request_duration_seconds",
                          "Time from routing to the end of the response, per version",
                          MetricType::Histogram, {}};
    MetricFamily head{"weir_response_head_duration_seconds",
                      "Time from routing to the upstream's response head, per version",
                      MetricType::Histogram, {}};
    MetricFamily bytes_in{"weir_request_body_bytes_total",
                          "Request body bytes sent to each version", MetricType::Counter, {}};
    MetricFamily bytes_out{"weir_response_body_bytes_total",
                           "Response body bytes received from each version", MetricType::Counter,
                           {}};
    for (const VersionMetrics& v : s_.versions) {
      std::vector<ClientMetric::Label> labels = {{"service", v.service}, {"version", v.version}};
      auto with = [&](const char* name, const char* value) {
        auto l = labels;
        l.push_back({name, value});
        return l;
      };
      for (int c = 0; c < 6; ++c)
        requests.metric.push_back(sample(static_cast<double>(v.responses[c]),
                                         MetricType::Counter, with("code_class", kClasses[c])));
      for (int k = 0; k < 3; ++k)
        errors.metric.push_back(sample(static_cast<double>(v.failures[k]), MetricType::Counter,
                                       with("kind", kKinds[k])));
      duration.metric.push_back(histogram(v.latency, labels));
      head.metric.push_back(histogram(v.head_latency, labels));
      bytes_in.metric.push_back(
          sample(static_cast<double>(v.request_bytes), MetricType::Counter, labels));
      bytes_out.metric.push_back(
          sample(static_cast<double>(v.response_bytes), MetricType::Counter, labels));
    }
    out.push_back(std::move(requests));
    out.push_back(std::move(errors));
    out.push_back(std::move(duration));
    out.push_back(std::move(head));
    out.push_back(std::move(bytes_in));
    out.push_back(std::move(bytes_out));
  }

  // A Prometheus histogram of log-linear µs counts, at Histogram::kExportBoundsUs.
  static ClientMetric histogram(const std::vector<uint64_t>& counts,
                                const std::vector<ClientMetric::Label>& labels) {
    using health::Histogram;
    constexpr size_t kBounds = std::size(Histogram::kExportBoundsUs);
    ClientMetric h;
    h.label = labels;
    std::vector<uint64_t> le(kBounds + 1, 0);
    double sum_us = 0;
    Histogram::cumulative(counts, Histogram::kExportBoundsUs, le, &sum_us);
    for (size_t b = 0; b <= kBounds; ++b) {
      double bound = b < kBounds ? static_cast<double>(Histogram::kExportBoundsUs[b]) / 1e6
                                 : std::numeric_limits<double>::infinity();
      h.histogram.bucket.push_back({le[b], bound});
    }
    h.histogram.sample_count = le[kBounds];
    h.histogram.sample_sum = sum_us / 1e6;
    return h;
  }

  // Client-side TLS and HTTP/2: handshakes, their failures, streams and abuse closes.
  void add_protocol_families(std::vector<MetricFamily>& out) const {
    auto total = [&](auto field) {
      uint64_t n = 0;
      for (const WorkerStats* w : s_.workers) n += field(*w).get();
      return sample(static_cast<double>(n), MetricType::Counter);
    };
    MetricFamily handshakes{"weir_tls_handshakes_total",
                            "TLS handshakes with clients that completed", MetricType::Counter, {}};
    handshakes.metric.push_back(
        total([](const WorkerStats& w) -> const Counter& { return w.tls_handshakes; }));
    MetricFamily failures{"weir_tls_handshake_failures_total",
                          "TLS handshakes with clients that failed, by reason (timeout, "
                          "peer_closed, protocol, other)",
                          MetricType::Counter, {}};
    static const char* const kReasons[4] = {"timeout", "peer_closed", "protocol", "other"};
    for (int r = 0; r < 4; ++r) {
      ClientMetric m = total(
          [r](const WorkerStats& w) -> const Counter& { return w.tls_handshake_failures[r]; });
      m.label = {{"reason", kReasons[r]}};
      failures.metric.push_back(std::move(m));
    }
    MetricFamily h2_conns{"weir_http2_connections_total", "HTTP/2 client connections",
                          MetricType::Counter, {}};
    h2_conns.metric.push_back(
        total([](const WorkerStats& w) -> const Counter& { return w.h2_connections; }));
    MetricFamily h2_streams{"weir_http2_streams_total", "HTTP/2 request streams opened by clients",
                            MetricType::Counter, {}};
    h2_streams.metric.push_back(
        total([](const WorkerStats& w) -> const Counter& { return w.h2_streams; }));
    MetricFamily abuse{"weir_http2_abuse_closes_total",
                       "HTTP/2 client connections weir closed for a protocol error, a flood or "
                       "rapid reset",
                       MetricType::Counter, {}};
    abuse.metric.push_back(
        total([](const WorkerStats& w) -> const Counter& { return w.h2_abuse_closes; }));
    for (MetricFamily* f : {&handshakes, &failures, &h2_conns, &h2_streams, &abuse})
      out.push_back(std::move(*f));
  }

  void add_process_families(std::vector<MetricFamily>& out) const {
    const ProcessMetrics p = read_process_metrics();
    auto one = [&](const char* name, const char* help, MetricType type, double v) {
      MetricFamily f{name, help, type, {}};
      f.metric.push_back(sample(v, type));
      out.push_back(std::move(f));
    };
    one("process_cpu_seconds_total", "Total user and system CPU time spent in seconds",
        MetricType::Counter, p.cpu_seconds);
    one("process_resident_memory_bytes", "Resident memory size in bytes", MetricType::Gauge,
        p.resident_bytes);
    one("process_virtual_memory_bytes", "Virtual memory size in bytes", MetricType::Gauge,
        p.virtual_bytes);
    one("process_open_fds", "Number of open file descriptors", MetricType::Gauge, p.open_fds);
    one("process_max_fds", "Maximum number of open file descriptors", MetricType::Gauge,
        p.max_fds);
    one("process_start_time_seconds", "Start time of the process since the Unix epoch in seconds",
        MetricType::Gauge, p.start_time_seconds);
  }

  // Shadow copies per mirror target: how each selected copy ended (a response class, a
  // failure kind, or why it was never sent), and how many are under way.
  void add_mirror_families(std::vector<MetricFamily>& out) const {
    MetricFamily results{"weir_mirror_requests_total",
                         "Mirrored request copies per target version, by result: a response "
                         "class, a failure (connect, reset, timeout), or why the copy was not "
                         "sent (skipped_body, dropped, no_endpoint, cancelled)",
                         MetricType::Counter, {}};
    MetricFamily in_flight{"weir_mirror_in_flight", "Mirrored request copies under way",
                           MetricType::Gauge, {}};
    static const char* const kClasses[6] = {"", "1xx", "2xx", "3xx", "4xx", "5xx"};
    static const char* const kKinds[3] = {"connect", "reset", "timeout"};
    for (const MirrorMetrics& m : s_.mirrors) {
      const health::MirrorTotals& t = m.totals;
      auto add = [&](const char* result, uint64_t n) {
        results.metric.push_back(sample(static_cast<double>(n), MetricType::Counter,
                                        {{"service", m.service},
                                         {"version", m.version},
                                         {"result", result}}));
      };
      for (int c = 1; c < 6; ++c) add(kClasses[c], t.responses[c]);
      for (int k = 0; k < 3; ++k) add(kKinds[k], t.failures[k]);
      add("skipped_body", t.skipped_body);
      add("dropped", t.dropped);
      add("no_endpoint", t.no_endpoint);
      add("cancelled", t.cancelled);
      in_flight.metric.push_back(sample(static_cast<double>(t.in_flight()), MetricType::Gauge,
                                        {{"service", m.service}, {"version", m.version}}));
    }
    out.push_back(std::move(results));
    out.push_back(std::move(in_flight));
  }

  // KPI queries and hooks of the release process.
  void add_release_families(std::vector<MetricFamily>& out) const {
    MetricFamily sent{"weir_kpi_queries_total", "Prometheus KPI queries sent per guard query",
                      MetricType::Counter, {}};
    MetricFamily errors{"weir_kpi_query_errors_total",
                        "KPI queries that errored or timed out (each a hold)",
                        MetricType::Counter, {}};
    for (const KpiQueryMetrics& q : s_.kpi_queries) {
      const std::vector<ClientMetric::Label> labels = {{"service", q.service},
                                                        {"query", q.query}};
      sent.metric.push_back(sample(static_cast<double>(q.sent), MetricType::Counter, labels));
      errors.metric.push_back(sample(static_cast<double>(q.errors), MetricType::Counter, labels));
    }
    out.push_back(std::move(sent));
    out.push_back(std::move(errors));
    MetricFamily calls{"weir_hook_calls_total", "Hook call attempts, and calls that failed",
                       MetricType::Counter, {}};
    calls.metric.push_back(sample(static_cast<double>(s_.hooks.calls), MetricType::Counter,
                                  {{"result", "attempt"}}));
    calls.metric.push_back(sample(static_cast<double>(s_.hooks.failures), MetricType::Counter,
                                  {{"result", "failed"}}));
    calls.metric.push_back(sample(static_cast<double>(s_.hooks.dropped), MetricType::Counter,
                                  {{"result", "dropped"}}));
    out.push_back(std::move(calls));
  }

  const MetricsSource& s_;
};

}  // namespace

ProcessMetrics read_process_metrics() {
  ProcessMetrics p;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  std::ifstream stat_file("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
  // The command name (field 2) is in parentheses and may hold spaces: count fields after ')'.
  if (size_t paren = stat.rfind(')'); paren != std::string::npos && ticks > 0) {
    std::istringstream in(stat.substr(paren + 2));
    std::vector<std::string> f;  // f[0] is field 3 (state)
    for (std::string w; in >> w;) f.push_back(w);
    if (f.size() > 21) {
      p.cpu_seconds = (std::stod(f[11]) + std::stod(f[12])) / ticks;  // utime + stime
      p.virtual_bytes = std::stod(f[20]);
      p.resident_bytes = std::stod(f[21]) * page;
      double boot = 0;
      std::ifstream proc_stat("/proc/stat");
      for (std::string line; std::getline(proc_stat, line);) {
        if (line.rfind("btime ", 0) == 0) boot = std::stod(line.substr(6));
      }
      p.start_time_seconds = boot + std::stod(f[19]) / ticks;
    }
  }
  if (DIR* d = opendir("/proc/self/fd")) {
    int n = 0;
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') ++n;
    }
    closedir(d);
    p.open_fds = n - 1;  // the directory stream's own descriptor
  }
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    p.max_fds = static_cast<double>(rl.rlim_cur);
  }
  return p;
}

std::string render_metrics(const MetricsSource& source) {
  WeirCollector collector(source);
  return prometheus::TextSerializer().Serialize(collector.Collect());
}

}  // namespace weir::proxy
