#include "proxy/port_claim.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <memory>
#include <string>

namespace weir::proxy {
namespace {

// Claims named for this test process, so they never meet a running weir's.
std::string prefix() { return "weir-test-" + std::to_string(getpid()); }

TEST_CASE("port_claim: a second process-like holder is refused, naming the holder") {
  PortClaims first(prefix()), second(prefix());
  std::string error;
  REQUIRE(first.claim(18090, ClaimMode::kExclusive, &error));
  CHECK(first.holds(18090));
  CHECK(first.claim(18090, ClaimMode::kExclusive, &error));  // already ours
  CHECK(first.holder(18090, 0) == getpid());
  CHECK(first.holder(18090, 1) == 0);
  CHECK_FALSE(second.claim(18090, ClaimMode::kExclusive, &error));
  CHECK(error == "port 18090 is in use by weir pid " + std::to_string(getpid()) +
                     "; stop it, give this weir other ports, or start this weir with --upgrade "
                     "to take over from that one (README: Operations)");
  CHECK_FALSE(second.holds(18090));
  // Another port is free.
  CHECK(second.claim(18091, ClaimMode::kExclusive, &error));
}

TEST_CASE("port_claim: an upgrade shares the port; a third start is refused either way") {
  std::string error;
  auto old_weir = std::make_unique<PortClaims>(prefix());
  REQUIRE(old_weir->claim(18092, ClaimMode::kExclusive, &error));
  PortClaims upgrade(prefix());
  REQUIRE(upgrade.claim(18092, ClaimMode::kUpgrade, &error));
  CHECK(upgrade.holder(18092, 1) == getpid());
  PortClaims third(prefix());
  CHECK_FALSE(third.claim(18092, ClaimMode::kExclusive, &error));
  CHECK_FALSE(third.claim(18092, ClaimMode::kUpgrade, &error));
  CHECK(error.find("is already shared by weir pid") != std::string::npos);
  // The old one exits: its slot is free, the upgraded one still holds the port.
  old_weir.reset();
  CHECK(upgrade.holder(18092, 0) == 0);
  CHECK_FALSE(third.claim(18092, ClaimMode::kExclusive, &error));
  // The next upgrade takes the slot the first one left.
  CHECK(third.claim(18092, ClaimMode::kUpgrade, &error));
  CHECK(third.holder(18092, 0) == getpid());
}

TEST_CASE("port_claim: an upgrade with nothing to take over claims the port alone") {
  PortClaims alone(prefix()), later(prefix());
  std::string error;
  REQUIRE(alone.claim(18093, ClaimMode::kUpgrade, &error));
  CHECK(alone.holder(18093, 0) == getpid());
  CHECK_FALSE(later.claim(18093, ClaimMode::kExclusive, &error));
  alone.release(18093);
  CHECK_FALSE(alone.holds(18093));
  CHECK(later.claim(18093, ClaimMode::kExclusive, &error));
}

}  // namespace
}  // namespace weir::proxy
