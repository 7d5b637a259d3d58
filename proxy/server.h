// The control thread: owns the configuration, the listening sockets and the workers; turns
// signals into shutdown (SIGTERM/SIGINT) and reload (SIGHUP), and publishes snapshots.
#pragma once

#include <uv.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "health/outlier.h"
#include "proxy/health_prober.h"
#include "proxy/worker.h"
#include "routing/snapshot.h"

namespace weir::proxy {

class Server {
 public:
  explicit Server(std::shared_ptr<const config::Config> config);
  ~Server();

  // Binds, starts the workers and runs the control loop until shutdown. Returns the exit code.
  int run();

 private:
  bool open_listeners(std::string* error);
  // The one place snapshots are built: `config` plus what the control thread knows about
  // endpoint health, ejections and slow-start ramps. nullptr + *error when it cannot be built.
  std::shared_ptr<const routing::Snapshot> build(std::shared_ptr<const config::Config> config,
                                                 std::string* error);
  // Makes `snap` current: workers adopt it at their next loop turn, probes follow it.
  void publish(std::shared_ptr<const routing::Snapshot> snap);
  // Rebuilds from the running config after a health or ejection change.
  void republish(const char* why);
  // Slow start: endpoints and versions that begin taking traffic in `next` ramp from now.
  void note_ramps(const config::Config& prev, const config::Config& next);
  // Once a tick: outlier ejection from the workers' failure streaks.
  void evaluate_outliers();
  void reload();
  void shutdown();
  static void on_signal(uv_signal_t* h, int signum);

  std::shared_ptr<const config::Config> config_;
  routing::EndpointRegistry registry_;
  uint64_t generation_ = 0;
  unsigned worker_count_ = 1;
  // fds_[worker][listener]
  std::vector<std::vector<int>> fds_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::shared_ptr<const routing::Snapshot> snap_;
  std::unique_ptr<HealthProber> prober_;
  std::vector<uint64_t> endpoint_ramp_;  // by endpoint id: slow start began (control loop ms)
  std::map<std::string, uint64_t> version_ramp_;  // by "service/version"
  std::vector<health::EjectionState> ejection_;   // by endpoint id
  uv_timer_t outlier_timer_{};
  uv_loop_t loop_{};
  uv_signal_t sigterm_{}, sigint_{}, sighup_{};
  bool stopping_ = false;
};

// getaddrinfo-based resolver for snapshots (blocking; control thread only).
bool resolve_endpoint(const std::string& host, uint16_t port, sockaddr_storage* out,
                      std::string* error);

}  // namespace weir::proxy
