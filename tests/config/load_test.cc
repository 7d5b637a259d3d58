#include "config/config.h"
#include "config/time_zone.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <utility>

namespace weir::config {
namespace {

// A minimal valid listener, prepended where a test is about something else: lines 1-3.
constexpr std::string_view kListener = R"([[listener]]
name = "l"
address = "127.0.0.1:0"
)";

// A minimal valid service, lines 4-10 after kListener.
constexpr std::string_view kService = R"([[service]]
name = "shop"
stable = "blue"
[[service.version]]
name = "blue"
weight = 1
endpoints = ["127.0.0.1:9001"]
)";

std::string with_listener(std::string_view rest) {
  return std::string(kListener) + std::string(rest);
}

std::string with_service(std::string_view rest) {
  return std::string(kListener) + std::string(kService) + std::string(rest);
}

// Listener, then service "s" (stable `stable`) with one version "a" whose remaining keys are
// `version_rest`, starting at line 9.
std::string with_version(std::string_view version_rest, std::string_view stable = "a") {
  return std::string(kListener) + "[[service]]\nname = \"s\"\nstable = \"" + std::string(stable) +
         "\"\n[[service.version]]\nname = \"a\"\n" + std::string(version_rest);
}

// Loads `text` and requires exactly one error, at "line:col", with this key and message.
void expect_error(const std::string& text, const std::string& line_col, const std::string& key,
                  const std::string& message) {
  LoadResult r = load_string(text, "t.toml");
  CHECK_FALSE(r.config.has_value());
  REQUIRE(r.errors.size() == 1);
  const Error& e = r.errors[0];
  CHECK(e.loc.file == "t.toml");
  CHECK(std::to_string(e.loc.line) + ":" + std::to_string(e.loc.column) == line_col);
  CHECK(e.key == key);
  CHECK(e.message == message);
}

Config expect_valid(const std::string& text) {
  LoadResult r = load_string(text, "t.toml");
  for (const Error& e : r.errors) FAIL_CHECK(e.to_string());
  REQUIRE(r.config.has_value());
  return *r.config;
}

TEST_CASE("config: full valid example reads every field") {
  Config c = expect_valid(R"([proxy]
workers = 4
connect_timeout_ms = 1500
request_header_timeout_ms = 11000
body_timeout_ms = 31000
upstream_response_timeout_ms = 32000
keepalive_timeout_ms = 61000
drain_timeout_ms = 0
upstream_idle_timeout_ms = 33000
max_header_bytes = 32768
max_headers = 50
max_request_line = 4096
max_request_body_bytes = 10_000_000_000
upstream_max_idle = 8
via = "edge-1"
request_id_header = "X-Trace-ID"

[[listener]]
name = "public"
address = "127.0.0.1:8080"

[[listener]]
name = "v6"
address = "[::1]:0"

[[service]]
name = "shop"
stable = "blue"
  [[service.version]]
  name = "blue"
  weight = 90
  endpoints = ["127.0.0.1:9001", "backend.local:9002"]
  [[service.version]]
  name = "green"
  weight = 10
  endpoints = ["[::1]:9003"]

[[route]]
listener = "public"
host = "*.Example.COM"
path_prefix = "/api/"
service = "shop"

[[route]]
listener = "v6"
service = "shop"
)");
  CHECK(c.path == "");
  const ProxySettings& p = c.proxy;
  CHECK(p.workers == 4);
  CHECK(p.connect_timeout_ms == 1500);
  CHECK(p.request_header_timeout_ms == 11000);
  CHECK(p.body_timeout_ms == 31000);
  CHECK(p.upstream_response_timeout_ms == 32000);
  CHECK(p.keepalive_timeout_ms == 61000);
  CHECK(p.drain_timeout_ms == 0);
  CHECK(p.upstream_idle_timeout_ms == 33000);
  CHECK(p.max_header_bytes == 32768);
  CHECK(p.max_headers == 50);
  CHECK(p.max_request_line == 4096);
  CHECK(p.max_request_body_bytes == 10'000'000'000ull);
  CHECK(p.upstream_max_idle == 8);
  CHECK(p.via == "edge-1");
  CHECK(p.request_id_header == "x-trace-id");
  CHECK(p.loc.file == "t.toml");
  CHECK(p.loc.line == 1);
  CHECK(p.loc.column == 1);

  REQUIRE(c.listeners.size() == 2);
  CHECK(c.listeners[0].name == "public");
  CHECK(c.listeners[0].address.host == "127.0.0.1");
  CHECK(c.listeners[0].address.port == 8080);
  CHECK(c.listeners[0].loc.line == 18);
  CHECK(c.listeners[0].loc.file == "t.toml");
  CHECK(c.listeners[1].address.host == "::1");
  CHECK(c.listeners[1].address.port == 0);
  CHECK(c.listeners[1].address.to_string() == "[::1]:0");
  CHECK(c.listeners[1].loc.line == 22);

  REQUIRE(c.services.size() == 1);
  const Service& s = c.services[0];
  CHECK(s.name == "shop");
  CHECK(s.stable == "blue");
  CHECK(s.loc.line == 26);
  REQUIRE(s.versions.size() == 2);
  CHECK(s.versions[0].name == "blue");
  CHECK(s.versions[0].weight == 90);
  CHECK(s.versions[0].loc.line == 29);
  CHECK(s.versions[0].loc.column == 3);
  REQUIRE(s.versions[0].endpoints.size() == 2);
  CHECK(s.versions[0].endpoints[0].to_string() == "127.0.0.1:9001");
  CHECK(s.versions[0].endpoints[1].host == "backend.local");
  CHECK(s.versions[0].endpoints[1].port == 9002);
  CHECK(s.versions[1].name == "green");
  CHECK(s.versions[1].weight == 10);
  CHECK(s.versions[1].loc.line == 33);
  REQUIRE(s.versions[1].endpoints.size() == 1);
  CHECK(s.versions[1].endpoints[0].host == "::1");
  CHECK(s.versions[1].endpoints[0].port == 9003);

  REQUIRE(c.routes.size() == 2);
  CHECK(c.routes[0].listener == "public");
  CHECK(c.routes[0].host == "*.example.com");
  CHECK(c.routes[0].path_prefix == "/api/");
  CHECK(c.routes[0].service == "shop");
  CHECK(c.routes[0].loc.line == 38);
  CHECK(c.routes[1].listener == "v6");
  CHECK(c.routes[1].host == "*");
  CHECK(c.routes[1].path_prefix == "/");
  CHECK(c.routes[1].loc.line == 44);
}

TEST_CASE("config: defaults when [proxy] is absent") {
  Config c = expect_valid(std::string(kListener));
  Config defaults;
  const ProxySettings& p = c.proxy;
  const ProxySettings& d = defaults.proxy;
  CHECK(p.workers == d.workers);
  CHECK(p.connect_timeout_ms == d.connect_timeout_ms);
  CHECK(p.request_header_timeout_ms == d.request_header_timeout_ms);
  CHECK(p.body_timeout_ms == d.body_timeout_ms);
  CHECK(p.upstream_response_timeout_ms == d.upstream_response_timeout_ms);
  CHECK(p.keepalive_timeout_ms == d.keepalive_timeout_ms);
  CHECK(p.drain_timeout_ms == d.drain_timeout_ms);
  CHECK(p.upstream_idle_timeout_ms == d.upstream_idle_timeout_ms);
  CHECK(p.max_header_bytes == d.max_header_bytes);
  CHECK(p.max_headers == d.max_headers);
  CHECK(p.max_request_line == d.max_request_line);
  CHECK(p.max_request_body_bytes == d.max_request_body_bytes);
  CHECK(p.upstream_max_idle == d.upstream_max_idle);
  CHECK(p.via == "weir");
  CHECK(p.request_id_header == "x-request-id");
  CHECK(p.loc.file == "t.toml");
  CHECK(p.loc.line == 0);  // not in the file
  CHECK(c.services.empty());
  CHECK(c.routes.empty());
}

TEST_CASE("config: empty strings disable via and request ids, bounds are inclusive") {
  Config c = expect_valid(with_listener(R"([proxy]
via = ""
request_id_header = ""
workers = 256
connect_timeout_ms = 86_400_000
max_header_bytes = 1024
)"));
  CHECK(c.proxy.via.empty());
  CHECK(c.proxy.request_id_header.empty());
  CHECK(c.proxy.workers == 256);
  CHECK(c.proxy.connect_timeout_ms == 86'400'000u);
  CHECK(c.proxy.max_header_bytes == 1024);
}

TEST_CASE("config: a version with weight 0 is fine when another has weight") {
  Config c = expect_valid(with_service(R"([[service.version]]
name = "canary"
weight = 0
endpoints = ["127.0.0.1:9009"]
)"));
  CHECK(c.services[0].versions[1].weight == 0);
}

TEST_CASE("config: TOML syntax error reports its position") {
  LoadResult r = load_string("[proxy]\nworkers = = 2\n", "t.toml");
  CHECK_FALSE(r.config.has_value());
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].loc.line == 2);
  CHECK(r.errors[0].loc.column == 11);
  CHECK(r.errors[0].key == "");
  CHECK(r.errors[0].message.ends_with("; fix the TOML syntax"));
}

TEST_CASE("config: duplicate TOML key is a syntax error") {
  LoadResult r = load_string(with_listener("name = \"again\"\n"), "t.toml");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].loc.line == 4);
  CHECK(r.errors[0].message.find("redefine") != std::string::npos);
}

TEST_CASE("config: empty file has no listener") {
  expect_error("", "1:1", "listener",
               "no [[listener]] defined; add one with a name and an address");
}

TEST_CASE("config: empty listener array") {
  expect_error("listener = []\n", "1:12", "listener",
               "no [[listener]] defined; add one with a name and an address");
}

TEST_CASE("config: [listener] instead of [[listener]]") {
  expect_error("[listener]\nname = \"l\"\n", "1:1", "listener",
               "expected an array of tables ([[listener]]), got a table");
}

