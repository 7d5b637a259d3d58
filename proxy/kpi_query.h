// KPI checks the proxy cannot see ([[service.guard.query]]): PromQL sent to a Prometheus
// server's /api/v1/query for each judged version, its answer judged against max / min, the
// result handed to the guard as an external check (health::ExternalCheck). A query runs at its
// interval for every version the guard asks about; the guard judges the latest answer at each of
// its evaluations. An error, a timeout or no answer yet is a hold (and counted), never a pass.
// Owned by Server; control thread only.
#pragma once

#include <uv.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "config/config.h"
#include "health/guard.h"
#include "proxy/outgoing.h"

namespace weir::proxy {

// The placeholders of a query: {{service}}, {{version}}, {{stable}}, {{window}} ("30s").
struct KpiVars {
  std::string service, version, stable;
  uint32_t window_s = 30;
};
std::string expand_query(std::string_view query, const KpiVars& vars);

// "a b" → "a%20b": RFC 3986 unreserved characters kept, every other byte %XX.
std::string percent_encode(std::string_view s);

// What a Prometheus /api/v1/query answer says.
struct KpiAnswer {
  enum class Kind : uint8_t { kValue, kNoData, kError };
  Kind kind = Kind::kError;
  double low = 0, high = 0;  // the lowest and highest value of the series returned
  size_t series = 0;
  std::string error;  // kError: why (status, Prometheus' error, malformed answer)
};
// From the HTTP status and body: a vector or scalar result; NaN values count as no data.
KpiAnswer parse_answer(int status, std::string_view body);

// The verdict on one answer: the highest value against max, the lowest against min; no data as
// on_no_data says; an error holds.
health::ExternalCheck judge(const config::KpiQuery& q, const KpiAnswer& a);

class KpiRunner {
 public:
  explicit KpiRunner(uv_loop_t* loop) : clients_(loop) {}
  KpiRunner(const KpiRunner&) = delete;
  KpiRunner& operator=(const KpiRunner&) = delete;

  // Takes the running configuration; results of queries no longer configured go.
  void configure(const config::Config& config);
  // The checks of `svc`'s queries for `vars.version`, as of now (monotonic ms): the latest
  // verdicts, and queries due are sent (their answers count from the next evaluation on).
  std::vector<health::ExternalCheck> checks(const config::Service& svc, const KpiVars& vars,
                                            uint64_t now_ms);
  // explain's "queries": per version and query the last query as sent, the answer's excerpt,
  // the value and verdict.
  nlohmann::json explain(const std::string& service) const;
  // Queries that errored or timed out, since start (weir_kpi_query_errors_total).
  struct Figure {
    std::string service, query;
    uint64_t sent = 0, errors = 0;
  };
  std::vector<Figure> figures() const;
  void close() { clients_.close(); }

 private:
  struct State {
    config::KpiQuery query;
    std::string sent;  // the expanded PromQL of the last call
    health::ExternalCheck check;
    std::string answer;  // excerpt of the last answer (or the error)
    std::optional<double> value;
    int status = 0;
    std::string at;  // wall time of the last answer
    double duration_ms = 0;
    uint64_t last_start_ms = 0;
    bool started = false, in_flight = false;
  };
  void send(const std::string& service, const std::string& version, State& st,
            const KpiVars& vars, uint64_t now_ms, uint32_t interval);

  OutgoingClients clients_;
  // by (service, version, query name)
  std::map<std::tuple<std::string, std::string, std::string>, State> states_;
  std::map<std::pair<std::string, std::string>, Figure> figures_;
  uint64_t generation_ = 0;  // answers of calls from before a configure() are dropped
};

}  // namespace weir::proxy
