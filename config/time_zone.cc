#include "config/time_zone.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

namespace weir::config {

namespace {

int64_t read_be(std::string_view s, size_t at, size_t bytes) {
  uint64_t v = 0;
  for (size_t i = 0; i < bytes; ++i) v = (v << 8) | static_cast<uint8_t>(s[at + i]);
  if (bytes == 4) return static_cast<int32_t>(static_cast<uint32_t>(v));
  return static_cast<int64_t>(v);
}

bool leap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int days_in_month(int64_t y, int m) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && leap(y) ? 29 : kDays[m - 1];
}

// Reads a POSIX TZ number (digits) from `s`.
bool number(std::string_view& s, int* out) {
  if (s.empty() || !std::isdigit(static_cast<unsigned char>(s.front()))) return false;
  int v = 0;
  while (!s.empty() && std::isdigit(static_cast<unsigned char>(s.front()))) {
    v = v * 10 + (s.front() - '0');
    if (v > 10000) return false;
    s.remove_prefix(1);
  }
  *out = v;
  return true;
}

// [+-]hh[:mm[:ss]] in seconds.
bool hms(std::string_view& s, int32_t* out) {
  int sign = 1;
  if (!s.empty() && (s.front() == '+' || s.front() == '-')) {
    sign = s.front() == '-' ? -1 : 1;
    s.remove_prefix(1);
  }
  int h = 0, m = 0, sec = 0;
  if (!number(s, &h) || h > 167) return false;
  if (!s.empty() && s.front() == ':') {
    s.remove_prefix(1);
    if (!number(s, &m) || m > 59) return false;
    if (!s.empty() && s.front() == ':') {
      s.remove_prefix(1);
      if (!number(s, &sec) || sec > 59) return false;
    }
  }
  *out = sign * (h * 3600 + m * 60 + sec);
  return true;
}

bool zone_name(std::string_view& s, std::string* out) {
  if (!s.empty() && s.front() == '<') {
    size_t close = s.find('>');
    if (close == std::string_view::npos) return false;
    *out = std::string(s.substr(1, close - 1));
    s.remove_prefix(close + 1);
    return out->size() >= 3;
  }
  size_t n = 0;
  while (n < s.size() && std::isalpha(static_cast<unsigned char>(s[n]))) ++n;
  if (n < 3) return false;
  *out = std::string(s.substr(0, n));
  s.remove_prefix(n);
  return true;
}

}  // namespace

int64_t TimeZone::days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

TimeZone::Civil TimeZone::civil(int64_t local_s) {
  int64_t days = local_s / 86400, secs = local_s % 86400;
  if (secs < 0) secs += 86400, --days;
  Civil c;
  c.weekday = static_cast<int>(((days % 7) + 7 + 4) % 7);  // 1970-01-01 was a Thursday
  c.hour = static_cast<int>(secs / 3600);
  c.minute = static_cast<int>(secs / 60 % 60);
  c.second = static_cast<int>(secs % 60);
  const int64_t z = days + 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  c.day = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
  c.month = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
  c.year = yoe + era * 400 + (c.month <= 2);
  return c;
}

std::shared_ptr<const TimeZone> TimeZone::utc() {
  static const std::shared_ptr<const TimeZone> kUtc = [] {
    auto z = std::make_shared<TimeZone>();
    z->name_ = "UTC";
    z->types_.push_back({0, false, "UTC"});
    return std::shared_ptr<const TimeZone>(std::move(z));
  }();
  return kUtc;
}

std::shared_ptr<const TimeZone> TimeZone::load(const std::string& name, std::string* error,
                                               const std::string& dir) {
  if (name == "UTC" || name == "Etc/UTC") return utc();
  // A name, not a path: nothing outside the database is read.
  if (name.empty() || name.front() == '/' || name.find("..") != std::string::npos ||
      !std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '/' || c == '_' || c == '-' ||
               c == '+';
      })) {
    *error = "'" + name + "' is not a time zone name; use UTC or an IANA name such as "
             "Europe/Berlin";
    return nullptr;
  }
  std::ifstream in(dir + "/" + name, std::ios::binary);
  if (!in) {
    *error = "unknown time zone '" + name + "' (no " + dir + "/" + name +
             "; is tzdata installed?); use UTC or an IANA name such as Europe/Berlin";
    return nullptr;
  }
  std::ostringstream bytes;
  bytes << in.rdbuf();
  std::string why;
  auto z = parse(bytes.str(), name, &why);
  if (!z) *error = "time zone '" + name + "': " + dir + "/" + name + " " + why;
  return z;
}