TEST_CASE("config: array element that is not a table") {
  expect_error("route = [1]\n" + std::string(kListener), "1:10", "route[0]",
               "expected a table, got an integer");
}

TEST_CASE("config: [proxy] of the wrong type") {
  expect_error("proxy = 1\n" + std::string(kListener), "1:9", "proxy",
               "expected a table, got an integer");
}

TEST_CASE("config: unknown key with a suggestion, at the key itself") {
  expect_error(with_service("  wieght = 3\n"), "11:3", "service[0].version[0].wieght",
               "unknown key 'wieght'; did you mean 'weight'?");
}

TEST_CASE("config: unknown key without a suggestion") {
  expect_error(with_listener("[proxy]\ncolour = \"red\"\n"), "5:1", "proxy.colour",
               "unknown key 'colour'");
}

TEST_CASE("config: unknown top-level table") {
  expect_error(with_listener("[listner]\n"), "4:2", "listner",
               "unknown key 'listner'; did you mean 'listener'?");
}

TEST_CASE("config: string where an integer is expected") {
  expect_error(with_listener("[proxy]\nworkers = \"2\"\n"), "5:11", "proxy.workers",
               "expected an integer, got a string");
}

TEST_CASE("config: float where an integer is expected") {
  expect_error(with_listener("[proxy]\nbody_timeout_ms = 1.5\n"), "5:19", "proxy.body_timeout_ms",
               "expected an integer, got a float");
}

TEST_CASE("config: integer where a string is expected") {
  expect_error(with_listener("[proxy]\nvia = 1\n"), "5:7", "proxy.via",
               "expected a string, got an integer");
}

TEST_CASE("config: integer above its range") {
  expect_error(with_listener("[proxy]\nworkers = 300\n"), "5:11", "proxy.workers",
               "must be between 0 and 256, got 300");
}

TEST_CASE("config: zero timeout") {
  expect_error(with_listener("[proxy]\nconnect_timeout_ms = 0\n"), "5:22",
               "proxy.connect_timeout_ms", "must be between 1 and 86400000, got 0");
}

TEST_CASE("config: negative body limit names the lower bound only") {
  expect_error(with_listener("[proxy]\nmax_request_body_bytes = -1\n"), "5:26",
               "proxy.max_request_body_bytes", "must be at least 0, got -1");
}

TEST_CASE("config: via that is not a token") {
  expect_error(with_listener("[proxy]\nvia = \"my proxy\"\n"), "5:7", "proxy.via",
               "'my proxy' is not an HTTP token; use letters, digits and !#$%&'*+-.^_`|~, or "
               "\"\" to disable");
}

TEST_CASE("config: request_id_header that is not a header name") {
  expect_error(with_listener("[proxy]\nrequest_id_header = \"x:id\"\n"), "5:21",
               "proxy.request_id_header",
               "'x:id' is not an HTTP token; use letters, digits and !#$%&'*+-.^_`|~, or \"\" "
               "to disable");
}

TEST_CASE("config: missing required key points at the enclosing table") {
  expect_error("\n[[listener]]\nname = \"l\"\n", "2:1", "listener[0].address",
               "missing required key 'address'; add it to this table");
}

TEST_CASE("config: empty name") {
  expect_error("[[listener]]\nname = \"\"\naddress = \"127.0.0.1:0\"\n", "2:8", "listener[0].name",
               "must not be empty; use letters, digits, '_', '.' or '-'");
}

TEST_CASE("config: name with forbidden characters") {
  expect_error(with_service("[[service]]\nname = \"my shop\"\nstable = \"a\"\n"
                            "[[service.version]]\nname = \"a\"\nweight = 1\n"
                            "endpoints = [\"h:1\"]\n"),
               "12:8", "service[1].name",
               "'my shop' may contain only letters, digits, '_', '.' and '-'");
}

TEST_CASE("config: duplicate listener name") {
  expect_error(with_listener("[[listener]]\nname = \"l\"\naddress = \"127.0.0.1:1\"\n"), "5:8",
               "listener[1].name",
               "listener 'l' is defined twice; give each listener a unique name");
}

TEST_CASE("config: duplicate service name") {
  expect_error(with_service(kService), "12:8", "service[1].name",
               "service 'shop' is defined twice; give each service a unique name");
}

TEST_CASE("config: duplicate version name") {
  expect_error(with_service("[[service.version]]\nname = \"blue\"\nweight = 1\n"
                            "endpoints = [\"h:2\"]\n"),
               "12:8", "service[0].version[1].name",
               "version 'blue' is defined twice; give each version a unique name");
}

TEST_CASE("config: listener address without a port") {
  expect_error("[[listener]]\nname = \"l\"\naddress = \"127.0.0.1\"\n", "3:11",
               "listener[0].address",
               "'127.0.0.1' is not a valid address (missing ':port'); write \"host:port\" or "
               "\"[v6]:port\"");
}

TEST_CASE("config: address errors say what is wrong") {
  const std::pair<std::string, std::string> cases[] = {
      {"127.0.0.1", "missing ':port'"},
      {"::1:80", "an IPv6 address needs brackets, as in \"[::1]:80\""},
      {"[db8:zz::1]:80", "'[db8:zz::1]' is not an IPv6 address"},
      {":80", "missing host"},
      {"a b:80", "'a b' is not a valid host name"},
      {"h:http", "port 'http' is not a number"},
      {"h:65536", "port must be between 0 and 65535"},
  };
  for (const auto& c : cases) {
    const auto& address = c.first;
    const auto& why = c.second;
    CAPTURE(address);
    expect_error("[[listener]]\nname = \"l\"\naddress = \"" + address + "\"\n", "3:11",
                 "listener[0].address",
                 "'" + address + "' is not a valid address (" + why +
                     "); write \"host:port\" or \"[v6]:port\"");
  }
}

TEST_CASE("config: endpoint with port 0") {
  expect_error(with_version("weight = 1\nendpoints = [\"h:1\", \"h:0\"]\n"), "10:21",
               "service[0].version[0].endpoints[1]",
               "'h:0' is not a valid address (port must be between 1 and 65535); write "
               "\"host:port\" or \"[v6]:port\"");
}

TEST_CASE("config: endpoints that are not an array") {
  expect_error(with_version("weight = 1\nendpoints = \"h:1\"\n"), "10:13",
               "service[0].version[0].endpoints", "expected an array, got a string");
}

TEST_CASE("config: endpoint that is not a string") {
  expect_error(with_version("weight = 1\nendpoints = [9001]\n"), "10:14",
               "service[0].version[0].endpoints[0]", "expected a string, got an integer");
}

TEST_CASE("config: empty endpoints") {
  expect_error(with_version("weight = 1\nendpoints = []\n"), "10:13",
               "service[0].version[0].endpoints",
               "needs at least one endpoint, e.g. [\"127.0.0.1:9001\"]");
}

TEST_CASE("config: duplicate endpoint") {
  expect_error(with_version("weight = 1\nendpoints = [\"[::1]:80\", \"[::1]:80\"]\n"), "10:26",
               "service[0].version[0].endpoints[1]",
               "endpoint '[::1]:80' is listed twice; remove one");
}

TEST_CASE("config: service without versions") {
  expect_error(with_listener("[[service]]\nname = \"s\"\nstable = \"a\"\n"), "4:1",
               "service[0].version", "needs at least one [[service.version]] table");
}

TEST_CASE("config: [service.version] instead of [[service.version]]") {
  expect_error(with_listener("[[service]]\nname = \"s\"\nstable = \"a\"\n[service.version]\n"),
               "7:1", "service[0].version",
               "expected an array of tables ([[service.version]]), got a table");
}

TEST_CASE("config: stable names a missing version") {
  expect_error(with_version("weight = 1\nendpoints = [\"h:1\"]\n", "aa"), "6:10",
               "service[0].stable", "no version named 'aa'; did you mean 'a'?");
}

TEST_CASE("config: stable far from every version lists the versions") {
  expect_error(with_version("weight = 1\nendpoints = [\"h:1\"]\n", "canary"), "6:10",
               "service[0].stable", "no version named 'canary'; known versions: 'a'");
}

TEST_CASE("config: negative weight") {
  expect_error(with_version("weight = -5\nendpoints = [\"h:1\"]\n"), "9:10",
               "service[0].version[0].weight", "must be between 0 and 10000, got -5");
}

TEST_CASE("config: all weights zero") {
  expect_error(with_version("weight = 0\nendpoints = [\"h:1\"]\n"), "4:1", "service[0]",
               "all versions have weight 0: give at least one version a positive weight");
}

TEST_CASE("config: a bad weight does not also claim the weights sum to zero") {
  expect_error(with_version("weight = 0.5\nendpoints = [\"h:1\"]\n"), "9:10",
               "service[0].version[0].weight", "expected an integer, got a float");
}

TEST_CASE("config: route to a missing listener") {
  expect_error(with_service("[[route]]\nlistener = \"m\"\nservice = \"shop\"\n"), "12:12",
               "route[0].listener", "no listener named 'm'; did you mean 'l'?");
}

TEST_CASE("config: route when no service exists") {
  expect_error(with_listener("[[route]]\nlistener = \"l\"\nservice = \"shop\"\n"), "6:11",
               "route[0].service", "no service named 'shop'; define a [[service]] with that name");
}

TEST_CASE("config: route to a missing service") {
  expect_error(with_service("[[route]]\nlistener = \"l\"\nservice = \"cart\"\n"), "13:11",
               "route[0].service", "no service named 'cart'; known services: 'shop'");
}

