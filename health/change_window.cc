#include "health/change_window.h"

#include <cstdio>

#include "config/time_zone.h"

namespace weir::health {

namespace {

struct LocalMinute {
  int weekday = 0;     // 0 = Sunday
  uint32_t minute = 0; // of the day
};

LocalMinute local_minute(const config::ChangeWindow& w, int64_t unix_s) {
  const auto c = config::TimeZone::civil(unix_s + (w.tz ? w.tz->at(unix_s).offset_s : 0));
  return {c.weekday, static_cast<uint32_t>(c.hour * 60 + c.minute)};
}

bool day_set(uint8_t days, int weekday) { return (days >> weekday) & 1; }

}  // namespace

bool window_open(const config::ChangeWindow& w, uint64_t unix_ms) {
  const LocalMinute m = local_minute(w, static_cast<int64_t>(unix_ms / 1000));
  if (w.start_min < w.end_min)
    return day_set(w.days, m.weekday) && m.minute >= w.start_min && m.minute < w.end_min;
  // Spans midnight: the evening of an open day, or the morning after one.
  return (day_set(w.days, m.weekday) && m.minute >= w.start_min) ||
         (day_set(w.days, (m.weekday + 6) % 7) && m.minute < w.end_min);
}

uint64_t next_window_open(const std::vector<config::ChangeWindow>& windows, uint64_t unix_ms) {
  // Minute by minute: zone offsets change on minute boundaries, and a week is 10080 minutes.
  const uint64_t first = unix_ms - unix_ms % 60000;
  for (uint64_t t = first; t < first + 8ull * 86400 * 1000; t += 60000) {
    const uint64_t at = t < unix_ms ? unix_ms : t;
    for (const auto& w : windows) {
      if (window_open(w, at)) return at;
    }
  }
  return 0;
}

std::string closed_windows(const std::vector<config::ChangeWindow>& windows, uint64_t unix_ms) {
  if (windows.empty()) return "";
  for (const auto& w : windows) {
    if (window_open(w, unix_ms)) return "";
  }
  std::string list;
  for (const auto& w : windows) list += (list.empty() ? "" : ", ") + w.text;
  std::string out = "a change window (" + list;
  const uint64_t next = next_window_open(windows, unix_ms);
  if (next) {
    // Shown in the zone of the window that opens.
    const config::ChangeWindow* opens = &windows.front();
    for (const auto& w : windows) {
      if (window_open(w, next)) {
        opens = &w;
        break;
      }
    }
    const auto s = static_cast<int64_t>(next / 1000);
    const config::TimeZone::Local l =
        opens->tz ? opens->tz->at(s) : config::TimeZone::utc()->at(s);
    const auto c = config::TimeZone::civil(s + l.offset_s);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%04lld-%02d-%02d %02d:%02d %s",
                  static_cast<long long>(c.year), c.month, c.day, c.hour, c.minute,
                  l.abbr.c_str());
    out += std::string("; next opens ") + buf;
  }
  return out + ")";
}

}  // namespace weir::health
