// The immutable routing snapshot: everything a worker needs to route a request, built on the
// control thread from a Config and published to workers as shared_ptr<const Snapshot>.
// A request pins the snapshot it started with, so a swap never changes a request mid-flight.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "config/config.h"
#include "routing/route_table.h"

namespace weir::routing {

// A version's client-side TLS context, built by proxy/ (OpenSSL) with the config and opaque
// here: the snapshot carries it so that a request pins it like everything else it uses.
class OpaqueTls {
 public:
  virtual ~OpaqueTls() = default;
};
// By "service/version"; versions without upstream TLS are absent.
using UpstreamTlsMap = std::map<std::string, std::shared_ptr<const OpaqueTls>>;

struct Endpoint {
  uint32_t id = 0;      // stable across snapshots (EndpointRegistry); indexes per-worker state
  std::string host;
  uint16_t port = 0;
  std::string address;  // "host:port", for logs and errors
  sockaddr_storage addr{};  // resolved when the snapshot was built
  bool healthy = true;      // active probes pass and not ejected: pickers skip it otherwise
  uint32_t eject_epoch = 0;   // bumps when an ejection ends, so workers restart their streaks
  uint64_t ramp_start_ms = 0;  // slow start began here (monotonic ms); 0 = full share
};

struct Version {
  std::string name;
  uint32_t weight = 0;
  uint32_t index = 0;  // unique across the snapshot; indexes per-worker picker state
  uint32_t stats_id = 0;  // stable across snapshots (EndpointRegistry); indexes statistics
  std::vector<Endpoint> endpoints;
  uint64_t ramp_start_ms = 0;  // weight rose from 0 here (slow start); 0 = full share
  uint32_t slow_start_ms = 0;  // the service's
  bool least_request = false;  // the service's balance
  std::shared_ptr<const OpaqueTls> tls;  // nullptr = plain TCP to the endpoints
  bool h2 = false;                       // the endpoints speak HTTP/2 (h2, or h2c when plain)
  const config::Version* config = nullptr;  // owned by Snapshot::config
};

struct Service {
  std::string name;
  uint32_t stable = 0;  // index into versions
  uint32_t total_weight = 0;
  std::vector<Version> versions;
  // Sticky bucket layout order: stable first, then the others by name, so that growing a
  // canary's weight moves buckets only from stable to that canary.
  std::vector<uint32_t> bucket_order;
  int32_t mirror = -1;  // index into versions of the mirror target; -1 = none
  const config::Service* config = nullptr;  // owned by Snapshot::config
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

// What the control thread knows about endpoint and version state, applied to a new snapshot.
struct EndpointStatus {
  bool healthy = true;  // active health checks
  bool ejected = false;  // passive outlier ejection
  uint32_t eject_epoch = 0;
  uint64_t ramp_start_ms = 0;
};
struct HealthInput {
  std::vector<EndpointStatus> endpoints;  // by Endpoint::id; missing ids are healthy
  std::map<std::string, uint64_t> version_ramp_start;  // by "service/version"
};

// Turns host:port into a socket address; false + message when it cannot. Injected so routing
// stays free of I/O (proxy/ passes a getaddrinfo-based one; tests pass a fake).
using Resolver = std::function<bool(const std::string& host, uint16_t port, sockaddr_storage* out,
                                    std::string* error)>;

// The EndpointRegistry key of one endpoint of `version`: its address, plus how it is spoken to
// (TLS and its SNI, HTTP/2), since the pools keyed by id must never mix the two.
std::string endpoint_key(const config::Version& version, const config::HostPort& endpoint);

// nullptr + *error when an endpoint cannot be resolved, or a version with TLS enabled has no
// context in `tls`.
std::shared_ptr<const Snapshot> build_snapshot(const std::shared_ptr<const config::Config>& config,
                                               EndpointRegistry& registry, uint64_t generation,
                                               const Resolver& resolve, std::string* error,
                                               const HealthInput* health = nullptr,
                                               const UpstreamTlsMap* tls = nullptr);

}  // namespace weir::routing
