#include "proxy/log.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>

#include "proxy/http_util.h"

namespace weir::proxy {

namespace {

std::atomic<LogFormat> g_format{LogFormat::kText};
thread_local int t_worker = -1;

}  // namespace

void set_log_format(LogFormat format) { g_format.store(format, std::memory_order_relaxed); }

void set_log_worker(int worker) { t_worker = worker; }

const char* log_level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
  }
  return "info";
}

std::string format_log_line(LogFormat format, LogLevel level, int worker, std::string_view time,
                            std::string_view message) {
  std::string line;
  line.reserve(message.size() + 64);
  if (format == LogFormat::kJson) {
    line.append("{\"time\":\"").append(time).append("\",\"level\":\"");
    line.append(log_level_name(level)).append("\",\"worker\":");
    if (worker < 0) {
      line.append("null");
    } else {
      append_number(line, static_cast<uint64_t>(worker));
    }
    line.append(",\"msg\":");
    append_json_string(line, message);
    line.append("}\n");
    return line;
  }
  line.append(time).push_back(' ');
  line.append(log_level_name(level)).push_back(' ');
  if (worker < 0) {
    line.append("main");
  } else {
    line.append("worker=");
    append_number(line, static_cast<uint64_t>(worker));
  }
  line.append(" weir: ").append(message);
  // A message never spans lines: a multi-line one would read as several events.
  for (size_t i = time.size(); i < line.size(); ++i) {
    if (line[i] == '\n') line[i] = ' ';
  }
  line.push_back('\n');
  return line;
}

// printf-style on purpose, so that the compilers check each call's arguments against its
// format (format attribute in log.h).
// NOLINTNEXTLINE(cert-dcl50-cpp)
void log(LogLevel level, const char* fmt, ...) {
  char stack[1024];
  std::string heap;
  va_list ap;
  va_start(ap, fmt);
  va_list again;
  va_copy(again, ap);
  int n = std::vsnprintf(stack, sizeof stack, fmt, ap);
  va_end(ap);
  std::string_view message;
  if (n < 0) {
    message = fmt;
  } else if (static_cast<size_t>(n) < sizeof stack) {
    message = std::string_view(stack, static_cast<size_t>(n));
  } else {
    heap.resize(static_cast<size_t>(n) + 1);
    std::vsnprintf(heap.data(), heap.size(), fmt, again);
    heap.resize(static_cast<size_t>(n));
    message = heap;
  }
  va_end(again);
  std::string line = format_log_line(g_format.load(std::memory_order_relaxed), level, t_worker,
                                     utc_timestamp_ms(), message);
  std::string_view rest = line;
  while (!rest.empty()) {
    ssize_t w = ::write(STDERR_FILENO, rest.data(), rest.size());
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    rest.remove_prefix(static_cast<size_t>(w));
  }
}

}  // namespace weir::proxy