TEST_CASE("config: accepted route host forms, lower-cased") {
  Config c = expect_valid(with_service(R"([[route]]
listener = "l"
service = "shop"
host = "Shop.Example.com"
[[route]]
listener = "l"
service = "shop"
host = "10.0.0.1"
[[route]]
listener = "l"
service = "shop"
host = "[::1]"
)"));
  REQUIRE(c.routes.size() == 3);
  CHECK(c.routes[0].host == "shop.example.com");
  CHECK(c.routes[1].host == "10.0.0.1");
  CHECK(c.routes[2].host == "[::1]");
}

TEST_CASE("config: unknown key in a route") {
  expect_error(with_service("[[route]]\nlistener = \"l\"\nservice = \"shop\"\nprefix = \"/\"\n"),
               "14:1", "route[0].prefix", "unknown key 'prefix'");
}

TEST_CASE("config: route host with a port") {
  expect_error(with_service("[[route]]\nlistener = \"l\"\nservice = \"shop\"\n"
                            "host = \"example.com:80\"\n"),
               "14:8", "route[0].host",
               "'example.com:80' must not include a port (IPv6 addresses need brackets)");
}

TEST_CASE("config: route host with a space") {
  expect_error(with_service("[[route]]\nlistener = \"l\"\nservice = \"shop\"\n"
                            "host = \"a b\"\n"),
               "14:8", "route[0].host",
               "'a b' is not a valid host; use \"*\", \"*.example.com\" or an exact host name");
}

TEST_CASE("config: path_prefix without a leading slash") {
  expect_error(with_service("[[route]]\nlistener = \"l\"\nservice = \"shop\"\n"
                            "path_prefix = \"api\"\n"),
               "14:15", "route[0].path_prefix", "'api' must start with '/'");
}

TEST_CASE("config: path_prefix with a space") {
  expect_error(with_service("[[route]]\nlistener = \"l\"\nservice = \"shop\"\n"
                            "path_prefix = \"/a b\"\n"),
               "14:15", "route[0].path_prefix",
               "'/a b' must not contain spaces or control characters; percent-encode them");
}

TEST_CASE("config: duplicate route, after lower-casing the host") {
  expect_error(with_service(R"([[route]]
listener = "l"
host = "Example.com"
service = "shop"
[[route]]
listener = "l"
host = "example.COM"
service = "shop"
)"),
               "15:1", "route[1]",
               "same listener, host and path_prefix as route[0]; remove one or change its host "
               "or path_prefix");
}

TEST_CASE("config: every error is collected, in file order") {
  LoadResult r = load_string(R"([proxy]
workers = -1
wrokers = 2
[[listener]]
name = "l"
[[route]]
listener = "l"
service = "nope"
)",
                             "multi.toml");
  CHECK_FALSE(r.config.has_value());
  REQUIRE(r.errors.size() == 4);
  CHECK(r.errors[0].to_string() ==
        "multi.toml:2:11: proxy.workers: must be between 0 and 256, "
        "got -1");
  CHECK(r.errors[1].to_string() ==
        "multi.toml:3:1: proxy.wrokers: unknown key 'wrokers'; did "
        "you mean 'workers'?");
  CHECK(r.errors[2].to_string() ==
        "multi.toml:4:1: listener[0].address: missing required key "
        "'address'; add it to this table");
  CHECK(r.errors[3].key == "route[0].service");
  CHECK(r.errors[3].loc.line == 8);
}

TEST_CASE("config: load_file reads a file and records its path") {
  auto path = std::filesystem::temp_directory_path() / "weir_load_test.toml";
  {
    std::ofstream out(path);
    out << kListener;
  }
  LoadResult r = load_file(path.string());
  std::filesystem::remove(path);
  REQUIRE(r.config.has_value());
  CHECK(r.config->path == path.string());
  CHECK(r.config->listeners[0].loc.file == path.string());
}

TEST_CASE("config: load_file errors carry the path in every location") {
  auto path = std::filesystem::temp_directory_path() / "weir_load_test_bad.toml";
  {
    std::ofstream out(path);
    out << "[proxy]\n";
  }
  LoadResult r = load_file(path.string());
  std::filesystem::remove(path);
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].to_string() == path.string() +
                                       ":1:1: listener: no [[listener]] defined; "
                                       "add one with a name and an address");
}

TEST_CASE("config: load_file on a missing file") {
  LoadResult r = load_file("/nonexistent/weir.toml");
  CHECK_FALSE(r.config.has_value());
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].loc.line == 0);
  CHECK(r.errors[0].loc.column == 0);
  // The whole file is at fault: no line and column (":0:0") in the message.
  CHECK(r.errors[0].to_string() ==
        "/nonexistent/weir.toml: cannot read the file: No such file or directory");
}

TEST_CASE("config: load_file on a directory") {
  LoadResult r = load_file("/tmp");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].message == "cannot read the file: Is a directory");
}

// A temporary directory holding weir.toml (with `admin`) and tokens.toml (with `tokens`).
LoadResult load_with_tokens(const std::string& admin, const std::string& tokens) {
  // One folder per process: ctest runs test cases in parallel processes.
  auto top = std::filesystem::temp_directory_path() /
             ("weir_load_test_" + std::to_string(getpid()));
  auto dir = top / "weir_load_test_admin";
  std::filesystem::create_directories(dir);
  {
    std::ofstream(dir / "weir.toml") << admin << "\n" << kListener;
    std::ofstream(dir / "tokens.toml") << tokens;
  }
  LoadResult r = load_file((dir / "weir.toml").string());
  std::filesystem::remove_all(top);
  return r;
}

constexpr std::string_view kDigest =
    "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08";  // sha256("test")

TEST_CASE("config: [admin] is off by default and reads its keys and tokens file") {
  CHECK_FALSE(expect_valid(with_listener("")).admin.enabled);
  LoadResult r = load_with_tokens(
      "[admin]\naddress = \"127.0.0.1:0\"\ntokens_file = \"tokens.toml\"\nstate_dir = \"/s\"\n"
      "open_healthz = false\nopen_metrics = true",
      "[[token]]\nname = \"ci\"\nscope = \"write\"\nsha256 = \"" + std::string(kDigest) +
          "\"\n[[token]]\nname = \"viewer\"\nscope = \"read\"\nsha256 = \"" +
          std::string(64, '0') + "\"\n");
  for (const Error& e : r.errors) FAIL_CHECK(e.to_string());
  REQUIRE(r.config);
  const AdminSettings& a = r.config->admin;
  CHECK(a.enabled);
  CHECK(a.address.to_string() == "127.0.0.1:0");
  CHECK(a.tokens_file.ends_with("/weir_load_test_admin/tokens.toml"));
  CHECK(a.state_dir == "/s");
  CHECK_FALSE(a.open_healthz);
  CHECK(a.open_metrics);
  REQUIRE(a.tokens.size() == 2);
  CHECK(a.tokens[0].name == "ci");
  CHECK(a.tokens[0].scope == AdminToken::Scope::kWrite);
  CHECK(a.tokens[0].sha256[0] == 0x9f);
  CHECK(a.tokens[0].sha256[31] == 0x08);
  CHECK(a.tokens[1].scope == AdminToken::Scope::kRead);
}

TEST_CASE("config: proxy.access_log") {
  CHECK(expect_valid(with_listener("")).proxy.access_log.empty());
  CHECK(expect_valid("[proxy]\naccess_log = \"-\"\n" + with_listener("")).proxy.access_log == "-");
  expect_error("[proxy]\naccess_log = 1\n" + with_listener(""), "2:14", "proxy.access_log",
               "expected a string, got an integer");
}

TEST_CASE("config: [admin] errors") {
  expect_error(with_listener("[admin]\naddress = \"127.0.0.1:0\"\n"), "4:1",
               "admin.tokens_file",
               "missing required key 'tokens_file'; add it to this table");
  expect_error(with_listener("[admin]\ntokens_file = \"t\"\nopen_metrics = 1\n"), "6:16",
               "admin.open_metrics", "expected a boolean, got an integer");
  expect_error(with_listener("[admin]\ntokens_file = \"t\"\nadress = \"x\"\n"), "6:1",
               "admin.adress", "unknown key 'adress'; did you mean 'address'?");
}

TEST_CASE("config: [admin.tls]") {
  const std::string admin = "[admin]\ntokens_file = \"tokens.toml\"\n[admin.tls]\n";
  const std::string tokens =
      "[[token]]\nname = \"ci\"\nscope = \"write\"\nsha256 = \"" + std::string(kDigest) + "\"\n";
  LoadResult r = load_with_tokens(admin, tokens);  // an empty [admin.tls] needs cert and key
  CHECK_FALSE(r.config);
  REQUIRE(r.errors.size() == 2);
  CHECK(r.errors[0].key == "admin.tls.cert");
  CHECK(r.errors[1].key == "admin.tls.key");
  r = load_with_tokens("[admin]\ntokens_file = \"tokens.toml\"", tokens);
  REQUIRE(r.config);
  CHECK_FALSE(r.config->admin.tls);

  r = load_with_tokens(admin + "cert = \"a.crt\"\nkey = \"/k/a.key\"\n", tokens);
  for (const Error& e : r.errors) FAIL_CHECK(e.to_string());
  REQUIRE(r.config);
  REQUIRE(r.config->admin.tls);
  const ListenerTls& t = *r.config->admin.tls;
  REQUIRE(t.certificates.size() == 1);
  CHECK(t.certificates[0].cert.ends_with("/weir_load_test_admin/a.crt"));  // relative to the file
  CHECK(t.certificates[0].key == "/k/a.key");
  CHECK(t.certificates[0].cert_loc.line == 4);
  CHECK(t.certificates[0].key_loc.line == 5);
  CHECK(t.client_verify == ListenerTls::ClientVerify::kOff);
  CHECK(t.handshake_timeout_ms == 10000);
  CHECK_FALSE(t.session_tickets);

  r = load_with_tokens(admin + "cert = \"/a.crt\"\nkey = \"/a.key\"\nclient_ca = \"/ca.pem\"\n"
                               "handshake_timeout_ms = 500\n",
                       tokens);
  REQUIRE(r.config);
  CHECK(r.config->admin.tls->client_verify == ListenerTls::ClientVerify::kRequire);
  CHECK(r.config->admin.tls->client_ca == "/ca.pem");
  CHECK(r.config->admin.tls->handshake_timeout_ms == 500);
  r = load_with_tokens(admin + "cert = \"/a.crt\"\nkey = \"/a.key\"\nclient_ca = \"/ca.pem\"\n"
                               "client_verify = \"optional\"\n",
                       tokens);
  REQUIRE(r.config);
  CHECK(r.config->admin.tls->client_verify == ListenerTls::ClientVerify::kOptional);

  auto only_error = [&](const std::string& text, int line, int column, const std::string& key,
                        const std::string& message) {
    LoadResult bad = load_with_tokens(admin + text, tokens);
    CHECK_FALSE(bad.config);
    REQUIRE(bad.errors.size() == 1);
    CHECK(bad.errors[0].loc.line == line);
    CHECK(bad.errors[0].loc.column == column);
    CHECK(bad.errors[0].key == key);
    CHECK(bad.errors[0].message == message);
  };
  only_error("cert = \"/a.crt\"\n", 3, 1, "admin.tls.key",
             "missing required key 'key'; add it to this table");
  only_error("cert = \"/a.crt\"\nkey = \"/a.key\"\nclient_verify = \"optional\"\n", 6, 17,
             "admin.tls.client_verify",
             "needs client_ca, the CA file client certificates are verified against");
  only_error("cert = \"/a.crt\"\nkey = \"/a.key\"\nhandshake_timeout_ms = 0\n", 6, 24,
             "admin.tls.handshake_timeout_ms",
             "must be between 1 and 86400000, got 0");
  only_error("cert = \"/a.crt\"\nkey = \"/a.key\"\nclient_subject_header = \"x-s\"\n", 6, 1,
             "admin.tls.client_subject_header",
             "unknown key 'client_subject_header'");
}

