#include "routing/picker.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"
#include "routing/snapshot.h"

namespace weir::routing {
namespace {

struct VersionSpec {
  std::string name;
  uint32_t weight;
  std::vector<std::string> endpoints;  // "host:port"
};

config::Service make_service(const std::string& name, const std::string& stable,
                             const std::vector<VersionSpec>& versions) {
  config::Service s;
  s.name = name;
  s.stable = stable;
  for (const auto& spec : versions) {
    config::Version v;
    v.name = spec.name;
    v.weight = spec.weight;
    for (const auto& ep : spec.endpoints) {
      auto hp = config::parse_host_port(ep, false);
      REQUIRE_MESSAGE(hp.has_value(), ep);
      v.endpoints.push_back(*hp);
    }
    s.versions.push_back(std::move(v));
  }
  return s;
}

std::shared_ptr<const config::Config> make_config(std::vector<config::Service> services) {
  auto c = std::make_shared<config::Config>();
  c->services = std::move(services);
  return c;
}

// Resolves any host except those under ".invalid" to an IPv4 address carrying the port, and
// counts its calls; stands in for getaddrinfo so no test touches DNS.
struct FakeResolver {
  int calls = 0;

  Resolver fn() {
    return
        [this](const std::string& host, uint16_t port, sockaddr_storage* out, std::string* error) {
          ++calls;
          if (host.ends_with(".invalid")) {
            *error = "no such host";
            return false;
          }
          auto* sin = reinterpret_cast<sockaddr_in*>(out);
          sin->sin_family = AF_INET;
          sin->sin_port = htons(port);
          sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
          return true;
        };
  }
};

// Builds snapshots the way the control thread does: one registry across generations.
struct Builder {
  EndpointRegistry registry;
  FakeResolver resolver;
  uint64_t generation = 0;

  std::shared_ptr<const Snapshot> build(std::shared_ptr<const config::Config> c) {
    std::string error;
    auto snap = build_snapshot(std::move(c), registry, ++generation, resolver.fn(), &error);
    REQUIRE_MESSAGE(snap != nullptr, error);
    CHECK(error.empty());
    return snap;
  }

  std::shared_ptr<const Snapshot> build_one(const std::string& stable,
                                            const std::vector<VersionSpec>& versions) {
    return build(make_config({make_service("s", stable, versions)}));
  }
};

const Version& version_named(const Service& svc, const std::string& name) {
  for (const auto& v : svc.versions) {
    if (v.name == name) return v;
  }
  FAIL("no version " << name);
  return svc.versions.front();
}

// One service "s" in a fresh snapshot, and a worker's Picker that has adopted it.
struct OneService {
  OneService(const std::string& stable, const std::vector<VersionSpec>& versions, uint64_t seed)
      : snap(b.build_one(stable, versions)), picker(seed) {
    picker.reset(*snap);
  }
  const Service& svc() const { return snap->services[0]; }

