#include "routing/snapshot.h"

namespace weir::routing {

uint32_t EndpointRegistry::next(std::unordered_map<std::string, uint32_t>& ids,
                                const std::string& key) {
  auto [it, inserted] = ids.try_emplace(key, static_cast<uint32_t>(ids.size()));
  return it->second;
}

std::shared_ptr<const Snapshot> build_snapshot(std::shared_ptr<const config::Config> config,
                                               EndpointRegistry& registry, uint64_t generation,
                                               const Resolver& resolve, std::string* error) {
  auto snap = std::make_shared<Snapshot>();
  snap->generation = generation;
  snap->config = config;
  std::unordered_map<std::string, uint32_t> service_index;
  for (const auto& cs : config->services) {
    Service svc;
    svc.name = cs.name;
    for (const auto& cv : cs.versions) {
      Version v;
      v.name = cv.name;
      v.weight = cv.weight;
      v.index = snap->version_count++;
      v.stats_id = registry.version_id_for(cs.name, cv.name);
      for (const auto& hp : cv.endpoints) {
        Endpoint ep;
        ep.host = hp.host;
        ep.port = hp.port;
        ep.address = hp.to_string();
        ep.id = registry.id_for(ep.address);
        std::string why;
        if (!resolve(ep.host, ep.port, &ep.addr, &why)) {
          *error = "service \"" + cs.name + "\" version \"" + cv.name + "\" endpoint " +
                   ep.address + ": " + why;
          return nullptr;
        }
        v.endpoints.push_back(std::move(ep));
      }
      if (cv.name == cs.stable) svc.stable = static_cast<uint32_t>(svc.versions.size());
      svc.total_weight += v.weight;
      svc.versions.push_back(std::move(v));
    }
    service_index.emplace(svc.name, static_cast<uint32_t>(snap->services.size()));
    snap->services.push_back(std::move(svc));
  }
  for (const auto& listener : config->listeners) {
    std::vector<RouteTable::Entry> entries;
    for (const auto& r : config->routes) {
      if (r.listener != listener.name) continue;
      auto it = service_index.find(r.service);
      if (it == service_index.end()) continue;  // config validation already refused this
      entries.push_back({r.host, r.path_prefix, it->second});
    }
    snap->listeners.emplace_back(std::move(entries));
  }
  snap->endpoint_count = registry.size();
  return snap;
}

}  // namespace weir::routing