TEST_CASE("config: tokens file errors name the tokens file") {
  LoadResult r = load_with_tokens("[admin]\ntokens_file = \"tokens.toml\"",
                                  "[[token]]\nname = \"ci\"\nscope = \"admin\"\nsha256 = \"abc\"\n");
  CHECK_FALSE(r.config);
  REQUIRE(r.errors.size() == 2);
  CHECK(r.errors[0].loc.file.ends_with("tokens.toml"));
  CHECK(r.errors[0].loc.line == 3);
  CHECK(r.errors[0].key == "token[0].scope");
  CHECK(r.errors[0].message == "'admin' is not a scope; use \"read\", \"write\" or \"approve\" (or a list such as "
        "[\"write\", \"approve\"])");
  CHECK(r.errors[1].key == "token[0].sha256");

  r = load_with_tokens("[admin]\ntokens_file = \"missing.toml\"", "");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].key == "admin.tokens_file");
  CHECK(r.errors[0].message.find("No such file") != std::string::npos);

  r = load_with_tokens("[admin]\ntokens_file = \"tokens.toml\"",
                       "[[token]]\nname = \"a\"\nscope = \"read\"\nsha256 = \"" +
                           std::string(kDigest) + "\"\n[[token]]\nname = \"b\"\nscope = " +
                           "\"read\"\nsha256 = \"" + std::string(kDigest) + "\"\n");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].message == "the same token is listed twice; give each one its own");
}

TEST_CASE("config: Error::to_string") {
  // Member-wise, not aggregate init: GCC 12 -O3 warns falsely (maybe-uninitialized) on the latter.
  Error e;
  e.loc.file = "a.toml";
  e.loc.line = 3;
  e.loc.column = 7;
  e.key = "proxy.workers";
  e.message = "bad";
  CHECK(e.to_string() == "a.toml:3:7: proxy.workers: bad");
}

TEST_CASE("config: parse_host_port") {
  auto hp = parse_host_port("example.com:443", false);
  REQUIRE(hp);
  CHECK(hp->host == "example.com");
  CHECK(hp->port == 443);
  CHECK(hp->to_string() == "example.com:443");

  hp = parse_host_port("[2001:db8::1]:65535", false);
  REQUIRE(hp);
  CHECK(hp->host == "2001:db8::1");
  CHECK(hp->port == 65535);
  CHECK(hp->to_string() == "[2001:db8::1]:65535");

  CHECK(parse_host_port("127.0.0.1:0", true)->port == 0);
  CHECK_FALSE(parse_host_port("127.0.0.1:0", false));
  CHECK_FALSE(parse_host_port("127.0.0.1", false));   // no port
  CHECK_FALSE(parse_host_port("127.0.0.1:", false));  // empty port
  CHECK_FALSE(parse_host_port("127.0.0.1:65536", false));
  CHECK_FALSE(parse_host_port("127.0.0.1:123456", false));
  CHECK_FALSE(parse_host_port("127.0.0.1:8o", false));
  CHECK_FALSE(parse_host_port("127.0.0.1:+80", false));
  CHECK_FALSE(parse_host_port(":80", false));  // empty host
  CHECK_FALSE(parse_host_port("[]:80", false));
  CHECK_FALSE(parse_host_port("::1:80", false));  // IPv6 without brackets
  CHECK_FALSE(parse_host_port("[example.com]:80", false));
  CHECK_FALSE(parse_host_port("a b:80", false));
}

// ---- traffic shifting and health keys -------------------------------------------------------

// Listener, then service "s" (stable "a") whose keys after name/stable are `service_rest`
// (from line 7), then versions "a" and "b".
std::string with_policy(std::string_view service_rest, std::string_view version_b_rest = "") {
  return std::string(kListener) + "[[service]]\nname = \"s\"\nstable = \"a\"\n" +
         std::string(service_rest) +
         "\n[[service.version]]\nname = \"a\"\nweight = 9\nendpoints = [\"127.0.0.1:1\"]\n"
         "[[service.version]]\nname = \"b\"\nweight = 1\nendpoints = [\"127.0.0.1:2\"]\n" +
         std::string(version_b_rest);
}

TEST_CASE("config: version choice, health, ejection and mirror keys") {
  Config c = expect_valid(with_policy(R"(override_header = "X-Weir-Version"
override_cookie = "weir_version"
override_strict = true
assign_cookie = "weir_bucket"
balance = "least_request"
slow_start_ms = 30000
sticky = { cookie = "session", salt = "pepper" }
[service.health_check]
path = "/ready"
interval_ms = 200
timeout_ms = 100
healthy_threshold = 1
unhealthy_threshold = 2
expected_status = [200, "300-399"]
jitter_ms = 50
host = "health.local"
[service.outlier_detection]
consecutive_failures = 3
ejection_ms = 1000
max_ejection_percent = 34
[service.mirror]
version = "b"
percent = 10
max_body_bytes = 1024
max_in_flight = 8)",
                                      "[service.version.health_check]\npath = \"/b\"\n"));
  const Service& s = c.services[0];
  CHECK(s.override_header == "x-weir-version");
  CHECK(s.override_cookie == "weir_version");
  CHECK(s.override_strict);
  CHECK(s.assign_cookie == "weir_bucket");
  CHECK(s.balance == Service::Balance::kLeastRequest);
  CHECK(s.slow_start_ms == 30000);
  CHECK(s.sticky.source == Sticky::Source::kCookie);
  CHECK(s.sticky.name == "session");
  CHECK(s.sticky.salt == "pepper");
  CHECK(s.health_check.enabled);
  CHECK(s.health_check.path == "/ready");
  CHECK(s.health_check.interval_ms == 200);
  REQUIRE(s.health_check.expected_status.size() == 2);
  CHECK(s.health_check.expected_status[1].lo == 300);
  CHECK(s.health_check.expected_status[1].hi == 399);
  CHECK(s.health_check.host == "health.local");
  CHECK(s.outlier.enabled);
  CHECK(s.outlier.consecutive_failures == 3);
  CHECK(s.outlier.max_ejection_percent == 34);
  CHECK(s.mirror.version == "b");
  CHECK(s.mirror.percent == 10);
  CHECK(s.mirror.max_body_bytes == 1024);
  CHECK(s.mirror.max_in_flight == 8);
  // A version inherits the service's check and overrides only what it sets.
  CHECK(s.versions[0].health_check.path == "/ready");
  CHECK(s.versions[1].health_check.path == "/b");
  CHECK(s.versions[1].health_check.interval_ms == 200);
}

TEST_CASE("config: defaults leave every shifting feature off") {
  Config c = expect_valid(with_policy(""));
  const Service& s = c.services[0];
  CHECK(s.override_header.empty());
  CHECK(s.sticky.source == Sticky::Source::kNone);
  CHECK(s.balance == Service::Balance::kRoundRobin);
  CHECK_FALSE(s.health_check.enabled);
  CHECK_FALSE(s.versions[0].health_check.enabled);
  CHECK_FALSE(s.outlier.enabled);
  CHECK(s.mirror.version.empty());
  CHECK(c.proxy.version_header == "x-weir-version");
}

TEST_CASE("config: a mirror table with only a version copies every eligible request") {
  Config c = expect_valid(with_policy("[service.mirror]\nversion = \"b\""));
  const Mirror& m = c.services[0].mirror;
  CHECK(m.version == "b");
  CHECK(m.percent == 100);
  CHECK(m.max_body_bytes == 65536);
  CHECK(m.max_in_flight == 64);
  expect_error(with_policy("[service.mirror]\nversion = \"b\"\nmax_in_flight = 0"), "9:17",
               "service[0].mirror.max_in_flight", "must be between 1 and 100000, got 0");
}

