// weir: a traffic-shifting HTTP reverse proxy.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "proxy/log.h"
#include "proxy/demo.h"
#include "proxy/port_claim.h"
#include "proxy/preflight.h"
#include "proxy/server.h"
#include "proxy/version.h"

namespace {

constexpr const char* kUsage =
    "usage: weir --config FILE        run with FILE\n"
    "       weir --upgrade --config FILE\n"
    "                                 run as the binary upgrade of the weir that holds these\n"
    "                                 ports: share them until it exits (send it SIGQUIT)\n"
    "       weir --check FILE [--strict] [--no-resolve]\n"
    "                                 validate FILE as a start would, short of binding; print\n"
    "                                 warnings and a summary (exit 0 = valid, 1 = errors, or\n"
    "                                 warnings with --strict); --no-resolve leaves host names\n"
    "                                 unresolved (checking away from the network weir runs in)\n"
    "       weir --demo [--demo-port N] [--demo-admin-port N] [--workers N]\n"
    "                                 run on an embedded demo config with two built-in\n"
    "                                 backends (blue 90%, green 10%), a guard and the admin\n"
    "                                 API (token printed); ports default to 8080 and 9901\n"
    "       weir --version\n";

int usage_error(const std::string& what) {
  std::fprintf(stderr, "weir: %s\n%s", what.c_str(), kUsage);
  return 2;
}

bool parse_uint(const char* s, unsigned long max, unsigned long* out) {
  char* end = nullptr;
  errno = 0;
  unsigned long v = std::strtoul(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v > max) return false;
  *out = v;
  return true;
}

void print_errors(const std::vector<weir::config::Error>& errors) {
  for (const auto& e : errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
}

void print_warnings(const std::vector<weir::config::Error>& warnings) {
  for (const auto& w : warnings) {
    // "file:line:col: warning: key: message", as compilers print theirs.
    const std::string where = weir::config::Error{w.loc, "", ""}.to_string();  // "file:l:c: "
    std::fprintf(stderr, "%swarning: %s\n", where.c_str(),
                 w.to_string().substr(where.size()).c_str());
  }
}

// The configuration at `path` as a start would take it, short of binding: nullopt (and the
// errors printed) when weir could not start on it.
std::optional<weir::config::Config> load_checked(const std::string& path, bool resolve = true) {
  weir::config::LoadResult r = weir::config::load_file(path);
  if (r.config) r.errors = weir::proxy::preflight(*r.config, resolve);
  if (!r.errors.empty()) {
    print_errors(r.errors);
    return std::nullopt;
  }
  return std::move(r.config);
}

int check(const std::string& path, bool strict, bool resolve) {
  std::optional<weir::config::Config> config = load_checked(path, resolve);
  if (!config) {
    std::fprintf(stderr, "weir: configuration %s is invalid\n", path.c_str());
    return 1;
  }
  const std::vector<weir::config::Error> warnings = weir::config::warnings(*config);
  print_warnings(warnings);
  std::printf("%s", weir::config::summary(*config).c_str());
  const char* plural = warnings.size() == 1 ? "" : "s";
  if (strict && !warnings.empty()) {
    std::fprintf(stderr, "weir: configuration %s has %zu warning%s (--strict)\n", path.c_str(),
                 warnings.size(), plural);
    return 1;
  }
  if (!resolve) std::fprintf(stderr, "weir: host names were not resolved (--no-resolve)\n");
  if (warnings.empty()) {
    std::fprintf(stderr, "weir: configuration %s is valid\n", path.c_str());
  } else {
    std::fprintf(stderr, "weir: configuration %s is valid, with %zu warning%s\n", path.c_str(),
                 warnings.size(), plural);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path, check_path;
  bool demo = false, strict = false, upgrade = false, resolve = true;
  unsigned long demo_port = 8080, demo_admin_port = 9901, workers = 1;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&](const char* flag) -> const char* {
      if (i + 1 >= argc) return nullptr;
      (void)flag;
      return argv[++i];
    };
    if (a == "--config" || a == "-c") {
      const char* v = value("--config");
      if (!v) return usage_error("--config needs a file");
      config_path = v;
    } else if (a == "--check" || a == "-t") {
      const char* v = value("--check");
      if (!v) return usage_error("--check needs a file");
      check_path = v;
    } else if (a == "--strict") {
      strict = true;
    } else if (a == "--no-resolve") {
      resolve = false;
    } else if (a == "--upgrade") {
      upgrade = true;
    } else if (a == "--demo") {
      demo = true;
    } else if (a == "--demo-port") {
      const char* v = value("--demo-port");
      if (!v || !parse_uint(v, 65535, &demo_port)) return usage_error("--demo-port needs 0..65535");
    } else if (a == "--demo-admin-port") {
      const char* v = value("--demo-admin-port");
      if (!v || !parse_uint(v, 65535, &demo_admin_port)) {
        return usage_error("--demo-admin-port needs 0..65535");
      }
    } else if (a == "--workers") {
      const char* v = value("--workers");
      if (!v || !parse_uint(v, 256, &workers)) return usage_error("--workers needs 0..256");
    } else if (a == "--version") {
      std::printf("weir %s\n", weir::proxy::kWeirVersion);
      return 0;
    } else if (a == "--help" || a == "-h") {
      std::printf("%s", kUsage);
      return 0;
    } else {
      return usage_error("unknown argument '" + std::string(a) + "'");
    }
  }
  if ((strict || !resolve) && check_path.empty())
    return usage_error("--strict and --no-resolve go with --check");
  if (!check_path.empty()) {
    if (upgrade) return usage_error("--upgrade goes with --config or --demo");
    return check(check_path, strict, resolve);
  }
  if (upgrade) weir::proxy::set_start_claim_mode(weir::proxy::ClaimMode::kUpgrade);
  if (demo) {
    weir::proxy::DemoOptions options;
    options.port = static_cast<uint16_t>(demo_port);
    options.admin_port = static_cast<uint16_t>(demo_admin_port);
    options.workers = static_cast<unsigned>(workers);
    return weir::proxy::run_demo(options);
  }
  if (config_path.empty()) return usage_error("nothing to do");
  std::optional<weir::config::Config> config = load_checked(config_path);
  if (!config) {
    std::fprintf(stderr, "weir: not starting: %s is invalid\n", config_path.c_str());
    return 1;
  }
  print_warnings(weir::config::warnings(*config));
  weir::proxy::set_log_format(config->log.format);
  weir::proxy::Server server(std::make_shared<const weir::config::Config>(std::move(*config)));
  return server.run();
}
