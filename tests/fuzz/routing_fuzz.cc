// Route matching (routing/route_table.cc) and version choice (routing/picker.cc).
// Input: a TOML config, a line "%%", [health bits], then one request per line:
//   host SP path SP override-header SP cookie-header SP sticky-header
// - A match is a service some route of that listener names; host case and a ":port" suffix do
//   not change it; for plain names and paths it is the documented rule (exact host, then the
//   longest "*.suffix", then "*"; the longest prefix within that host's routes).
// - A choice is a version of the service that has a healthy endpoint, or none with a reason;
//   an override naming a healthy version wins; a sticky key gives the same version on every
//   worker; with every version healthy, total_weight weighted picks give each version exactly
//   its weight (the smooth weighted split).
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "routing/picker.h"
#include "routing/route_table.h"
#include "tests/fuzz/fuzz_config.h"
#include "tests/fuzz/fuzz_input.h"

namespace {

using weir::routing::Choice;
using weir::routing::Picker;
using weir::routing::RequestInfo;
using weir::routing::Service;
using weir::routing::Snapshot;

struct Request {
  std::string_view host, path, override_value, cookie, sticky;
  const weir::config::Service* cfg = nullptr;
};

std::string_view header_of(const void* ctx, std::string_view name) {
  const auto* r = static_cast<const Request*>(ctx);
  if (name == "cookie") return r->cookie;
  if (r->cfg && name == r->cfg->override_header) return r->override_value;
  if (r->cfg && name == r->cfg->sticky.name) return r->sticky;
  return {};
}

std::string_view next_word(std::string_view& line) {
  size_t sp = line.find(' ');
  std::string_view w = line.substr(0, sp);
  line = sp == std::string_view::npos ? std::string_view() : line.substr(sp + 1);
  return w;
}

bool plain(std::string_view s, bool path) {
  if (s.empty() || s.size() > 64 || s.back() == '.' || s.find("//") != std::string_view::npos ||
      s.find("/.") != std::string_view::npos)
    return false;
  return std::all_of(s.begin(), s.end(), [&](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           (path ? c == '/' : c == '.');
  });
}

// The documented rule, straight from the config's routes.
std::optional<uint32_t> model_match(const Snapshot& snap, const std::string& listener,
                                    std::string_view host, std::string_view path) {
  std::map<std::string, uint32_t> index;
  for (uint32_t i = 0; i < snap.services.size(); ++i) index[snap.services[i].name] = i;
  const weir::config::Config& c = *snap.config;
  auto in_group = [&](auto pred) -> std::optional<std::optional<uint32_t>> {
    bool any = false;
    size_t best = 0;
    std::optional<uint32_t> svc;
    for (const auto& r : c.routes) {
      if (r.listener != listener || !pred(r.host)) continue;
      any = true;
      if (path.substr(0, r.path_prefix.size()) == r.path_prefix &&
          (!svc || r.path_prefix.size() > best)) {
        best = r.path_prefix.size();
        svc = index.at(r.service);
      }
    }
    if (!any) return std::nullopt;
    return svc;
  };
  if (auto g = in_group([&](const std::string& h) { return h == host; })) return *g;
  size_t longest = 0;
  std::string suffix;
  for (const auto& r : c.routes) {
    if (r.listener != listener || r.host.size() < 3 || r.host.compare(0, 2, "*.") != 0) continue;
    std::string_view s = std::string_view(r.host).substr(1);
    if (host.size() > s.size() && host.ends_with(s) && s.size() > longest) {
      longest = s.size();
      suffix = std::string(s);
    }
  }
  if (!suffix.empty()) {
    return *in_group(
        [&](const std::string& h) { return h.size() > 1 && h.substr(1) == suffix && h[0] == '*'; });
  }
  auto any = in_group([](const std::string& h) { return h == "*"; });
  return any ? *any : std::nullopt;
}

bool serves(const weir::routing::Version& v) {
  return std::any_of(v.endpoints.begin(), v.endpoints.end(),
                     [](const auto& ep) { return ep.healthy; });
}

void check_choice(const Service& svc, const Choice& c) {
  if (!c.version) {
    WEIR_FUZZ_CHECK(c.why && *c.why, "no version and no reason");
    return;
  }
  WEIR_FUZZ_CHECK(
      c.version >= svc.versions.data() && c.version < svc.versions.data() + svc.versions.size(),
      "chosen version is not one of the service's");
  WEIR_FUZZ_CHECK(serves(*c.version), "chose a version without a healthy endpoint");
}

void check_split(const Service& svc, const Snapshot& snap) {
  if (svc.total_weight == 0 || svc.total_weight > 1000 || svc.config->slow_start_ms != 0) return;
  if (!std::all_of(svc.versions.begin(), svc.versions.end(), serves)) return;
  Picker picker(7);
  picker.reset(snap);
  std::vector<uint32_t> counts(svc.versions.size());
  for (uint32_t i = 0; i < svc.total_weight; ++i) {
    const weir::routing::Version* v = picker.pick_version(svc, 1);
    WEIR_FUZZ_CHECK(v != nullptr, "no pick with every version healthy");
    ++counts[static_cast<size_t>(v - svc.versions.data())];
  }
  for (size_t i = 0; i < svc.versions.size(); ++i) {
    WEIR_FUZZ_CHECK(counts[i] == svc.versions[i].weight, "the weighted split is not exact");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view all(reinterpret_cast<const char*>(data), size);
  const size_t sep = all.find("\n%%\n");
  if (sep == std::string_view::npos) return 0;
  weir::fuzz::FuzzInput in(data + sep + 4, size - sep - 4);
  const uint8_t health_bits = in.byte();
  weir::routing::HealthInput health;
  for (int i = 0; i < 8; ++i) health.endpoints.push_back({(health_bits >> i & 1) == 0});
  auto snap = weir::fuzz::snapshot_from(all.substr(0, sep), &health);
  if (!snap || snap->services.empty() || snap->listeners.empty()) return 0;
  const std::string& listener = snap->config->listeners[0].name;
  const weir::routing::RouteTable& table = snap->listeners[0];

  for (const auto& svc : snap->services) check_split(svc, *snap);
  Picker a(1), b(2);
  a.reset(*snap);
  b.reset(*snap);
  for (int n = 0; n < 64 && !in.rest().empty(); ++n) {
    std::string_view line = in.line(512);
    Request req;
    req.host = next_word(line);
    req.path = next_word(line);
    req.override_value = next_word(line);
    req.cookie = next_word(line);
    req.sticky = line;

    const std::optional<uint32_t> m = table.match(req.host, req.path);
    if (m) WEIR_FUZZ_CHECK(*m < snap->services.size(), "route to a service out of range");
    std::string upper(req.host);
    for (char& c : upper) c = (c >= 'a' && c <= 'z') ? static_cast<char>(c - 32) : c;
    WEIR_FUZZ_CHECK(table.match(upper, req.path) == m, "host case changes the route");
    if (req.host.find_first_of(":[]") == std::string_view::npos) {
      WEIR_FUZZ_CHECK(table.match(std::string(req.host) + ":8443", req.path) == m,
                      "a port in Host changes the route");
    }
    if (plain(req.host, false) && plain(req.path, true) && req.path[0] == '/') {
      WEIR_FUZZ_CHECK(model_match(*snap, listener, req.host, req.path) == m,
                      "route differs from the documented host/prefix rule");
    }
    if (!m) continue;

    const Service& svc = snap->services[*m];
    req.cfg = svc.config;
    RequestInfo info{&req, header_of, req.sticky};
    const Choice c = a.choose(svc, info, 1);
    check_choice(svc, c);
    const Choice again = b.choose(svc, info, 1);
    check_choice(svc, again);
    if ((c.reason == Choice::Reason::kSticky && c.assign_bucket < 0) ||
        c.reason == Choice::Reason::kOverride) {
      WEIR_FUZZ_CHECK(again.version && again.version->name == c.version->name,
                      "sticky or override choice differs between workers");
    }
    if (!svc.config->override_header.empty() && !req.override_value.empty()) {
      for (const auto& v : svc.versions) {
        if (v.name == req.override_value && serves(v)) {
          WEIR_FUZZ_CHECK(c.reason == Choice::Reason::kOverride && c.version == &v,
                          "an override naming a healthy version did not win");
        }
      }
    }
    if (c.version) {
      const weir::routing::Endpoint* ep = a.pick_endpoint(*c.version, 1);
      WEIR_FUZZ_CHECK(ep && ep->healthy, "a serving version gave no healthy endpoint");
    }
  }
  return 0;
}
