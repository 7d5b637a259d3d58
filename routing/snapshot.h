// The immutable routing snapshot: everything a worker needs to route a request, built on the
// control thread from a Config and published to workers as shared_ptr<const Snapshot>.
// A request pins the snapshot it started with, so a swap never changes a request mid-flight.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "config/config.h"
#include "routing/route_table.h"

namespace weir::routing {

struct Endpoint {
  uint32_t id = 0;      // stable across snapshots (EndpointRegistry); indexes per-worker state
  std::string host;
  uint16_t port = 0;
  std::string address;  // "host:port", for logs and errors
  sockaddr_storage addr{};  // resolved when the snapshot was built
};

struct Version {
  std::string name;
  uint32_t weight = 0;
  uint32_t index = 0;  // unique across the snapshot; indexes per-worker picker state
  uint32_t stats_id = 0;  // stable across snapshots (EndpointRegistry); indexes statistics
  std::vector<Endpoint> endpoints;
};

struct Service {
  std::string name;
  uint32_t stable = 0;  // index into versions
  uint32_t total_weight = 0;
  std::vector<Version> versions;
};

struct Snapshot {
  uint64_t generation = 0;
  std::shared_ptr<const config::Config> config;
  std::vector<Service> services;
  std::vector<RouteTable> listeners;  // same order as config->listeners
  uint32_t version_count = 0;   // sum of versions over services
  uint32_t endpoint_count = 0;  // 1 + the largest endpoint id
};

// Gives each distinct endpoint address (and each service/version, for statistics) a small id
// that survives config changes, so per-worker pools, failure marks and counters keyed by id stay
// valid across snapshots. Control thread only.
class EndpointRegistry {
 public:
  uint32_t id_for(const std::string& address) { return next(ids_, address); }
  uint32_t size() const { return static_cast<uint32_t>(ids_.size()); }
  // Versions have their own dense id space ("service/version" keys).
  uint32_t version_id_for(const std::string& service, const std::string& version) {
    return next(version_ids_, service + "/" + version);
  }

 private:
  static uint32_t next(std::unordered_map<std::string, uint32_t>& ids, const std::string& key);

  std::unordered_map<std::string, uint32_t> ids_;
  std::unordered_map<std::string, uint32_t> version_ids_;
};

// Turns host:port into a socket address; false + message when it cannot. Injected so routing
// stays free of I/O (proxy/ passes a getaddrinfo-based one; tests pass a fake).
using Resolver = std::function<bool(const std::string& host, uint16_t port, sockaddr_storage* out,
                                    std::string* error)>;

// nullptr + *error when an endpoint cannot be resolved.
std::shared_ptr<const Snapshot> build_snapshot(std::shared_ptr<const config::Config> config,
                                               EndpointRegistry& registry, uint64_t generation,
                                               const Resolver& resolve, std::string* error);

}  // namespace weir::routing
