#include "proxy/access_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "proxy/http_util.h"

namespace weir::proxy {

namespace {

// A JSON string. Request targets may hold '"', '\' and obs-text bytes: escape them all.
void append_json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out.append(buf);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out.push_back('"');
}

void field(std::string& out, const char* name, std::string_view value) {
  out.append(",\"").append(name).append("\":");
  append_json_string(out, value);
}

void field(std::string& out, const char* name, uint64_t value) {
  out.append(",\"").append(name).append("\":");
  append_number(out, value);
}

}  // namespace

void append_access_line(std::string& out, const AccessRecord& r) {
  const std::string time = utc_timestamp_ms();
  out.append("{\"time\":\"").append(time).push_back('"');
  field(out, "client", r.client);
  field(out, "method", r.method);
  field(out, "host", r.host);
  field(out, "path", r.path);
  field(out, "status", static_cast<uint64_t>(r.status));
  field(out, "bytes", r.bytes);
  field(out, "duration_ms", r.duration_ms);
  field(out, "service", r.service);
  field(out, "version", r.version);
  field(out, "upstream", r.endpoint);
  field(out, "request_id", r.request_id);
  out.append("}\n");
}

std::unique_ptr<AccessLog> AccessLog::open(const std::string& path, std::string* error) {
  std::unique_ptr<AccessLog> log(new AccessLog(path));
  log->fd_ = log->open_fd(error);
  if (log->fd_ < 0) return nullptr;
  return log;
}

AccessLog::~AccessLog() {
  if (fd_ > STDERR_FILENO) ::close(fd_);
}

int AccessLog::open_fd(std::string* error) const {
  if (path_ == "-") return STDOUT_FILENO;
  int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd < 0) *error = "access log " + path_ + ": " + std::strerror(errno);
  return fd;
}

void AccessLog::write(std::string_view lines) {
  std::lock_guard<std::mutex> lock(mu_);
  while (!lines.empty()) {
    ssize_t n = ::write(fd_, lines.data(), lines.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // a full disk loses log lines, never requests
    lines.remove_prefix(static_cast<size_t>(n));
  }
}

bool AccessLog::reopen(std::string* error) {
  int fd = open_fd(error);
  if (fd < 0) return false;
  int old;
  {
    std::lock_guard<std::mutex> lock(mu_);
    old = fd_;
    fd_ = fd;
  }
  if (old > STDERR_FILENO && old != fd) ::close(old);
  return true;
}

}  // namespace weir::proxy
