#include "proxy/preflight.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <string>
#include <tuple>

#include "proxy/runtime_state.h"
#include "proxy/server.h"
#include "proxy/state_store.h"
#include "proxy/tls_context.h"

namespace weir::proxy {
namespace {

// The numeric form of a resolved address ("127.0.0.1", "::1").
std::string numeric_host(const sockaddr_storage& addr) {
  if (addr.ss_family == AF_UNSPEC) return "";
  char host[NI_MAXHOST];
  socklen_t len = addr.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (getnameinfo(reinterpret_cast<const sockaddr*>(&addr), len, host, sizeof host, nullptr, 0,
                  NI_NUMERICHOST) != 0) {
    return "";
  }
  return host;
}

// Why `path` cannot be created or appended to, or "".
std::string unwritable(const std::filesystem::path& path, bool directory) {
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) {
    if (directory != std::filesystem::is_directory(path, ec))
      return path.string() + (directory ? " is not a directory" : " is a directory");
    if (::access(path.c_str(), directory ? W_OK | X_OK : W_OK) != 0)
      return "cannot write " + path.string() + ": " + std::strerror(errno);
    return "";
  }
  // It will be created: the nearest existing folder above it must be writable.
  std::filesystem::path parent = std::filesystem::absolute(path, ec).parent_path();
  while (!parent.empty() && !std::filesystem::exists(parent, ec) && parent != parent.root_path())
    parent = parent.parent_path();
  if (!std::filesystem::is_directory(parent, ec))
    return "cannot create " + path.string() + ": " + parent.string() + " is not a directory";
  if (::access(parent.c_str(), W_OK | X_OK) != 0)
    return "cannot create " + path.string() + ": " + parent.string() + ": " + std::strerror(errno);
  return "";
}

}  // namespace

std::vector<config::Error> preflight(const config::Config& config, bool resolve) {
  std::vector<config::Error> errors;
  // Resolves `hp` into *addr: false + *why when it does not resolve; true with *addr left
  // empty (AF_UNSPEC) for a name that is not to be resolved.
  auto lookup = [resolve](const config::HostPort& hp, sockaddr_storage* addr, std::string* why) {
    unsigned char raw[sizeof(in6_addr)];
    const bool literal = inet_pton(AF_INET, hp.host.c_str(), raw) == 1 ||
                         inet_pton(AF_INET6, hp.host.c_str(), raw) == 1;
    if (!resolve && !literal) return true;
    return resolve_endpoint(hp.host, hp.port, addr, why);
  };
  auto fail = [&](const std::string& key, const config::SourceLoc& fallback, std::string why) {
    errors.push_back({config.where(key, fallback), key, std::move(why)});
  };
  // Listener names resolve to the addresses they will bind; overlaps that only show once
  // resolved ("localhost" and "127.0.0.1") are refused like literal ones.
  config::Config resolved = config;
  for (size_t i = 0; i < config.listeners.size(); ++i) {
    const config::Listener& l = config.listeners[i];
    sockaddr_storage addr{};
    std::string why;
    if (!lookup(l.address, &addr, &why)) {
      fail("listener[" + std::to_string(i) + "].address", l.loc, why);
    } else if (std::string host = numeric_host(addr); !host.empty()) {
      resolved.listeners[i].address.host = host;
    }
  }
  if (config.admin.enabled) {
    sockaddr_storage addr{};
    std::string why;
    if (!lookup(config.admin.address, &addr, &why)) {
      fail("admin.address", config.admin.loc, why);
    } else if (std::string host = numeric_host(addr); !host.empty()) {
      resolved.admin.address.host = host;
    }
  }
  if (errors.empty()) {
    for (config::Error& e : config::listener_address_conflicts(resolved)) {
      e.message += " (once host names are resolved)";
      errors.push_back(std::move(e));
    }
  }
  for (size_t si = 0; si < config.services.size(); ++si) {
    const config::Service& s = config.services[si];
    for (size_t vi = 0; vi < s.versions.size(); ++vi) {
      const config::Version& v = s.versions[vi];
      for (size_t ei = 0; ei < v.endpoints.size(); ++ei) {
        sockaddr_storage addr{};
        std::string why;
        if (lookup(v.endpoints[ei], &addr, &why)) continue;
        fail("service[" + std::to_string(si) + "].version[" + std::to_string(vi) +
                 "].endpoints[" + std::to_string(ei) + "]",
             v.loc, why + "; fix the name or its DNS record");
      }
    }
  }
  std::vector<config::Error> tls_errors;
  build_tls_set(config, &tls_errors);
  errors.insert(errors.end(), tls_errors.begin(), tls_errors.end());
  const std::string& log = config.proxy.access_log;
  if (!log.empty() && log != "-") {
    if (std::string why = unwritable(log, false); !why.empty())
      fail("proxy.access_log", config.proxy.loc, "access log: " + why);
  }
  const std::string& dir = config.admin.state_dir;
  if (config.admin.enabled && !dir.empty()) {
    std::string why = unwritable(dir, true);
    if (why.empty()) {
      if (auto saved = StateStore(dir).load_state(&why)) {
        if (!RuntimeState::from_json(*saved, &why)) why = dir + "/state.json: " + why;
      }
    }
    if (!why.empty())
      fail("admin.state_dir", config.admin.loc,
           why + " (move a broken state.json away to start from the file's weights)");
  }
  std::stable_sort(errors.begin(), errors.end(),
                   [](const config::Error& a, const config::Error& b) {
                     return std::tie(a.loc.file, a.loc.line, a.loc.column) <
                            std::tie(b.loc.file, b.loc.line, b.loc.column);
                   });
  return errors;
}

}  // namespace weir::proxy