TEST_CASE("config: [[service.hook]] types, target, headers from a file or the environment") {
  const auto dir = std::filesystem::temp_directory_path() / ("weir_hook_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "token") << "s3cret\n";
  ::setenv("WEIR_TEST_HOOK_TOKEN", "from-env", 1);
  const std::string text = with_policy(R"([[service.hook]]
name = "notify"
type = "event"
url = "https://hooks.example.com:8443/weir?x=1"
format = "slack"
headers = { Authorization = { from_file = "token", prefix = "Bearer " }, X-Env = { from_env = "WEIR_TEST_HOOK_TOKEN" }, X-Plain = "p" }
metadata = { team = "shop", retries = 3, urgent = true }
retries = 4
backoff_ms = 50
timeout_ms = 700
[[service.hook]]
name = "smoke"
type = "pre-rollout"
url = "http://127.0.0.1:9000/smoke"
threshold = 2
interval_ms = 200
[[service.hook]]
name = "approve"
type = "confirm-promotion"
url = "http://127.0.0.1:9000/gate"
)");
  std::ofstream(dir / "t.toml") << text;
  LoadResult r = load_file((dir / "t.toml").string());
  for (const Error& e : r.errors) FAIL_CHECK(e.to_string());
  REQUIRE(r.config);
  const auto& hooks = r.config->services[0].hooks;
  REQUIRE(hooks.size() == 3);
  const Hook& h = hooks[0];
  CHECK(h.name == "notify");
  CHECK(h.type == Hook::Type::kEvent);
  CHECK(std::string(to_string(h.type)) == "event");
  CHECK(h.slack);
  CHECK(h.retries == 4);
  CHECK(h.backoff_ms == 50);
  CHECK(h.target.timeout_ms == 700);
  CHECK(h.target.url == "https://hooks.example.com:8443/weir?x=1");
  REQUIRE(h.target.headers.size() == 3);
  CHECK(h.target.headers[0].name == "Authorization");
  CHECK(h.target.headers[0].value == "Bearer s3cret");
  CHECK(h.target.headers[0].source == HookHeader::Source::kFile);
  CHECK(h.target.headers[1].value == "from-env");
  CHECK(h.target.headers[2].value == "p");
  REQUIRE(h.metadata.size() == 3);
  CHECK(h.metadata[0] == std::pair<std::string, std::string>("retries", "3"));
  CHECK(h.metadata[1].second == "shop");
  CHECK(h.metadata[2].second == "true");
  CHECK(hooks[1].type == Hook::Type::kPreRollout);
  CHECK(hooks[1].threshold == 2);
  CHECK(hooks[1].target.timeout_ms == 5000);
  CHECK(hooks[2].type == Hook::Type::kConfirmPromotion);
  CHECK(std::string(to_string(hooks[2].type)) == "confirm-promotion");
  std::filesystem::remove_all(dir);
}

TEST_CASE("config: [[service.hook]] errors name file:line:col and never show a header value") {
  auto hook = [](std::string_view rest) {
    return with_policy("[[service.hook]]\nname = \"h\"\n" + std::string(rest));
  };
  expect_error(hook("type = \"webhook\"\nurl = \"http://a:1/\""), "9:8", "service[0].hook[0].type",
               "'webhook' is not a hook type; use one of event, pre-rollout, rollout, "
               "confirm-rollout, confirm-traffic-increase, confirm-promotion, post-rollout, "
               "rollback");
  expect_error(hook("type = \"event\"\nurl = \"ftp://a/\""), "10:7", "service[0].hook[0].url",
               "'ftp://a/' is not an http:// or https:// URL");
  expect_error(hook("type = \"event\"\nurl = \"http://:80/\""), "10:7", "service[0].hook[0].url",
               "'http://:80/': missing host (e.g. http://127.0.0.1:9090)");
  expect_error(hook("type = \"event\"\nurl = \"http://a:1/\"\nthreshold = 2"), "11:13",
               "service[0].hook[0].threshold", "threshold applies to pre-rollout hooks only");
  expect_error(hook("type = \"rollout\"\nurl = \"http://a:1/\"\nformat = \"slack\""), "11:10",
               "service[0].hook[0].format", "format applies to event hooks only");
  expect_error(hook("type = \"event\"\nurl = \"http://a:1/\"\nca_file = \"/ca.pem\""), "7:1",
               "service[0].hook[0].ca_file", "TLS settings need an https:// url");
  expect_error(hook("type = \"event\"\nurl = \"http://a:1/\"\nheaders = { X = { from_env = "
                    "\"WEIR_TEST_SURELY_UNSET\" } }"),
               "11:17", "service[0].hook[0].headers.X",
               "environment variable WEIR_TEST_SURELY_UNSET is not set; set it or use from_file");
  expect_error(hook("type = \"event\"\nurl = \"http://a:1/\"\nheaders = { X = { from_file = "
                    "\"/nonexistent/t\" } }"),
               "11:17", "service[0].hook[0].headers.X",
               "cannot read /nonexistent/t: No such file or directory");
  expect_error(hook("type = \"event\"\nurl = \"http://a:1/\"\nheaders = { X = {} }"), "11:17",
               "service[0].hook[0].headers.X",
               "give exactly one of from_file = \"path\" or from_env = \"NAME\"");
  expect_error(hook("type = \"event\"\nurl = \"http://a:1/\"\nheaders = { Host = \"x\" }"),
               "11:13", "service[0].hook[0].headers.Host", "weir sets 'Host' itself; remove it");
  expect_error(hook("type = \"event\"\nurl = \"http://a:1/\"\nmetadata = { a = [1] }"), "11:18",
               "service[0].hook[0].metadata.a",
               "metadata values are strings, numbers or booleans, got an array");
  expect_error(with_policy("[[service.hook]]\nname = \"h\"\ntype = \"event\"\nurl = \"http://a:1/\"\n"
                           "[[service.hook]]\nname = \"h\"\ntype = \"event\"\nurl = \"http://a:1/\""),
               "12:8", "service[0].hook[1].name",
               "hook 'h' is defined twice; give each hook a unique name");
}

TEST_CASE("config: [[service.guard.query]]") {
  Config c = expect_valid(with_policy(R"([service.guard]
max_error_rate = 0.1
[[service.guard.query]]
name = "checkout"
url = "http://127.0.0.1:9090"
query = 'sum(rate(business_checkout_failures{version="{{version}}"}[{{window}}]))'
max = 0.5
interval_ms = 2000
timeout_ms = 800
on_no_data = "fail"
[[service.guard.query]]
name = "orders"
url = "http://127.0.0.1:9090/prom"
query = "orders_total"
min = 1
)"));
  const Service& s = c.services[0];
  REQUIRE(s.guard.queries.size() == 2);
  const KpiQuery& q = s.guard.queries[0];
  CHECK(q.name == "checkout");
  CHECK(q.max == 0.5);
  CHECK_FALSE(q.min);
  CHECK(q.interval_ms == 2000);
  CHECK(q.target.timeout_ms == 800);
  CHECK(q.on_no_data == KpiQuery::NoData::kFail);
  CHECK(s.guard.queries[1].min == 1);
  CHECK(s.guard.queries[1].on_no_data == KpiQuery::NoData::kHold);
  CHECK(s.guard.queries[1].interval_ms == 0);

  auto query = [](std::string_view rest) {
    return with_policy("[service.guard]\n[[service.guard.query]]\nname = \"q\"\nurl = "
                       "\"http://a:1\"\n" + std::string(rest));
  };
  expect_error(query("query = \"x\""), "8:1", "service[0].guard.query[0].max",
               "a query needs max or min (or both) to judge its value");
  expect_error(query("query = \"x{{canary}}\"\nmax = 1"), "11:9",
               "service[0].guard.query[0].query",
               "unknown placeholder '{{canary}}'; use {{service}}, {{version}}, {{stable}} or "
               "{{window}}");
  expect_error(query("query = \"x\"\nmax = 1\non_no_data = \"skip\""), "13:14",
               "service[0].guard.query[0].on_no_data",
               "'skip' is not a choice; use \"hold\", \"fail\" or \"pass\"");
}

TEST_CASE("config: sticky needs exactly one source") {
  expect_error(with_policy("sticky = { header = \"x-user\", client_ip = true }"), "7:10",
               "service[0].sticky",
               "set exactly one of header = \"...\", cookie = \"...\" or client_ip = true");
  LoadResult r = load_string(with_policy("sticky = { head = \"x\" }"), "t.toml");
  REQUIRE(r.errors.size() == 2);
  CHECK(r.errors[1].to_string() ==
        "t.toml:7:12: service[0].sticky.head: unknown key 'head'; did you mean 'header'?");
}

// sscanf("%u-%u") took these: 4294967496 wraps to 200 as an unsigned int, and signs and
// spaces were skipped.
TEST_CASE("config: a status range is two three-digit codes, nothing else") {
  for (const std::string text :
       {"4294967496-299", "200-4294967595", "+200-299", " 200-299", "200- 299", "-4294967096-299",
        "0200-299", "200-299x", "200-", "2x0-299", "099-200", "500-600"}) {
    CAPTURE(text);
    expect_error(with_policy("[service.health_check]\nexpected_status = [\"" + text + "\"]"),
                 "8:20", "service[0].health_check.expected_status[0]",
                 "expected a status code (100-599) or a range such as \"200-299\"");
  }
}

TEST_CASE("config: bad balance, status range and mirror version") {
  expect_error(with_policy("balance = \"random\""), "7:11", "service[0].balance",
               "'random' is not a balance; use \"round_robin\" or \"least_request\"");
  expect_error(with_policy("[service.health_check]\nexpected_status = [\"299-200\"]"), "8:20",
               "service[0].health_check.expected_status[0]",
               "expected a status code (100-599) or a range such as \"200-299\"");
  expect_error(with_policy("[service.health_check]\ninterval_ms = 0"), "8:15",
               "service[0].health_check.interval_ms", "must be between 10 and 86400000, got 0");
  expect_error(with_policy("[service.mirror]\nversion = \"b\"", "protocol = \"h2\"\n"), "8:11",
               "service[0].mirror.version",
               "mirroring needs HTTP/1.1 versions, and version 'b' speaks h2");
  expect_error(with_policy("[service.mirror]\nversion = \"zzz\""), "8:11",
               "service[0].mirror.version", "no version named 'zzz'; known versions: 'a' 'b'");
  expect_error(with_policy("override_header = \"\""), "7:19", "service[0].override_header",
               "must not be empty; leave the key out to disable");
}

TEST_CASE("config: listener TLS certificates and protocols") {
  Config c = expect_valid(std::string(R"([[listener]]
name = "tls"
address = "127.0.0.1:0"
  [listener.tls]
  handshake_timeout_ms = 500
  session_tickets = false
  [[listener.tls.certificate]]
  cert = "/etc/weir/a.crt"
  key = "a.key"
[[listener]]
name = "plain"
address = "127.0.0.1:0"
protocols = ["h2c", "http1"]
)") + std::string(kService));
  REQUIRE(c.listeners.size() == 2);
  const Listener& tls = c.listeners[0];
  REQUIRE(tls.tls);
  CHECK(tls.tls->handshake_timeout_ms == 500);
  CHECK_FALSE(tls.tls->session_tickets);
  REQUIRE(tls.tls->certificates.size() == 1);
  CHECK(tls.tls->certificates[0].cert == "/etc/weir/a.crt");
  CHECK(tls.tls->certificates[0].key == "a.key");  // no folder in "t.toml": stays relative
  CHECK(tls.tls->certificates[0].key_loc.line == 9);
  CHECK((tls.http1 && tls.h2));  // TLS default: h2 and http/1.1 by ALPN
  CHECK_FALSE(c.listeners[1].tls);
  CHECK((c.listeners[1].http1 && c.listeners[1].h2));
  CHECK_FALSE(expect_valid(with_service("")).listeners[0].h2);  // plain default: http1 only
}

TEST_CASE("config: listener TLS errors") {
  expect_error(R"([[listener]]
name = "l"
address = "127.0.0.1:0"
  [listener.tls]
  handshake_timeout_ms = 500
)" + std::string(kService),
               "4:3", "listener[0].tls.certificate",
               "needs at least one [[listener.tls.certificate]] with cert and key");
  expect_error(R"([[listener]]
name = "l"
address = "127.0.0.1:0"
  [[listener.tls.certificate]]
  cert = "a.crt"
)" + std::string(kService),
               "4:3", "listener[0].tls.certificate[0].key",
               "missing required key 'key'; add it to this table");
  expect_error(R"([[listener]]
name = "l"
address = "127.0.0.1:0"
  [[listener.tls.certificate]]
  cert = "a.crt"
  key = "a.key"
  chain = "x"
)" + std::string(kService),
               "7:3", "listener[0].tls.certificate[0].chain", "unknown key 'chain'");
}

