// W3C Trace Context (traceparent) for weir's hop: parse what the client sent, keep its trace id
// and flags, and name weir's own span as the parent the backend sees. Pure string work, no I/O;
// ids come from the caller's generator.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace weir::proxy {

struct TraceParent {
  std::array<char, 32> trace_id{};  // lower-case hex
  std::array<char, 16> parent_id{};
  uint8_t flags = 0;

  std::string_view trace() const { return {trace_id.data(), trace_id.size()}; }
  std::string_view parent() const { return {parent_id.data(), parent_id.size()}; }
  // "00-<trace-id>-<parent-id>-<flags>": weir speaks version 00 whatever it received.
  std::string to_header() const;
  // The same into `out` (no allocation); the view is of `out`.
  static constexpr size_t kHeaderSize = 55;
  std::string_view write_header(std::array<char, kHeaderSize>& out) const;
};

// nullopt when `value` is not a valid traceparent: malformed, upper-case hex, version ff, an
// all-zero trace or parent id, or a version-00 value with anything after the flags. A higher
// version is read by its version-00 fields when what follows them starts with '-'.
std::optional<TraceParent> parse_traceparent(std::string_view value);

// The traceparent weir sends upstream. `received` is the client's value (nullopt: none, or
// several, which the spec treats as invalid). A valid one keeps its trace id and flags; a
// missing or invalid one starts a new trace (random id, not sampled). Either way the parent id
// becomes weir's new span. `random` yields 64 random bits per call.
template <typename Random>
TraceParent next_hop_traceparent(std::optional<std::string_view> received, Random&& random,
                                 bool* continued = nullptr);

// Writes `len` (<= 32) lower-case hex digits of the 128-bit hi:lo, least significant last; an
// all-zero id becomes ...01, since the spec forbids it.
void fill_hex_id(char* out, size_t len, uint64_t hi, uint64_t lo);

template <typename Random>
TraceParent next_hop_traceparent(std::optional<std::string_view> received, Random&& random,
                                 bool* continued) {
  std::optional<TraceParent> in;
  if (received) in = parse_traceparent(*received);
  if (continued) *continued = in.has_value();
  TraceParent out;
  if (in) {
    out = *in;
  } else {
    uint64_t hi = random(), lo = random();
    fill_hex_id(out.trace_id.data(), out.trace_id.size(), hi, lo);
  }
  uint64_t span = random();
  fill_hex_id(out.parent_id.data(), out.parent_id.size(), 0, span);
  return out;
}

}  // namespace weir::proxy
