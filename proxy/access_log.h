// The access log: one line (JSON by default, fields per [log] access_fields) per request. Workers format lines into
// their own buffer (Worker::log_access) and hand whole buffers to the shared AccessLog, so the
// file sees one append per 32 KiB or per flush tick, not one write per request. SIGUSR1 reopens
// the file (for logrotate). "-" logs to stdout.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <span>
#include <string_view>

#include "config/config.h"

namespace weir::proxy {

// weir's response flags (Envoy-like), so a 502 weir made reads apart from a backend's 502.
enum AccessFlag : uint32_t {
  kFlagNoRoute = 1u << 0,          // NR: no route matched (404)
  kFlagNoHealthy = 1u << 1,        // UH: the version had no healthy endpoint (503)
  kFlagConnectFailure = 1u << 2,   // UF: an upstream connect failed (retried or not)
  kFlagUpstreamTimeout = 1u << 3,  // UT: upstream response or body timeout
  kFlagUpstreamReset = 1u << 4,    // UC: the upstream closed or reset, or sent a bad response
  kFlagRetried = 1u << 5,          // URX: the request went to the upstream more than once
  kFlagLocalReply = 1u << 6,       // LR: weir answered itself (local_reason says why)
  kFlagDownstreamClose = 1u << 7,  // DC: the client went away before the response ended
};
// "UF,URX,LR" in flag order; "-" for none.
std::string access_flags_text(uint32_t flags);

struct AccessRecord {
  std::string_view client;
  std::string method, host, path, request_id, user_agent, trace_id;
  std::string_view service, version, endpoint;  // "" when not routed
  std::string_view protocol;  // "HTTP/1.1", "HTTP/1.0", "HTTP/2"
  std::string_view listener;
  int32_t route = -1;         // index in the config's routes; -1: none matched
  std::string local_reason;   // why weir answered itself ("" otherwise)
  int status = 0;             // 0: the client went away before any status
  int upstream_status = 0;    // the backend's status; 0: none received
  uint32_t flags = 0;         // AccessFlag bits
  uint32_t retries = 0;
  uint64_t bytes = 0;          // response body bytes from the upstream
  uint64_t request_bytes = 0;  // request body bytes from the client
  uint64_t duration_us = 0;
  int64_t upstream_connect_us = -1;   // -1: no connection was opened for it
  int64_t upstream_response_us = -1;  // to the response head; -1: none came
};

// Appends `r` as one line in `format` with `fields` in their order, stamped with the current
// UTC time. JSON: an object; text: space-separated key=value, strings quoted when needed.
void append_access_line(std::string& out, const AccessRecord& r,
                        std::span<const config::AccessField> fields,
                        config::LogSettings::Format format);

class AccessLog {
 public:
  // nullptr + *error when the file cannot be opened for appending.
  static std::unique_ptr<AccessLog> open(const std::string& path, std::string* error);
  ~AccessLog();

  // Thread-safe; `lines` is whole lines, written with one append.
  void write(std::string_view lines);
  // Opens the path again (after logrotate moved the file); keeps the old file on failure.
  bool reopen(std::string* error);

  static constexpr size_t kFlushBytes = 32 * 1024;
  static constexpr uint64_t kFlushIntervalMs = 250;

 private:
  explicit AccessLog(std::string path) : path_(std::move(path)) {}
  int open_fd(std::string* error) const;

  std::string path_;
  std::mutex mu_;  // taken per buffer, not per request
  int fd_ = -1;
};

}  // namespace weir::proxy
