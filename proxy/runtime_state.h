// Runtime traffic state that the admin API (and later the guard) owns on top of the configured
// services: per-service weights and stable version, each service with a state version that
// changes on every change (the admin API's ETag). Pure data and logic, no I/O: Server persists
// it through StateStore and builds every snapshot from `apply(configured config)`.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "config/config.h"

namespace weir::proxy {

struct ServiceRuntime {
  std::map<std::string, uint32_t> weights;  // empty = the configured weights
  std::string stable;                       // "" = the configured stable version
  uint64_t state_version = 1;
  // An operator turned the service's guard off (POST .../guard): no verdicts, no reverts, and a
  // rollout holds, until it is turned on again. Survives restarts and reloads.
  bool guard_disabled = false;
  std::string guard_reason;  // the operator's reason for turning it off
  // Versions the guard reverted, until an operator changes the service's weights.
  std::set<std::string> reverted;
  // Where the service's rollout is ({} = never started): the rollout driver's saved position, so
  // a restart (or another replica taking the lead) continues from the same step.
  nlohmann::json rollout = nlohmann::json::object();
  // The last promotions, oldest first ({"version", "previous", "at_ms", "actor"} each; at most
  // kHistory): a rollback to the previous release undoes the last one.
  nlohmann::json history = nlohmann::json::array();
  static constexpr size_t kHistory = 10;
  // Records that `to` replaced `previous` as stable (nothing when they are the same).
  void record_promotion(const std::string& previous, const std::string& to,
                        const std::string& actor, int64_t at_ms);
  // What the configured service looked like when this was last reconciled: its version names
  // (a change drops the overrides) and its whole definition (a change bumps state_version).
  std::string version_set;
  std::string definition;

  bool overridden() const { return !weights.empty() || !stable.empty(); }

  // The shared part (what a fleet replicates): everything but the local reconciliation fields
  // and state_version, which the store assigns.
  nlohmann::json shared_json() const;
  // Reads shared_json()'s shape; false + *error on a wrong one (fields absent keep defaults).
  bool read_shared(const nlohmann::json& j, std::string* error);
  bool same_shared(const ServiceRuntime& o) const { return shared_json() == o.shared_json(); }
};

// The set of version names of a configured service, as reconcile() records it.
std::string version_set(const config::Service& svc);

class RuntimeState {
 public:
  // The configuration snapshots are built from: `configured` with the overrides applied.
  config::Config apply(const config::Config& configured) const;

  // Adopts a (re)loaded configuration: adds services, forgets removed ones, bumps the state
  // version of services whose definition changed, and drops the overrides of services whose set
  // of versions changed. Returns the names of the services whose overrides were dropped.
  std::vector<std::string> reconcile(const config::Config& configured);

  const ServiceRuntime* find(const std::string& service) const;
  ServiceRuntime* find(const std::string& service);
  // Replaces (or adds) one service's runtime.
  void set(const std::string& service, ServiceRuntime rt) { services_[service] = std::move(rt); }
  const std::map<std::string, ServiceRuntime>& services() const { return services_; }

  // Effective weight / stable of one configured service under these overrides.
  uint32_t weight(const config::Service& svc, const config::Version& v) const;
  const std::string& stable(const config::Service& svc) const;
  std::map<std::string, uint32_t> weights(const config::Service& svc) const;

  nlohmann::json to_json() const;
  // nullopt + *error when `j` is not a state document this version of weir wrote.
  static std::optional<RuntimeState> from_json(const nlohmann::json& j, std::string* error);

 private:
  std::map<std::string, ServiceRuntime> services_;
};

// Why `weights` (version → weight, as sent by a client) cannot become svc's weights, or "".
// Versions left out keep `current`'s weight; the result must not be all zero.
std::string merge_weights(const config::Service& svc, const std::map<std::string, int64_t>& weights,
                          std::map<std::string, uint32_t>& current);

}  // namespace weir::proxy
