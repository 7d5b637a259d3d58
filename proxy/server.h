// The control thread: owns the configuration, the listening sockets and the workers; turns
// signals into shutdown (SIGTERM/SIGINT) and reload (SIGHUP), and publishes snapshots.
#pragma once

#include <uv.h>

#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
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

 private:
  bool open_listeners(std::string* error);
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
  bool stopping_ = false;
};

// getaddrinfo-based resolver for snapshots (blocking; control thread only).
bool resolve_endpoint(const std::string& host, uint16_t port, sockaddr_storage* out,
                      std::string* error);

}  // namespace weir::proxy
