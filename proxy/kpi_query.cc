#include "proxy/kpi_query.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "proxy/http_util.h"

namespace weir::proxy {

namespace {

using nlohmann::json;

std::string number(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

uint64_t wall_now() { return static_cast<uint64_t>(unix_time_ms()); }

}  // namespace

std::string expand_query(std::string_view query, const KpiVars& vars) {
  std::string out;
  size_t i = 0;
  while (i < query.size()) {
    const size_t at = query.find("{{", i);
    if (at == std::string_view::npos) break;
    const size_t end = query.find("}}", at);
    if (end == std::string_view::npos) break;
    out.append(query.substr(i, at - i));
    const std::string_view name = query.substr(at + 2, end - at - 2);
    if (name == "service") {
      out += vars.service;
    } else if (name == "version") {
      out += vars.version;
    } else if (name == "stable") {
      out += vars.stable;
    } else if (name == "window") {
      out += std::to_string(vars.window_s) + "s";
    } else {
      out.append(query.substr(at, end + 2 - at));  // config refuses these; kept as written
    }
    i = end + 2;
  }
  out.append(query.substr(i));
  return out;
}

std::string percent_encode(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += c;
    } else {
      out += '%';
      out += hex[u >> 4];
      out += hex[u & 15];
    }
  }
  return out;
}

KpiAnswer parse_answer(int status, std::string_view body) {
  KpiAnswer a;
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    a.error = "HTTP " + std::to_string(status) + ", not a Prometheus API answer";
    return a;
  }
  if (j.value("status", "") != "success") {
    a.error = "HTTP " + std::to_string(status) + ": " + j.value("errorType", "error") + ": " +
              j.value("error", "(no error text)");
    return a;
  }
  const json& data = j.contains("data") ? j["data"] : json();
  const std::string type = data.is_object() ? data.value("resultType", "") : "";
  const json& result = data.is_object() && data.contains("result") ? data["result"] : json();
  std::vector<const json*> samples;  // [time, "value"] pairs
  if (type == "vector" && result.is_array()) {
    for (const auto& series : result) {
      if (series.is_object() && series.contains("value")) samples.push_back(&series["value"]);
    }
  } else if (type == "scalar") {
    samples.push_back(&result);
  } else {
    a.error = "result type '" + type + "' is not a vector or scalar; aggregate the query to one "
              "value (e.g. sum(...))";
    return a;
  }
  bool any = false;
  for (const json* s : samples) {
    if (!s->is_array() || s->size() != 2 || !(*s)[1].is_string()) {
      a.error = "malformed sample in the answer";
      return a;
    }
    const std::string text = (*s)[1].get<std::string>();
    char* end = nullptr;
    const double v = std::strtod(text.c_str(), &end);
    if (end == text.c_str()) {
      a.error = "sample value '" + text + "' is not a number";
      return a;
    }
    if (std::isnan(v)) continue;  // 0/0 of an empty rate: nothing to judge
    a.low = any ? std::min(a.low, v) : v;
    a.high = any ? std::max(a.high, v) : v;
    any = true;
    ++a.series;
  }
  a.kind = any ? KpiAnswer::Kind::kValue : KpiAnswer::Kind::kNoData;
  return a;
}

health::ExternalCheck judge(const config::KpiQuery& q, const KpiAnswer& a) {
  health::ExternalCheck c;
  c.name = "query " + q.name;
  using V = health::Verdict;
  if (a.kind == KpiAnswer::Kind::kError) {
    c.verdict = V::kHold;
    c.reason = "query failed (" + a.error + "), holding";
    return c;
  }
  if (a.kind == KpiAnswer::Kind::kNoData) {
    using N = config::KpiQuery::NoData;
    c.verdict = q.on_no_data == N::kFail ? V::kFail : q.on_no_data == N::kPass ? V::kPass : V::kHold;
    c.reason = std::string("no data (on_no_data = ") +
               (q.on_no_data == N::kFail ? "fail" : q.on_no_data == N::kPass ? "pass" : "hold") +
               ")";
    return c;
  }
  std::string why;
  if (q.max && a.high > *q.max) why = "value " + number(a.high) + " above max " + number(*q.max);
  if (q.min && a.low < *q.min)
    why += (why.empty() ? "" : "; ") + ("value " + number(a.low) + " below min " + number(*q.min));
  c.verdict = why.empty() ? V::kPass : V::kFail;
  c.reason = why.empty() ? "value " + number(q.max ? a.high : a.low) + " within " +
                               (q.max ? "max " + number(*q.max) : std::string()) +
                               (q.max && q.min ? ", " : "") +
                               (q.min ? "min " + number(*q.min) : std::string())
                         : why;
  return c;
}