std::shared_ptr<const TimeZone> TimeZone::parse(std::string_view tzif, std::string name,
                                                std::string* error) {
  auto bad = [&](const char* why) {
    *error = why;
    return std::shared_ptr<const TimeZone>();
  };
  if (tzif.size() < 44 || tzif.substr(0, 4) != "TZif") return bad("is not a TZif file");
  const char version = tzif[4];
  auto counts = [&](size_t at, int64_t c[6]) {
    for (int i = 0; i < 6; ++i) c[i] = read_be(tzif, at + 20 + 4 * static_cast<size_t>(i), 4);
  };
  // isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt
  int64_t c[6];
  counts(0, c);
  auto block = [](const int64_t k[6], size_t time_bytes) {
    return static_cast<size_t>(k[3]) * time_bytes + static_cast<size_t>(k[3]) +
           static_cast<size_t>(k[4]) * 6 + static_cast<size_t>(k[5]) +
           static_cast<size_t>(k[2]) * (time_bytes + 4) + static_cast<size_t>(k[1]) +
           static_cast<size_t>(k[0]);
  };
  for (int64_t k : c) {
    if (k < 0 || k > 100000) return bad("has impossible counts");
  }
  size_t at = 44;
  size_t time_bytes = 4;
  if (version >= '2') {
    // The 64-bit block follows the 32-bit one; only it is read.
    at += block(c, 4);
    if (tzif.size() < at + 44 || tzif.substr(at, 4) != "TZif") return bad("is truncated");
    counts(at, c);
    for (int64_t k : c) {
      if (k < 0 || k > 100000) return bad("has impossible counts");
    }
    at += 44;
    time_bytes = 8;
  }
  if (tzif.size() < at + block(c, time_bytes)) return bad("is truncated");
  if (c[4] == 0) return bad("has no local time types");
  auto z = std::make_shared<TimeZone>();
  z->name_ = std::move(name);
  const size_t n = static_cast<size_t>(c[3]);
  for (size_t i = 0; i < n; ++i) z->transitions_.push_back(read_be(tzif, at + i * time_bytes,
                                                                     time_bytes));
  at += n * time_bytes;
  for (size_t i = 0; i < n; ++i) {
    const auto t = static_cast<uint8_t>(tzif[at + i]);
    if (t >= c[4]) return bad("names a local time type it does not have");
    z->type_of_.push_back(t);
  }
  at += n;
  const size_t types_at = at, chars_at = at + static_cast<size_t>(c[4]) * 6;
  for (size_t i = 0; i < static_cast<size_t>(c[4]); ++i) {
    Type t;
    t.offset_s = static_cast<int32_t>(read_be(tzif, types_at + i * 6, 4));
    t.dst = tzif[types_at + i * 6 + 4] != 0;
    const auto idx = static_cast<uint8_t>(tzif[types_at + i * 6 + 5]);
    if (idx >= c[5]) return bad("has a bad abbreviation index");
    std::string_view chars = tzif.substr(chars_at + idx, static_cast<size_t>(c[5]) - idx);
    t.abbr = std::string(chars.substr(0, chars.find('\0')));
    z->types_.push_back(std::move(t));
  }
  if (!std::is_sorted(z->transitions_.begin(), z->transitions_.end()))
    return bad("has unsorted transitions");
  if (version >= '2') {
    std::string_view rest = tzif.substr(at + block(c, time_bytes) - n * time_bytes - n);
    if (rest.size() >= 2 && rest.front() == '\n') {
      rest.remove_prefix(1);
      std::string_view footer = rest.substr(0, rest.find('\n'));
      if (!footer.empty() && !parse_rule(footer, &z->rule_))
        return bad("has a footer TZ rule weir cannot read");
    }
  }
  return z;
}

