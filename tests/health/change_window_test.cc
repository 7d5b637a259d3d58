#include "health/change_window.h"

#include <doctest/doctest.h>

#include <string>

#include "config/time_zone.h"

namespace weir::health {
namespace {

using config::TimeZone;

uint64_t utc_ms(int64_t y, int mo, int d, int h, int mi) {
  return static_cast<uint64_t>((TimeZone::days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60) *
                               1000);
}

config::ChangeWindow window(uint8_t days, uint32_t start, uint32_t end, const std::string& zone) {
  config::ChangeWindow w;
  w.days = days;
  w.start_min = start;
  w.end_min = end;
  w.zone = zone;
  w.text = "test window";
  std::string err;
  w.tz = TimeZone::load(zone, &err);
  REQUIRE_MESSAGE(w.tz, err);
  return w;
}

constexpr uint8_t kMonFri = 0b0111110;

TEST_CASE("change window: weekdays in Berlin, across both DST changes") {
  const config::ChangeWindow w = window(kMonFri, 9 * 60, 16 * 60, "Europe/Berlin");
  // Monday 2026-12-07 in winter: 09:00 CET is 08:00 UTC.
  CHECK_FALSE(window_open(w, utc_ms(2026, 12, 7, 7, 59)));
  CHECK(window_open(w, utc_ms(2026, 12, 7, 8, 0)));
  CHECK(window_open(w, utc_ms(2026, 12, 7, 14, 59)));
  CHECK_FALSE(window_open(w, utc_ms(2026, 12, 7, 15, 0)));
  // Monday 2026-03-30, the day after the spring change: 09:00 CEST is 07:00 UTC.
  CHECK_FALSE(window_open(w, utc_ms(2026, 3, 30, 6, 59)));
  CHECK(window_open(w, utc_ms(2026, 3, 30, 7, 0)));
  CHECK_FALSE(window_open(w, utc_ms(2026, 3, 30, 14, 0)));
  // Monday 2026-10-26, after the autumn change: 08:00 UTC again.
  CHECK_FALSE(window_open(w, utc_ms(2026, 10, 26, 7, 30)));
  CHECK(window_open(w, utc_ms(2026, 10, 26, 8, 0)));
  // Saturday: closed all day.
  CHECK_FALSE(window_open(w, utc_ms(2026, 12, 12, 10, 0)));
}

TEST_CASE("change window: a span over midnight and the night the clocks go forward") {
  // Sunday 01:00-04:00 Berlin on 2026-03-29: 02:00-03:00 local never happens.
  const config::ChangeWindow w = window(0b0000001, 60, 240, "Europe/Berlin");
  CHECK(window_open(w, utc_ms(2026, 3, 29, 0, 30)));   // 01:30 CET
  CHECK(window_open(w, utc_ms(2026, 3, 29, 1, 30)));   // 03:30 CEST
  CHECK_FALSE(window_open(w, utc_ms(2026, 3, 29, 2, 0)));  // 04:00 CEST
  // Friday 22:00 to 02:00 UTC: Saturday's early hours belong to Friday's window.
  const config::ChangeWindow night = window(0b0100000, 22 * 60, 2 * 60, "UTC");
  CHECK(window_open(night, utc_ms(2026, 12, 11, 23, 0)));
  CHECK(window_open(night, utc_ms(2026, 12, 12, 1, 59)));
  CHECK_FALSE(window_open(night, utc_ms(2026, 12, 12, 2, 0)));
  CHECK_FALSE(window_open(night, utc_ms(2026, 12, 12, 23, 0)));  // Saturday night: not open
}

TEST_CASE("change window: the hold text names the windows and the next opening") {
  std::vector<config::ChangeWindow> ws = {window(kMonFri, 9 * 60, 16 * 60, "Europe/Berlin")};
  ws[0].text = "Mon-Fri 09:00-16:00 Europe/Berlin";
  CHECK(closed_windows(ws, utc_ms(2026, 12, 7, 9, 0)).empty());
  // Friday evening: next Monday 09:00 CET.
  CHECK(closed_windows(ws, utc_ms(2026, 12, 11, 18, 0)) ==
        "a change window (Mon-Fri 09:00-16:00 Europe/Berlin; next opens 2026-12-14 09:00 CET)");
  CHECK(next_window_open(ws, utc_ms(2026, 12, 11, 18, 0)) == utc_ms(2026, 12, 14, 8, 0));
  CHECK(closed_windows({}, 0).empty());
}

}  // namespace
}  // namespace weir::health
