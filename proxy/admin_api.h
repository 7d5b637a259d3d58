// The admin API's request handling: authentication (bearer tokens by SHA-256, read and write
// scopes), routing of /api/v1/..., /healthz and /metrics, JSON in and out, If-Match checks.
// Protocol-free: AdminServer turns HTTP/1.1 bytes into AdminRequest and back. Every change goes
// through AdminHost::commit, which persists, audits and publishes it, or changes nothing.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.h"
#include "health/stats_window.h"
#include "health/version_counters.h"
#include "proxy/control_store.h"
#include "proxy/runtime_state.h"
#include "proxy/state_store.h"

namespace weir::proxy {

struct AdminRequest {
  std::string method;
  std::string path;   // without the query
  std::string query;  // after '?', "" when none
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;

  const std::string* header(std::string_view lower_name) const;
};

struct AdminResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

// Per-version request figures over one window, from the control thread's stats windows.
struct WindowStatsView {
  uint64_t requests = 0;
  double error_rate = 0;
  double p50_ms = 0;
  double p99_ms = 0;
};

struct EndpointView {
  std::string address;
  // "healthy", "unhealthy" (failing its active health check) or "ejected" (outlier detection);
  // "unknown" when neither watches it.
  std::string health = "unknown";
  // Since start, summed over workers: attempts sent to it, responses by class ("2xx"...),
  // weir's failures with it by kind (connect, reset, timeout).
  uint64_t attempts = 0;
  std::map<std::string, uint64_t> responses;
  std::map<std::string, uint64_t> failures;
};

// A mirror target's shadow traffic since start, summed over workers ([service.mirror]).
struct MirrorView {
  uint32_t percent = 0;
  health::MirrorTotals totals;
};

struct VersionView {
  std::string name;
  uint32_t configured_weight = 0;
  uint32_t effective_weight = 0;
  std::vector<EndpointView> endpoints;
  std::optional<WindowStatsView> stats_10s, stats_60s;
  std::optional<MirrorView> mirror;  // set for the service's mirror target only
  bool reverted = false;             // the guard took it to 0; until an operator acts
};

// What GET /api/v1/services/{name} shows. Built from config + runtime state by the API, then
// annotated by the host with what other parts of the control plane know (health, stats, guard).
struct ServiceStateView {
  std::string name;
  std::string stable, configured_stable;
  uint64_t state_version = 0;
  std::vector<VersionView> versions;
  std::string guard = "off";      // off / pass / hold / fail / reverted / disabled
  std::string guard_reason;       // why an operator disabled it
  std::string rollout = "none";
  nlohmann::json rollout_detail;  // the rollout's step, weights and timing (null without one)
  nlohmann::json history;         // the last promotions, oldest first (rollback --to-previous)
  bool stale = false;             // the shared store is away: this may be behind the fleet
  nlohmann::json to_json() const;
};

// Now on the clock of the statistics windows (a second number) and on the wall clock (Unix ms at
// the start of that second), so that a window's seconds can be given wall times.
struct StatsClock {
  uint64_t second = 0;
  int64_t wall_ms = 0;
};

struct ReloadOutcome {
  bool ok = false;
  uint64_t generation = 0;
  std::vector<std::string> errors;          // "file:line:col: key: message"
  std::vector<std::string> reset_services;  // overrides dropped: their version set changed
};

// What the admin API steers. Server implements it, on the control thread.
class AdminHost {
 public:
  virtual ~AdminHost() = default;
  virtual const config::Config& configured() const = 0;
  virtual const RuntimeState& runtime() const = 0;
  // Commits one service change through the control store (persisted, audited, published);
  // `done` runs when it is durable or refused (then nothing changed).
  virtual void commit(ServiceChange change, CommitDone done) = 0;
  virtual ReloadOutcome reload(const std::string& actor) = 0;
  virtual std::vector<nlohmann::json> events_since(uint64_t since, size_t limit) const = 0;
  virtual std::string metrics_text() = 0;
  virtual void annotate(ServiceStateView& view) const = 0;
  // Rollout start|pause|resume|approve|abort|promote as `actor` with the operator's `reason`.
  virtual void rollout_command(const std::string& service, const std::string& op,
                               const std::string& actor, const std::string& reason,
                               CommitDone done) = 0;
  // The guard's decision history of a service (JSON object).
  virtual std::string explain_json(const std::string& service) const = 0;
  // GET /api/v1/fleet (null: not in fleet mode) and /healthz's store field ("" without one).
  virtual nlohmann::json fleet_json() const { return nullptr; }
  virtual std::string store_health() const { return ""; }
  // For GET .../history: the windows' clock, and a version's window (nullptr before its first
  // statistics tick).
  virtual StatsClock stats_clock() const { return {}; }
  virtual const health::StatsWindow* stats_window(const std::string& /*service*/,
                                                  const std::string& /*version*/) const {
    return nullptr;
  }
};

class AdminApi {
 public:
  explicit AdminApi(AdminHost& host) : host_(host) {}
  using Reply = std::function<void(AdminResponse)>;
  // Answers `req` through `reply`: at once, or once a change is durable (or refused).
  void handle(const AdminRequest& req, const Reply& reply);

