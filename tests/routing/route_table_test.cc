#include "routing/route_table.h"

#include <doctest/doctest.h>

#include <optional>
#include <string_view>
#include <utility>
#include <vector>

namespace weir::routing {
namespace {

struct Lookup {
  std::string_view host;
  std::string_view path;
  std::optional<uint32_t> service;
};

// Runs every lookup against `table`, naming the failing one.
void expect_lookups(const RouteTable& table, const std::vector<Lookup>& lookups) {
  for (const Lookup& l : lookups) {
    CAPTURE(l.host);
    CAPTURE(l.path);
    CHECK(table.match(l.host, l.path) == l.service);
  }
}

constexpr std::optional<uint32_t> kNone = std::nullopt;

TEST_CASE("an empty table matches nothing") {
  expect_lookups(RouteTable{}, {{"example.com", "/", kNone}, {"", "", kNone}});
  expect_lookups(RouteTable{std::vector<RouteTable::Entry>{}}, {{"a", "/x", kNone}});
}

TEST_CASE("a \"*\"-only table matches any host, including odd ones, by path prefix") {
  RouteTable t({{"*", "/", 0}, {"*", "/api", 1}, {"*", "/api/v2", 2}});
  expect_lookups(t, {{"example.com", "/", 0},
                     {"", "/index.html", 0},
                     {"[::1]:80", "/api", 1},
                     {"EXAMPLE.COM:8080", "/api/users", 1},
                     {"x", "/api/v2/users", 2},
                     {"x", "/api/v", 1},
                     {"x", "", kNone},
                     {"x", "*", kNone}});
}

TEST_CASE("the longest path prefix wins whatever the entry order") {
  RouteTable t({{"*", "/a/b/c", 3}, {"*", "/", 0}, {"*", "/a/b", 2}, {"*", "/a", 1}});
  expect_lookups(t, {{"h", "/a/b/c/d", 3},
                     {"h", "/a/b/x", 2},
                     {"h", "/a/x", 1},
                     {"h", "/b", 0},
                     {"h", "/a/b/c", 3}});
}

TEST_CASE("without a \"/\" prefix, unmatched paths are no route") {
  RouteTable t({{"*", "/api", 1}});
  expect_lookups(t, {{"h", "/api/x", 1}, {"h", "/", kNone}, {"h", "/ap", kNone}});
}

TEST_CASE("exact host beats wildcard beats \"*\"") {
  RouteTable t({{"*", "/", 0},
                {"*.example.com", "/", 1},
                {"www.example.com", "/", 2},
                {"example.com", "/", 3}});
  expect_lookups(t, {{"www.example.com", "/", 2},
                     {"api.example.com", "/", 1},
                     {"a.b.example.com", "/", 1},
                     {"example.com", "/", 3},
                     {"other.org", "/", 0},
                     {"", "/", 0}});
}

TEST_CASE("\"*.example.com\" matches subdomains only, never the bare domain or look-alikes") {
  RouteTable t({{"*.example.com", "/", 1}});
  expect_lookups(t, {{"a.example.com", "/", 1},
                     {"deep.sub.example.com", "/", 1},
                     {"example.com", "/", kNone},
                     {".example.com", "/", kNone},
                     {"badexample.com", "/", kNone},
                     {"example.com.evil.org", "/", kNone},
                     {"a.example.org", "/", kNone}});
}

TEST_CASE("the longest wildcard suffix wins whatever the entry order") {
  RouteTable t({{"*.com", "/", 1}, {"*.b.example.com", "/", 3}, {"*.example.com", "/", 2}});
  expect_lookups(t, {{"x.com", "/", 1},
                     {"x.example.com", "/", 2},
                     {"x.b.example.com", "/", 3},
                     {"b.example.com", "/", 2},
                     {"x.org", "/", kNone}});
}

TEST_CASE("several prefixes under one wildcard share the group") {
  RouteTable t({{"*.example.com", "/", 1}, {"*.example.com", "/api", 2}, {"*", "/", 0}});
  expect_lookups(t, {{"a.example.com", "/api/x", 2}, {"a.example.com", "/x", 1}, {"z", "/api", 0}});
}

TEST_CASE("host matching ignores case, the port and a trailing dot, and keeps IPv6 brackets") {
  RouteTable t({{"example.com", "/", 1},
                {"*.example.org", "/", 2},
                {"[::1]", "/", 3},
                {"127.0.0.1", "/", 4}});
  expect_lookups(t, {{"EXAMPLE.com", "/", 1},
                     {"example.com:8080", "/", 1},
                     {"Example.Com:443", "/", 1},
                     {"WWW.Example.ORG:80", "/", 2},
                     {"[::1]", "/", 3},
                     {"[::1]:8443", "/", 3},
                     {"127.0.0.1:80", "/", 4},
                     {"::1", "/", kNone},
                     {"example.com.", "/", 1},
                     {"Example.COM.:80", "/", 1},
                     {"www.example.org.", "/", 2},
                     {"example.com..", "/", kNone}});
}

// nginx-like: the host picks a group of routes; a miss inside that group is a 404 rather than
// a silent fall-through to a less specific host (see the comment in RouteTable::match).
TEST_CASE("a host group without a matching prefix does not fall back to a less specific host") {
  RouteTable t({{"*", "/", 0}, {"*.example.com", "/shop", 1}, {"api.example.com", "/v1", 2}});
  expect_lookups(t, {{"api.example.com", "/v1/x", 2},
                     {"api.example.com", "/shop", kNone},
                     {"api.example.com", "/", kNone},
                     {"www.example.com", "/shop/cart", 1},
                     {"www.example.com", "/", kNone},
                     {"other.org", "/shop", 0}});
}

TEST_CASE("normalize_host") {
  const std::pair<std::string_view, std::string_view> cases[] = {
      {"", ""},
      {"example.com", "example.com"},
      {"ExAmPle.COM", "example.com"},
      {"example.com:8080", "example.com"},
      {"example.com:", "example.com"},
      {"EXAMPLE.com:80", "example.com"},
      {"127.0.0.1:9000", "127.0.0.1"},
      {"[::1]", "[::1]"},
      {"[::1]:8080", "[::1]"},
      {"[FE80::1]:80", "[fe80::1]"},
      {"[::1", "[::1"},
      {"a-b_c.Z9", "a-b_c.z9"},
      {"example.com.", "example.com"},
      {"Example.COM.:80", "example.com"},
      {".", "."},
  };
  for (const auto& c : cases) {
    const auto& in = c.first;
    const auto& want = c.second;
    CAPTURE(in);
    CHECK(normalize_host(in) == want);
  }
}

}  // namespace
}  // namespace weir::routing
