#include "proxy/preflight.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace weir::proxy {
namespace {

// A per-process folder for the files a config names.
std::filesystem::path folder() {
  auto dir = std::filesystem::temp_directory_path() /
             ("weir_preflight_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  return dir;
}

config::Config load(const std::string& text) {
  config::LoadResult r = config::load_string(text, "t.toml");
  for (const auto& e : r.errors) FAIL_CHECK(e.to_string());
  REQUIRE(r.config.has_value());
  return *r.config;
}

std::string with_endpoint(const std::string& endpoint, const std::string& proxy = "") {
  return "[proxy]\n" + proxy +
         "\n[[listener]]\nname = \"l\"\naddress = \"127.0.0.1:0\"\n"
         "[[service]]\nname = \"s\"\nstable = \"a\"\n"
         "[[service.version]]\nname = \"a\"\nweight = 1\nendpoints = [\"127.0.0.1:1\", \"" +
         endpoint + "\"]\n";
}

TEST_CASE("preflight: an endpoint name that does not resolve, at its file:line:col") {
  CHECK(preflight(load(with_endpoint("127.0.0.1:2"))).empty());
  auto errors = preflight(load(with_endpoint("green.invalid:19002")));
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].loc.line == 12);
  CHECK(errors[0].loc.column == 14 + 15);
  CHECK(errors[0].key == "service[0].version[0].endpoints[1]");
  CHECK(errors[0].message.find("cannot resolve 'green.invalid'") == 0);
  // Without resolving, names pass and literals are still used as they are.
  CHECK(preflight(load(with_endpoint("green.invalid:19002")), false).empty());
}

TEST_CASE("preflight: listeners that overlap once resolved") {
  auto errors = preflight(load("[[listener]]\nname = \"a\"\naddress = \"127.0.0.1:18090\"\n"
                               "[[listener]]\nname = \"b\"\naddress = \"localhost:18090\"\n"));
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].key == "listener[1].address");
  CHECK(errors[0].loc.line == 6);
  CHECK(errors[0].message.find("overlaps listener 'a'") != std::string::npos);
}

TEST_CASE("preflight: an access log that cannot be created") {
  const auto dir = folder();
  std::ofstream(dir / "file") << "x";
  auto errors = preflight(
      load(with_endpoint("127.0.0.1:2", "access_log = \"" + (dir / "file/x.log").string() + "\"")));
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].key == "proxy.access_log");
  CHECK(errors[0].loc.line == 2);
  CHECK(preflight(load(with_endpoint(
                      "127.0.0.1:2", "access_log = \"" + (dir / "new/x.log").string() + "\"")))
            .empty());
  std::filesystem::remove_all(dir);
}

TEST_CASE("preflight: a state.json that cannot be read") {
  const auto dir = folder();
  std::ofstream(dir / "tokens.toml") << "[[token]]\nname = \"ci\"\nscope = \"read\"\nsha256 = \""
                                     << std::string(64, 'a') << "\"\n";
  std::filesystem::create_directories(dir / "state");
  std::ofstream(dir / "state" / "state.json") << "{not json";
  const std::string text = with_endpoint("127.0.0.1:2") + "[admin]\naddress = \"127.0.0.1:0\"\n" +
                           "tokens_file = \"" + (dir / "tokens.toml").string() + "\"\n" +
                           "state_dir = \"" + (dir / "state").string() + "\"\n";
  auto errors = preflight(load(text));
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].key == "admin.state_dir");
  CHECK(errors[0].message.find("is not valid JSON") != std::string::npos);
  std::filesystem::remove(dir / "state" / "state.json");
  CHECK(preflight(load(text)).empty());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace weir::proxy
