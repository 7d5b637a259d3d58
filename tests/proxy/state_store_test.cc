#include "proxy/state_store.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace weir::proxy {
namespace {

std::filesystem::path fresh_dir(const char* name) {
  // Per process: ctest runs test cases in parallel, and other checkouts may run at once.
  auto dir = std::filesystem::temp_directory_path() /
             (std::string(name) + "_" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  return dir;
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST_CASE("state_store: state round-trips through an atomic write") {
  auto dir = fresh_dir("weir_state_store_test_a");
  {
    StateStore store((dir / "nested").string());
    std::string error;
    REQUIRE(store.open(&error));
    CHECK_FALSE(store.load_state(&error));
    CHECK(error.empty());
    REQUIRE(store.save_state({{"format", 1}}, &error));
    for (const auto& entry : std::filesystem::directory_iterator(dir / "nested"))
      CHECK(entry.path().filename().string().find(".tmp") == std::string::npos);
    auto back = store.load_state(&error);
    REQUIRE(back);
    CHECK((*back)["format"] == 1);
  }
  std::ofstream(dir / "nested" / "state.json") << "{not json";
  StateStore store((dir / "nested").string());
  std::string error;
  REQUIRE(store.open(&error));
  CHECK_FALSE(store.load_state(&error));
  CHECK(error.find("not valid JSON") != std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST_CASE("state_store: audit log numbering continues across opens and skips a torn line") {
  auto dir = fresh_dir("weir_state_store_test_b");
  std::string error;
  {
    StateStore store(dir.string());
    REQUIRE(store.open(&error));
    for (const char* action : {"a", "b", "c"}) {
      AuditEvent ev;
      ev.actor = "ci";
      ev.action = action;
      REQUIRE(store.append(ev, &error));
    }
    auto evs = store.events_since(1, 100);
    REQUIRE(evs.size() == 2);
    CHECK(evs[0]["action"] == "b");
    CHECK(store.events_since(0, 1).front()["action"] == "c");  // the newest within the limit
  }
  std::ofstream(dir / "audit.log", std::ios::app) << R"({"seq": 4, "act)";  // torn by a crash
  StateStore store(dir.string());
  REQUIRE(store.open(&error));
  CHECK(store.last_seq() == 3);
  AuditEvent ev;
  ev.action = "d";
  REQUIRE(store.append(ev, &error));
  CHECK(ev.seq == 4);
  CHECK(ev.time.size() == 24);  // 2026-01-02T03:04:05.678Z
  std::string text = slurp(dir / "audit.log");
  CHECK(text.ends_with("\"time\":\"" + ev.time + "\"}\n"));
  CHECK(text.find("\n{\"action\":\"d\"") != std::string::npos);  // on a line of its own
  std::filesystem::remove_all(dir);
}

TEST_CASE("state_store: without a directory everything stays in memory") {
  StateStore store("");
  std::string error;
  REQUIRE(store.open(&error));
  CHECK(store.save_state({{"x", 1}}, &error));
  CHECK_FALSE(store.load_state(&error));
  AuditEvent ev;
  REQUIRE(store.append(ev, &error));
  CHECK(store.events_since(0, 10).size() == 1);
}

TEST_CASE("state_store: two processes on one directory keep one sequence (binary upgrade)") {
  auto dir = fresh_dir("weir_state_store_test_c");
  std::string error;
  StateStore old_weir(dir.string()), new_weir(dir.string());
  REQUIRE(old_weir.open(&error));
  AuditEvent a;
  a.action = "before_upgrade";
  REQUIRE(old_weir.append(a, &error));
  REQUIRE(new_weir.open(&error));  // starts while the old one still runs
  CHECK(new_weir.last_seq() == 1);
  AuditEvent b;
  b.action = "old_guard_revert";
  REQUIRE(old_weir.append(b, &error));  // the old one writes once more before it stops
  AuditEvent c;
  c.action = "new_set_weights";
  REQUIRE(new_weir.append(c, &error));
  CHECK(b.seq == 2);
  CHECK(c.seq == 3);  // after the old one's record, not a second 2
  auto evs = new_weir.events_since(0, 100);
  REQUIRE(evs.size() == 3);
  CHECK(evs[1]["action"] == "old_guard_revert");
  // Each line is whole.
  std::ifstream in(dir / "audit.log");
  std::string line;
  uint64_t seq = 0;
  while (std::getline(in, line)) CHECK(nlohmann::json::parse(line)["seq"] == ++seq);
  CHECK(seq == 3);
  std::filesystem::remove_all(dir);
}


}  // namespace
}  // namespace weir::proxy