  Builder b;
  std::shared_ptr<const Snapshot> snap;
  Picker picker;
};

void mark_version_failed(Picker& picker, const Version& v, uint64_t until_ms) {
  for (const auto& ep : v.endpoints) picker.mark_failed(ep.id, until_ms);
}

// How often each version name is picked in `n` tries (a nullptr counts as "<nullptr>").
std::map<std::string, int> pick_counts(Picker& picker, const Service& svc, int n,
                                       uint64_t now_ms = 0) {
  std::map<std::string, int> counts;
  for (int i = 0; i < n; ++i) {
    const Version* v = picker.pick_version(svc, now_ms);
    ++counts[v ? v->name : "<nullptr>"];
  }
  CHECK(counts.count("<nullptr>") == 0);
  return counts;
}

// The ports of the next `n` endpoints picked from `v`.
std::vector<uint16_t> pick_ports(Picker& picker, const Version& v, int n, uint64_t now_ms = 0,
                                 uint32_t exclude_id = Picker::kNoEndpoint) {
  std::vector<uint16_t> ports;
  for (int i = 0; i < n; ++i) {
    const Endpoint* ep = picker.pick_endpoint(v, now_ms, exclude_id);
    REQUIRE(ep != nullptr);
    ports.push_back(ep->port);
  }
  return ports;
}

// Requires the observed share of `name` to be within one percentage point of `expected`.
void check_share(const std::map<std::string, int>& counts, const std::string& name, int n,
                 double expected) {
  auto it = counts.find(name);
  double share = it == counts.end() ? 0.0 : static_cast<double>(it->second) / n;
  CAPTURE(name);
  CAPTURE(share);
  CHECK(share >= expected - 0.01);
  CHECK(share <= expected + 0.01);
}

// ---- build_snapshot ---------------------------------------------------------------------------

TEST_CASE("build_snapshot lays out services, versions and endpoints") {
  Builder b;
  auto cfg = make_config(
      {make_service("shop", "green",
                    {{"blue", 90, {"10.0.0.1:80", "10.0.0.2:81"}}, {"green", 10, {"[::1]:82"}}}),
       make_service("api", "v1", {{"v1", 0, {"api.local:8080"}}})});
  auto snap = b.build(cfg);
  CHECK(snap->generation == 1);
  CHECK(snap->config == cfg);
  REQUIRE(snap->services.size() == 2);
  CHECK(snap->version_count == 3);
  CHECK(snap->endpoint_count == 4);
  CHECK(b.resolver.calls == 4);

  const Service& shop = snap->services[0];
  CHECK(shop.name == "shop");
  CHECK(shop.total_weight == 100);
  REQUIRE(shop.versions.size() == 2);
  CHECK(shop.versions[shop.stable].name == "green");
  CHECK(shop.versions[0].weight == 90);
  CHECK(shop.versions[0].index == 0);
  CHECK(shop.versions[1].index == 1);
  const Endpoint& first = shop.versions[0].endpoints.at(0);
  CHECK(first.host == "10.0.0.1");
  CHECK(first.port == 80);
  CHECK(first.address == "10.0.0.1:80");
  CHECK(first.addr.ss_family == AF_INET);
  CHECK(ntohs(reinterpret_cast<const sockaddr_in*>(&first.addr)->sin_port) == 80);
  CHECK(shop.versions[1].endpoints.at(0).address == "[::1]:82");

  const Service& api = snap->services[1];
  CHECK(api.total_weight == 0);
  CHECK(api.stable == 0);
  CHECK(api.versions.at(0).index == 2);
  CHECK(api.versions[0].endpoints.at(0).address == "api.local:8080");
}

TEST_CASE("build_snapshot builds one route table per listener from that listener's routes") {
  auto c = std::make_shared<config::Config>();
  c->services = {make_service("a", "v", {{"v", 1, {"10.0.0.1:80"}}}),
                 make_service("b", "v", {{"v", 1, {"10.0.0.2:80"}}})};
  c->listeners.resize(2);
  c->listeners[0].name = "public";
  c->listeners[1].name = "admin";
  auto route = [](std::string listener, std::string host, std::string prefix, std::string svc) {
    config::Route r;
    r.listener = std::move(listener);
    r.host = std::move(host);
    r.path_prefix = std::move(prefix);
    r.service = std::move(svc);
    return r;
  };
  c->routes = {route("public", "*", "/", "a"), route("admin", "*", "/", "b"),
               route("public", "*", "/b", "b"), route("admin", "*", "/x", "missing")};
  Builder b;
  auto snap = b.build(c);
  REQUIRE(snap->listeners.size() == 2);
  CHECK(snap->listeners[0].match("h", "/") == 0u);
  CHECK(snap->listeners[0].match("h", "/b/1") == 1u);
  CHECK(snap->listeners[1].match("h", "/b/1") == 1u);
  CHECK(snap->listeners[1].match("h", "/x") == 1u);
}

TEST_CASE("build_snapshot refuses an endpoint that cannot be resolved, naming it") {
  Builder b;
  std::string error;
  auto c = make_config({make_service(
      "shop", "blue",
      {{"blue", 1, {"10.0.0.1:80"}}, {"green", 1, {"10.0.0.2:80", "gone.invalid:8080"}}})});
  auto snap = build_snapshot(c, b.registry, 7, b.resolver.fn(), &error);
  CHECK(snap == nullptr);
  CHECK(error == "service \"shop\" version \"green\" endpoint gone.invalid:8080: no such host");
}

TEST_CASE("EndpointRegistry ids are stable across snapshots and shared by equal addresses") {
  EndpointRegistry reg;
  CHECK(reg.size() == 0);
  CHECK(reg.id_for("a:1") == 0);
  CHECK(reg.id_for("b:1") == 1);
  CHECK(reg.id_for("a:1") == 0);
  CHECK(reg.size() == 2);

  Builder b;
  auto first = b.build_one("v", {{"v", 1, {"10.0.0.1:80", "10.0.0.2:80"}}});
  auto id_of = [](const Snapshot& s, const std::string& address) {
    for (const auto& svc : s.services) {
      for (const auto& v : svc.versions) {
        for (const auto& ep : v.endpoints) {
          if (ep.address == address) return ep.id;
        }
      }
    }
    FAIL("no endpoint " << address);
    return 0u;
  };
  uint32_t one = id_of(*first, "10.0.0.1:80");
  uint32_t two = id_of(*first, "10.0.0.2:80");
  CHECK(one != two);

  auto second = b.build(make_config(
      {make_service("s", "w", {{"w", 1, {"10.0.0.3:80", "10.0.0.2:80"}}}),
       make_service("t", "v", {{"v", 1, {"10.0.0.1:80"}}, {"u", 1, {"10.0.0.2:80"}}})}));
  CHECK(second->generation == 2);
  CHECK(id_of(*second, "10.0.0.1:80") == one);
  CHECK(id_of(*second, "10.0.0.2:80") == two);
  CHECK(id_of(*second, "10.0.0.3:80") == 2);
  CHECK(second->endpoint_count == 3);
  CHECK(second->services[1].versions[1].endpoints[0].id == two);
}

// ---- pick_version -----------------------------------------------------------------------------

TEST_CASE("pick_version splits traffic by weight") {
  struct Split {
    std::vector<VersionSpec> versions;
    std::vector<std::pair<std::string, double>> shares;
  };
  const Split splits[] = {
      {{{"blue", 90, {"10.0.0.1:80"}}, {"green", 10, {"10.0.0.2:80"}}},
       {{"blue", 0.9}, {"green", 0.1}}},
      {{{"blue", 1, {"10.0.0.1:80"}}, {"green", 1, {"10.0.0.2:80"}}},
       {{"blue", 0.5}, {"green", 0.5}}},
      {{{"a", 50, {"10.0.0.1:80"}}, {"b", 30, {"10.0.0.2:80"}}, {"c", 20, {"10.0.0.3:80"}}},
       {{"a", 0.5}, {"b", 0.3}, {"c", 0.2}}},
      {{{"blue", 999, {"10.0.0.1:80"}}, {"green", 1, {"10.0.0.2:80"}}},
       {{"blue", 0.999}, {"green", 0.001}}},
      {{{"blue", 100, {"10.0.0.1:80"}}, {"dark", 0, {"10.0.0.2:80"}}},
       {{"blue", 1.0}, {"dark", 0.0}}},
  };
  constexpr int kPicks = 100000;
  for (const auto& split : splits) {
    OneService one(split.versions[0].name, split.versions, 42);
    auto counts = pick_counts(one.picker, one.svc(), kPicks);
    for (const auto& [name, share] : split.shares) check_share(counts, name, kPicks, share);
  }
}

TEST_CASE("a version with weight 0 is never picked while anything else can serve") {
  OneService one(
      "blue",
      {{"dark", 0, {"10.0.0.9:80"}}, {"blue", 5, {"10.0.0.1:80"}}, {"green", 5, {"10.0.0.2:80"}}},
      1);
  Picker& picker = one.picker;
  const Service& svc = one.svc();
  CHECK(pick_counts(picker, svc, 10000).count("dark") == 0);
  mark_version_failed(picker, version_named(svc, "blue"), 1000);
  CHECK(pick_counts(picker, svc, 10000) == std::map<std::string, int>{{"green", 10000}});
  mark_version_failed(picker, version_named(svc, "green"), 1000);
  // Only the dark version is usable: the weighted choice is tried anyway, never the dark one.
  CHECK(pick_counts(picker, svc, 10000).count("dark") == 0);
}

TEST_CASE("a version whose endpoints are all failed hands its share to stable, then any usable") {
  OneService one("blue",
                 {{"blue", 50, {"10.0.0.1:80", "10.0.0.2:80"}},
                  {"green", 30, {"10.0.0.3:80", "10.0.0.4:80"}},
                  {"canary", 20, {"10.0.0.5:80"}}},
                 7);
  Picker& picker = one.picker;
  const Service& svc = one.svc();
  const Version& blue = version_named(svc, "blue");
  const Version& green = version_named(svc, "green");
  const Version& canary = version_named(svc, "canary");
  constexpr int kPicks = 20000;

  SUBCASE("one failed endpoint keeps the version in the split") {
    picker.mark_failed(green.endpoints[0].id, 1000);
    auto counts = pick_counts(picker, svc, kPicks);
    check_share(counts, "green", kPicks, 0.3);
  }
  SUBCASE("a failed non-stable version's share goes to stable") {
    mark_version_failed(picker, green, 1000);
    auto counts = pick_counts(picker, svc, kPicks);
    CHECK(counts.count("green") == 0);
    check_share(counts, "blue", kPicks, 0.8);
    check_share(counts, "canary", kPicks, 0.2);
  }
  SUBCASE("a failed stable version's share goes to the first usable version") {
    mark_version_failed(picker, blue, 1000);
    auto counts = pick_counts(picker, svc, kPicks);
    CHECK(counts.count("blue") == 0);
    check_share(counts, "green", kPicks, 0.8);
    check_share(counts, "canary", kPicks, 0.2);
  }
  SUBCASE("with stable and one more failed, the last usable version takes everything") {
    mark_version_failed(picker, blue, 1000);
    mark_version_failed(picker, green, 1000);
    CHECK(pick_counts(picker, svc, kPicks) == std::map<std::string, int>{{"canary", kPicks}});
  }
  SUBCASE("with everything failed the weighted choice is tried anyway") {
    for (const auto* v : {&blue, &green, &canary}) mark_version_failed(picker, *v, 1000);
    auto counts = pick_counts(picker, svc, kPicks);
    check_share(counts, "blue", kPicks, 0.5);
    check_share(counts, "green", kPicks, 0.3);
    check_share(counts, "canary", kPicks, 0.2);
  }
  SUBCASE("marks expire with time and mark_ok clears them") {
    mark_version_failed(picker, green, 1000);
    CHECK(pick_counts(picker, svc, kPicks, 999).count("green") == 0);
    check_share(pick_counts(picker, svc, kPicks, 1000), "green", kPicks, 0.3);
    mark_version_failed(picker, green, 5000);
    CHECK(pick_counts(picker, svc, kPicks, 1000).count("green") == 0);
    picker.mark_ok(green.endpoints[1].id);
    check_share(pick_counts(picker, svc, kPicks, 1000), "green", kPicks, 0.3);
  }
}

TEST_CASE("a stable version with weight 0 still takes the share of a failed version") {
  OneService one("blue", {{"blue", 0, {"10.0.0.1:80"}}, {"green", 100, {"10.0.0.2:80"}}}, 3);
  Picker& picker = one.picker;
  const Service& svc = one.svc();
  CHECK(pick_counts(picker, svc, 1000) == std::map<std::string, int>{{"green", 1000}});
  mark_version_failed(picker, version_named(svc, "green"), 50);
  CHECK(pick_counts(picker, svc, 1000, 49) == std::map<std::string, int>{{"blue", 1000}});
  CHECK(pick_counts(picker, svc, 1000, 50) == std::map<std::string, int>{{"green", 1000}});
}

TEST_CASE("pick_version edge cases on hand-built services") {
  Picker picker(9);
  Service svc;
  CHECK(picker.pick_version(svc, 0) == nullptr);

  Version empty;
  empty.name = "empty";
  empty.weight = 1;
  svc.versions = {empty};
  svc.total_weight = 1;
  CHECK(picker.pick_version(svc, 0) == nullptr);

  Version zero;
  zero.name = "zero";
  zero.endpoints.resize(1);
  zero.endpoints[0].id = 0;
  svc.versions = {zero};
  svc.total_weight = 0;
  const Version* v = picker.pick_version(svc, 0);
  REQUIRE(v != nullptr);
  CHECK(v->name == "zero");
  picker.mark_failed(0, 100);
  v = picker.pick_version(svc, 0);
  REQUIRE(v != nullptr);
  CHECK(v->name == "zero");
}

TEST_CASE("weighted choice does not depend on the seed, and seed 0 still picks") {
  auto sequence = [](uint64_t seed) {
    OneService one("a", {{"a", 1, {"10.0.0.1:80"}}, {"b", 1, {"10.0.0.2:80"}}}, seed);
    std::string out;
    for (int i = 0; i < 64; ++i) out += one.picker.pick_version(one.svc(), 0)->name;
    return out;
  };
  CHECK(sequence(5) == sequence(6));
  std::string zero = sequence(0);
  CHECK(zero.find('a') != std::string::npos);
  CHECK(zero.find('b') != std::string::npos);
}

// ---- pick_endpoint ----------------------------------------------------------------------------

struct EndpointFixture {
  OneService one{"v",
                 {{"v", 1, {"10.0.0.1:1", "10.0.0.2:2", "10.0.0.3:3"}},
                  {"w", 1, {"10.0.0.4:4", "10.0.0.5:5"}},
                  {"lone", 1, {"10.0.0.6:6"}}},
                 11};
  const std::shared_ptr<const Snapshot>& snap = one.snap;
  Picker& picker = one.picker;
  const Version& v = one.svc().versions[0];
  const Version& w = one.svc().versions[1];
  const Version& lone = one.svc().versions[2];

