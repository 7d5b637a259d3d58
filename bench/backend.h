// A fast HTTP/1.1 test backend on libuv + llhttp. The demo (`weir --demo`), the integration
// tests (as the `weir-backend` process) and the benchmarks all use this one implementation.
//
// Behaviour is chosen per request by path, so one process serves every test shape:
//   /status/NNN      respond with status NNN (no body for 1xx/204/304 and HEAD)
//   /delay/MS        wait MS milliseconds before responding (timer, never blocks the loop)
//   /bytes/N         N bytes with Content-Length; byte i is 'a' + (i % 26)
//   /chunked/N       N bytes of the same pattern, chunked, 16 KiB chunks, one trailer
//                    "x-trailer: done"
//   /echo            streams the request body back (chunked), with backpressure
//   /sink            reads the whole body, answers {"bytes":N,"fnv1a64":"<16 hex>"}
//   /headers         answers JSON {"method","target","version","headers":[[name,value],...]}
//   /__stats         JSON {"name","connections","active_connections","requests"}; the
//                    /__stats requests themselves are not counted
//   /__status/NNN    from now on the default response has status NNN (0 = back to the
//                    configured status), on every thread; not counted as a request
//   /__delay/MS      from now on the default response waits MS ms (0 = back to the
//                    configured delay), on every thread; not counted as a request
//   /healthz         responds with the current health status (200 until changed), default body
//   /__health/NNN    sets what /healthz answers from now on (200-599); answers 200
//                    (neither of these two is counted in "requests")
//   anything else    the default response: `status`, body of `body_size` pattern bytes, or
//                    "<name>\n" when body_size is 0
// A query string containing "close=1" makes the response carry Connection: close and closes
// the connection after it. Every response has "x-backend: <name>".
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

namespace weir::bench {

struct BackendOptions {
  std::string name = "backend";
  std::string host = "127.0.0.1";
  uint16_t port = 0;       // 0 = pick a free port (see Backend::port())
  unsigned threads = 1;    // event-loop threads sharing the port with SO_REUSEPORT
  int status = 200;        // default response status
  size_t body_size = 0;    // default response body size; 0 = "<name>\n"
  uint32_t delay_ms = 0;   // default response delay
  uint32_t keepalive_timeout_ms = 0;  // close idle keep-alive connections after this; 0 = never
};

class Backend {
 public:
  explicit Backend(BackendOptions options);
  ~Backend();  // stop()s
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  // Binds, starts the loop threads and returns once they accept. false + *error on failure.
  bool start(std::string* error);
  // Stops accepting, closes every connection, joins the threads. Idempotent.
  void stop();

  uint16_t port() const;  // the bound port, valid after start()
  const BackendOptions& options() const;
  uint64_t connections_accepted() const;
  uint64_t requests() const;  // excluding /__stats

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace weir::bench
