#include "routing/picker.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>

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

TEST_CASE("the same seed gives the same choices, and seed 0 still picks") {
  auto sequence = [](uint64_t seed) {
    OneService one("a", {{"a", 1, {"10.0.0.1:80"}}, {"b", 1, {"10.0.0.2:80"}}}, seed);
    std::string out;
    for (int i = 0; i < 64; ++i) out += one.picker.pick_version(one.svc(), 0)->name;
    return out;
  };
  CHECK(sequence(5) == sequence(5));
  CHECK(sequence(5) != sequence(6));
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

}  // namespace
}  // namespace weir::routing
