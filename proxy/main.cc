// weir: a traffic-shifting HTTP reverse proxy.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "config/config.h"
#include "proxy/log.h"
#include "proxy/demo.h"
#include "proxy/server.h"
#include "proxy/tls_context.h"

namespace {

constexpr const char* kUsage =
    "usage: weir --config FILE        run with FILE\n"
    "       weir --check FILE         validate FILE and exit (0 = valid, 1 = errors)\n"
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

int check(const std::string& path) {
  weir::config::LoadResult r = weir::config::load_file(path);
  if (r.config && !weir::proxy::build_tls_set(*r.config, &r.errors)) r.config.reset();
  if (!r.config) {
    for (const auto& e : r.errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
    std::fprintf(stderr, "weir: configuration %s has %zu error%s\n", path.c_str(),
                 r.errors.size(), r.errors.size() == 1 ? "" : "s");
    return 1;
  }
  std::fprintf(stderr, "weir: configuration %s is valid\n", path.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path, check_path;
  bool demo = false;
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
      std::printf("weir 0.1.0\n");
      return 0;
    } else if (a == "--help" || a == "-h") {
      std::printf("%s", kUsage);
      return 0;
    } else {
      return usage_error("unknown argument '" + std::string(a) + "'");
    }
  }
  if (!check_path.empty()) return check(check_path);
  if (demo) {
    weir::proxy::DemoOptions options;
    options.port = static_cast<uint16_t>(demo_port);
    options.admin_port = static_cast<uint16_t>(demo_admin_port);
    options.workers = static_cast<unsigned>(workers);
    return weir::proxy::run_demo(options);
  }
  if (config_path.empty()) return usage_error("nothing to do");
  weir::config::LoadResult r = weir::config::load_file(config_path);
  if (!r.config) {
    for (const auto& e : r.errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
    weir::proxy::log(weir::proxy::LogLevel::kError, "not starting: %s is invalid",
                     config_path.c_str());
    return 1;
  }
  weir::proxy::set_log_format(r.config->log.format);
  weir::proxy::Server server(std::make_shared<const weir::config::Config>(std::move(*r.config)));
  return server.run();
}
