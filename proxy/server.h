// The control thread: owns the configuration, the runtime state (weights set through the admin
// API), the listening sockets, the admin listener and the workers; turns signals into shutdown
// (SIGTERM/SIGINT) and reload (SIGHUP), runs health probes, outlier ejection, the guard and
// rollouts, and publishes snapshots, all built by build() from the configuration with the
// runtime state and the endpoints' health applied.
#pragma once

#include <uv.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "config/config.h"
#include "health/guard.h"
#include "health/outlier.h"
#include "health/rollout.h"
#include "health/stats_window.h"
#include "proxy/admin_api.h"
#include "proxy/admin_server.h"
#include "proxy/control_store.h"
#include "proxy/guard_runner.h"
#include "proxy/health_prober.h"
#include "proxy/hooks.h"
#include "proxy/kpi_query.h"
#include "proxy/http_util.h"
#include "proxy/rollout_driver.h"
#include "proxy/runtime_state.h"
#include "proxy/tls_context.h"
#include "proxy/worker.h"
#include "routing/snapshot.h"

namespace weir::proxy {

class Server final : public AdminHost {
 public:
  explicit Server(std::shared_ptr<const config::Config> config);
  ~Server() override;

  // Binds, starts the workers and runs the control loop until shutdown. Returns the exit code.
  int run();

  // AdminHost
  const config::Config& configured() const override { return *config_; }
  const RuntimeState& runtime() const override { return store_->state(); }
  void commit(ServiceChange change, CommitDone done) override;
  ReloadOutcome reload(const std::string& actor) override;
  std::vector<nlohmann::json> events_since(uint64_t since, size_t limit) const override;
  std::string metrics_text() override;
  void annotate(ServiceStateView& view) const override;
  void rollout_command(const std::string& service, const std::string& op,
                       const std::string& actor, const std::string& reason,
                       CommitDone done) override;
  std::string explain_json(const std::string& service) const override;
  nlohmann::json fleet_json() const override { return store_->fleet_json(); }
  std::string store_health() const override { return store_->health(); }
  StatsClock stats_clock() const override;
  const health::StatsWindow* stats_window(const std::string& service,
                                          const std::string& version) const override;

 private:
  bool open_listeners(std::string* error);
  // One SO_REUSEPORT socket per worker on l's address, into *fds; prints the bound address.
  bool open_listener(const config::Listener& l, std::vector<int>* fds, std::string* error);
  bool open_state(std::string* error);
  // The one place snapshots come from: `config` with `runtime`'s overrides applied, plus what
  // the control thread knows about endpoint health, ejections and slow-start ramps.
  // nullptr + *error when it cannot be built. Upstream TLS contexts come from `tls` (default:
  // the running set).
  std::shared_ptr<const routing::Snapshot> build(const config::Config& config,
                                                 const RuntimeState& runtime, std::string* error,
                                                 const TlsSet* tls = nullptr);
  // Makes `snap` current: workers adopt it at their next loop turn (with open[w], new
  // listener sockets, for worker w), probes follow it.
  void publish(std::shared_ptr<const routing::Snapshot> snap,
               std::vector<std::vector<ListenFd>> open = {});
  // Rebuilds from the running config and runtime state after a health or ejection change.
  void republish(const char* why);
  // The store's state of `service` changed (here or on another replica): slow-start ramps for
  // what begins taking traffic, then a new snapshot.
  void on_store_state(const std::string& service);
  // Slow start: endpoints and versions that begin taking traffic in `next` ramp from now.
  // Both are effective configurations (runtime weights applied).
  void note_ramps(const config::Config& prev, const config::Config& next);
  static void on_tick(uv_timer_t* t);
  // Mirror figures of the version with `stats_id` as a mirror target, summed over workers.
  health::MirrorTotals mirror_totals(uint32_t stats_id) const;
  // Outlier ejection from the workers' failure streaks.
  void evaluate_outliers();
  void collect_stats(uint64_t second);
  void shutdown();
  class RampTransaction;
  static void on_signal(uv_signal_t* h, int signum);

  std::shared_ptr<const config::Config> config_;
  std::shared_ptr<const TlsSet> tls_;
  std::shared_ptr<const routing::Snapshot> snap_;  // the one last published
  std::unique_ptr<ControlStore> store_;
  std::unique_ptr<AdminApi> api_;
  std::unique_ptr<AdminServer> admin_;
  config::HostPort admin_bound_;  // the admin listener's address once bound (port 0 resolved)
  uint64_t reloads_ok_ = 0, reloads_failed_ = 0;
  int64_t last_reload_ok_ms_ = unix_time_ms();  // the start counts as the first load
  routing::EndpointRegistry registry_;
  uint64_t generation_ = 0;
  unsigned worker_count_ = 1;
  // fds_[worker][listener]
  std::vector<std::vector<int>> fds_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<HealthProber> prober_;
  std::vector<uint64_t> endpoint_ramp_;  // by endpoint id: slow start began (monotonic ms)
  std::map<std::string, uint64_t> version_ramp_;  // by "service/version"
  std::vector<health::EjectionState> ejection_;   // by endpoint id
  uv_loop_t loop_{};
  uv_signal_t sigterm_{}, sigint_{}, sigquit_{}, sighup_{}, sigusr1_{};
  std::unique_ptr<AccessLog> access_log_;
  uv_timer_t tick_{};
  health::StatsCollector stats_;
  std::unique_ptr<RolloutDriver> rollout_driver_;
  std::unique_ptr<GuardRunner> guard_runner_;
  std::unique_ptr<HookRunner> hooks_;
  std::unique_ptr<ReleaseHooks> release_hooks_;
  std::unique_ptr<KpiRunner> kpi_;
  // What a rollout hook sees of a rollout; run ids count the runs of each service's rollout.
  ReleaseHooks::RolloutInfo rollout_info(const config::Service& s, const health::Rollout& r);
  std::map<std::string, std::pair<uint64_t, bool>> rollout_runs_;  // service → (run, active)
  bool stopping_ = false;
};

// getaddrinfo-based resolver for snapshots (blocking; control thread only).
bool resolve_endpoint(const std::string& host, uint16_t port, sockaddr_storage* out,
                      std::string* error);

}  // namespace weir::proxy
