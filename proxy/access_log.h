// The access log: one JSON line per request that reached routing. Workers format lines into
// their own buffer (Worker::log_access) and hand whole buffers to the shared AccessLog, so the
// file sees one append per 32 KiB or per flush tick, not one write per request. SIGUSR1 reopens
// the file (for logrotate). "-" logs to stdout.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

namespace weir::proxy {

struct AccessRecord {
  std::string_view client;
  std::string method, host, path, request_id;
  std::string_view service, version, endpoint;  // "" when not routed
  int status = 0;       // 0: the client went away before any status
  uint64_t bytes = 0;   // response body bytes from the upstream
  uint64_t duration_ms = 0;
};

// Appends `r` as one JSON line, stamped with the current UTC time.
void append_access_line(std::string& out, const AccessRecord& r);

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
