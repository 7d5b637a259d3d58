// `weir --demo`: weir with an embedded configuration in front of two in-process demo backends
// (blue and green, the bench backend) with a 90/10 split, so a newcomer sees it work with curl.
#pragma once

#include <cstdint>

namespace weir::proxy {

int run_demo(uint16_t port, unsigned workers);

}  // namespace weir::proxy
