#include "proxy/access_log.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

namespace weir::proxy {
namespace {

using config::AccessField;
using Format = config::LogSettings::Format;

AccessRecord sample_record() {
  AccessRecord r;
  r.client = "127.0.0.1";
  r.method = "GET";
  r.host = "shop.example";
  r.path = "/a \"b\"";
  r.service = "shop";
  r.version = "green";
  r.endpoint = "127.0.0.1:9002";
  r.protocol = "HTTP/1.1";
  r.listener = "public";
  r.route = 2;
  r.status = 502;
  r.flags = kFlagConnectFailure | kFlagRetried | kFlagLocalReply;
  r.local_reason = "upstream connect failed";
  r.retries = 1;
  r.duration_us = 12345;
  r.upstream_connect_us = 250;
  r.user_agent = "curl/7.88";
  r.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
  return r;
}

TEST_CASE("access_log: the default JSON line has every field") {
  std::string out;
  append_access_line(out, sample_record(), config::LogSettings::default_access_fields(),
                     Format::kJson);
  REQUIRE(out.back() == '\n');
  auto j = nlohmann::json::parse(out);
  CHECK(j.size() == std::size(config::kAccessFieldNames));
  CHECK(j["status"] == 502);
  CHECK(j["upstream_status"].is_null());  // weir's own 502: no backend answered
  CHECK(j["flags"] == "UF,URX,LR");
  CHECK(j["local_reason"] == "upstream connect failed");
  CHECK(j["duration_ms"] == doctest::Approx(12.345));
  CHECK(j["upstream_connect_ms"] == doctest::Approx(0.25));
  CHECK(j["upstream_response_ms"].is_null());
  CHECK(j["route"] == "route[2]");
  CHECK(j["path"] == "/a \"b\"");
  CHECK(j["retries"] == 1);
  CHECK(j["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736");
  CHECK(j["protocol"] == "HTTP/1.1");
  CHECK(j["listener"] == "public");
  CHECK(j["user_agent"] == "curl/7.88");
}

TEST_CASE("access_log: a chosen field set in its order, as key=value text") {
  std::string out;
  const AccessField fields[] = {AccessField::kStatus, AccessField::kFlags, AccessField::kPath,
                                AccessField::kUpstreamStatus, AccessField::kDurationMs,
                                AccessField::kService};
  append_access_line(out, sample_record(), fields, Format::kText);
  CHECK(out ==
        "status=502 flags=UF,URX,LR path=\"/a \\\"b\\\"\" upstream_status=- duration_ms=12.345 "
        "service=shop\n");
}

TEST_CASE("access_log: flags text") {
  CHECK(access_flags_text(0) == "-");
  CHECK(access_flags_text(kFlagNoRoute | kFlagLocalReply) == "NR,LR");
  CHECK(access_flags_text(kFlagUpstreamTimeout | kFlagDownstreamClose) == "UT,DC");
}

}  // namespace
}  // namespace weir::proxy