  uint32_t id(const Version& ver, size_t i) const { return ver.endpoints.at(i).id; }
};

using Ports = std::vector<uint16_t>;

TEST_CASE_FIXTURE(EndpointFixture, "pick_endpoint is round-robin, with a cursor per version") {
  CHECK(pick_ports(picker, v, 4) == Ports{1, 2, 3, 1});
  CHECK(pick_ports(picker, w, 3) == Ports{4, 5, 4});
  CHECK(pick_ports(picker, v, 3) == Ports{2, 3, 1});
  CHECK(pick_ports(picker, lone, 3) == Ports{6, 6, 6});
}

TEST_CASE_FIXTURE(EndpointFixture, "pick_endpoint skips failed endpoints until their mark ends") {
  picker.mark_failed(id(v, 1), 100);
  CHECK_FALSE(picker.usable(id(v, 1), 99));
  CHECK(picker.usable(id(v, 1), 100));
  CHECK(picker.usable(id(v, 0), 0));
  CHECK(pick_ports(picker, v, 4, 99) == Ports{1, 3, 1, 3});
  CHECK(pick_ports(picker, v, 3, 100) == Ports{1, 2, 3});
  picker.mark_failed(id(v, 2), 100);
  picker.mark_ok(id(v, 2));
  CHECK(picker.usable(id(v, 2), 0));
  CHECK(pick_ports(picker, v, 3, 0) == Ports{1, 3, 1});
}

TEST_CASE_FIXTURE(EndpointFixture, "pick_endpoint skips the excluded endpoint (a retry)") {
  CHECK(pick_ports(picker, v, 4, 0, id(v, 0)) == Ports{2, 3, 2, 3});
  CHECK(pick_ports(picker, v, 1) == Ports{1});
  picker.mark_failed(id(v, 2), 100);
  CHECK(pick_ports(picker, v, 3, 0, id(v, 0)) == Ports{2, 2, 2});
  CHECK(picker.pick_endpoint(lone, 0, id(lone, 0)) == nullptr);
  CHECK(pick_ports(picker, lone, 1, 0, id(v, 0)) == Ports{6});
}

TEST_CASE_FIXTURE(EndpointFixture, "with every endpoint failed, pick_endpoint tries one anyway") {
  for (size_t i = 0; i < v.endpoints.size(); ++i) picker.mark_failed(id(v, i), 100);
  CHECK(pick_ports(picker, v, 4) == Ports{1, 2, 3, 1});
  CHECK(pick_ports(picker, v, 2, 0, id(v, 0)) == Ports{2, 3});
  picker.mark_failed(id(lone, 0), 100);
  CHECK(pick_ports(picker, lone, 2) == Ports{6, 6});
  CHECK(picker.pick_endpoint(lone, 0, id(lone, 0)) == nullptr);
}

TEST_CASE_FIXTURE(EndpointFixture, "pick_endpoint with a failed endpoint and the other excluded") {
  picker.mark_failed(id(w, 0), 100);
  CHECK(pick_ports(picker, w, 3, 0, id(w, 1)) == Ports{4, 4, 4});
}

TEST_CASE_FIXTURE(EndpointFixture, "reset restarts cursors but marks survive a snapshot swap") {
  CHECK(pick_ports(picker, v, 2) == Ports{1, 2});
  picker.mark_failed(id(w, 0), 100);
  picker.reset(*snap);
  CHECK(pick_ports(picker, v, 2) == Ports{1, 2});
  CHECK_FALSE(picker.usable(id(w, 0), 0));
}

TEST_CASE("pick_endpoint on a version without endpoints, or unknown to reset") {
  Picker picker(1);
  Version none;
  CHECK(picker.pick_endpoint(none, 0) == nullptr);
  Version late;
  late.index = 40;
  late.endpoints.resize(2);
  late.endpoints[0].id = 70;
  late.endpoints[0].port = 1;
  late.endpoints[1].id = 71;
  late.endpoints[1].port = 2;
  CHECK(picker.usable(70, 0));
  CHECK(pick_ports(picker, late, 3) == Ports{1, 2, 1});
  picker.mark_failed(71, 10);
  CHECK(pick_ports(picker, late, 2, 5) == Ports{1, 1});
  picker.mark_ok(99);
  CHECK(picker.usable(99, 0));
}

// ---- choose: override, sticky, exactness, health, least_request --------------------------------

// A request whose headers are a small name → value map (names lower-case).
struct FakeRequest {
  std::map<std::string, std::string> headers;
  std::string ip = "10.1.2.3";

