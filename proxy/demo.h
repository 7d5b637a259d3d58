// `weir --demo`: weir with an embedded configuration in front of two in-process demo backends
// (blue and green, the bench backend) with a 90/10 split, an admin API with a fresh random
// write token, a guard on green and the override header, so a newcomer can run the whole
// canary story (ramp, break, automatic revert, explain) with curl and weirctl.
#pragma once

#include <cstdint>

namespace weir::proxy {

struct DemoOptions {
  uint16_t port = 8080;        // data listener; 0 picks a free port
  uint16_t admin_port = 9901;  // admin listener; 0 picks a free port
  unsigned workers = 1;
};

int run_demo(const DemoOptions& options);

}  // namespace weir::proxy
