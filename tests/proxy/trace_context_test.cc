#include "proxy/trace_context.h"

#include <doctest/doctest.h>

#include <vector>

namespace weir::proxy {
namespace {

constexpr std::string_view kValid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

// Hands out the given values in turn.
struct Fixed {
  std::vector<uint64_t> values;
  size_t next = 0;
  uint64_t operator()() { return values.at(next++); }
};

TEST_CASE("trace_context: a valid traceparent is read field by field") {
  auto p = parse_traceparent(kValid);
  REQUIRE(p);
  CHECK(p->trace() == "4bf92f3577b34da6a3ce929d0e0e4736");
  CHECK(p->parent() == "00f067aa0ba902b7");
  CHECK(p->flags == 1);
  CHECK(p->to_header() == kValid);
  CHECK(parse_traceparent(" " + std::string(kValid) + "\t"));  // OWS around the value
}

TEST_CASE("trace_context: invalid traceparents are refused") {
  const char* bad[] = {
      "",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",        // no flags
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",     // upper case
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01",     // zero trace id
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",     // zero parent id
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",     // version ff
      "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",     // not hex
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",   // v00 with a tail
      "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",     // wrong separator
      "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",     // misplaced dash
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",     // bad flags
      "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",    // v01 tail without '-'
  };
  for (const char* v : bad) {
    CAPTURE(v);
    CHECK_FALSE(parse_traceparent(v));
  }
}

TEST_CASE("trace_context: a higher version is read by its version-00 fields") {
  auto p = parse_traceparent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever");
  REQUIRE(p);
  CHECK(p->trace() == "4bf92f3577b34da6a3ce929d0e0e4736");
  // weir sends what it speaks: version 00.
  CHECK(p->to_header().starts_with("00-"));
}

TEST_CASE("trace_context: the next hop keeps the trace id and flags, with weir's span as parent") {
  bool continued = false;
  TraceParent tp = next_hop_traceparent(kValid, Fixed{{0xabcdef}}, &continued);
  CHECK(continued);
  CHECK(tp.trace() == "4bf92f3577b34da6a3ce929d0e0e4736");
  CHECK(tp.parent() == "0000000000abcdef");
  CHECK(tp.flags == 1);
  CHECK(tp.to_header() == "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000abcdef-01");
}

TEST_CASE("trace_context: missing or invalid traceparent starts a new trace") {
  for (std::optional<std::string_view> in :
       {std::optional<std::string_view>(), std::optional<std::string_view>("garbage")}) {
    bool continued = true;
    TraceParent tp = next_hop_traceparent(
        in, Fixed{{0x0123456789abcdefULL, 0xfedcba9876543210ULL, 0x42}}, &continued);
    CHECK_FALSE(continued);
    CHECK(tp.trace() == "0123456789abcdeffedcba9876543210");
    CHECK(tp.parent() == "0000000000000042");
    CHECK(tp.flags == 0);
    CHECK(parse_traceparent(tp.to_header()));
  }
}

TEST_CASE("trace_context: a zero draw still gives a valid id") {
  TraceParent tp = next_hop_traceparent(std::nullopt, Fixed{{0, 0, 0}});
  CHECK(tp.trace() == "00000000000000000000000000000001");
  CHECK(tp.parent() == "0000000000000001");
  CHECK(parse_traceparent(tp.to_header()));
}

}  // namespace
}  // namespace weir::proxy

namespace weir::proxy {

TEST_CASE("trace_context: write_header gives to_header's text without allocating") {
  auto p = parse_traceparent(kValid);
  REQUIRE(p);
  std::array<char, TraceParent::kHeaderSize> buf;
  CHECK(p->write_header(buf) == kValid);
  CHECK(p->write_header(buf).data() == buf.data());
  CHECK(p->to_header() == kValid);
}

}  // namespace weir::proxy
