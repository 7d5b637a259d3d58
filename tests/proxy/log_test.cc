#include "proxy/log.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

namespace weir::proxy {
namespace {

constexpr std::string_view kTime = "2026-12-07T12:00:00.123Z";

TEST_CASE("log: text lines carry time, level and thread before the message") {
  CHECK(format_log_line(LogFormat::kText, LogLevel::kWarn, 3, kTime, "upstream down") ==
        "2026-12-07T12:00:00.123Z warn worker=3 weir: upstream down\n");
  CHECK(format_log_line(LogFormat::kText, LogLevel::kInfo, -1, kTime, "ready (2 workers)") ==
        "2026-12-07T12:00:00.123Z info main weir: ready (2 workers)\n");
}

TEST_CASE("log: a message never spans lines") {
  CHECK(format_log_line(LogFormat::kText, LogLevel::kError, -1, kTime, "a\nb") ==
        "2026-12-07T12:00:00.123Z error main weir: a b\n");
}

TEST_CASE("log: JSON lines are one valid object each, quotes and control bytes escaped") {
  std::string line =
      format_log_line(LogFormat::kJson, LogLevel::kError, 0, kTime, "bad \"x\"\n\\ \x01");
  REQUIRE(line.back() == '\n');
  CHECK(line.find('\n') == line.size() - 1);
  auto j = nlohmann::json::parse(line);
  CHECK(j["time"] == kTime);
  CHECK(j["level"] == "error");
  CHECK(j["worker"] == 0);
  CHECK(j["msg"] == "bad \"x\"\n\\ \x01");
  auto main = nlohmann::json::parse(
      format_log_line(LogFormat::kJson, LogLevel::kDebug, -1, kTime, "m"));
  CHECK(main["worker"].is_null());
  CHECK(main["level"] == "debug");
}

}  // namespace
}  // namespace weir::proxy
