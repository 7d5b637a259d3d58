#include "proxy/demo.h"

#include <cstdio>
#include <memory>
#include <string>

#include "bench/backend.h"
#include "config/config.h"
#include "proxy/server.h"

namespace weir::proxy {

int run_demo(uint16_t port, unsigned workers) {
  bench::BackendOptions blue_opts;
  blue_opts.name = "blue";
  bench::BackendOptions green_opts;
  green_opts.name = "green";
  bench::Backend blue(blue_opts), green(green_opts);
  std::string error;
  if (!blue.start(&error) || !green.start(&error)) {
    std::fprintf(stderr, "weir: demo backends: %s\n", error.c_str());
    return 1;
  }
  std::string toml = "[proxy]\nworkers = " + std::to_string(workers) +
                     "\n\n[[listener]]\nname = \"demo\"\naddress = \"127.0.0.1:" +
                     std::to_string(port) +
                     "\"\n\n[[service]]\nname = \"demo\"\nstable = \"blue\"\n"
                     "  [[service.version]]\n  name = \"blue\"\n  weight = 90\n"
                     "  endpoints = [\"127.0.0.1:" + std::to_string(blue.port()) + "\"]\n"
                     "  [[service.version]]\n  name = \"green\"\n  weight = 10\n"
                     "  endpoints = [\"127.0.0.1:" + std::to_string(green.port()) + "\"]\n\n"
                     "[[route]]\nlistener = \"demo\"\nservice = \"demo\"\n";
  config::LoadResult r = config::load_string(toml, "<demo>");
  if (!r.config) {
    for (const auto& e : r.errors) std::fprintf(stderr, "weir: %s\n", e.to_string().c_str());
    return 1;
  }
  std::fprintf(stderr,
               "weir: demo: backends blue on 127.0.0.1:%u and green on 127.0.0.1:%u, split "
               "90/10; try: curl -si http://127.0.0.1:%u/ | grep x-backend\n",
               blue.port(), green.port(), port);
  Server server(std::make_shared<const config::Config>(std::move(*r.config)));
  return server.run();
}

}  // namespace weir::proxy
