// Active health probes on the control thread's loop: one Probe per checked endpoint sends
// `GET <path>` in the version's protocol (HTTP/1.1 with Connection: close, read with llhttp; or
// one HTTP/2 stream, h2c by prior knowledge or h2 by ALPN over TLS) and feeds the response
// status to a health::ActiveCheck. State changes are logged with their reason and
// reported through the change callback (the Server then publishes a new snapshot).
// Owned by Server; control thread only.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>

#include "routing/snapshot.h"

namespace weir::proxy {

class HealthProber {
 public:
  struct Probe;
  // Called on the control loop after an endpoint's state flipped.
  using OnChange = std::function<void(uint32_t endpoint_id, bool healthy)>;

  HealthProber(uv_loop_t* loop, OnChange on_change);
  ~HealthProber();

  // Probes every endpoint of `snap` whose version has a health check; an endpoint keeps its
  // state while its check is unchanged, probes for endpoints no longer checked stop.
  void sync(const routing::Snapshot& snap);
  // Healthy unless an active check says otherwise.
  bool healthy(uint32_t endpoint_id) const;
  // Stops every probe (its handles close on the loop's next turn).
  void stop();

 private:
  friend struct Probe;
  uint64_t next_random();

  uv_loop_t* loop_;
  OnChange on_change_;
  uint64_t rng_;
  std::unordered_map<uint32_t, Probe*> probes_;  // by endpoint id
};

}  // namespace weir::proxy