  RequestInfo info() const {
    RequestInfo r;
    r.ctx = this;
    r.header = [](const void* ctx, std::string_view name) {
      const auto& h = static_cast<const FakeRequest*>(ctx)->headers;
      auto it = h.find(std::string(name));
      return it == h.end() ? std::string_view() : std::string_view(it->second);
    };
    r.client_ip = ip;
    return r;
  }
};

// One service "s" whose config the test shapes before building.
struct PolicyService {
  explicit PolicyService(const std::vector<VersionSpec>& versions, const std::string& stable = "")
      : svc_config(make_service("s", stable.empty() ? versions[0].name : stable, versions)) {}
  void build() {
    snap = b.build(make_config({svc_config}));
    picker.reset(*snap);
  }
  const Service& svc() const { return snap->services[0]; }
  std::string choose(const FakeRequest& req, uint64_t now = 0) {
    Choice c = picker.choose(svc(), req.info(), now);
    return c.version ? c.version->name : std::string("503:") + c.why;
  }

  config::Service svc_config;
  Builder b;
  std::shared_ptr<const Snapshot> snap;
  Picker picker{42};
};

// A snapshot of `ps` where every endpoint of `version` is unhealthy (as active probes report).
void make_unhealthy(PolicyService& ps, const std::string& version) {
  HealthInput health;
  for (const auto& v : ps.svc().versions) {
    for (const auto& ep : v.endpoints) {
      if (health.endpoints.size() <= ep.id) health.endpoints.resize(ep.id + 1);
      if (v.name == version) health.endpoints[ep.id].healthy = false;
    }
  }
  std::string error;
  ps.snap = build_snapshot(ps.snap->config, ps.b.registry, 99, ps.b.resolver.fn(), &error, &health);
  REQUIRE(ps.snap);
  ps.picker.reset(*ps.snap);
}

TEST_CASE("cookie_value finds a cookie among others, unquoted and trimmed") {
  CHECK(cookie_value("a=1; weir_version=canary; b=2", "weir_version") == "canary");
  CHECK(cookie_value("weir_version=\"green\"", "weir_version") == "green");
  CHECK(cookie_value("xweir_version=1; weir_version=2", "weir_version") == "2");
  CHECK(cookie_value("a=1", "weir_version").empty());
  CHECK(cookie_value("", "a").empty());
}

TEST_CASE("sticky_bucket is stable, salted and spread over 10,000 buckets") {
  CHECK(sticky_bucket("shop", "user-1") == sticky_bucket("shop", "user-1"));
  CHECK(sticky_bucket("shop", "user-1") < kBuckets);
  int differs = 0;
  std::vector<int> tenths(10, 0);
  for (int i = 0; i < 20000; ++i) {
    std::string key = "user-" + std::to_string(i);
    if (sticky_bucket("shop", key) != sticky_bucket("cart", key)) ++differs;
    ++tenths[sticky_bucket("shop", key) / 1000];
  }
  CHECK(differs > 19900);
  for (int t : tenths) CHECK(std::abs(t - 2000) < 200);
}

TEST_CASE("override precedence: header over cookie over sticky over weights") {
  PolicyService ps({{"stable", 99, {"10.0.0.1:80"}}, {"canary", 1, {"10.0.0.2:80"}},
                    {"dark", 0, {"10.0.0.3:80"}}});
  ps.svc_config.override_header = "x-weir-version";
  ps.svc_config.override_cookie = "weir_version";
  ps.svc_config.sticky.source = config::Sticky::Source::kHeader;
  ps.svc_config.sticky.name = "x-user";
  ps.build();
  FakeRequest r;
  r.headers["x-weir-version"] = "canary";
  r.headers["cookie"] = "weir_version=dark";
  for (int i = 0; i < 10; ++i) CHECK(ps.choose(r) == "canary");
  r.headers.erase("x-weir-version");
  CHECK(ps.choose(r) == "dark");  // an override may reach a weight-0 version
  r.headers["cookie"] = "weir_version=nosuch";
  r.headers["x-user"] = "alice";
  const std::string sticky = ps.choose(r);
  for (int i = 0; i < 50; ++i) CHECK(ps.choose(r) == sticky);
  SUBCASE("an unhealthy override falls through to normal choice") {
    r.headers["x-weir-version"] = "canary";
    make_unhealthy(ps, "canary");
    for (int i = 0; i < 50; ++i) CHECK(ps.choose(r) == "stable");
  }
  SUBCASE("override_strict answers 503 for an unknown or unhealthy version") {
    ps.svc_config.override_strict = true;
    ps.build();
    r.headers["x-weir-version"] = "nosuch";
    CHECK(ps.choose(r) == "503:the override names no version of this service");
    r.headers["x-weir-version"] = "canary";
    make_unhealthy(ps, "canary");
    CHECK(ps.choose(r) == "503:the version named by the override has no healthy endpoint");
  }
}

TEST_CASE("weighted choice is exact over small windows") {
  for (uint32_t canary : {1u, 5u, 10u, 33u}) {
    OneService one("stable", {{"stable", 100 - canary, {"10.0.0.1:80"}},
                              {"canary", canary, {"10.0.0.2:80"}}},
                   canary);
    for (int window = 0; window < 20; ++window) {
      auto counts = pick_counts(one.picker, one.svc(), 100);
      CAPTURE(canary);
      CHECK(counts["canary"] == static_cast<int>(canary));
    }
  }
  // Three versions 2:3:5: every run of 10 picks holds each exactly that often.
  OneService three("a", {{"a", 2, {"10.0.0.1:80"}}, {"b", 3, {"10.0.0.2:80"}},
                         {"c", 5, {"10.0.0.3:80"}}},
                   1);
  std::string seq;
  for (int i = 0; i < 200; ++i) seq += three.picker.pick_version(three.svc(), 0)->name;
  for (size_t start = 0; start + 10 <= seq.size(); start += 10) {
    std::string w = seq.substr(start, 10);
    CHECK(std::count(w.begin(), w.end(), 'a') == 2);
    CHECK(std::count(w.begin(), w.end(), 'c') == 5);
  }
}

TEST_CASE("property: growing a canary only ever moves buckets from stable to it") {
  // Random weight sequences: stable shrinks or holds, one canary grows or holds, the other
  // versions keep their shares. No bucket may move except stable -> the growing canary.
  uint64_t rng = 12345;
  auto rnd = [&rng](uint32_t n) {
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<uint32_t>((rng >> 33) % n);
  };
  for (int trial = 0; trial < 60; ++trial) {
    const int extra = static_cast<int>(rnd(3));  // other non-stable versions
    // The canary is placed next to stable in bucket order (names sort "c" < "x...").
    std::vector<VersionSpec> spec{{"stable", 50 + rnd(500), {"10.0.0.1:80"}},
                                  {"canary", rnd(20), {"10.0.0.2:80"}}};
    for (int e = 0; e < extra; ++e)
      spec.push_back({"x" + std::to_string(e), rnd(50), {"10.0.1." + std::to_string(e) + ":80"}});
    Builder b;
    Picker picker(1);
    std::vector<std::string> before;
    for (int step = 0; step < 8; ++step) {
      auto snap = b.build_one("stable", spec);
      const Service& svc = snap->services[0];
      std::vector<std::string> now;
      for (uint32_t k = 0; k < kBuckets; ++k) now.push_back(picker.version_for_bucket(svc, k, 0)->name);
      for (uint32_t k = 0; k < kBuckets && !before.empty(); ++k) {
        if (before[k] == now[k]) continue;
        CAPTURE(k);
        CHECK(before[k] == "stable");
        CHECK(now[k] == "canary");
      }
      before = now;
      if (extra == 0) {
        // Stable and canary alone: any shrink of stable and growth of the canary.
        spec[0].weight -= std::min(spec[0].weight - 1, rnd(2) ? rnd(40) : 0);
        spec[1].weight += rnd(60);
      } else {
        // With other versions their shares must hold, so the canary grows by what stable
        // gives up (the total stays put).
        uint32_t shift = std::min(spec[0].weight - 1, rnd(60));
        spec[0].weight -= shift;
        spec[1].weight += shift;
      }
    }
  }
}

TEST_CASE("sticky by client ip keeps a user on one version; keyless users get weights") {
  PolicyService ps({{"stable", 80, {"10.0.0.1:80"}}, {"canary", 20, {"10.0.0.2:80"}}});
  ps.svc_config.sticky.source = config::Sticky::Source::kClientIp;
  ps.build();
  std::map<std::string, int> per_version;
  for (int u = 0; u < 2000; ++u) {
    FakeRequest r;
    r.ip = "10.9." + std::to_string(u / 250) + "." + std::to_string(u % 250);
    std::string first = ps.choose(r);
    for (int i = 0; i < 5; ++i) CHECK(ps.choose(r) == first);
    ++per_version[first];
  }
  CHECK(std::abs(per_version["canary"] - 400) < 80);
}

TEST_CASE("assign_cookie: a keyless client gets a bucket, and the bucket decides after") {
  PolicyService ps({{"stable", 50, {"10.0.0.1:80"}}, {"canary", 50, {"10.0.0.2:80"}}});
  ps.svc_config.assign_cookie = "weir_bucket";
  ps.build();
  FakeRequest r;
  Choice c = ps.picker.choose(ps.svc(), r.info(), 0);
  REQUIRE(c.version);
  REQUIRE(c.assign_bucket >= 0);
  CHECK(ps.picker.version_for_bucket(ps.svc(), c.assign_bucket, 0) == c.version);
  r.headers["cookie"] = "weir_bucket=" + std::to_string(c.assign_bucket);
  for (int i = 0; i < 20; ++i) {
    Choice again = ps.picker.choose(ps.svc(), r.info(), 0);
    CHECK(again.version == c.version);
    CHECK(again.assign_bucket == -1);
  }
  r.headers["cookie"] = "weir_bucket=99999";  // out of range: a fresh bucket is assigned
  CHECK(ps.picker.choose(ps.svc(), r.info(), 0).assign_bucket >= 0);
}

TEST_CASE("unhealthy versions: share to stable, then any healthy version, else 503") {
  PolicyService ps({{"stable", 50, {"10.0.0.1:80"}}, {"canary", 50, {"10.0.0.2:80"}}});
  ps.svc_config.sticky.source = config::Sticky::Source::kHeader;
  ps.svc_config.sticky.name = "x-user";
  ps.build();
  make_unhealthy(ps, "canary");
  FakeRequest keyless, user;
  for (int i = 0; i < 20; ++i) CHECK(ps.choose(keyless) == "stable");
  for (int u = 0; u < 50; ++u) {
    user.headers["x-user"] = "u" + std::to_string(u);
    CHECK(ps.choose(user) == "stable");
  }
  make_unhealthy(ps, "stable");
  for (int i = 0; i < 20; ++i) CHECK(ps.choose(keyless) == "canary");
  CHECK(ps.choose(user) == "canary");
  HealthInput none;
  none.endpoints.resize(ps.snap->endpoint_count, EndpointStatus{false, false, 0, 0});
  std::string error;
  ps.snap = build_snapshot(ps.snap->config, ps.b.registry, 7, ps.b.resolver.fn(), &error, &none);
  ps.picker.reset(*ps.snap);
  CHECK(ps.choose(keyless) == "503:no version of this service has a healthy endpoint");
  CHECK(ps.choose(user) == "503:no version of this service has a healthy endpoint");
}

TEST_CASE("least_request prefers the endpoint with fewer outstanding requests") {
  PolicyService ps({{"v", 1, {"10.0.0.1:1", "10.0.0.2:2", "10.0.0.3:3"}}});
  ps.svc_config.balance = config::Service::Balance::kLeastRequest;
  ps.build();
  const Version& v = ps.svc().versions[0];
  const uint32_t busy = v.endpoints[0].id;
  for (int i = 0; i < 10; ++i) ps.picker.on_request_start(busy);
  CHECK(ps.picker.outstanding(busy) == 10);
  std::map<uint16_t, int> counts;
  for (int i = 0; i < 3000; ++i) ++counts[ps.picker.pick_endpoint(v, 0)->port];
  CHECK(counts[1] == 0);  // two distinct candidates: the busy one always loses
  CHECK(counts[2] > 1200);
  CHECK(counts[3] > 1200);
  // Load spreads evenly when every started request stays outstanding.
  for (int i = 0; i < 10; ++i) ps.picker.on_request_end(busy);
  CHECK(ps.picker.outstanding(busy) == 0);
  for (int i = 0; i < 300; ++i) ps.picker.on_request_start(ps.picker.pick_endpoint(v, 0)->id);
  for (const auto& ep : v.endpoints) CHECK(std::abs(int(ps.picker.outstanding(ep.id)) - 100) <= 3);
  ps.picker.on_request_end(12345);  // unknown ids are ignored
}

TEST_CASE("unhealthy endpoints are skipped; slow start ramps a version's share") {
  PolicyService ps({{"stable", 50, {"10.0.0.1:80"}}, {"canary", 50, {"10.0.0.2:80", "10.0.0.3:80"}}});
  ps.svc_config.slow_start_ms = 1000;
  ps.build();
  HealthInput health;
  health.endpoints.resize(ps.snap->endpoint_count);
  health.endpoints[ps.svc().versions[1].endpoints[0].id].healthy = false;
  health.version_ramp_start["s/canary"] = 10000;
  std::string error;
  ps.snap = build_snapshot(ps.snap->config, ps.b.registry, 2, ps.b.resolver.fn(), &error, &health);
  ps.picker.reset(*ps.snap);
  const Version& canary = ps.svc().versions[1];
  for (int i = 0; i < 10; ++i) CHECK(ps.picker.pick_endpoint(canary, 0)->port == 80);
  CHECK(canary.endpoints[1].address == "10.0.0.3:80");
  auto share_at = [&](uint64_t now) {
    int n = 0;
    for (int i = 0; i < 1000; ++i) n += ps.picker.pick_version(ps.svc(), now)->name == "canary";
    return n;
  };
  CHECK(share_at(10000) == 91);   // floor of 10%: 5 of 55
  CHECK(share_at(10500) == 333);  // half ramped: 25 of 75
  CHECK(share_at(11000) == 500);
}

}  // namespace
}  // namespace weir::routing