  static constexpr size_t kMaxBody = 64 * 1024;

 private:
  // Each returns the answer, or status 0 when it comes later through `reply`.
  AdminResponse route(const AdminRequest& req, const Reply& reply);
  AdminResponse services(const AdminRequest& req, const std::string& name,
                         const std::string& action, const std::string& actor,
                         const Reply& reply);
  AdminResponse set_weights(const AdminRequest& req, const config::Service& svc,
                            const std::string& actor, const Reply& reply);
  AdminResponse promote(const AdminRequest& req, const config::Service& svc,
                        const std::string& actor, const Reply& reply);
  AdminResponse rollback(const AdminRequest& req, const config::Service& svc,
                         const std::string& actor, const Reply& reply);
  // POST .../rollback {"to": "previous"}: undoes the last promotion on record.
  AdminResponse rollback_to_previous(const config::Service& svc, const std::string& actor,
                                     const std::string& reason, std::optional<uint64_t> expected,
                                     const Reply& reply);
  AdminResponse set_guard(const AdminRequest& req, const config::Service& svc,
                          const std::string& actor, const Reply& reply);
  AdminResponse rollout(const AdminRequest& req, const config::Service& svc,
                        const std::string& op, const std::string& actor, const Reply& reply);
  // One change to a service's runtime state, committed through the host.
  struct Change {
    std::string actor;
    std::string action;
    std::string reason;
    std::map<std::string, uint32_t> weights;  // the service's new effective weights
    std::string stable;                       // "" = unchanged
  };
  AdminResponse change(const config::Service& svc, const Change& c,
                       std::optional<uint64_t> expected, const Reply& reply);
  // Commits `change` and answers with the service's state (or the store's refusal).
  AdminResponse submit(const config::Service& svc, ServiceChange change, const Reply& reply);
  // 428 (when required) or 412 unless If-Match names the service's state version. Else sets
  // *expected to the version it named (nullopt for "*" or no If-Match).
  std::optional<AdminResponse> check_if_match(const AdminRequest& req, const config::Service& svc,
                                              bool required,
                                              std::optional<uint64_t>* expected) const;
  AdminResponse events(const AdminRequest& req);
  AdminResponse history(const AdminRequest& req, const config::Service& svc);
  AdminResponse reload(const std::string& actor);
  AdminResponse service_response(const config::Service& svc, int status = 200);
  // The same by name, looked up in the configuration running when the answer is made.
  AdminResponse service_response(const std::string& name);
  ServiceStateView view(const config::Service& svc) const;

  AdminHost& host_;
};

// A JSON error body {"error": code, "detail": detail}.
AdminResponse admin_error(int status, std::string_view code, std::string_view detail);

// The configured token whose SHA-256 matches `token` (compared in constant time), or nullptr.
const config::AdminToken* find_token(const std::vector<config::AdminToken>& tokens,
                                     std::string_view token);

// True when an If-Match header value names `state_version` (as "N", N or W/"N") or is "*".
bool if_match(std::string_view header, uint64_t state_version);

}  // namespace weir::proxy
