// The admin listener on the control thread's loop: accepts connections, reads HTTP/1.1 requests
// (the data path's head validation, proxy/h1_framing.h, then llhttp for body framing), hands
// each to AdminApi and writes the answer. Requests are small and answered synchronously, so a
// connection needs no per-request state beyond its input buffer.
#pragma once

#include <uv.h>

#include <string>
#include <vector>

#include "config/config.h"
#include "proxy/admin_api.h"

namespace weir::proxy {

class AdminConn;

class AdminServer {
 public:
  AdminServer(uv_loop_t* loop, AdminApi& api);
  ~AdminServer();

  // Binds and listens; fills *bound with the address actually bound (port 0 → the real port).
  bool start(const config::HostPort& address, config::HostPort* bound, std::string* error);
  // Stops accepting and closes every connection; the loop finishes the closes.
  void stop();

  AdminApi& api() { return api_; }
  uv_loop_t* loop() { return loop_; }
  void remove(AdminConn* c);

  static constexpr size_t kMaxConnections = 64;
  static constexpr uint64_t kIdleTimeoutMs = 30000;

 private:
  static void on_connection(uv_stream_t* server, int status);

  uv_loop_t* loop_;
  AdminApi& api_;
  uv_tcp_t listener_{};
  bool listening_ = false;
  std::vector<AdminConn*> conns_;
};

}  // namespace weir::proxy
