// The admin listener on the control thread's loop: accepts connections, reads HTTP/1.1 requests
// (the data path's head validation, proxy/h1_framing.h, then llhttp for body framing), hands
// each to AdminApi and writes the answer. Requests are small and answered synchronously, so a
// connection needs no per-request state beyond its input buffer. With [admin.tls] every
// connection first runs a TLS handshake (TlsIo, the data path's OpenSSL engine) under the
// handshake timeout; client certificates, when required, are checked by OpenSSL before any
// request is read, and bearer tokens are still checked per request by AdminApi.
#pragma once

#include <uv.h>

#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "proxy/admin_api.h"
#include "proxy/tls_context.h"

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
  // TLS for connections accepted from now on (nullptr = plain HTTP); a reload swaps it, and
  // connections already open keep the context they were accepted with.
  void set_tls(std::shared_ptr<const TlsContext> tls) { tls_ = std::move(tls); }

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
  std::shared_ptr<const TlsContext> tls_;
  std::vector<AdminConn*> conns_;
};

}  // namespace weir::proxy
