// Which protocol session a new client connection gets: TLS first when the listener has
// certificates, then HTTP/2 (ALPN "h2", or h2c by prior knowledge) or HTTP/1.1.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "proxy/session.h"

namespace weir::proxy {

// The outermost session of a connection just accepted on `listener`.
std::unique_ptr<Session> open_session(Transport& t, uint32_t listener);

// The HTTP session itself, once the protocol is known.
std::unique_ptr<Session> make_http_session(Transport& t, bool h2);

// On a plain listener that speaks both HTTP/1.1 and h2c: holds the first bytes until they
// show whether the client sent the HTTP/2 connection preface, then hands everything to the
// chosen session and forwards to it from then on. Owned by the ClientConn.
class ProtocolSelect final : public Session {
 public:
  explicit ProtocolSelect(Transport& t);

  void on_read(const char* data, size_t len) override;
  void on_eof() override;
  void on_drain() override;
  void on_timeout() override;
  void start_drain() override;
  void on_close() override;

 private:
  void choose(bool h2);

  Transport& t_;
  std::unique_ptr<Session> inner_;
  std::string head_;  // bytes seen before the choice
  bool draining_ = false;
};

}  // namespace weir::proxy
