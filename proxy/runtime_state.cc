#include "proxy/runtime_state.h"

#include <algorithm>

namespace weir::proxy {

namespace {

constexpr int kStateFormat = 1;
constexpr int64_t kMaxWeight = 10000;  // the same bound config/load.cc puts on `weight`

std::string definition(const config::Service& svc) {
  std::string out = "stable=" + svc.stable + ";";
  for (const auto& v : svc.versions) {
    out += v.name + "=" + std::to_string(v.weight) + "@";
    for (const auto& ep : v.endpoints) out += ep.to_string() + ",";
    out += ";";
  }
  return out;
}

}  // namespace

std::string version_set(const config::Service& svc) {
  std::vector<std::string> names;
  for (const auto& v : svc.versions) names.push_back(v.name);
  std::sort(names.begin(), names.end());
  std::string out;
  for (const auto& n : names) out += n + ",";
  return out;
}

nlohmann::json ServiceRuntime::shared_json() const {
  return {{"weights", weights},         {"stable", stable},
          {"guard_disabled", guard_disabled}, {"guard_reason", guard_reason},
          {"reverted", reverted},       {"ramps", ramps},
          {"rollout", rollout},         {"history", history},
          {"version_set", version_set}};
}

void ServiceRuntime::record_promotion(const std::string& previous, const std::string& to,
                                      const std::string& actor, int64_t at_ms) {
  if (previous == to || previous.empty()) return;
  if (!history.is_array()) history = nlohmann::json::array();
  history.push_back({{"version", to}, {"previous", previous}, {"at_ms", at_ms}, {"actor", actor}});
  while (history.size() > kHistory) history.erase(history.begin());
}

bool ServiceRuntime::read_shared(const nlohmann::json& j, std::string* error) {
  try {
    weights = j.value("weights", std::map<std::string, uint32_t>{});
    stable = j.value("stable", std::string());
    guard_disabled = j.value("guard_disabled", false);
    guard_reason = j.value("guard_reason", std::string());
    reverted = j.value("reverted", std::set<std::string>{});
    ramps = j.value("ramps", nlohmann::json::object());
    if (!ramps.is_object()) ramps = nlohmann::json::object();
    rollout = j.value("rollout", nlohmann::json::object());
    if (!rollout.is_object()) rollout = nlohmann::json::object();
    history = j.value("history", nlohmann::json::array());
    if (!history.is_array()) history = nlohmann::json::array();
    version_set = j.value("version_set", std::string());
    return true;
  } catch (const nlohmann::json::exception& e) {
    *error = std::string("malformed service state: ") + e.what();
    return false;
  }
}

config::Config RuntimeState::apply(const config::Config& configured) const {
  config::Config out = configured;
  for (auto& svc : out.services) {
    const ServiceRuntime* rt = find(svc.name);
    if (!rt || !rt->overridden()) continue;
    if (!rt->stable.empty()) svc.stable = rt->stable;
    for (auto& v : svc.versions) {
      auto it = rt->weights.find(v.name);
      if (it != rt->weights.end()) v.weight = it->second;
    }
  }
  return out;
}

std::vector<std::string> RuntimeState::reconcile(const config::Config& configured) {
  std::vector<std::string> reset;
  std::map<std::string, ServiceRuntime> next;
  for (const auto& svc : configured.services) {
    ServiceRuntime rt;
    if (auto it = services_.find(svc.name); it != services_.end()) rt = it->second;
    std::string vs = version_set(svc), def = definition(svc);
    if (rt.version_set != vs && (rt.overridden() || !rt.reverted.empty())) {
      reset.push_back(svc.name);
      rt.weights.clear();
      rt.stable.clear();
      rt.clear_reverts();
      rt.rollout = nlohmann::json::object();
    }
    if (rt.definition != def && !rt.definition.empty()) ++rt.state_version;
    rt.version_set = std::move(vs);
    rt.definition = std::move(def);
    next.emplace(svc.name, std::move(rt));
  }
  services_ = std::move(next);
  return reset;
}

const ServiceRuntime* RuntimeState::find(const std::string& service) const {
  auto it = services_.find(service);
  return it == services_.end() ? nullptr : &it->second;
}

ServiceRuntime* RuntimeState::find(const std::string& service) {
  auto it = services_.find(service);
  return it == services_.end() ? nullptr : &it->second;
}

uint32_t RuntimeState::weight(const config::Service& svc, const config::Version& v) const {
  const ServiceRuntime* rt = find(svc.name);
  if (!rt) return v.weight;
  auto it = rt->weights.find(v.name);
  return it == rt->weights.end() ? v.weight : it->second;
}

const std::string& RuntimeState::stable(const config::Service& svc) const {
  const ServiceRuntime* rt = find(svc.name);
  return rt && !rt->stable.empty() ? rt->stable : svc.stable;
}

std::map<std::string, uint32_t> RuntimeState::weights(const config::Service& svc) const {
  std::map<std::string, uint32_t> out;
  for (const auto& v : svc.versions) out[v.name] = weight(svc, v);
  return out;
}

nlohmann::json RuntimeState::to_json() const {
  nlohmann::json services = nlohmann::json::object();
  for (const auto& [name, rt] : services_) {
    nlohmann::json s = rt.shared_json();
    s["state_version"] = rt.state_version;
    s["definition"] = rt.definition;
    services[name] = std::move(s);
  }
  return {{"format", kStateFormat}, {"services", services}};
}

std::optional<RuntimeState> RuntimeState::from_json(const nlohmann::json& j, std::string* error) {
  // json::at/get throw on a wrong shape; state.json is read once at start, off the data path.
  try {
    if (j.at("format").get<int>() != kStateFormat) {
      *error = "unknown state format " + j.at("format").dump();
      return std::nullopt;
    }
    RuntimeState out;
    for (const auto& [name, s] : j.at("services").items()) {
      ServiceRuntime rt;
      // Fields newer than the file (the guard switch, reverts, rollouts) keep their defaults.
      if (!rt.read_shared(s, error)) return std::nullopt;
      rt.state_version = s.at("state_version").get<uint64_t>();
      rt.definition = s.at("definition").get<std::string>();
      out.services_.emplace(name, std::move(rt));
    }
    return out;
  } catch (const nlohmann::json::exception& e) {
    *error = std::string("malformed state: ") + e.what();
    return std::nullopt;
  }
}

std::string merge_weights(const config::Service& svc, const std::map<std::string, int64_t>& weights,
                          std::map<std::string, uint32_t>& current) {
  if (weights.empty()) return "\"weights\" names no version";
  std::map<std::string, uint32_t> next = current;
  for (const auto& [name, w] : weights) {
    bool known = std::any_of(svc.versions.begin(), svc.versions.end(),
                             [&n = name](const config::Version& v) { return v.name == n; });
    if (!known) {
      std::string names;
      for (const auto& v : svc.versions) {
        if (!names.empty()) names += ", ";
        names += v.name;
      }
      std::string why = "service ";
      why.append(svc.name).append(" has no version \"").append(name);
      return why.append("\" (versions: ").append(names).append(")");
    }
    if (w < 0 || w > kMaxWeight)
      return "weight of " + name + " must be between 0 and " + std::to_string(kMaxWeight) +
             ", got " + std::to_string(w);
    next[name] = static_cast<uint32_t>(w);
  }
  uint64_t total = 0;
  for (const auto& [name, w] : next) total += w;
  if (total == 0) return "all weights would be 0: give at least one version a positive weight";
  current = std::move(next);
  return "";
}

}  // namespace weir::proxy
