#include "proxy/admin_api.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <charconv>

#include "proxy/http_util.h"

namespace weir::proxy {

namespace {

using nlohmann::json;

std::string etag(uint64_t state_version) { return "\"" + std::to_string(state_version) + "\""; }

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> parts;
  while (!path.empty()) {
    size_t slash = path.find('/');
    std::string_view part = path.substr(0, slash);
    if (!part.empty()) parts.push_back(part);
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return parts;
}

AdminResponse json_response(int status, const json& body) {
  AdminResponse r;
  r.status = status;
  r.body = body.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
  return r;
}

AdminResponse method_not_allowed(std::string_view allow) {
  AdminResponse r = admin_error(405, "method_not_allowed", "use " + std::string(allow));
  r.headers.emplace_back("Allow", std::string(allow));
  return r;
}

// The request body as a JSON object; an error response when it is not one.
std::optional<AdminResponse> parse_object(const AdminRequest& req, json& out,
                                          std::initializer_list<std::string_view> allowed) {
  out = json::parse(req.body, nullptr, false);
  if (out.is_discarded())
    return admin_error(400, "malformed_json", "the request body is not valid JSON");
  if (!out.is_object()) return admin_error(400, "bad_request", "the body must be a JSON object");
  for (const auto& [key, value] : out.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end())
      return admin_error(400, "bad_request", "unknown field \"" + key + "\"");
  }
  if (out.contains("reason") && !out["reason"].is_string())
    return admin_error(400, "bad_request", "\"reason\" must be a string");
  return std::nullopt;
}

std::string reason_of(const json& body) {
  return body.contains("reason") ? body["reason"].get<std::string>() : "";
}

std::optional<uint64_t> parse_u64(std::string_view s) {
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

// The value of `key` in a query string, "" when absent.
std::string_view query_param(std::string_view query, std::string_view key) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    size_t eq = pair.find('=');
    if (pair.substr(0, eq) == key) return eq == std::string_view::npos ? "" : pair.substr(eq + 1);
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return {};
}

json weights_json(const std::map<std::string, uint32_t>& w) { return json(w); }

}  // namespace

const std::string* AdminRequest::header(std::string_view lower_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_name) return &value;
  }
  return nullptr;
}

AdminResponse admin_error(int status, std::string_view code, std::string_view detail) {
  return json_response(status, {{"error", code}, {"detail", detail}});
}

const config::AdminToken* find_token(const std::vector<config::AdminToken>& tokens,
                                     std::string_view token) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (token.empty() ||
      EVP_Digest(token.data(), token.size(), digest, &len, EVP_sha256(), nullptr) != 1 ||
      len != 32) {
    return nullptr;
  }
  // Every token is compared, in constant time, so timing tells nothing about which one is close.
  const config::AdminToken* found = nullptr;
  for (const auto& t : tokens) {
    if (CRYPTO_memcmp(digest, t.sha256.data(), 32) == 0) found = &t;
  }
  return found;
}

bool if_match(std::string_view header, uint64_t state_version) {
  while (!header.empty()) {
    size_t comma = header.find(',');
    std::string_view tag = trim_ows(header.substr(0, comma));
    if (tag == "*") return true;
    if (tag.starts_with("W/")) tag.remove_prefix(2);
    if (tag.size() >= 2 && tag.front() == '"' && tag.back() == '"')
      tag = tag.substr(1, tag.size() - 2);
    if (auto v = parse_u64(tag); v && *v == state_version) return true;
    if (comma == std::string_view::npos) break;
    header.remove_prefix(comma + 1);
  }
  return false;
}