TEST_CASE("config: listener protocols") {
  expect_error(R"([[listener]]
name = "l"
address = "127.0.0.1:0"
protocols = ["h2"]
)" + std::string(kService),
               "4:14", "listener[0].protocols[0]",
               "'h2' is not a protocol of this listener; use \"http1\" or \"h2c\" (plain "
               "listener; h2 needs [listener.tls])");
  expect_error(R"([[listener]]
name = "l"
address = "127.0.0.1:0"
protocols = []
)" + std::string(kService),
               "4:13", "listener[0].protocols",
               "needs at least one protocol: \"http1\" or \"h2c\"");
}

}  // namespace
}  // namespace weir::config

namespace weir::config {
namespace {

// The one error `text` gives, as "line:col key: message".
std::string only_error(const std::string& text) {
  LoadResult r = load_string(text, "t.toml");
  REQUIRE(r.errors.size() == 1);
  const Error& e = r.errors[0];
  return std::to_string(e.loc.line) + ":" + std::to_string(e.loc.column) + " " + e.key + ": " +
         e.message;
}

TEST_CASE("config: guard and rollout keys") {
  Config c = expect_valid(with_policy(R"([service.guard]
interval_ms = 500
window_s = 5
min_requests = 20
max_error_rate = 0.05
max_p99_ms = 250
max_p50_ms = 50
max_error_rate_increase = 0.02
max_p99_ratio = 1.5
confidence = 0.99
consecutive = 2
revert_ramp_ms = 3000
[service.rollout]
version = "b"
steps = [1, 10, 100]
step_s = 30
max_step_s = 90
auto_start = true)"));
  const Service& s = c.services[0];
  CHECK(s.guard.enabled);
  CHECK(s.guard.interval_ms == 500);
  CHECK(s.guard.window_s == 5);
  CHECK(s.guard.min_requests == 20);
  CHECK(s.guard.max_error_rate == doctest::Approx(0.05));
  CHECK(s.guard.max_p99_ms == 250);
  CHECK(s.guard.max_p50_ms == 50);
  CHECK(s.guard.max_error_rate_increase == doctest::Approx(0.02));
  CHECK(s.guard.max_p99_ratio == doctest::Approx(1.5));
  CHECK(s.guard.confidence == doctest::Approx(0.99));
  CHECK(s.guard.consecutive == 2);
  CHECK(s.guard.revert_ramp_ms == 3000);
  CHECK(s.rollout.present);
  CHECK(s.rollout.version == "b");
  REQUIRE(s.rollout.steps.size() == 3);
  CHECK(s.rollout.steps[0].weight == 1);
  CHECK(s.rollout.steps[1].weight == 10);
  CHECK(s.rollout.steps[2].weight == 100);
  CHECK_FALSE(s.rollout.steps[1].pause);
  CHECK(s.rollout.step_s == 30);
  CHECK(s.rollout.max_step_s == 90);
  CHECK(s.rollout.auto_start);
  // Without the tables both are off; an integer is a valid number.
  Config d = expect_valid(with_policy("[service.guard]\nenabled = false\nmax_error_rate = 0\n"));
  CHECK_FALSE(d.services[0].guard.enabled);
  CHECK(d.services[0].guard.max_error_rate == 0);
  CHECK_FALSE(d.services[0].rollout.present);
}

TEST_CASE("config: rollout gates: pause steps, approvals, windows, success_after") {
  Config c = expect_valid(with_policy(R"([service.guard]
max_error_rate = 0.05
min_latency_increase_ms = 5
latency_confidence = 0.99
dry_run = ["max_p99_ms", "min_latency_increase_ms"]
[service.rollout]
version = "b"
steps = [5, "pause", {weight = 25, step_s = 120}, {pause_s = 600}, 50, 100]
step_s = 60
approvals = 1
windows = ["Mon-Fri 09:00-16:00 Europe/Berlin", "sat,sun 22:00-02:00"]
success_after = 500)"));
  const Service& s = c.services[0];
  CHECK(s.guard.min_latency_increase_ms == doctest::Approx(5));
  CHECK(s.guard.latency_confidence == doctest::Approx(0.99));
  CHECK(s.guard.is_dry("max_p99_ms"));
  CHECK_FALSE(s.guard.is_dry("max_error_rate"));
  const RolloutConfig& r = s.rollout;
  REQUIRE(r.steps.size() == 6);
  CHECK(r.steps[0].weight == 5);
  CHECK(r.steps[1].pause);
  CHECK(r.steps[1].pause_s == 0);
  CHECK(r.steps[2].weight == 25);
  CHECK(r.bake_s(2) == 120);
  CHECK(r.bake_s(0) == 60);
  CHECK(r.steps[3].pause);
  CHECK(r.bake_s(3) == 600);
  CHECK(r.approvals == 1);
  CHECK(r.success_after == 500);
  REQUIRE(r.windows.size() == 2);
  CHECK(r.windows[0].days == 0b0111110);
  CHECK(r.windows[0].start_min == 9 * 60);
  CHECK(r.windows[0].end_min == 16 * 60);
  CHECK(r.windows[0].tz->name() == "Europe/Berlin");
  CHECK(r.windows[1].days == 0b1000001);
  CHECK(r.windows[1].zone == "UTC");
  CHECK(r.windows[1].end_min == 2 * 60);
  CHECK(expect_valid(with_policy("[service.guard]\ndry_run = true\n")).services[0].guard.dry_run_all);
}

TEST_CASE("config: rollout gate errors carry file:line:col") {
  const std::string rollout = "[service.rollout]\nversion = \"b\"\n";
  CHECK(only_error(with_policy(rollout + "steps = [5, \"pause\"]")) ==
        "9:13 service[0].rollout.steps[1]: a pause cannot be the last step: the last step is 100 "
        "(promotion)");
  CHECK(only_error(with_policy(rollout + "steps = [5, \"wait\", 100]")).find(
            "9:13 service[0].rollout.steps[1]: a step is a weight") == 0);
  CHECK(only_error(with_policy(rollout + "steps = [5, \"pause\", {pause_s = 5}, 100]")) ==
        "9:22 service[0].rollout.steps[2]: two pauses in a row; make them one");
  CHECK(only_error(with_policy(rollout + "steps = [5, {weight = 5, pause_s = 3}, 100]"))
            .find("either weight (with an optional step_s) or pause_s") != std::string::npos);
  CHECK(only_error(with_policy(rollout + "steps = [5, {pause_s = 3, step_s = 3}, 100]"))
            .find("a pause has no step_s") != std::string::npos);
  CHECK(only_error(with_policy(rollout + "steps = [5, {weight = 50, step_s = 9000}, 100]"))
            .find("is above max_step_s 600") != std::string::npos);
  LoadResult typo = load_string(with_policy(rollout + "steps = [5, {wieght = 50}, 100]"), "t");
  REQUIRE(typo.errors.size() == 2);
  CHECK(typo.errors[1].to_string().find("steps[1].wieght: unknown key 'wieght'; did you mean "
                                        "'weight'?") != std::string::npos);
  CHECK(only_error(with_policy(rollout + "steps = [100]\nwindows = [\"Mon-Fri 09:00-16:00 Mars/Base\"]")) ==
        "10:12 service[0].rollout.windows[0]: unknown time zone 'Mars/Base' (no "
        "/usr/share/zoneinfo/Mars/Base; is tzdata installed?); use UTC or an IANA name such as "
        "Europe/Berlin");
  CHECK(only_error(with_policy(rollout + "steps = [100]\nwindows = [\"Mon-Fry 09:00-16:00\"]"))
            .find("'Mon-Fry' is not a day or a range of days") != std::string::npos);
  CHECK(only_error(with_policy(rollout + "steps = [100]\nwindows = [\"Mon 9-16\"]"))
            .find("'9-16' is not a time span; write HH:MM-HH:MM") != std::string::npos);
  CHECK(only_error(with_policy(rollout + "steps = [100]\nwindows = []"))
            .find("needs at least one window") != std::string::npos);
  CHECK(only_error(with_policy(rollout + "steps = [100]\nsuccess_after = 100")) ==
        "10:17 service[0].rollout.success_after: success_after finishes a step early on a "
        "significant pass of the error-rate rules; the service's [service.guard] needs "
        "max_error_rate or max_error_rate_increase");
  CHECK(only_error(with_policy("[service.guard]\ndry_run = [\"max_p99_mss\"]"))
            .find("'max_p99_mss' is not a guard rule; did you mean 'max_p99_ms'?") !=
        std::string::npos);
  CHECK(only_error(with_policy("[service.guard]\ndry_run = 1"))
            .find("expected true/false (the whole guard) or a list of rules") !=
        std::string::npos);
}

TEST_CASE("config: tokens may carry the approve scope") {
  LoadResult r = load_with_tokens(
      "[admin]\ntokens_file = \"tokens.toml\"",
      "[[token]]\nname = \"ci\"\nscope = \"write\"\nsha256 = \"" + std::string(kDigest) +
          "\"\n[[token]]\nname = \"lead\"\nscope = [\"write\", \"approve\"]\nsha256 = \"" +
          std::string(64, '1') + "\"\n[[token]]\nname = \"reviewer\"\nscope = \"approve\"\n"
          "sha256 = \"" + std::string(64, '2') + "\"\n");
  for (const Error& e : r.errors) FAIL_CHECK(e.to_string());
  REQUIRE(r.config);
  const auto& t = r.config->admin.tokens;
  REQUIRE(t.size() == 3);
  CHECK(t[0].scope == AdminToken::Scope::kWrite);
  CHECK_FALSE(t[0].approve);
  CHECK(t[1].scope == AdminToken::Scope::kWrite);
  CHECK(t[1].approve);
  CHECK(t[2].scope == AdminToken::Scope::kRead);
  CHECK(t[2].approve);
}

TEST_CASE("config: guard and rollout errors") {
  const std::string guard = "[service.guard]\n";
  CHECK(only_error(with_policy(guard + "max_error_rate = 1.5")) ==
        "8:18 service[0].guard.max_error_rate: must be between 0 and 1, got 1.5");
  CHECK(only_error(with_policy(guard + "max_error_rate = \"high\"")) ==
        "8:18 service[0].guard.max_error_rate: expected a number, got a string");
  CHECK(only_error(with_policy(guard + "enabled = 1")).find("expected a boolean") !=
        std::string::npos);
  CHECK(only_error(with_policy(guard + "window_s = 601")).find("between 1 and 600") !=
        std::string::npos);
  CHECK(only_error(with_policy(guard + "consecutve = 2")).find("did you mean 'consecutive'") !=
        std::string::npos);
  const std::string rollout = "[service.rollout]\n";
  CHECK(only_error(with_policy(rollout + "version = \"b\"\nsteps = [1, 50]"))
            .find("the last step must be 100") != std::string::npos);
  CHECK(only_error(with_policy(rollout + "version = \"b\"\nsteps = [50, 10, 100]"))
            .find("steps must increase") != std::string::npos);
  CHECK(only_error(with_policy(rollout + "version = \"a\"\nsteps = [100]"))
            .find("the stable version cannot be rolled out") != std::string::npos);
  CHECK(only_error(with_policy(rollout + "version = \"c\"\nsteps = [100]"))
            .find("no version named") != std::string::npos);
  CHECK(only_error(with_policy(rollout + "version = \"b\"\nsteps = [100]\nstep_s = 60\n"
                                         "max_step_s = 10"))
            .find("must be at least step_s") != std::string::npos);
  CHECK(only_error(with_policy(rollout + "steps = [100]")).find("missing required key 'version'") !=
        std::string::npos);
}

}  // namespace
}  // namespace weir::config

namespace weir::config {
namespace {

TEST_CASE("config: upstream tls from the service, overridden per version; protocol") {
  Config c = expect_valid(with_listener(R"([[service]]
name = "s"
stable = "a"
protocol = "h2"
[service.tls]
sni = "API.example.com"
ca_file = "ca.pem"
[[service.version]]
name = "a"
weight = 1
endpoints = ["127.0.0.1:1"]
[[service.version]]
name = "b"
weight = 1
endpoints = ["127.0.0.1:2"]
protocol = "http1"
tls = { verify = false, cert = "/c.pem", key = "/k.pem" }
[[service.version]]
name = "c"
weight = 1
endpoints = ["127.0.0.1:3"]
tls = { enabled = false }
)"));
  const auto& v = c.services[0].versions;
  CHECK(v[0].tls.enabled);
  CHECK(v[0].tls.sni == "api.example.com");
  CHECK(v[0].tls.ca_file == "ca.pem");  // load_string: no config folder to resolve against
  CHECK(v[0].tls.verify);
  CHECK(v[0].tls.ca_loc.line == 10);
  CHECK(v[0].protocol == UpstreamProtocol::kH2);
  CHECK(v[1].tls.enabled);
  CHECK_FALSE(v[1].tls.verify);
  CHECK(v[1].tls.sni == "api.example.com");
  CHECK(v[1].tls.cert == "/c.pem");
  CHECK(v[1].protocol == UpstreamProtocol::kHttp1);
  CHECK_FALSE(v[2].tls.enabled);
  CHECK(v[2].protocol == UpstreamProtocol::kH2);
  Config plain = expect_valid(with_version("weight = 1\nendpoints = [\"127.0.0.1:1\"]\n"));
  CHECK_FALSE(plain.services[0].versions[0].tls.enabled);
  CHECK(plain.services[0].versions[0].protocol == UpstreamProtocol::kHttp1);
}

TEST_CASE("config: upstream tls errors") {
  const std::string base = "weight = 1\nendpoints = [\"127.0.0.1:1\"]\n";
  expect_error(with_version(base + "tls = { cert = \"/c.pem\" }\n"), "11:7",
               "service[0].version[0].tls.key",
               "a client certificate needs both cert and key; add the missing one");
  expect_error(with_version(base + "tls = { sni = \"a b\" }\n"), "11:15",
               "service[0].version[0].tls.sni", "'a b' is not a host name; sni names a DNS host");
  expect_error(with_version(base + "tls = { ca_file = \"\" }\n"), "11:19",
               "service[0].version[0].tls.ca_file", "must not be empty; give a file path");
  expect_error(with_version(base + "protocol = \"h3\"\n"), "11:12",
               "service[0].version[0].protocol",
               "'h3' is not an upstream protocol; use \"http1\" or \"h2\"");
}

}  // namespace
}  // namespace weir::config

namespace weir::config {
namespace {

TEST_CASE("config: an h2 version takes an active health check (probed over HTTP/2)") {
  Config c = expect_valid(with_version(
      "weight = 1\nendpoints = [\"127.0.0.1:1\"]\nprotocol = \"h2\"\n"
      "[service.version.health_check]\npath = \"/h\"\nexpected_status = [\"200-299\"]\n"));
  const Version& v = c.services[0].versions[0];
  CHECK(v.protocol == UpstreamProtocol::kH2);
  CHECK(v.health_check.enabled);
  CHECK(v.health_check.path == "/h");
}

}  // namespace
}  // namespace weir::config

namespace weir::config {
namespace {

TEST_CASE("config: listener client certificates (mTLS)") {
  const std::string tls = "[[listener]]\nname = \"l\"\naddress = \"127.0.0.1:0\"\n"
                          "[listener.tls]\n";
  const std::string cert = "[[listener.tls.certificate]]\ncert = \"/a.crt\"\nkey = \"/a.key\"\n";
  Config c = expect_valid(tls + "client_ca = \"/ca.pem\"\n"
                                "client_subject_header = \"X-Client-Subject\"\n" + cert);
  const ListenerTls& t = *c.listeners[0].tls;
  CHECK(t.client_ca == "/ca.pem");
  CHECK(t.client_ca_loc.line == 5);
  CHECK(t.client_verify == ListenerTls::ClientVerify::kRequire);
  CHECK(t.client_subject_header == "x-client-subject");
  Config opt = expect_valid(tls + "client_ca = \"/ca.pem\"\nclient_verify = \"optional\"\n" +
                            cert);
  CHECK(opt.listeners[0].tls->client_verify == ListenerTls::ClientVerify::kOptional);
  CHECK(expect_valid(tls + cert).listeners[0].tls->client_verify ==
        ListenerTls::ClientVerify::kOff);
  expect_error(tls + "client_verify = \"require\"\n" + cert, "5:17", "listener[0].tls.client_verify",
               "needs client_ca, the CA file client certificates are verified against");
  expect_error(tls + "client_ca = \"/ca.pem\"\nclient_verify = \"maybe\"\n" + cert, "6:17",
               "listener[0].tls.client_verify",
               "'maybe' is not a client_verify mode; use \"require\", \"optional\" or \"off\"");
}

}  // namespace
}  // namespace weir::config

namespace weir::config {
namespace {

std::string two_listeners(const std::string& a, const std::string& b) {
  return "[[listener]]\nname = \"public\"\naddress = \"" + a +
         "\"\n[[listener]]\nname = \"internal\"\naddress = \"" + b + "\"\n";
}

TEST_CASE("config: two listeners on one address are refused at the second one's address") {
  expect_error(two_listeners("127.0.0.1:18090", "127.0.0.1:18090"), "6:11", "listener[1].address",
               "127.0.0.1:18090 overlaps listener 'public' (127.0.0.1:18090 at t.toml:3:11); "
               "two listeners on one address would split its connections at random: give each "
               "its own port");
  // A wildcard covers every address of its family on that port ("::" both families).
  // (pairs, not structured bindings: clang 14 cannot capture a binding in CAPTURE's lambda)
  for (auto ab : {std::pair{"0.0.0.0:80", "127.0.0.1:80"},
                  {"10.1.2.3:80", "0.0.0.0:80"},
                  {"[::]:80", "127.0.0.1:80"},
                  {"[::1]:80", "[::]:80"},
                  {"[::]:80", "0.0.0.0:80"},
                  {"[::0]:80", "[0::1]:80"},
                  {"[0:0::1]:80", "[::1]:80"},
                  {"LocalHost:80", "localhost:80"}}) {
    const char *a = ab.first, *b = ab.second;
    CAPTURE(a);
    CAPTURE(b);
    LoadResult r = load_string(two_listeners(a, b), "t.toml");
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].key == "listener[1].address");
  }
  // Different ports, port 0, or IPv4 wildcard against a specific IPv6 address: no overlap.
  for (auto ab : {std::pair{"127.0.0.1:80", "127.0.0.1:81"},
                  {"127.0.0.1:0", "127.0.0.1:0"},
                  {"0.0.0.0:80", "[::1]:80"},
                  {"127.0.0.1:80", "127.0.0.2:80"},
                  {"[::1]:80", "127.0.0.1:80"}}) {
    const char *a = ab.first, *b = ab.second;
    CAPTURE(a);
    CAPTURE(b);
    expect_valid(two_listeners(a, b));
  }
}

TEST_CASE("config: a listener on the admin listener's address is refused") {
  const std::string admin = "[admin]\naddress = \"127.0.0.1:9901\"\ntokens_file = \"t.toml\"\n";
  LoadResult r = load_string(
      "[[listener]]\nname = \"l\"\naddress = \"0.0.0.0:9901\"\n" + admin, "t.toml");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].to_string() ==
        "t.toml:3:11: listener[0].address: 0.0.0.0:9901 overlaps the admin listener "
        "(127.0.0.1:9901 at t.toml:5:11); give the listener or [admin] address another port");
  // The default admin address is 127.0.0.1:9901 too.
  r = load_string("[[listener]]\nname = \"l\"\naddress = \"127.0.0.1:9901\"\n"
                  "[admin]\ntokens_file = \"t.toml\"\n",
                  "t.toml");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].key == "listener[0].address");
  CHECK(r.errors[0].loc.line == 3);
}

