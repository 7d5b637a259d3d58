#include "routing/normalize.h"

#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <utility>

#include "routing/route_table.h"

namespace weir::routing {
namespace {

using namespace std::literals;

std::string target(std::string_view in) {
  std::string storage;
  Normalized n = normalize_target(in, storage);
  CAPTURE(in);
  REQUIRE_MESSAGE(n.ok(), n.error);
  return std::string(n.value);
}

std::string_view target_error(std::string_view in) {
  std::string storage;
  Normalized n = normalize_target(in, storage);
  CHECK(n.value.empty());
  return n.error;
}

std::string authority(std::string_view in) {
  std::string storage;
  Normalized n = normalize_authority(in, storage);
  CAPTURE(in);
  REQUIRE_MESSAGE(n.ok(), n.error);
  return std::string(n.value);
}

TEST_CASE("normalize_target: dot segments, merged slashes, decoded unreserved characters") {
  const std::pair<std::string_view, std::string_view> cases[] = {
      {"/", "/"},
      {"/a/b", "/a/b"},
      {"/a/b/", "/a/b/"},
      {"/x/../admin/x", "/admin/x"},
      {"/x/./admin", "/x/admin"},
      {"//admin/x", "/admin/x"},
      {"/a//b///c", "/a/b/c"},
      {"/%61dmin/x", "/admin/x"},
      {"/%41%5a%30%2D%2e%5F%7e", "/AZ0-._~"},
      {"/%2e%2e/admin", "/admin"},
      {"/x/%2E%2E/admin", "/admin"},
      {"/x/.%2e/admin", "/admin"},
      {"/..", "/"},
      {"/../../a", "/a"},
      {"/a/..", "/"},
      {"/a/b/..", "/a/"},
      {"/a/b/.", "/a/b/"},
      {"/a/b/../", "/a/"},
      {"/.", "/"},
      {"/./", "/"},
      {"/...", "/..."},
      {"/.a/..b/a..", "/.a/..b/a.."},
      {"/a%2fb", "/a%2Fb"},
      {"/a%2Fb/../c", "/c"},
      {"/a/..%2F..%2Fadmin", "/a/..%2F..%2Fadmin"},
      {"/%e2%82%ac", "/%E2%82%AC"},
      {"/a?x=1", "/a?x=1"},
      {"//a/../b?q=/../%2e", "/b?q=/../%2e"},
      {"/a/./b?", "/a/b?"},
      {"/sub-delims!$&'()*+,;=:@", "/sub-delims!$&'()*+,;=:@"},
      {"/[x]^|", "/[x]^|"},
      {"*", "*"},
  };
  for (const auto& [in, want] : cases) CHECK(target(in) == want);
}

TEST_CASE("normalize_target: a path already in normal form is not copied") {
  for (std::string_view in : {"/"sv, "/a/b.c/d"sv, "/a%2Fb"sv, "/x?y=%2e%2e"sv, "/a..b/.c"sv}) {
    std::string storage = "untouched";
    Normalized n = normalize_target(in, storage);
    REQUIRE(n.ok());
    CHECK(n.value.data() == in.data());
    CHECK(storage == "untouched");
  }
}

TEST_CASE("normalize_target refuses bad escapes, NUL and characters a client must encode") {
  CHECK(target_error("/a%zz") == "invalid percent-encoding in path");
  CHECK(target_error("/a%") == "invalid percent-encoding in path");
  CHECK(target_error("/a%4") == "invalid percent-encoding in path");
  CHECK(target_error("/a%4g/b") == "invalid percent-encoding in path");
  CHECK(target_error("/a%00b") == "encoded NUL (%00) in path");
  for (std::string_view in : {"/a<b"sv, "/a\"b"sv, "/{x}"sv, "/a\\b"sv, "/a`b"sv, "/a>b"sv,
                              "/a#b"sv, "/\xc3\xa4"sv, "/a\x7f"sv, "/a b"sv}) {
    CAPTURE(in);
    CHECK(target_error(in) == "invalid character in path");
  }
  CHECK(target_error("/?q=%zz") == "invalid percent-encoding in query");
  CHECK(target_error("/?q=50%") == "invalid percent-encoding in query");
  CHECK(target_error("/?a#b") == "invalid character in query");
  // Otherwise the query is the backend's business.
  CHECK(target("/?q={x}|[1]%00") == "/?q={x}|[1]%00");
  CHECK(target("/?q=\"<a>\"") == "/?q=\"<a>\"");
  CHECK(target_error("") == "request target must start with '/'");
  CHECK(target_error("a/b") == "request target must start with '/'");
}

TEST_CASE("normalize_authority: lower case, one trailing dot dropped, port kept") {
  const std::pair<std::string_view, std::string_view> cases[] = {
      {"", ""},
      {"example.com", "example.com"},
      {"Internal.Example.COM", "internal.example.com"},
      {"internal.example.com.", "internal.example.com"},
      {"internal.example.com.:80", "internal.example.com:80"},
      {"INTERNAL.example.com.:8080", "internal.example.com:8080"},
      {"example.com:", "example.com"},
      {"example.com:65535", "example.com:65535"},
      {"127.0.0.1:9000", "127.0.0.1:9000"},
      {"[::1]", "[::1]"},
      {"[::1]:8080", "[::1]:8080"},
      {"[FE80::1]:80", "[fe80::1]:80"},
      {"%61dmin.example.com", "admin.example.com"},
      {"a_b~c!$&'()*+,;=.d", "a_b~c!$&'()*+,;=.d"},
      {"xn--caf-dma.example", "xn--caf-dma.example"},
  };
  for (const auto& [in, want] : cases) CHECK(authority(in) == want);
  std::string storage;
  std::string_view normal = "a.example:1";
  CHECK(normalize_authority(normal, storage).value.data() == normal.data());
}

TEST_CASE("normalize_authority refuses what is not uri-host [\":\" port]") {
  for (std::string_view in :
       {"a:b:c"sv, "]"sv, "[::1"sv, "[::1]x"sv, "[::1]:x"sv, "[zz::1]"sv, "[]"sv, "[v1.x]"sv,
        ":80"sv, "a:123456"sv, "a:65536"sv, "a:-1"sv, "a b"sv, "a/b"sv, "u@a"sv, "a%2fb"sv,
        "a%zz"sv, "a%"sv, "\xc3\xa4.com"sv, "a[b]"sv, "a\\b"sv}) {
    CAPTURE(in);
    std::string storage;
    Normalized n = normalize_authority(in, storage);
    CHECK(!n.ok());
    CHECK(n.error.starts_with("invalid Host"));
  }
}

// The issue's bypass shapes, against each route kind: what the normalized request matches is
// what its canonical form matches.
TEST_CASE("normalized requests cannot bypass a more specific route") {
  RouteTable t({{"*", "/", 0},
                {"*", "/admin", 1},
                {"internal.example.com", "/", 2},
                {"*.corp.example", "/", 3},
                {"*", "/api/v1/", 4}});
  auto route = [&t](std::string_view host, std::string_view path) {
    std::string hs, ps;
    Normalized h = normalize_authority(host, hs), p = normalize_target(path, ps);
    REQUIRE(h.ok());
    REQUIRE(p.ok());
    return t.match(h.value, p.value.substr(0, p.value.find('?')));
  };
  for (std::string_view path : {"/admin/x"sv, "/x/../admin/x"sv, "/%61dmin/x"sv, "//admin/x"sv,
                                "/./admin/x"sv, "/%2e%2e/admin/x"sv, "/admin/./x"sv,
                                "///admin//x?y"sv}) {
    CAPTURE(path);
    CHECK(route("shop.test", path) == 1u);
  }
  CHECK(route("shop.test", "/x/admin") == 0u);
  CHECK(route("shop.test", "/admin%2Fx") == 1u);  // still under /admin
  CHECK(route("shop.test", "/x%2F..%2Fadmin") == 0u);  // one segment, not under /admin
  for (std::string_view host : {"internal.example.com"sv, "internal.example.com."sv,
                                "internal.example.com.:80"sv, "INTERNAL.example.COM:80"sv,
                                "%69nternal.example.com"sv}) {
    CAPTURE(host);
    CHECK(route(host, "/admin") == 2u);
  }
  for (std::string_view host : {"a.corp.example"sv, "A.CORP.EXAMPLE."sv, "b.a.corp.example.:1"sv}) {
    CAPTURE(host);
    CHECK(route(host, "/x") == 3u);
  }
  CHECK(route("x.test", "/api/v1/users") == 4u);
  CHECK(route("x.test", "/api//v1/users") == 4u);
  CHECK(route("x.test", "/api/v2/../v1/users") == 4u);
  CHECK(route("x.test", "/api/v1/../v2") == 0u);
}

// The "..;" trick (Tomcat and Jetty strip a segment's ';' parameters, then remove dot
// segments): "/..;/admin" would be routed by "/" while the backend serves /admin.
TEST_CASE("normalize_target refuses dot segments with ';' parameters, keeps other parameters") {
  for (std::string_view in :
       {"/..;/admin"sv, "/x/..;/admin/x"sv, "/.;/admin"sv, "/..;x=1/admin"sv, "/%2e%2e;/admin"sv,
        "/%2E.;a/b"sv, "//..;/admin"sv, "/a/..;"sv, "/a/.;?q"sv}) {
    CAPTURE(in);
    CHECK(target_error(in) == "dot segment with ';' parameters in path");
  }
  CHECK(target("/a;jsessionid=1/b;v=2") == "/a;jsessionid=1/b;v=2");
  CHECK(target("/admin..;/x") == "/admin..;/x");  // "admin.." is a name, not a dot segment
  CHECK(target("/...;/x") == "/...;/x");
  CHECK(target("/a/;x/b") == "/a/;x/b");
  CHECK(target("/a/..%3B/b") == "/a/..%3B/b");  // an encoded ';' is part of the name
  CHECK(target("/x/../a;p/./b") == "/a;p/b");
  CHECK(target("/?..;/admin") == "/?..;/admin");  // the query is not a path
}

TEST_CASE("path_without_parameters drops each segment's ';' parameters") {
  std::string storage;
  CHECK(path_without_parameters("/api/v1", storage) == "/api/v1");
  CHECK(storage.empty());  // no copy without ';'
  CHECK(path_without_parameters("/api;v=1/admin;x", storage) == "/api/admin");
  CHECK(path_without_parameters("/;a/b;", storage) == "//b");
  CHECK(path_without_parameters("/a;b;c/d", storage) == "/a/d");
}

TEST_CASE("';' parameters cannot step around a more specific route") {
  RouteTable t({{"*", "/", 0}, {"*", "/admin", 1}, {"*", "/api/admin/", 2}});
  for (std::string_view path : {"/admin;x/y"sv, "/admin;jsessionid=1"sv, "/admin..;/x"sv}) {
    CAPTURE(path);
    CHECK(t.match("h", path) == 1u);
  }
  for (std::string_view path : {"/api;v=1/admin/x"sv, "/api/admin;x/y"sv, "/api;/admin;/"sv}) {
    CAPTURE(path);
    CHECK(t.match("h", path) == 2u);
  }
  CHECK(t.match("h", "/api/admins;x/") == 0u);
}

TEST_CASE("route prefixes and hosts are matched in normal form") {
  RouteTable t({{"*", "/", 0}, {"*", "/%61pi//v1/./", 1}, {"dot.example.", "/", 2}});
  CHECK(t.match("h", "/api/v1/x") == 1u);
  CHECK(t.match("dot.example", "/") == 2u);
  CHECK(t.match("dot.example.", "/") == 2u);
}

}  // namespace
}  // namespace weir::routing