bool TimeZone::parse_rule(std::string_view s, Rule* out) {
  Rule r;
  std::string name;
  int32_t off = 0;
  if (!zone_name(s, &name) || !hms(s, &off)) return false;
  // POSIX offsets are west-positive: CET-1 is UTC+1.
  r.std_type = {-off, false, name};
  if (!s.empty()) {
    if (!zone_name(s, &name)) return false;
    r.has_dst = true;
    int32_t dst_off = off - 3600;
    if (!s.empty() && s.front() != ',' && !hms(s, &dst_off)) return false;
    r.dst_type = {-dst_off, true, name};
    if (s.empty() || s.front() != ',') return false;  // no default rule: refuse to guess
    for (Rule::Date* d : {&r.start, &r.end}) {
      if (s.empty() || s.front() != ',') return false;
      s.remove_prefix(1);
      if (!s.empty() && s.front() == 'M') {
        s.remove_prefix(1);
        d->kind = 'M';
        if (!number(s, &d->month) || s.empty() || s.front() != '.') return false;
        s.remove_prefix(1);
        if (!number(s, &d->week) || s.empty() || s.front() != '.') return false;
        s.remove_prefix(1);
        if (!number(s, &d->day)) return false;
        if (d->month < 1 || d->month > 12 || d->week < 1 || d->week > 5 || d->day > 6)
          return false;
      } else if (!s.empty() && s.front() == 'J') {
        s.remove_prefix(1);
        d->kind = 'J';
        if (!number(s, &d->day) || d->day < 1 || d->day > 365) return false;
      } else {
        d->kind = 'D';
        if (!number(s, &d->day) || d->day > 365) return false;
      }
      d->time_s = 7200;
      if (!s.empty() && s.front() == '/') {
        s.remove_prefix(1);
        if (!hms(s, &d->time_s)) return false;
      }
    }
  }
  if (!s.empty()) return false;
  r.valid = true;
  *out = std::move(r);
  return true;
}

TimeZone::Local TimeZone::from_rule(int64_t unix_s) const {
  const Rule& r = rule_;
  if (!r.has_dst) return {r.std_type.offset_s, false, r.std_type.abbr};
  auto day_of = [](const Rule::Date& d, int64_t y) {
    if (d.kind == 'J') {
      // 1..365, February 29 never counted.
      int64_t day = d.day - 1;
      if (leap(y) && d.day >= 60) ++day;
      return days_from_civil(y, 1, 1) + day;
    }
    if (d.kind == 'D') return days_from_civil(y, 1, 1) + d.day;
    const int64_t first = days_from_civil(y, d.month, 1);
    const int64_t wd = civil(first * 86400).weekday;
    int64_t dom = 1 + (d.day - wd + 7) % 7 + (d.week - 1) * 7;
    if (dom > days_in_month(y, d.month)) dom -= 7;
    if (dom > days_in_month(y, d.month)) dom -= 7;
    return first + dom - 1;
  };
  const int64_t y = civil(unix_s + r.std_type.offset_s).year;
  // Around a year boundary the previous or next year's switches decide; look at all three.
  bool in_dst = false;
  int64_t latest = INT64_MIN;
  for (int64_t yy = y - 1; yy <= y + 1; ++yy) {
    // The start is in standard local time, the end in daylight local time.
    const int64_t start = day_of(r.start, yy) * 86400 + r.start.time_s - r.std_type.offset_s;
    const int64_t end = day_of(r.end, yy) * 86400 + r.end.time_s - r.dst_type.offset_s;
    if (start <= unix_s && start > latest) latest = start, in_dst = true;
    if (end <= unix_s && end > latest) latest = end, in_dst = false;
  }
  const Type& t = in_dst ? r.dst_type : r.std_type;
  return {t.offset_s, t.dst, t.abbr};
}

TimeZone::Local TimeZone::at(int64_t unix_s) const {
  if (!transitions_.empty() && unix_s >= transitions_.back() && rule_.valid)
    return from_rule(unix_s);
  if (transitions_.empty()) {
    if (rule_.valid) return from_rule(unix_s);
    return {types_[0].offset_s, types_[0].dst, types_[0].abbr};
  }
  auto it = std::upper_bound(transitions_.begin(), transitions_.end(), unix_s);
  if (it == transitions_.begin()) return {types_[0].offset_s, types_[0].dst, types_[0].abbr};
  const Type& t = types_[type_of_[static_cast<size_t>(it - transitions_.begin()) - 1]];
  return {t.offset_s, t.dst, t.abbr};
}

}  // namespace weir::config
