#include "proxy/port_claim.h"

#include <netinet/in.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

namespace weir::proxy {
namespace {

sockaddr_un unix_address(const std::string& name, socklen_t* len) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  const size_t n = std::min(name.size(), sizeof a.sun_path);
  std::memcpy(a.sun_path, name.data(), n);
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + n);
  return a;
}

std::string who(pid_t pid) {
  return pid > 0 ? "weir pid " + std::to_string(pid) : std::string("another weir");
}

ClaimMode g_start_mode = ClaimMode::kExclusive;

}  // namespace

PortClaims::PortClaims(std::string prefix) : prefix_(std::move(prefix)) {}

PortClaims::~PortClaims() {
  for (const auto& [port, fd] : fds_) ::close(fd);
}

std::string PortClaims::name(uint16_t port, int slot) const {
  // A leading NUL puts the name in the abstract namespace: no file, gone with its process.
  return std::string(1, '\0') + prefix_ + "/port/" + std::to_string(port) + "/" +
         std::to_string(slot);
}

int PortClaims::bind_slot(uint16_t port, int slot) const {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  socklen_t len = 0;
  sockaddr_un a = unix_address(name(port, slot), &len);
  // Listening, so that holder() can connect and read the pid (SO_PEERCRED); nothing accepts.
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), len) != 0 || ::listen(fd, 64) != 0) {
    int err = errno;
    ::close(fd);
    errno = err;
    return -1;
  }
  return fd;
}

pid_t PortClaims::holder(uint16_t port, int slot) const {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  socklen_t len = 0;
  sockaddr_un a = unix_address(name(port, slot), &len);
  pid_t pid = 0;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), len) == 0) {
    ucred cred{};
    socklen_t cred_len = sizeof cred;
    pid = ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cred_len) == 0 ? cred.pid : -1;
  } else if (errno == EAGAIN) {
    pid = -1;  // its backlog is full of earlier probes: held all the same
  }
  ::close(fd);
  return pid;
}

bool PortClaims::claim(uint16_t port, ClaimMode mode, std::string* error) {
  if (holds(port)) return true;
  const std::string port_text = "port " + std::to_string(port);
  int fd = bind_slot(port, 0);
  if (fd < 0 && errno != EADDRINUSE) {
    *error = port_text + ": cannot claim it: " + std::strerror(errno);
    return false;
  }
  if (mode == ClaimMode::kExclusive) {
    pid_t other = fd < 0 ? holder(port, 0) : holder(port, 1);
    if (fd < 0 || other != 0) {
      if (fd >= 0) ::close(fd);
      *error = port_text + " is in use by " + who(other) +
               "; stop it, give this weir other ports, or start this weir with --upgrade to "
               "take over from that one (README: Operations)";
      return false;
    }
    fds_.emplace(port, fd);
    return true;
  }
  if (fd < 0) fd = bind_slot(port, 1);
  if (fd < 0) {
    if (errno != EADDRINUSE) {
      *error = port_text + ": cannot claim it: " + std::strerror(errno);
    } else {
      *error = port_text + " is already shared by " + who(holder(port, 0)) + " and " +
               who(holder(port, 1)) +
               " (an upgrade under way); wait until the old one has exited, then upgrade again";
    }
    return false;
  }
  fds_.emplace(port, fd);
  return true;
}

void PortClaims::release(uint16_t port) {
  auto it = fds_.find(port);
  if (it == fds_.end()) return;
  ::close(it->second);
  fds_.erase(it);
}

PortClaims& process_port_claims() {
  static PortClaims claims;
  return claims;
}

void set_start_claim_mode(ClaimMode mode) { g_start_mode = mode; }
ClaimMode start_claim_mode() { return g_start_mode; }

bool claim_listen_port(const sockaddr_storage& addr, bool probe, std::string* error) {
  const uint16_t port = ntohs(addr.ss_family == AF_INET6
                                  ? reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_port
                                  : reinterpret_cast<const sockaddr_in*>(&addr)->sin_port);
  if (port == 0) return true;
  PortClaims& claims = process_port_claims();
  const bool held = claims.holds(port);
  const ClaimMode mode = start_claim_mode();
  if (!claims.claim(port, mode, error)) return false;
  if (!probe || held || mode == ClaimMode::kUpgrade) return true;
  int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd < 0 || ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
    *error = std::string("socket: ") + std::strerror(errno);
    if (fd >= 0) ::close(fd);
    return false;
  }
  socklen_t len = addr.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  const bool taken = ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0 &&
                     errno == EADDRINUSE;
  ::close(fd);
  if (taken) {
    claims.release(port);
    *error = "port " + std::to_string(port) +
             " is in use by another process; if that is a weir (an older one holds no claim), "
             "stop it, or start this one with --upgrade to take over from it";
    return false;
  }
  return true;
}

}  // namespace weir::proxy
