// weir-backend: the test backend as a process, for integration tests, the demo and bench/run.sh.
#include <pthread.h>
#include <signal.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "bench/backend.h"

namespace {

constexpr const char* kUsage =
    "usage: weir-backend [--name NAME] [--host 127.0.0.1] [--port 0] [--threads 1]\n"
    "                    [--status 200] [--body-size 0] [--delay-ms 0]\n"
    "                    [--keepalive-timeout-ms 0]\n"
    "Serves HTTP/1.1 until SIGTERM or SIGINT.\n"
    "Paths (anything else gets the default response):\n"
    "  /status/NNN   answer with status NNN        /delay/MS   answer after MS ms\n"
    "  /bytes/N      N body bytes                  /chunked/N  N bytes, chunked\n"
    "  /echo         the request body back         /sink       the body's size and hash\n"
    "  /headers      the request head as JSON      /healthz    the health answer\n"
    "Control paths (they change what later requests get, on every thread):\n"
    "  /__status/NNN  answer the default response with NNN (0: back to --status)\n"
    "  /__delay/MS    delay the default response by MS ms (0: back to --delay-ms)\n"
    "  /__health/NNN  make /healthz answer NNN (200-599)\n"
    "  /__stats       requests served, as JSON\n"
    "e.g. curl -s 127.0.0.1:PORT/__status/503 makes a version fail; /__status/0 heals it.\n";

int usage_error(const std::string& why) {
  std::fprintf(stderr, "weir-backend: %s\n%s", why.c_str(), kUsage);
  return 2;
}

bool parse_number(const char* text, unsigned long long max, unsigned long long* out) {
  if (text == nullptr || *text < '0' || *text > '9') return false;
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(text, &end, 10);
  if (errno != 0 || *end != '\0' || v > max) return false;
  *out = v;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  weir::bench::BackendOptions options;
  for (int i = 1; i < argc; ++i) {
    std::string_view flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    // Accept both "--flag value" and "--flag=value".
    std::string value_storage;
    const char* value = nullptr;
    if (size_t eq = flag.find('='); eq != std::string_view::npos && flag.starts_with("--")) {
      value_storage = std::string(flag.substr(eq + 1));
      value = value_storage.c_str();
      flag = flag.substr(0, eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return usage_error("missing value for " + std::string(flag));
    }
    unsigned long long n = 0;
    if (flag == "--name") {
      if (*value == '\0') return usage_error("--name must not be empty");
      options.name = value;
    } else if (flag == "--host") {
      options.host = value;
    } else if (flag == "--port") {
      if (!parse_number(value, 65535, &n)) return usage_error("--port wants 0..65535");
      options.port = static_cast<uint16_t>(n);
    } else if (flag == "--threads") {
      if (!parse_number(value, 256, &n) || n == 0) return usage_error("--threads wants 1..256");
      options.threads = static_cast<unsigned>(n);
    } else if (flag == "--status") {
      if (!parse_number(value, 999, &n) || n < 100) return usage_error("--status wants 100..999");
      options.status = static_cast<int>(n);
    } else if (flag == "--body-size") {
      if (!parse_number(value, 1ULL << 40, &n)) return usage_error("--body-size wants bytes");
      options.body_size = static_cast<size_t>(n);
    } else if (flag == "--delay-ms") {
      if (!parse_number(value, 3600000, &n)) return usage_error("--delay-ms wants 0..3600000");
      options.delay_ms = static_cast<uint32_t>(n);
    } else if (flag == "--keepalive-timeout-ms") {
      if (!parse_number(value, 86400000, &n)) {
        return usage_error("--keepalive-timeout-ms wants 0..86400000");
      }
      options.keepalive_timeout_ms = static_cast<uint32_t>(n);
    } else {
      return usage_error("unknown flag " + std::string(flag));
    }
  }

  // Block the stop signals before any loop thread exists so only sigwait below sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  weir::bench::Backend backend(options);
  std::string error;
  if (!backend.start(&error)) {
    std::fprintf(stderr, "weir-backend: cannot start %s on %s:%u: %s\n", options.name.c_str(),
                 options.host.c_str(), options.port, error.c_str());
    return 1;
  }
  std::printf("backend %s listening on %s:%u\n", options.name.c_str(), options.host.c_str(),
              backend.port());
  std::fflush(stdout);

  int sig = 0;
  sigwait(&stop_signals, &sig);
  backend.stop();
  return 0;
}
