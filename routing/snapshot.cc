#include "routing/snapshot.h"

#include <algorithm>

namespace weir::routing {

uint32_t EndpointRegistry::next(std::unordered_map<std::string, uint32_t>& ids,
                                const std::string& key) {
  auto [it, inserted] = ids.try_emplace(key, static_cast<uint32_t>(ids.size()));
  return it->second;
}

std::string endpoint_key(const config::Version& version, const config::HostPort& endpoint) {
  std::string key = endpoint.to_string();
  if (version.tls.enabled) key += " tls " + version.tls.sni;
  if (version.protocol == config::UpstreamProtocol::kH2) key += " h2";
  return key;
}

std::shared_ptr<const Snapshot> build_snapshot(const std::shared_ptr<const config::Config>& config,
                                               EndpointRegistry& registry, uint64_t generation,
                                               const Resolver& resolve, std::string* error,
                                               const HealthInput* health,
                                               const UpstreamTlsMap* tls) {
  auto snap = std::make_shared<Snapshot>();
  snap->generation = generation;
  snap->config = config;
  std::unordered_map<std::string, uint32_t> service_index;
  for (const auto& cs : config->services) {
    Service svc;
    svc.name = cs.name;
    svc.config = &cs;
    for (const auto& cv : cs.versions) {
      Version v;
      v.name = cv.name;
      v.weight = cv.weight;
      v.config = &cv;
      v.slow_start_ms = cs.slow_start_ms;
      v.least_request = cs.balance == config::Service::Balance::kLeastRequest;
      v.index = snap->version_count++;
      v.stats_id = registry.version_id_for(cs.name, cv.name);
      if (health) {
        auto it = health->version_ramp_start.find(cs.name + "/" + cv.name);
        if (it != health->version_ramp_start.end()) v.ramp_start_ms = it->second;
      }
      v.h2 = cv.protocol == config::UpstreamProtocol::kH2;
      if (cv.tls.enabled) {
        auto it = tls ? tls->find(cs.name + "/" + cv.name) : UpstreamTlsMap::const_iterator();
        if (!tls || it == tls->end()) {
          *error = "service \"" + cs.name + "\" version \"" + cv.name +
                   "\": upstream TLS has no client context";
          return nullptr;
        }
        v.tls = it->second;
      }
      for (const auto& hp : cv.endpoints) {
        Endpoint ep;
        ep.host = hp.host;
        ep.port = hp.port;
        ep.address = hp.to_string();
        ep.id = registry.id_for(endpoint_key(cv, hp));
        std::string why;
        if (!resolve(ep.host, ep.port, &ep.addr, &why)) {
          *error = "service \"" + cs.name + "\" version \"" + cv.name + "\" endpoint " +
                   ep.address + ": " + why;
          return nullptr;
        }
        if (health && ep.id < health->endpoints.size()) {
          const EndpointStatus& st = health->endpoints[ep.id];
          ep.healthy = st.healthy && !st.ejected;
          ep.eject_epoch = st.eject_epoch;
          ep.ramp_start_ms = st.ramp_start_ms;
        }
        v.endpoints.push_back(std::move(ep));
      }
      if (cv.name == cs.mirror.version) svc.mirror = static_cast<int32_t>(svc.versions.size());
      if (cv.name == cs.stable) svc.stable = static_cast<uint32_t>(svc.versions.size());
      svc.total_weight += v.weight;
      svc.versions.push_back(std::move(v));
    }
    for (uint32_t i = 0; i < svc.versions.size(); ++i) svc.bucket_order.push_back(i);
    std::sort(svc.bucket_order.begin(), svc.bucket_order.end(), [&](uint32_t a, uint32_t b) {
      if ((a == svc.stable) != (b == svc.stable)) return a == svc.stable;
      return svc.versions[a].name < svc.versions[b].name;
    });
    service_index.emplace(svc.name, static_cast<uint32_t>(snap->services.size()));
    snap->services.push_back(std::move(svc));
  }
  for (const auto& listener : config->listeners) {
    std::vector<RouteTable::Entry> entries;
    for (uint32_t ri = 0; ri < config->routes.size(); ++ri) {
      const auto& r = config->routes[ri];
      if (r.listener != listener.name) continue;
      auto it = service_index.find(r.service);
      if (it == service_index.end()) continue;  // config validation already refused this
      entries.push_back({r.host, r.path_prefix, it->second, ri});
    }
    snap->listeners.emplace_back(std::move(entries));
  }
  snap->endpoint_count = registry.size();
  return snap;
}

}  // namespace weir::routing
