// Route matching for one listener: host first (exact, then the longest "*.suffix" wildcard,
// then "*"), then the longest path prefix among that host's routes. Built once per snapshot.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace weir::routing {

class RouteTable {
 public:
  struct Entry {
    std::string host;         // "*", "*.example.com" or exact; lower-case
    std::string path_prefix;  // starts with '/'
    uint32_t service = 0;
  };

  RouteTable() = default;
  explicit RouteTable(std::vector<Entry> entries);

  // `host` is the request's Host, any case, with or without port; `path` the request target's
  // path in normal form (routing/normalize.h).
  // Returns the service index, or nullopt for "no route" (404).
  std::optional<uint32_t> match(std::string_view host, std::string_view path) const;

 private:
  struct Prefix {
    std::string prefix;
    uint32_t service;
  };
  using PrefixList = std::vector<Prefix>;  // longest prefix first

  static std::optional<uint32_t> match_path(const PrefixList& list, std::string_view path);

  std::unordered_map<std::string, PrefixList> exact_;
  std::vector<std::pair<std::string, PrefixList>> wildcards_;  // suffix ".example.com", longest first
  PrefixList any_;
};

// Lower-cases `host`, strips a trailing ":port" (keeps IPv6 brackets) and one trailing dot. Used
// for matching.
std::string normalize_host(std::string_view host);

}  // namespace weir::routing
