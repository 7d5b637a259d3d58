// Config load from a string (config/load.cc) and the snapshot built from what loads.
// - A load gives a config or errors, never both, never neither.
// - Every error names the source as "<fuzz>:line:col: key: message", with a message.
// - Loading is deterministic: the same text gives the same errors.
// - A config that loads builds a routing snapshot (endpoints resolve to loopback here; only
//   upstream TLS needs contexts, which this target does not make): no crash, and every route
//   points at a service of the snapshot.
#include <string>

#include "routing/snapshot.h"
#include "tests/fuzz/fuzz_config.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  weir::config::LoadResult r = weir::config::load_string(text, "<fuzz>");
  WEIR_FUZZ_CHECK(r.config.has_value() != !r.errors.empty(), "config and errors together");
  for (const auto& e : r.errors) {
    const std::string s = e.to_string();
    WEIR_FUZZ_CHECK(s.rfind("<fuzz>:", 0) == 0, "an error without the source name");
    WEIR_FUZZ_CHECK(!e.message.empty(), "an error without a message");
    WEIR_FUZZ_CHECK(e.loc.line >= 0 && e.loc.column >= 0, "a negative error position");
  }
  weir::config::LoadResult again = weir::config::load_string(text, "<fuzz>");
  WEIR_FUZZ_CHECK(again.errors.size() == r.errors.size(), "load is not deterministic");
  for (size_t i = 0; i < r.errors.size(); ++i) {
    WEIR_FUZZ_CHECK(again.errors[i].to_string() == r.errors[i].to_string(),
                    "load is not deterministic");
  }
  if (!r.config) return 0;

  auto config = std::make_shared<const weir::config::Config>(std::move(*r.config));
  weir::routing::EndpointRegistry registry;
  std::string error;
  auto snap =
      weir::routing::build_snapshot(config, registry, 1, weir::fuzz::loopback_resolver, &error);
  if (!snap) {
    WEIR_FUZZ_CHECK(!error.empty(), "a snapshot refused without a reason");
    return 0;
  }
  WEIR_FUZZ_CHECK(snap->services.size() == config->services.size(), "services lost");
  WEIR_FUZZ_CHECK(snap->listeners.size() == config->listeners.size(), "listeners lost");
  for (const auto& svc : snap->services) {
    WEIR_FUZZ_CHECK(svc.stable < svc.versions.size(), "stable is not one of the versions");
    WEIR_FUZZ_CHECK(svc.mirror < static_cast<int32_t>(svc.versions.size()), "mirror out of range");
    for (const auto& v : svc.versions) {
      for (const auto& ep : v.endpoints) {
        WEIR_FUZZ_CHECK(ep.id < snap->endpoint_count, "endpoint id beyond endpoint_count");
      }
    }
  }
  return 0;
}
