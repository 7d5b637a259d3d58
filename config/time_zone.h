// A time zone from the system's tz database, read from its TZif file (RFC 8536) at config load:
// the transitions it lists and the POSIX TZ rule of its footer for the instants after them.
// Immutable once read, so any thread may ask it; the process's TZ (and localtime) is never
// touched.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace weir::config {

class TimeZone {
 public:
  // Local time at an instant: UTC offset in seconds (east positive) and the abbreviation.
  struct Local {
    int32_t offset_s = 0;
    bool dst = false;
    std::string abbr = "UTC";
  };

  static std::shared_ptr<const TimeZone> utc();
  // "UTC" or an IANA name ("Europe/Berlin") under `dir`; nullptr and *error when unknown.
  static std::shared_ptr<const TimeZone> load(const std::string& name, std::string* error,
                                              const std::string& dir = "/usr/share/zoneinfo");
  // The zone from a TZif file's bytes; nullptr and *error when they are not one.
  static std::shared_ptr<const TimeZone> parse(std::string_view tzif, std::string name,
                                               std::string* error);

  Local at(int64_t unix_s) const;

  // A broken-down wall-clock time from seconds since 1970-01-01 00:00 of the same clock.
  struct Civil {
    int64_t year = 1970;
    int month = 1, day = 1, hour = 0, minute = 0, second = 0;
    int weekday = 4;  // 0 = Sunday
  };
  static Civil civil(int64_t local_s);
  // Days since 1970-01-01 of a proleptic Gregorian date (month 1..12).
  static int64_t days_from_civil(int64_t y, int m, int d);
  const std::string& name() const { return name_; }

 private:
  struct Type {
    int32_t offset_s = 0;
    bool dst = false;
    std::string abbr;
  };
  // The footer's rule: std all year, or std and dst switching at two yearly dates.
  struct Rule {
    bool valid = false;
    Type std_type, dst_type;
    bool has_dst = false;
    struct Date {
      char kind = 'M';  // 'M' month.week.day, 'J' Julian day 1..365 (no Feb 29), 'D' day 0..365
      int month = 0, week = 0, day = 0;
      int32_t time_s = 7200;
    } start, end;
  };
  static bool parse_rule(std::string_view tz, Rule* out);
  Local from_rule(int64_t unix_s) const;

  std::string name_;
  std::vector<int64_t> transitions_;
  std::vector<uint8_t> type_of_;
  std::vector<Type> types_;
  Rule rule_;
};

}  // namespace weir::config
