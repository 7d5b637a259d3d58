// The control thread: owns the configuration, the listening sockets and the workers; turns
// signals into shutdown (SIGTERM/SIGINT) and reload (SIGHUP), and publishes snapshots.
#pragma once

#include <uv.h>

#include <memory>
#include <string>
#include <vector>

#include <map>

#include "config/config.h"
#include "health/guard.h"
#include "health/rollout.h"
#include "health/stats_window.h"
#include "proxy/tls_context.h"
#include "proxy/worker.h"
#include "routing/snapshot.h"

namespace weir::proxy {

class Server {
 public:
  explicit Server(std::shared_ptr<const config::Config> config);
  ~Server();

  // Binds, starts the workers and runs the control loop until shutdown. Returns the exit code.
  int run();

  // Control-thread operations for the admin API. false + *error when refused (nothing changes).
  bool rollout_command(const std::string& service, const std::string& op, std::string* error);
  // The guard's decision history of a service as JSON; "" for an unknown service.
  std::string explain_json(const std::string& service) const;

 private:
  bool open_listeners(std::string* error);
  // The one place snapshots are made: config plus runtime weight changes (guard reverts).
  std::shared_ptr<const routing::Snapshot> build(std::string* error);
  void publish(std::shared_ptr<const routing::Snapshot> snap);
  static void on_tick(uv_timer_t* t);
  void collect_stats(uint64_t second);
  void run_guards(uint64_t now_ms, uint64_t second);
  // Applies a rollout's requested weights (or promotion); true when something changed.
  bool apply_rollout(const std::string& service, const health::Rollout::Action& a);
  void rebuild_and_publish(const char* why);
  void reload();
  void shutdown();
  static void on_signal(uv_signal_t* h, int signum);

  std::shared_ptr<const config::Config> config_;
  std::shared_ptr<const TlsSet> tls_;
  routing::EndpointRegistry registry_;
  uint64_t generation_ = 0;
  unsigned worker_count_ = 1;
  // fds_[worker][listener]
  std::vector<std::vector<int>> fds_;
  std::vector<std::unique_ptr<Worker>> workers_;
  uv_loop_t loop_{};
  uv_signal_t sigterm_{}, sigint_{}, sighup_{};
  uv_timer_t tick_{};
  std::shared_ptr<const routing::Snapshot> snap_;
  health::StatsCollector stats_;
  struct ServiceGuard {
    std::map<std::string, health::VersionGuard> versions;
    health::DecisionLog log;
    uint64_t last_eval_ms = 0;
  };
  std::map<std::string, ServiceGuard> guards_;
  // service → version → weight, over the configured weights (a guard revert sets 0).
  std::map<std::string, std::map<std::string, uint32_t>> weight_overrides_;
  std::map<std::string, std::string> stable_overrides_;  // promotions
  std::map<std::string, health::Rollout> rollouts_;
  bool stopping_ = false;
};

// getaddrinfo-based resolver for snapshots (blocking; control thread only).
bool resolve_endpoint(const std::string& host, uint16_t port, sockaddr_storage* out,
                      std::string* error);

}  // namespace weir::proxy
