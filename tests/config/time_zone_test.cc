#include "config/time_zone.h"

#include <doctest/doctest.h>

#include <string>

namespace weir::config {
namespace {

uint64_t utc_ms(int64_t y, int mo, int d, int h, int mi) {
  return static_cast<uint64_t>((TimeZone::days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60) *
                               1000);
}

// A TZif v2 file with no transitions: only the footer rule tells the time.
std::string footer_only(const std::string& rule) {
  auto header = [](std::string& out, uint32_t typecnt, uint32_t charcnt) {
    out += "TZif2";
    out += std::string(15, '\0');
    for (uint32_t v : {0u, 0u, 0u, 0u, typecnt, charcnt}) {
      for (int sh = 24; sh >= 0; sh -= 8) out += static_cast<char>((v >> sh) & 0xff);
    }
  };
  std::string out;
  const std::string type = std::string("\0\0\x0e\x10\0\0", 6);  // +3600, std, abbr 0
  for (int block = 0; block < 2; ++block) {
    header(out, 1, 4);
    out += type;
    out += std::string("CET\0", 4);
  }
  out += "\n" + rule + "\n";
  return out;
}

TEST_CASE("time zone: Europe/Berlin from tzdata, with both DST changes") {
  std::string err;
  auto berlin = TimeZone::load("Europe/Berlin", &err);
  REQUIRE_MESSAGE(berlin, err);
  CHECK(berlin->at(static_cast<int64_t>(utc_ms(2026, 12, 7, 12, 0) / 1000)).offset_s == 3600);
  CHECK(berlin->at(static_cast<int64_t>(utc_ms(2026, 7, 1, 12, 0) / 1000)).offset_s == 7200);
  // 2026-03-29 01:00 UTC: 02:00 CET becomes 03:00 CEST.
  CHECK(berlin->at(static_cast<int64_t>(utc_ms(2026, 3, 29, 0, 59) / 1000)).abbr == "CET");
  CHECK(berlin->at(static_cast<int64_t>(utc_ms(2026, 3, 29, 1, 0) / 1000)).abbr == "CEST");
  // 2026-10-25 01:00 UTC: back to CET.
  CHECK(berlin->at(static_cast<int64_t>(utc_ms(2026, 10, 25, 0, 59) / 1000)).dst);
  CHECK_FALSE(berlin->at(static_cast<int64_t>(utc_ms(2026, 10, 25, 1, 0) / 1000)).dst);
}

TEST_CASE("time zone: the footer rule agrees with the listed transitions") {
  std::string err;
  auto berlin = TimeZone::load("Europe/Berlin", &err);
  auto rule = TimeZone::parse(footer_only("CET-1CEST,M3.5.0,M10.5.0/3"), "rule", &err);
  REQUIRE_MESSAGE(rule, err);
  for (int64_t t = static_cast<int64_t>(utc_ms(2025, 1, 1, 0, 0) / 1000);
       t < static_cast<int64_t>(utc_ms(2031, 1, 1, 0, 0) / 1000); t += 1800) {
    REQUIRE_MESSAGE(rule->at(t).offset_s == berlin->at(t).offset_s, "at " << t);
  }
  // New York: the second Sunday of March, the first of November.
  auto ny = TimeZone::parse(footer_only("EST5EDT,M3.2.0,M11.1.0"), "ny", &err);
  REQUIRE(ny);
  CHECK(ny->at(static_cast<int64_t>(utc_ms(2026, 3, 8, 6, 59) / 1000)).offset_s == -5 * 3600);
  CHECK(ny->at(static_cast<int64_t>(utc_ms(2026, 3, 8, 7, 0) / 1000)).offset_s == -4 * 3600);
  CHECK(ny->at(static_cast<int64_t>(utc_ms(2026, 11, 1, 5, 59) / 1000)).offset_s == -4 * 3600);
  CHECK(ny->at(static_cast<int64_t>(utc_ms(2026, 11, 1, 6, 0) / 1000)).offset_s == -5 * 3600);
  CHECK_FALSE(TimeZone::parse("not a zone", "x", &err));
  CHECK(err == "is not a TZif file");
  CHECK_FALSE(TimeZone::parse(footer_only("CET-1CEST,M13.5.0,M10.5.0"), "x", &err));
}

TEST_CASE("time zone: unknown names and paths are refused") {
  std::string err;
  CHECK_FALSE(TimeZone::load("Mars/Olympus", &err));
  CHECK(err.find("unknown time zone 'Mars/Olympus'") == 0);
  CHECK_FALSE(TimeZone::load("../../etc/passwd", &err));
  CHECK(err.find("is not a time zone name") != std::string::npos);
  CHECK(TimeZone::load("UTC", &err) == TimeZone::utc());
}

}  // namespace
}  // namespace weir::config
