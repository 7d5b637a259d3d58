// Claims on TCP ports between weir processes. Every weir listening socket sets SO_REUSEPORT
// (workers, binary upgrades), so the kernel would let a second weir share a live one's ports and
// split their connections at random. Before binding a port, weir binds an abstract Unix socket
// named for it ("\0weir/port/8080/0"): the kernel releases it when the process dies, and it is
// scoped like the port itself (one network namespace). Each port has two slots: a normal start
// needs both free and takes slot 0; a binary upgrade (`weir --upgrade`) takes whichever slot the
// running weir left free, so the two share the port on purpose and a third start is refused.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>

namespace weir::proxy {

enum class ClaimMode : uint8_t {
  kExclusive,  // no other process may hold the port
  kUpgrade,    // share it with the one weir that holds it (binary upgrade)
};

// The claims one process holds; owned by whoever decides how long they live (the process, for
// weir: process_port_claims()).
class PortClaims {
 public:
  // `prefix` names the claims ("weir"; tests use their own so they never meet a real weir).
  explicit PortClaims(std::string prefix = "weir");
  ~PortClaims();
  PortClaims(const PortClaims&) = delete;
  PortClaims& operator=(const PortClaims&) = delete;

  // Claims `port` for this process (true at once when already held). false + *error naming
  // the holder's pid when another process holds it (kExclusive), or when two already share it
  // (kUpgrade).
  bool claim(uint16_t port, ClaimMode mode, std::string* error);
  bool holds(uint16_t port) const { return fds_.count(port) > 0; }
  void release(uint16_t port);
  // The pid of the process holding `slot` (0 or 1) of `port`: 0 when the slot is free, -1 when
  // it is held but the holder's pid cannot be read.
  pid_t holder(uint16_t port, int slot) const;

 private:
  std::string name(uint16_t port, int slot) const;
  // A socket bound (and listening) on the slot's name, or -1 with errno.
  int bind_slot(uint16_t port, int slot) const;

  std::string prefix_;
  std::map<uint16_t, int> fds_;
};

// The claims of this process, held until it exits.
PortClaims& process_port_claims();

// Claims the port of `addr`, a listening address about to be bound, in start_claim_mode().
// With `probe` and a port this process did not hold yet, kExclusive also binds `addr` once
// without SO_REUSEPORT, which fails while any other program (an older weir included) listens
// there. Port 0 claims nothing: claim the port the kernel picked, after binding, without probe.
bool claim_listen_port(const sockaddr_storage& addr, bool probe, std::string* error);

// How the listeners opened at start claim their ports (main sets kUpgrade for `--upgrade`);
// ports opened later (reloads) are always claimed kExclusive.
void set_start_claim_mode(ClaimMode mode);
ClaimMode start_claim_mode();

}  // namespace weir::proxy