TEST_CASE("config: locs name where each key was written") {
  Config c = expect_valid(with_service(""));
  CHECK(c.where("listener[0].address").line == 3);
  CHECK(c.where("service[0].version[0].endpoints[0]").line == 10);
  CHECK(c.where("service[0].version[0].endpoints[0]").column == 14);
  CHECK(c.where("service[0]").line == 4);
  CHECK(c.where("nothing.here", SourceLoc{"f", 7, 1}).line == 7);
}

// The warnings of `text` (which must load) as "line:col key" strings.
std::vector<std::string> warnings_of(const std::string& text) {
  std::vector<std::string> out;
  for (const Error& w : warnings(expect_valid(text)))
    out.push_back(std::to_string(w.loc.line) + ":" + std::to_string(w.loc.column) + " " + w.key);
  return out;
}

// Listener "l", route to service "s" (stable "a", version "a" plus `more_versions`), then
// `tables` inside the service, from line 14.
std::string routed(const std::string& tables, bool two_versions = true) {
  return std::string(kListener) +
         "[[route]]\nlistener = \"l\"\nservice = \"s\"\n"                                // 4-6
         "[[service]]\nname = \"s\"\nstable = \"a\"\n"                                   // 7-9
         "[[service.version]]\nname = \"a\"\nweight = 1\nendpoints = [\"127.0.0.1:1\"]\n"  // 10-13
         + (two_versions ? "[[service.version]]\nname = \"b\"\nweight = 1\n"
                           "endpoints = [\"127.0.0.1:2\"]\n"  // 14-17
                         : "") +
         tables;
}

