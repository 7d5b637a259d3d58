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

// Text values that need no quotes: non-empty, printable ASCII without space, quote or '='.
bool bare(std::string_view v) {
  if (v.empty()) return false;
  for (unsigned char c : v) {
    if (c <= 0x20 || c >= 0x7f || c == '"' || c == '=' || c == '\\') return false;
  }
  return true;
}

class LineWriter {
 public:
  LineWriter(std::string& out, config::LogSettings::Format format) : out_(out), format_(format) {
    if (format_ == config::LogSettings::Format::kJson) out_.push_back('{');
  }
  ~LineWriter() {
    if (format_ == config::LogSettings::Format::kJson) out_.push_back('}');
    out_.push_back('\n');
  }
  void text(std::string_view name, std::string_view v) {
    key(name);
    if (format_ == config::LogSettings::Format::kJson || !bare(v)) {
      append_json_string(out_, v);
    } else {
      out_.append(v);
    }
  }
  void number(std::string_view name, uint64_t v) {
    key(name);
    append_number(out_, v);
  }
  // Milliseconds with microsecond resolution ("12.345"); null (JSON) or "-" when unknown.
  void millis(std::string_view name, int64_t us) {
    key(name);
    if (us < 0) {
      out_.append(format_ == config::LogSettings::Format::kJson ? "null" : "-");
      return;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, "%lld.%03lld", static_cast<long long>(us / 1000),
                  static_cast<long long>(us % 1000));
    out_.append(buf);
  }
  void null_or_number(std::string_view name, int64_t v) {
    if (v >= 0) return number(name, static_cast<uint64_t>(v));
    key(name);
    out_.append(format_ == config::LogSettings::Format::kJson ? "null" : "-");
  }

 private:
  void key(std::string_view name) {
    if (!first_) out_.push_back(format_ == config::LogSettings::Format::kJson ? ',' : ' ');
    first_ = false;
    if (format_ == config::LogSettings::Format::kJson) {
      append_json_string(out_, name);
      out_.push_back(':');
    } else {
      out_.append(name).push_back('=');
    }
  }

  std::string& out_;
  config::LogSettings::Format format_;
  bool first_ = true;
};

}  // namespace

std::string access_flags_text(uint32_t flags) {
  static const char* const kNames[] = {"NR", "UH", "UF", "UT", "UC", "URX", "LR", "DC"};
  std::string s;
  for (size_t i = 0; i < std::size(kNames); ++i) {
    if ((flags & (1u << i)) == 0) continue;
    if (!s.empty()) s.push_back(',');
    s.append(kNames[i]);
  }
  return s.empty() ? "-" : s;
}

void append_access_line(std::string& out, const AccessRecord& r,
                        std::span<const config::AccessField> fields,
                        config::LogSettings::Format format) {
  using F = config::AccessField;
  LineWriter w(out, format);
  for (F f : fields) {
    const std::string_view name = config::kAccessFieldNames[static_cast<size_t>(f)];
    switch (f) {
      case F::kTime: w.text(name, utc_timestamp_ms()); break;
      case F::kClient: w.text(name, r.client); break;
      case F::kMethod: w.text(name, r.method); break;
      case F::kHost: w.text(name, r.host); break;
      case F::kPath: w.text(name, r.path); break;
      case F::kProtocol: w.text(name, r.protocol); break;
      case F::kListener: w.text(name, r.listener); break;
      case F::kRoute: {
        std::string route;
        if (r.route >= 0) {
          route = "route[";
          append_number(route, static_cast<uint64_t>(r.route));
          route.push_back(']');
        }
        w.text(name, route);
        break;
      }
      case F::kService: w.text(name, r.service); break;
      case F::kVersion: w.text(name, r.version); break;
      case F::kUpstream: w.text(name, r.endpoint); break;
      case F::kStatus: w.number(name, static_cast<uint64_t>(r.status)); break;
      case F::kUpstreamStatus:
        w.null_or_number(name, r.upstream_status > 0 ? r.upstream_status : -1);
        break;
      case F::kFlags: w.text(name, access_flags_text(r.flags)); break;
      case F::kLocalReason: w.text(name, r.local_reason); break;
      case F::kBytes: w.number(name, r.bytes); break;
      case F::kRequestBytes: w.number(name, r.request_bytes); break;
      case F::kDurationMs: w.millis(name, static_cast<int64_t>(r.duration_us)); break;
      case F::kUpstreamConnectMs: w.millis(name, r.upstream_connect_us); break;
      case F::kUpstreamResponseMs: w.millis(name, r.upstream_response_us); break;
      case F::kRetries: w.number(name, r.retries); break;
      case F::kUserAgent: w.text(name, r.user_agent); break;
      case F::kRequestId: w.text(name, r.request_id); break;
      case F::kTraceId: w.text(name, r.trace_id); break;
    }
  }
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
