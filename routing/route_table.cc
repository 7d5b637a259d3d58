#include "routing/route_table.h"

#include <algorithm>

#include "routing/normalize.h"

namespace weir::routing {

RouteTable::RouteTable(std::vector<Entry> entries) {
  for (auto& e : entries) {
    // Requests match in normal form (routing/normalize.h), so prefixes are brought to it too.
    std::string normal;
    Normalized n = normalize_target(e.path_prefix, normal);
    Prefix p{n.ok() ? std::string(n.value) : e.path_prefix, e.service, e.route};
    if (e.host.size() > 1 && e.host.back() == '.') e.host.pop_back();  // as requests' hosts
    if (e.host == "*") {
      any_.push_back(std::move(p));
    } else if (e.host.size() > 2 && e.host[0] == '*' && e.host[1] == '.') {
      std::string suffix = e.host.substr(1);
      auto it = std::find_if(wildcards_.begin(), wildcards_.end(),
                             [&](const auto& w) { return w.first == suffix; });
      if (it == wildcards_.end()) {
        wildcards_.emplace_back(suffix, PrefixList{});
        it = wildcards_.end() - 1;
      }
      it->second.push_back(std::move(p));
    } else {
      exact_[e.host].push_back(std::move(p));
    }
  }
  auto by_length = [](const Prefix& a, const Prefix& b) { return a.prefix.size() > b.prefix.size(); };
  for (auto& [host, list] : exact_) std::stable_sort(list.begin(), list.end(), by_length);
  for (auto& [suffix, list] : wildcards_) std::stable_sort(list.begin(), list.end(), by_length);
  std::stable_sort(any_.begin(), any_.end(), by_length);
  std::stable_sort(wildcards_.begin(), wildcards_.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
}

const RouteTable::Prefix* RouteTable::match_path(const PrefixList& list, std::string_view path) {
  for (const auto& p : list) {
    if (path.substr(0, p.prefix.size()) == p.prefix) return &p;
  }
  return nullptr;
}

std::optional<uint32_t> RouteTable::match(std::string_view host, std::string_view path) const {
  const Prefix* p = find(host, path);
  return p ? std::optional<uint32_t>(p->service) : std::nullopt;
}

std::optional<RouteTable::Match> RouteTable::match_route(std::string_view host,
                                                         std::string_view path) const {
  const Prefix* p = find(host, path);
  return p ? std::optional<Match>(Match{p->service, p->route}) : std::nullopt;
}

const RouteTable::Prefix* RouteTable::find(std::string_view raw_host,
                                           std::string_view raw_path) const {
  // Path parameters are not part of the name a backend resolves ("/api;x/admin" is /api/admin to
  // Tomcat): match without them, or a parameter would step around a more specific route.
  std::string stripped;
  const std::string_view path = path_without_parameters(raw_path, stripped);
  // The common single-site table has only "*": skip host normalization entirely.
  if (exact_.empty() && wildcards_.empty()) return match_path(any_, path);
  std::string host = normalize_host(raw_host);
  // Host picks the route group; a host group without a matching prefix does not fall back to a
  // less specific host, as with nginx server blocks.
  auto it = exact_.find(host);
  if (it != exact_.end()) return match_path(it->second, path);
  for (const auto& [suffix, list] : wildcards_) {
    if (host.size() > suffix.size() && host.ends_with(suffix)) return match_path(list, path);
  }
  return match_path(any_, path);
}

std::string normalize_host(std::string_view host) {
  std::string out;
  size_t end = host.size();
  if (!host.empty() && host[0] == '[') {
    size_t close = host.find(']');
    if (close != std::string_view::npos) end = close + 1;
  } else {
    size_t colon = host.rfind(':');
    if (colon != std::string_view::npos) end = colon;
    if (end > 1 && host[end - 1] == '.') --end;  // "example.com." is "example.com"
  }
  out.reserve(end);
  for (size_t i = 0; i < end; ++i) {
    char c = host[i];
    out.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c);
  }
  return out;
}

}  // namespace weir::routing
