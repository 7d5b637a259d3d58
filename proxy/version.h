// weir's release version, from the CMake project (one place: `weir --version`, the build-info
// metric and the fleet's membership keys all say the same).
#pragma once

namespace weir::proxy {

inline constexpr const char* kWeirVersion = WEIR_VERSION;

}  // namespace weir::proxy
