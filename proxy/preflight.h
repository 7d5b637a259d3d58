// Everything a start checks short of binding, for `weir --check` and for a start before it
// binds: listener and endpoint host names resolve (and listeners do not overlap once resolved),
// certificate, key and CA files load, the access log and the state dir can be written, a saved
// state.json is readable. Each error names the key's file:line:col.
#pragma once

#include <vector>

#include "config/config.h"

namespace weir::proxy {

// Without `resolve`, host names are left alone (a config checked away from the network it
// runs in, e.g. Kubernetes service names in CI); IP literals and the rest are still checked.
std::vector<config::Error> preflight(const config::Config& config, bool resolve = true);

}  // namespace weir::proxy
