// Helpers shared by the fuzz targets that need a loaded config and a routing snapshot.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>

#include <memory>
#include <string>
#include <string_view>

#include "config/config.h"
#include "routing/snapshot.h"

namespace weir::fuzz {

// Every host resolves to 127.0.0.1 (the port as given): no DNS, no I/O.
inline bool loopback_resolver(const std::string&, uint16_t port, sockaddr_storage* out,
                              std::string*) {
  auto* sin = reinterpret_cast<sockaddr_in*>(out);
  sin->sin_family = AF_INET;
  sin->sin_port = htons(port);
  sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return true;
}

// The config in `toml` as a snapshot, or nullptr when it does not load or build (a fuzz input
// that is not a usable config). `health` may mark endpoints down.
inline std::shared_ptr<const routing::Snapshot> snapshot_from(
    std::string_view toml, const routing::HealthInput* health = nullptr) {
  config::LoadResult r = config::load_string(toml, "<fuzz>");
  if (!r.config) return nullptr;
  routing::EndpointRegistry registry;
  std::string error;
  return routing::build_snapshot(std::make_shared<const config::Config>(std::move(*r.config)),
                                 registry, 1, loopback_resolver, &error, health);
}

}  // namespace weir::fuzz
