// A client connection without a socket, for fuzzing the protocol sessions: bytes in through
// Session::on_read, bytes out into a string. The worker is real but never started (no thread,
// no loop run): the snapshot it is given routes every request to a version without a healthy
// endpoint (503) or to no route (404), so no request ever opens an upstream connection.
#pragma once

#include <memory>
#include <string>

#include "proxy/session.h"
#include "proxy/worker.h"
#include "tests/fuzz/fuzz_config.h"

namespace weir::fuzz {

// The service's only endpoint is down; "only.example" has just /x routed.
inline constexpr std::string_view kSessionConfig = R"(
[proxy]
max_request_body_bytes = 4096
max_headers = 20
[[listener]]
name = "public"
address = "127.0.0.1:0"
protocols = ["h2c", "http1"]
[[service]]
name = "shop"
stable = "blue"
  [[service.version]]
  name = "blue"
  weight = 100
  endpoints = ["127.0.0.1:9"]
[[route]]
listener = "public"
host = "*"
path_prefix = "/"
service = "shop"
[[route]]
listener = "public"
host = "only.example"
path_prefix = "/x"
service = "shop"
)";

inline std::shared_ptr<const routing::Snapshot> session_snapshot() {
  static const std::shared_ptr<const routing::Snapshot> snap = [] {
    routing::HealthInput down;
    down.endpoints.push_back({false});
    auto s = snapshot_from(kSessionConfig, &down);
    if (!s) std::abort();
    return s;
  }();
  return snap;
}

class FakeTransport final : public proxy::Transport {
 public:
  explicit FakeTransport(proxy::Worker& worker) : worker_(worker) { info_.peer_ip = "192.0.2.1"; }

  void write(std::string_view data) override {
    if (!closed) out.append(data);
  }
  std::string& write_buffer() override { return out; }
  void commit() override {}
  bool congested() override { return congested_now; }
  void pause_reading() override { paused = true; }
  void resume_reading() override { paused = false; }
  void set_deadline(uint64_t ms) override { deadline_ms = ms; }
  void clear_deadline() override { deadline_ms = 0; }
  void close_after_flush(bool) override { closed = true; }
  void abort() override { closed = aborted = true; }
  const proxy::ConnInfo& info() const override { return info_; }
  void set_client_subject(std::string subject) override {
    info_.client_subject = std::move(subject);
  }
  proxy::Worker& worker() override { return worker_; }

  std::string out;
  bool congested_now = false;
  bool paused = false;
  bool closed = false;
  bool aborted = false;
  uint64_t deadline_ms = 0;

 private:
  proxy::Worker& worker_;
  proxy::ConnInfo info_;
};

}  // namespace weir::fuzz