json ServiceStateView::to_json() const {
  // A window without answers has no rate or latency: null, not a 0 that reads as "perfect".
  auto window = [](const std::optional<WindowStatsView>& w, double seconds) -> json {
    if (!w) return nullptr;
    const bool answered = w->requests > 0;
    return {{"requests", w->requests},
            {"rps", static_cast<double>(w->requests) / seconds},
            {"error_rate", answered ? json(w->error_rate) : json(nullptr)},
            {"p50_ms", answered ? json(w->p50_ms) : json(nullptr)},
            {"p99_ms", answered ? json(w->p99_ms) : json(nullptr)}};
  };
  auto mirror = [](const std::optional<MirrorView>& m) -> json {
    if (!m) return nullptr;
    static constexpr const char* kClasses[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
    static constexpr const char* kKinds[] = {"connect", "reset", "timeout"};
    const health::MirrorTotals& t = m->totals;
    json responses = json::object(), failures = json::object();
    for (size_t i = 1; i < 6; ++i) responses[kClasses[i - 1]] = t.responses[i];
    for (size_t i = 0; i < 3; ++i) failures[kKinds[i]] = t.failures[i];
    return {{"percent", m->percent},         {"sent", t.sent},
            {"in_flight", t.in_flight()},    {"responses", responses},
            {"failures", failures},          {"skipped_body", t.skipped_body},
            {"dropped", t.dropped},          {"no_endpoint", t.no_endpoint},
            {"cancelled", t.cancelled}};
  };
  uint64_t total = 0;
  for (const auto& v : versions) total += v.effective_weight;
  json vs = json::array();
  for (const auto& v : versions) {
    json eps = json::array();
    for (const auto& ep : v.endpoints) {
      eps.push_back({{"address", ep.address},
                     {"health", ep.health},
                     {"attempts", ep.attempts},
                     {"responses", ep.responses},
                     {"failures", ep.failures}});
    }
    vs.push_back({{"name", v.name},
                  {"configured_weight", v.configured_weight},
                  {"effective_weight", v.effective_weight},
                  {"share", total ? static_cast<double>(v.effective_weight) / total : 0.0},
                  {"endpoints", eps},
                  {"stats", {{"10s", window(v.stats_10s, 10)}, {"60s", window(v.stats_60s, 60)}}},
                  {"mirror", mirror(v.mirror)},
                  {"reverted", v.reverted}});
  }
  json ro = rollout_detail.is_object() ? rollout_detail : json::object();
  ro["state"] = rollout;
  json out = {{"name", name},
              {"stable", stable},
              {"configured_stable", configured_stable},
              {"state_version", state_version},
              {"versions", vs},
              {"guard", guard == "disabled" ? json{{"state", guard}, {"reason", guard_reason}}
                                            : json{{"state", guard}}},
              {"rollout", ro},
              {"history", history.is_array() ? history : json::array()}};
  if (stale) out["stale"] = true;
  return out;
}

ServiceStateView AdminApi::view(const config::Service& svc) const {
  const RuntimeState& rt = host_.runtime();
  ServiceStateView v;
  v.name = svc.name;
  v.configured_stable = svc.stable;
  v.stable = rt.stable(svc);
  const ServiceRuntime* srt = rt.find(svc.name);
  v.state_version = srt ? srt->state_version : 0;
  if (srt) v.history = srt->history;
  for (const auto& cv : svc.versions) {
    VersionView vv;
    vv.name = cv.name;
    vv.configured_weight = cv.weight;
    vv.effective_weight = rt.weight(svc, cv);
    vv.reverted = srt && srt->reverted.count(cv.name) > 0;
    for (const auto& ep : cv.endpoints) {
      EndpointView e;
      e.address = ep.to_string();
      vv.endpoints.push_back(std::move(e));
    }
    v.versions.push_back(std::move(vv));
  }
  host_.annotate(v);
  if (srt && srt->guard_disabled && svc.guard.enabled) {
    v.guard = "disabled";
    v.guard_reason = srt->guard_reason;
  }
  return v;
}

AdminResponse AdminApi::service_response(const std::string& name) {
  const auto& services = host_.configured().services;
  auto it = std::find_if(services.begin(), services.end(),
                         [&](const config::Service& s) { return s.name == name; });
  if (it == services.end())
    return admin_error(404, "not_found", "service " + name + " went away in a reload");
  return service_response(*it);
}

AdminResponse AdminApi::service_response(const config::Service& svc, int status) {
  ServiceStateView v = view(svc);
  AdminResponse r = json_response(status, v.to_json());
  r.headers.emplace_back("ETag", etag(v.state_version));
  return r;
}

void AdminApi::handle(const AdminRequest& req, const Reply& reply) {
  AdminResponse r = route(req, reply);
  if (r.status != 0) reply(std::move(r));
}

AdminResponse AdminApi::route(const AdminRequest& req, const Reply& reply) {
  const config::AdminSettings& admin = host_.configured().admin;
  const bool read_only = req.method == "GET" || req.method == "HEAD";
  bool open = (req.path == "/healthz" && admin.open_healthz) ||
              (req.path == "/metrics" && admin.open_metrics);
  std::string actor = "anonymous";
  if (!open) {
    const std::string* auth = req.header("authorization");
    std::string_view token;
    if (auth && auth->size() > 7 && iequals(std::string_view(*auth).substr(0, 7), "bearer ")) {
      token = trim_ows(std::string_view(*auth).substr(7));
    }
    const config::AdminToken* t = find_token(admin.tokens, token);
    if (!t) {
      AdminResponse r = admin_error(401, "unauthorized",
                                    auth ? "the bearer token is not valid"
                                         : "send Authorization: Bearer <token>");
      r.headers.emplace_back("WWW-Authenticate",
                             auth ? "Bearer realm=\"weir\", error=\"invalid_token\""
                                  : "Bearer realm=\"weir\"");
      return r;
    }
    // Approving a rollout is its own scope: a reviewer's token need not be able to write, and
    // a write token cannot approve without it.
    const bool approving = req.method == "POST" && req.path.ends_with("/rollout/approve");
    if (approving && !t->approve) {
      return admin_error(403, "forbidden",
                         "token \"" + t->name +
                             "\" cannot approve rollouts; approving needs a token with the "
                             "\"approve\" scope");
    }
    if (!read_only && !approving && t->scope != config::AdminToken::Scope::kWrite) {
      return admin_error(403, "forbidden",
                         "token \"" + t->name + "\" has read scope; this call needs write");
    }
    actor = t->name;
  }

  if (req.path == "/healthz") {
    if (!read_only) return method_not_allowed("GET");
    json body = {{"status", "ok"}};
    if (std::string store = host_.store_health(); !store.empty()) body["store"] = store;
    return json_response(200, body);
  }
  if (req.path == "/metrics") {
    if (!read_only) return method_not_allowed("GET");
    AdminResponse r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = host_.metrics_text();
    return r;
  }
  std::vector<std::string_view> parts = split_path(req.path);
  if (parts.size() >= 2 && parts[0] == "api" && parts[1] == "v1") {
    if (parts.size() == 3 && parts[2] == "events") {
      if (!read_only) return method_not_allowed("GET");
      return events(req);
    }
    if (parts.size() == 3 && parts[2] == "fleet") {
      if (!read_only) return method_not_allowed("GET");
      json fleet = host_.fleet_json();
      if (fleet.is_null())
        return admin_error(404, "not_found", "this weir runs alone: there is no [fleet] table");
      return json_response(200, fleet);
    }
    if (parts.size() == 3 && parts[2] == "reload") {
      if (req.method != "POST") return method_not_allowed("POST");
      return reload(actor);
    }
    if (parts.size() >= 3 && parts.size() <= 6 && parts[2] == "services") {
      std::string action = parts.size() > 4 ? std::string(parts[4]) : "";
      if (parts.size() > 5) action += "/" + std::string(parts[5]);  // rollout/start ...
      return services(req, parts.size() > 3 ? std::string(parts[3]) : "", action, actor, reply);
    }
  }
  return admin_error(404, "not_found", "no such admin path: " + req.path);
}

AdminResponse AdminApi::services(const AdminRequest& req, const std::string& name,
                                 const std::string& action, const std::string& actor,
                                 const Reply& reply) {
  const config::Config& cfg = host_.configured();
  if (name.empty()) {
    if (req.method != "GET" && req.method != "HEAD") return method_not_allowed("GET");
    json list = json::array();
    for (const auto& svc : cfg.services) list.push_back(view(svc).to_json());
    return json_response(200, {{"services", list}});
  }
  auto it = std::find_if(cfg.services.begin(), cfg.services.end(),
                         [&](const config::Service& s) { return s.name == name; });
  if (it == cfg.services.end()) return admin_error(404, "not_found", "no service named " + name);
  if (action.empty()) {
    if (req.method != "GET" && req.method != "HEAD") return method_not_allowed("GET");
    return service_response(*it);
  }
  if (action == "weights") {
    if (req.method != "PUT") return method_not_allowed("PUT");
    return set_weights(req, *it, actor, reply);
  }
  if (action == "promote") {
    if (req.method != "POST") return method_not_allowed("POST");
    return promote(req, *it, actor, reply);
  }
  if (action == "rollback") {
    if (req.method != "POST") return method_not_allowed("POST");
    return rollback(req, *it, actor, reply);
  }
  if (action == "guard") {
    if (req.method != "POST") return method_not_allowed("POST");
    return set_guard(req, *it, actor, reply);
  }
  if (action == "explain") {
    if (req.method != "GET" && req.method != "HEAD") return method_not_allowed("GET");
    return json_response(200, json::parse(host_.explain_json(it->name)));
  }
  if (action == "history") {
    if (req.method != "GET" && req.method != "HEAD") return method_not_allowed("GET");
    return history(req, *it);
  }
  if (action.starts_with("rollout/")) {
    if (req.method != "POST") return method_not_allowed("POST");
    return rollout(req, *it, action.substr(8), actor, reply);
  }
  return admin_error(404, "not_found", "no such service action: " + action);
}

std::optional<AdminResponse> AdminApi::check_if_match(const AdminRequest& req,
                                                      const config::Service& svc, bool required,
                                                      std::optional<uint64_t>* expected) const {
  const ServiceRuntime* current = host_.runtime().find(svc.name);
  uint64_t version = current ? current->state_version : 0;
  const std::string* match = req.header("if-match");
  if (!match && required) {
    return admin_error(428, "precondition_required",
                       "send If-Match: " + etag(version) +
                           " (the service's state version, from GET) or If-Match: * to force");
  }
  if (match && !if_match(*match, version)) {
    AdminResponse r = admin_error(412, "precondition_failed",
                                  "the service's state version is " + etag(version) +
                                      ", not " + *match + "; GET it again and retry");
    r.headers.emplace_back("ETag", etag(version));
    return r;
  }
  // The version it matched is what the store compares against: a change committed meanwhile
  // (here or on another replica) makes this one a 412, not a silent overwrite.
  if (match && trim_ows(*match) != "*") *expected = version;
  return std::nullopt;
}

AdminResponse AdminApi::submit(const config::Service& svc, ServiceChange change,
                             const Reply& reply) {
  change.service = svc.name;
  host_.commit(std::move(change), [this, name = svc.name, reply](const CommitResult& r) {
    if (!r.ok()) {
      AdminResponse err = admin_error(r.status, r.code, r.error);
      if (r.status == 412) {
        const ServiceRuntime* rt = host_.runtime().find(name);
        err.headers.emplace_back("ETag", etag(rt ? rt->state_version : 0));
      }
      reply(std::move(err));
      return;
    }
    reply(service_response(name));
  });
  return AdminResponse{0, {}, {}, {}};
}

AdminResponse AdminApi::change(const config::Service& svc, const Change& c,
                               std::optional<uint64_t> expected, const Reply& reply) {
  ServiceChange sc;
  sc.expected = expected;
  sc.event.actor = c.actor;
  sc.event.action = c.action;
  sc.event.reason = c.reason;
  // By value: a shared store may apply it again later, after a reload replaced `svc`.
  sc.apply = [svc, c](ServiceRuntime& rt, AuditEvent& ev) {
    RuntimeState view;
    view.set(svc.name, rt);
    ev.before = {{"weights", weights_json(view.weights(svc))}};
    ev.after = {{"weights", weights_json(c.weights)}};
    if (!c.stable.empty()) {
      ev.before["stable"] = view.stable(svc);
      ev.after["stable"] = c.stable;
      if (c.action == "promote")
        rt.record_promotion(view.stable(svc), c.stable, c.actor, unix_time_ms());
      rt.stable = c.stable;
    }
    rt.weights = c.weights;
    // An operator acted: whatever the guard reverted is the operator's call from here.
    rt.clear_reverts();
    return std::string();
  };
  return submit(svc, std::move(sc), reply);
}

AdminResponse AdminApi::set_weights(const AdminRequest& req, const config::Service& svc,
                                    const std::string& actor, const Reply& reply) {
  std::optional<uint64_t> expected;
  if (auto refused = check_if_match(req, svc, true, &expected)) return *refused;
  json body;
  if (auto bad = parse_object(req, body, {"weights", "reason"})) return *bad;
  if (!body.contains("weights") || !body["weights"].is_object())
    return admin_error(400, "bad_request", "\"weights\" must be an object of version: weight");
  std::map<std::string, int64_t> asked;
  for (const auto& [v, w] : body["weights"].items()) {
    if (!w.is_number_integer())
      return admin_error(400, "bad_request", "weight of " + v + " must be an integer");
    asked[v] = w.get<int64_t>();
  }
  std::map<std::string, uint32_t> weights = host_.runtime().weights(svc);
  if (std::string why = merge_weights(svc, asked, weights); !why.empty())
    return admin_error(400, "invalid_weights", why);
  return change(svc, {actor, "set_weights", reason_of(body), std::move(weights), ""}, expected,
                reply);
}

AdminResponse AdminApi::promote(const AdminRequest& req, const config::Service& svc,
                                const std::string& actor, const Reply& reply) {
  json body;
  if (auto bad = parse_object(req, body, {"version", "reason"})) return *bad;
  if (!body.contains("version") || !body["version"].is_string())
    return admin_error(400, "bad_request", "\"version\" must name the version to promote");
  std::string target = body["version"].get<std::string>();
  if (std::none_of(svc.versions.begin(), svc.versions.end(),
                   [&](const config::Version& v) { return v.name == target; }))
    return admin_error(400, "invalid_version", "service " + svc.name + " has no version \"" +
                                                   target + "\"");
  std::optional<uint64_t> expected;
  if (auto refused = check_if_match(req, svc, false, &expected)) return *refused;
  std::map<std::string, uint32_t> weights;
  for (const auto& v : svc.versions) weights[v.name] = v.name == target ? 100 : 0;
  return change(svc, {actor, "promote", reason_of(body), std::move(weights), target}, expected,
                reply);
}

AdminResponse AdminApi::rollback(const AdminRequest& req, const config::Service& svc,
                                 const std::string& actor, const Reply& reply) {
  json body = json::object();
  if (!req.body.empty()) {
    if (auto bad = parse_object(req, body, {"reason", "to"})) return *bad;
  }
  std::optional<uint64_t> expected;
  if (auto refused = check_if_match(req, svc, false, &expected)) return *refused;
  if (body.contains("to")) {
    if (body["to"] != "previous")
      return admin_error(400, "bad_request",
                         "\"to\" must be \"previous\" (the stable version before the last "
                         "promotion); leave it out to send all traffic to the current stable");
    return rollback_to_previous(svc, actor, reason_of(body), expected, reply);
  }
  const std::string& stable = host_.runtime().stable(svc);
  std::map<std::string, uint32_t> weights;
  for (const auto& v : svc.versions) weights[v.name] = v.name == stable ? 100 : 0;
  return change(svc, {actor, "rollback", reason_of(body), std::move(weights), ""}, expected,
                reply);
}

static std::string previous_release(const config::Service& svc, const ServiceRuntime* rt,
                                    std::string* previous) {
  if (!rt || !rt->history.is_array() || rt->history.empty())
    return "service " + svc.name + " has no previous release: no promotion is on record";
  const json& last = rt->history.back();
  *previous = last.value("previous", "");
  const std::string& p = *previous;
  if (std::none_of(svc.versions.begin(), svc.versions.end(),
                   [&](const config::Version& v) { return v.name == p; }))
    return "the previous release of service " + svc.name + " was version \"" + p +
           "\", which is no longer configured; add it back or promote a version";
  return "";
}

AdminResponse AdminApi::rollback_to_previous(const config::Service& svc, const std::string& actor,
                                             const std::string& reason,
                                             std::optional<uint64_t> expected,
                                             const Reply& reply) {
  std::string previous;
  if (std::string why = previous_release(svc, host_.runtime().find(svc.name), &previous);
      !why.empty())
    return admin_error(409, "no_previous_release", why);
  ServiceChange sc;
  sc.expected = expected;
  sc.event.actor = actor;
  sc.event.action = "rollback_to_previous";
  sc.event.reason = reason;
  // Applied to the latest state: the history the store holds decides, not the one seen here.
  sc.apply = [svc](ServiceRuntime& rt, AuditEvent& ev) {
    std::string to;
    if (std::string why = previous_release(svc, &rt, &to); !why.empty()) return why;
    RuntimeState view;
    view.set(svc.name, rt);
    const std::string from = view.stable(svc);
    std::map<std::string, uint32_t> weights;
    for (const auto& v : svc.versions) weights[v.name] = v.name == to ? 100 : 0;
    ev.before = {{"weights", weights_json(view.weights(svc))}, {"stable", from},
                 {"history", rt.history}};
    const json undone = rt.history.back();
    rt.history.erase(rt.history.size() - 1);
    rt.stable = to;
    rt.weights = weights;
    rt.reverted.clear();
    // A rollout still going would step the weights again: the rollback ends it.
    const std::string st = rt.rollout.is_object() ? rt.rollout.value("state", "") : "";
    if (st == "running" || st == "waiting" || st == "paused") {
      rt.rollout["state"] = "aborted";
      rt.rollout["reason"] = "rolled back to the previous release by " + ev.actor;
      rt.rollout.erase("waiting_for");
      rt.rollout.erase("waiting_since_ms");
    }
    ev.after = {{"weights", weights_json(weights)}, {"stable", to}, {"history", rt.history}};
    ev.detail = {{"undone", undone}, {"from", from}, {"to", to}};
    return std::string();
  };
  return submit(svc, std::move(sc), reply);
}

AdminResponse AdminApi::set_guard(const AdminRequest& req, const config::Service& svc,
                                  const std::string& actor, const Reply& reply) {
  json body;
  if (auto bad = parse_object(req, body, {"enabled", "reason"})) return *bad;
  if (!body.contains("enabled") || !body["enabled"].is_boolean())
    return admin_error(400, "bad_request", "\"enabled\" must be true or false");
  if (!svc.guard.enabled)
    return admin_error(409, "no_guard", "service " + svc.name +
                                            " has no [service.guard] table to turn on or off");
  std::optional<uint64_t> expected;
  if (auto refused = check_if_match(req, svc, false, &expected)) return *refused;
  const bool enabled = body["enabled"].get<bool>();
  ServiceChange sc;
  sc.expected = expected;
  sc.event.actor = actor;
  sc.event.action = enabled ? "guard_enable" : "guard_disable";
  sc.event.reason = reason_of(body);
  sc.apply = [enabled](ServiceRuntime& rt, AuditEvent& ev) {
    ev.before = {{"guard", rt.guard_disabled ? "disabled" : "enabled"}};
    ev.after = {{"guard", enabled ? "enabled" : "disabled"}};
    rt.guard_disabled = !enabled;
    rt.guard_reason = enabled ? "" : ev.reason;
    // A disabled guard reverts nothing, not even the rest of a ramp it started.
    if (!enabled) rt.ramps = nlohmann::json::object();
    return std::string();
  };
  return submit(svc, std::move(sc), reply);
}

AdminResponse AdminApi::rollout(const AdminRequest& req, const config::Service& svc,
                                const std::string& op, const std::string& actor,
                                const Reply& reply) {
  json body = json::object();
  if (!req.body.empty()) {
    if (auto bad = parse_object(req, body, {"reason"})) return *bad;
  }
  static constexpr std::string_view kOps[] = {"start", "pause",   "resume",
                                              "abort", "promote", "approve"};
  if (std::find(std::begin(kOps), std::end(kOps), op) == std::end(kOps))
    return admin_error(404, "not_found",
                       "unknown rollout operation " + op +
                           " (start, pause, resume, approve, abort, promote)");
  host_.rollout_command(svc.name, op, actor, reason_of(body),
                        [this, name = svc.name, reply](const CommitResult& r) {
                          reply(r.ok() ? service_response(name)
                                       : admin_error(r.status, r.code, r.error));
                        });
  return AdminResponse{0, {}, {}, {}};
}

AdminResponse AdminApi::events(const AdminRequest& req) {
  std::string_view since_text = query_param(req.query, "since");
  std::string_view limit_text = query_param(req.query, "limit");
  auto since = since_text.empty() ? std::optional<uint64_t>(0) : parse_u64(since_text);
  auto limit = limit_text.empty() ? std::optional<uint64_t>(1000) : parse_u64(limit_text);
  if (!since) return admin_error(400, "bad_request", "since must be a sequence number");
  if (!limit || *limit == 0 || *limit > StateStore::kKeptEvents)
    return admin_error(400, "bad_request", "limit must be between 1 and 10000");
  std::vector<json> evs = host_.events_since(*since, *limit);
  uint64_t last = evs.empty() ? *since : evs.back()["seq"].get<uint64_t>();
  return json_response(200, {{"events", evs}, {"last_seq", last}});
}

AdminResponse AdminApi::history(const AdminRequest& req, const config::Service& svc) {
  std::string_view seconds_text = query_param(req.query, "seconds");
  std::string_view step_text = query_param(req.query, "step_s");
  auto seconds = seconds_text.empty() ? std::optional<uint64_t>(300) : parse_u64(seconds_text);
  auto step = step_text.empty() ? std::optional<uint64_t>(5) : parse_u64(step_text);
  if (!step || *step == 0 || *step > 60)
    return admin_error(400, "bad_request", "step_s must be between 1 and 60");
  if (!seconds || *seconds < *step || *seconds > health::StatsWindow::kSeconds ||
      *seconds % *step != 0) {
    return admin_error(400, "bad_request",
                       "seconds must be a multiple of step_s between step_s and " +
                           std::to_string(health::StatsWindow::kSeconds));
  }
  const StatsClock clock = host_.stats_clock();
  const uint64_t points = *seconds / *step;
  // Points end with the last complete second (the current one is still being counted), oldest
  // first; each sums the step_s seconds up to its end.
  const uint64_t last = clock.second > 0 ? clock.second - 1 : 0;
  json versions = json::array();
  for (const auto& v : svc.versions) {
    json requests = json::array(), error_rate = json::array(), p99 = json::array();
    const health::StatsWindow* w = host_.stats_window(svc.name, v.name);
    for (uint64_t i = 0; i < points; ++i) {
      const uint64_t back = (points - 1 - i) * *step;
      health::Summary sum;
      if (w && last >= back) sum = w->summarize(last - back, static_cast<uint32_t>(*step));
      // Seconds never counted (before weir started, or before the version existed) are null,
      // not zero traffic.
      requests.push_back(sum.counted_s ? json(sum.completed) : json(nullptr));
      error_rate.push_back(sum.completed ? json(sum.error_rate) : json(nullptr));
      p99.push_back(sum.completed ? json(static_cast<double>(sum.p99_us) / 1000.0)
                                  : json(nullptr));
    }
    versions.push_back({{"name", v.name},
                        {"requests", std::move(requests)},
                        {"error_rate", std::move(error_rate)},
                        {"p99_ms", std::move(p99)}});
  }
  return json_response(200, {{"service", svc.name},
                             {"step_s", *step},
                             {"points", points},
                             {"end", utc_timestamp_ms(clock.wall_ms)},
                             {"end_ms", clock.wall_ms},
                             {"versions", std::move(versions)}});
}

AdminResponse AdminApi::reload(const std::string& actor) {
  ReloadOutcome out = host_.reload(actor);
  if (!out.ok) {
    json r = {{"error", "reload_failed"},
              {"detail", out.errors.empty() ? "unknown error" : out.errors.front()},
              {"errors", out.errors}};
    return json_response(422, r);
  }
  return json_response(200, {{"result", "ok"},
                             {"generation", out.generation},
                             {"reset_services", out.reset_services}});
}

}  // namespace weir::proxy
