#include "proxy/trace_context.h"

#include <algorithm>

namespace weir::proxy {

namespace {

constexpr size_t kVersion00Length = 55;  // 2 + 1 + 32 + 1 + 16 + 1 + 2

int lower_hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

bool hex_field(std::string_view s, bool nonzero) {
  bool any = false;
  for (char c : s) {
    int v = lower_hex(c);
    if (v < 0) return false;
    any = any || v != 0;
  }
  return any || !nonzero;
}

constexpr char kHex[] = "0123456789abcdef";

}  // namespace

std::string_view TraceParent::write_header(std::array<char, kHeaderSize>& out) const {
  char* p = out.data();
  *p++ = '0';
  *p++ = '0';
  *p++ = '-';
  p = std::copy(trace_id.begin(), trace_id.end(), p);
  *p++ = '-';
  p = std::copy(parent_id.begin(), parent_id.end(), p);
  *p++ = '-';
  *p++ = kHex[flags >> 4];
  *p++ = kHex[flags & 0xf];
  return {out.data(), out.size()};
}

std::string TraceParent::to_header() const {
  std::array<char, kHeaderSize> buf;
  return std::string(write_header(buf));
}

std::optional<TraceParent> parse_traceparent(std::string_view v) {
  // Surrounding whitespace is field syntax (OWS), not part of the value.
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  if (v.size() < kVersion00Length) return std::nullopt;
  std::string_view version = v.substr(0, 2);
  if (!hex_field(version, false) || version == "ff") return std::nullopt;
  if (v[2] != '-' || v[35] != '-' || v[52] != '-') return std::nullopt;
  if (version == "00" ? v.size() != kVersion00Length
                      : v.size() > kVersion00Length && v[kVersion00Length] != '-') {
    return std::nullopt;
  }
  std::string_view trace = v.substr(3, 32), parent = v.substr(36, 16), flags = v.substr(53, 2);
  if (!hex_field(trace, true) || !hex_field(parent, true) || !hex_field(flags, false)) {
    return std::nullopt;
  }
  TraceParent p;
  trace.copy(p.trace_id.data(), p.trace_id.size());
  parent.copy(p.parent_id.data(), p.parent_id.size());
  p.flags = static_cast<uint8_t>(lower_hex(flags[0]) * 16 + lower_hex(flags[1]));
  return p;
}

void fill_hex_id(char* out, size_t len, uint64_t hi, uint64_t lo) {
  if (hi == 0 && lo == 0) lo = 1;  // an all-zero id is invalid
  for (size_t i = 0; i < len; ++i) {
    // The last 16 nibbles come from lo, the ones before from hi.
    size_t from_end = len - 1 - i;
    uint64_t word = from_end < 16 ? lo : hi;
    out[i] = kHex[(word >> (4 * (from_end % 16))) & 0xf];
  }
}

}  // namespace weir::proxy
