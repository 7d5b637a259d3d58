#include "proxy/demo.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "bench/backend.h"
#include "config/config.h"
#include "proxy/log.h"
#include "proxy/server.h"

namespace weir::proxy {
namespace {

std::string to_hex(const unsigned char* data, size_t len) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (size_t i = 0; i < len; ++i) {
    out += kDigits[data[i] >> 4];
    out += kDigits[data[i] & 15];
  }
  return out;
}

// A fresh random token and the tokens file that admits it (its SHA-256 only), in `dir`.
bool write_token_file(const std::string& path, std::string* token) {
  unsigned char raw[16];
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (RAND_bytes(raw, sizeof raw) != 1) return false;
  *token = "demo-" + to_hex(raw, sizeof raw);
  if (EVP_Digest(token->data(), token->size(), digest, &len, EVP_sha256(), nullptr) != 1) {
    return false;
  }
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (!f) return false;
  std::fprintf(f, "[[token]]\nname = \"demo\"\nscope = \"write\"\nsha256 = \"%s\"\n",
               to_hex(digest, len).c_str());
  return std::fclose(f) == 0;
}

std::string demo_config(const DemoOptions& o, uint16_t blue_port, uint16_t green_port,
                        const std::string& tokens_file) {
  auto port = [](unsigned p) { return std::to_string(p); };
  return "[proxy]\nworkers = " + std::to_string(o.workers) +
         "\n\n[[listener]]\nname = \"demo\"\naddress = \"127.0.0.1:" + port(o.port) +
         "\"\n\n[[service]]\nname = \"demo\"\nstable = \"blue\"\n"
         "override_header = \"x-weir-version\"\n"
         "  [service.health_check]\n  path = \"/healthz\"\n  interval_ms = 1000\n"
         "  [service.guard]\n  interval_ms = 1000\n  window_s = 10\n  min_requests = 20\n"
         "  max_error_rate = 0.05\n  consecutive = 3\n"
         "  [[service.version]]\n  name = \"blue\"\n  weight = 90\n"
         "  endpoints = [\"127.0.0.1:" + port(blue_port) + "\"]\n"
         "  [[service.version]]\n  name = \"green\"\n  weight = 10\n"
         "  endpoints = [\"127.0.0.1:" + port(green_port) + "\"]\n\n"
         "[[route]]\nlistener = \"demo\"\nservice = \"demo\"\n\n"
         "[admin]\naddress = \"127.0.0.1:" + port(o.admin_port) + "\"\ntokens_file = \"" +
         tokens_file + "\"\nopen_metrics = true\n";
}

}  // namespace

int run_demo(const DemoOptions& options) {
  bench::BackendOptions blue_opts;
  blue_opts.name = "blue";
  bench::BackendOptions green_opts;
  green_opts.name = "green";
  bench::Backend blue(blue_opts), green(green_opts);
  std::string error;
  if (!blue.start(&error) || !green.start(&error)) {
    log(LogLevel::kError, "demo backends: %s", error.c_str());
    return 1;
  }
  char dir_template[] = "/tmp/weir-demo-XXXXXX";
  const char* dir = mkdtemp(dir_template);
  if (!dir) {
    log(LogLevel::kError, "demo: mkdtemp: %s", std::strerror(errno));
    return 1;
  }
  const std::string tokens_file = std::string(dir) + "/tokens.toml";
  std::string token;
  if (!write_token_file(tokens_file, &token)) {
    log(LogLevel::kError, "demo: cannot write %s", tokens_file.c_str());
    rmdir(dir);
    return 1;
  }
  config::LoadResult r =
      config::load_string(demo_config(options, blue.port(), green.port(), tokens_file), "<demo>");
  unlink(tokens_file.c_str());
  rmdir(dir);
  if (!r.config) {
    for (const auto& e : r.errors) log(LogLevel::kError, "%s", e.to_string().c_str());
    return 1;
  }
  const std::string admin_port =
      options.admin_port ? std::to_string(options.admin_port) : std::string("PORT");
  std::fprintf(stderr,
               "weir: demo: backends blue on 127.0.0.1:%u and green on 127.0.0.1:%u, split "
               "90/10, guard on green (error rate > 5%% over 10 s reverts it)\n"
               "weir: demo: /metrics on the admin port is open without a token (Prometheus "
               "can scrape http://127.0.0.1:%s/metrics); the rest of the admin API needs it\n"
               "weir: demo: admin token (write scope): %s\n"
               "weir: demo: paste the next line into a shell, then run: build/weirctl status "
               "demo\n",
               blue.port(), green.port(), admin_port.c_str(), token.c_str());
  // Alone on its line, with nothing before it, so that it pastes as it is.
  std::fprintf(stderr, "export WEIR_ADMIN=http://127.0.0.1:%s WEIR_TOKEN=%s\n",
               admin_port.c_str(), token.c_str());
  Server server(std::make_shared<const config::Config>(std::move(*r.config)));
  return server.run();
}

}  // namespace weir::proxy