void KpiRunner::configure(const config::Config& config) {
  ++generation_;
  std::map<std::tuple<std::string, std::string, std::string>, State> kept;
  for (auto& [key, st] : states_) {
    for (const auto& s : config.services) {
      if (s.name != std::get<0>(key)) continue;
      for (const auto& q : s.guard.queries) {
        if (q.name != std::get<2>(key)) continue;
        State next = st;
        next.query = q;  // a call under way is dropped: its answer was for the old query
        next.in_flight = false;
        kept.emplace(key, std::move(next));
      }
    }
  }
  states_ = std::move(kept);
}

std::vector<health::ExternalCheck> KpiRunner::checks(const config::Service& svc,
                                                     const KpiVars& vars, uint64_t now_ms) {
  std::vector<health::ExternalCheck> out;
  for (const auto& q : svc.guard.queries) {
    auto [it, fresh] = states_.try_emplace({svc.name, vars.version, q.name});
    State& st = it->second;
    if (fresh) {
      st.query = q;
      st.check = {"query " + q.name, health::Verdict::kHold, "no answer yet"};
    }
    const uint32_t interval = q.interval_ms ? q.interval_ms : svc.guard.interval_ms;
    if (!st.in_flight && (!st.started || now_ms - st.last_start_ms >= interval))
      send(svc.name, vars.version, st, vars, now_ms, interval);
    out.push_back(st.check);
  }
  return out;
}

void KpiRunner::send(const std::string& service, const std::string& version, State& st,
                     const KpiVars& vars, uint64_t now_ms, uint32_t) {
  st.started = true;
  st.in_flight = true;
  st.last_start_ms = now_ms;
  st.sent = expand_query(st.query.query, vars);
  std::string base = st.query.target.url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  std::string url = base + "/api/v1/query?query=" + percent_encode(st.sent);
  ++figures_[{service, st.query.name}].sent;
  const uint64_t started = wall_now();
  HttpCallbacks cb;
  cb.on_done = [this, key = std::make_tuple(service, version, st.query.name), gen = generation_,
                started](HttpError error, HttpResponse response) {
    auto it = states_.find(key);
    if (it == states_.end() || gen != generation_) return;
    State& s = it->second;
    s.in_flight = false;
    s.duration_ms = static_cast<double>(wall_now() - started);
    s.at = utc_timestamp_ms();
    KpiAnswer a;
    if (!error.ok()) {
      a.error = std::string(to_string(error.kind)) + ": " + error.message;
      s.status = 0;
      s.answer = excerpt(a.error);
    } else {
      s.status = response.status;
      s.answer = excerpt(response.body);
      a = parse_answer(response.status, response.body);
    }
    s.value.reset();
    if (a.kind == KpiAnswer::Kind::kValue) s.value = s.query.max ? a.high : a.low;
    if (a.kind == KpiAnswer::Kind::kError) {
      ++figures_[{std::get<0>(key), std::get<2>(key)}].errors;
      std::fprintf(stderr, "weir: guard: service %s query %s for %s: %s\n",
                   std::get<0>(key).c_str(), std::get<2>(key).c_str(), std::get<1>(key).c_str(),
                   a.error.c_str());
    }
    s.check = judge(s.query, a);
  };
  clients_.client(st.query.target)
      .request(OutgoingClients::request(st.query.target, "GET", std::move(url)), std::move(cb));
}

json KpiRunner::explain(const std::string& service) const {
  json out = json::array();
  for (const auto& [key, st] : states_) {
    if (std::get<0>(key) != service) continue;
    json q = {{"version", std::get<1>(key)},
              {"name", st.query.name},
              {"url", st.query.target.url},
              {"query", st.sent},
              {"verdict", health::to_string(st.check.verdict)},
              {"reason", st.check.reason},
              {"status", st.status},
              {"answer", st.answer},
              {"time", st.at},
              {"duration_ms", st.duration_ms}};
    q["value"] = st.value ? json(*st.value) : json(nullptr);
    if (st.query.max) q["max"] = *st.query.max;
    if (st.query.min) q["min"] = *st.query.min;
    out.push_back(std::move(q));
  }
  return out;
}

std::vector<KpiRunner::Figure> KpiRunner::figures() const {
  std::vector<Figure> out;
  for (const auto& [key, f] : figures_) {
    Figure g = f;
    g.service = key.first;
    g.query = key.second;
    out.push_back(std::move(g));
  }
  return out;
}

}  // namespace weir::proxy
