// Where the control plane's truth lives: the runtime state of every service (weights, stable
// version, guard switch, reverts, rollout position) and the audit trail. One interface, two
// implementations: FileStore (one replica: state.json + audit.log in [admin] state_dir) and
// FleetStore (a fleet of replicas sharing one etcd prefix). Server, the admin API, the guard
// runner and the rollout driver only ever see this interface. Control thread only.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "health/stats_window.h"
#include "proxy/runtime_state.h"
#include "proxy/state_store.h"

namespace weir::proxy {

// One change to one service, applied by the store to the latest committed state of it.
// A false positive of clang-tidy 14 on the implicit move of nlohmann::json members (json's
// by-value operator= is noexcept for a moved-from json).
// NOLINTNEXTLINE(bugprone-exception-escape)
struct ServiceChange {
  std::string service;
  // The state version the caller saw (If-Match); the change is refused with 412 unless it is
  // still current. nullopt: apply to whatever is latest (the store retries on a race).
  std::optional<uint64_t> expected;
  // Applies the change to `rt` and fills ev.before / ev.after. Returns "" when applied, "=" when
  // there is nothing to change (the commit succeeds without a write), else why it is refused.
  std::function<std::string(ServiceRuntime& rt, AuditEvent& ev)> apply;
  AuditEvent event;  // actor, action, reason, detail; the store sets service, seq and time
  // Set for a guard revert of this version: safety first, a store that cannot take it now
  // applies it locally at once, keeps it durably and writes it when it can.
  std::string revert_version;
};

struct CommitResult {
  int status = 200;  // 200 = committed (or nothing to change); 409, 412, 500, 503 otherwise
  std::string code;  // the admin API's error code ("precondition_failed", "store_unavailable"...)
  std::string error;
  bool ok() const { return status == 200; }
};
using CommitDone = std::function<void(const CommitResult&)>;

class ControlStore {
 public:
  // What the store tells its owner, on the control loop.
  struct Listener {
    // A service's committed state changed (by this replica or another): rebuild and publish.
    std::function<void(const std::string& service)> on_state;
    // Something only the fleet view shows changed (store up/down, leadership, members).
    std::function<void()> on_status;
  };

  virtual ~ControlStore() = default;

  // Reads the saved state and adopts `config` (see RuntimeState::reconcile); false + *error when
  // weir cannot start on it.
  virtual bool open(const config::Config& config, std::string* error) = 0;
  virtual void set_listener(Listener l) = 0;
  // Where this replica's admin API answers, once bound (a configured port 0 is known only then).
  virtual void set_admin_address(const std::string& address) = 0;

  // The committed state, as the data path should see it.
  virtual const RuntimeState& state() const = 0;

  // Persists one service change and its audit record; `done` runs once it is durable (state()
  // shows it then, and on_state has run) or refused: at once for a local file, later for a
  // shared store. Callers handle both.
  virtual void commit(ServiceChange change, CommitDone done) = 0;

  // Adopts a reloaded configuration whose snapshot was already built: persists what reconcile
  // changes and appends `ev` (reset services added to it). false + *error: nothing changed.
  virtual bool reconfigure(const config::Config& next, AuditEvent ev,
                           std::vector<std::string>* reset, std::string* error) = 0;
  // A process-wide audit record (reload_failed ...); best effort.
  virtual void append(AuditEvent ev) = 0;
  virtual std::vector<nlohmann::json> events_since(uint64_t since, size_t limit) const = 0;

  // Whether timed work (rollout steps, revert ramps) runs on this replica.
  virtual bool leads() const = 0;
  // True while reads may be behind the truth (the shared store cannot be reached).
  virtual bool stale() const = 0;
  // GET /api/v1/fleet's answer; null for a single replica.
  virtual nlohmann::json fleet_json() const = 0;
  // /healthz's "store" field ("ok", "unreachable"); "" for a single replica.
  virtual std::string health() const = 0;
  // Prometheus figures of the store (weir_fleet_*); empty for a single replica.
  struct FleetFigures {
    bool present = false, store_up = false, leader = false;
    int64_t applied_revision = 0;
    size_t replicas = 0;
  };
  virtual FleetFigures figures() const = 0;

  // Guard windows a fleet judges together: this replica's traffic of one guarded version
  // ("service/version") in one second of wall time, to share; and the other replicas' windows of
  // it, in this process's monotonic seconds (none for a single replica).
  virtual void share_window(const std::string& key, uint64_t unix_second,
                            const health::Sample& delta) = 0;
  virtual std::vector<const health::StatsWindow*> remote_windows(const std::string& key) const = 0;

  // Shutdown: stops timers and streams; a fleet replica gives up its lease (leadership and
  // membership go at once, not after the TTL).
  virtual void stop() = 0;
};

}  // namespace weir::proxy