TEST_CASE("config: approvals without an approve-scope token warn") {
  const std::string rollout =
      "[service.guard]\nmax_error_rate = 0.05\n[service.rollout]\nversion = \"b\"\n"
      "steps = [10, 100]\napprovals = 1\n";
  CHECK(warnings_of(routed(rollout)) ==
        std::vector<std::string>{"23:13 service[0].rollout.approvals"});
}

TEST_CASE("config: a plain valid config has no warnings") {
  CHECK(warnings_of(routed("[service.guard]\nmax_error_rate = 0.05\n")).empty());
  CHECK(warnings_of(routed("[service.health_check]\ninterval_ms = 1000\ntimeout_ms = 1000\n"))
            .empty());
}

TEST_CASE("config: warnings for settings that cannot be what was meant") {
  // max_error_rate = 1 can never be exceeded; at the key's value, as errors are.
  CHECK(warnings_of(routed("[service.guard]\nmax_error_rate = 1\n")) ==
        std::vector<std::string>{"19:18 service[0].guard.max_error_rate"});
  CHECK(warnings_of(routed("[service.guard]\nmax_error_rate_increase = 1.0\n")) ==
        std::vector<std::string>{"19:27 service[0].guard.max_error_rate_increase"});
  // 10k requests a second for 30 s is the most a canary plausibly sees.
  CHECK(warnings_of(routed("[service.guard]\nmax_error_rate = 0.1\nmin_requests = 300000\n"))
            .empty());
  CHECK(warnings_of(routed("[service.guard]\nmax_error_rate = 0.1\nmin_requests = 300001\n")) ==
        std::vector<std::string>{"20:16 service[0].guard.min_requests"});
  // A guard with no threshold at all.
  CHECK(warnings_of(routed("[service.guard]\nwindow_s = 10\n")) ==
        std::vector<std::string>{"18:1 service[0].guard"});
  // A guard on a service with one version has nothing to watch.
  CHECK(warnings_of(routed("[service.guard]\nmax_p99_ms = 100\n", false)) ==
        std::vector<std::string>{"14:1 service[0].guard"});
  // A probe timeout longer than its interval, at the service's and at a version's table.
  CHECK(warnings_of(routed("[service.health_check]\ninterval_ms = 1000\ntimeout_ms = 1500\n")) ==
        std::vector<std::string>{"20:14 service[0].health_check.timeout_ms"});
  CHECK(warnings_of(routed("[service.health_check]\ntimeout_ms = 6000\n")) ==
        std::vector<std::string>{"19:14 service[0].health_check.timeout_ms"});
  CHECK(warnings_of(routed("[service.health_check]\n[service.version.health_check]\n"
                           "interval_ms = 500\n")) ==
        std::vector<std::string>{"20:15 service[0].version[1].health_check.interval_ms"});
  // A health check that is off is not judged.
  CHECK(warnings_of(routed("[service.health_check]\nenabled = false\ntimeout_ms = 9000\n"))
            .empty());
  // A rollout with no guard advances on time alone.
  CHECK(warnings_of(routed("[service.rollout]\nversion = \"b\"\nsteps = [50, 100]\n")) ==
        std::vector<std::string>{"18:1 service[0].rollout"});
}

TEST_CASE("config: warnings for a service and a listener no route uses") {
  CHECK(warnings_of(with_service("")) ==
        std::vector<std::string>{"1:1 listener[0]", "4:1 service[0]"});
  const std::string extra_listener = "[[listener]]\nname = \"spare\"\naddress = \"127.0.0.1:0\"\n";
  CHECK(warnings_of(routed("") + extra_listener) == std::vector<std::string>{"18:1 listener[1]"});
  Error w = warnings(expect_valid(with_service("")))[1];
  CHECK(w.message ==
        "no route uses service 'shop', so it never gets traffic; add a [[route]] with "
        "service = 'shop'");
}

TEST_CASE("config: summary lists listeners, routes, services, weights and guards") {
  Config c = expect_valid(routed("[service.guard]\nmax_error_rate = 0.05\nwindow_s = 10\n"
                                 "[service.rollout]\nversion = \"b\"\nsteps = [10, 100]\n"));
  CHECK(summary(c) ==
        "listener l on 127.0.0.1:0 (http1)\n"
        "route l */ -> s\n"
        "service s: a 1 (50%, stable, 1 endpoint) b 1 (50%, 1 endpoint)\n"
        "  guard: reverts on error rate > 5% over 10 s (at least 100 requests, 3 in a row)\n"
        "  rollout: b through [10, 100]%, 60 s a step\n");
}

TEST_CASE("config: [log] formats and access fields") {
  Config d = expect_valid(std::string(kListener));
  CHECK(d.log.format == LogSettings::Format::kText);
  CHECK(d.log.access_format == LogSettings::Format::kJson);
  CHECK(d.log.access_fields.size() == std::size(kAccessFieldNames));
  Config c = expect_valid(with_listener(
      "[log]\nformat = \"json\"\naccess_format = \"text\"\n"
      "access_fields = [\"status\", \"flags\", \"trace_id\"]\n"));
  CHECK(c.log.format == LogSettings::Format::kJson);
  CHECK(c.log.access_format == LogSettings::Format::kText);
  CHECK(c.log.access_fields ==
        std::vector<AccessField>{AccessField::kStatus, AccessField::kFlags, AccessField::kTraceId});
}

TEST_CASE("config: [log] errors") {
  expect_error(with_listener("[log]\nformat = \"xml\"\n"), "5:10", "log.format",
               "'xml' is not a log format; use \"text\" or \"json\"");
  expect_error(with_listener("[log]\naccess_fields = [\"status\", \"flgas\"]\n"), "5:28",
               "log.access_fields[1]", "'flgas' is not an access log field; did you mean 'flags'?");
  expect_error(with_listener("[log]\naccess_fields = [\"status\", \"status\"]\n"), "5:28",
               "log.access_fields[1]", "'status' is listed twice; keep one");
  expect_error(with_listener("[log]\naccess_fields = []\n"), "5:17", "log.access_fields",
               "lists no field; name at least one (e.g. \"status\") or remove the key for the "
               "default set");
  expect_error(with_listener("[log]\nlevel = \"debug\"\n"), "5:1", "log.level",
               "unknown key 'level'");
}

}  // namespace
}  // namespace weir::config
