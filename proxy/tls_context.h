// Server-side TLS configuration built from the config on the control thread: one SSL_CTX per
// certificate of a listener, chosen per handshake by SNI from each certificate's own names
// (exact, then "*.suffix" wildcard; the first certificate is the default). The SSL_CTXs are
// immutable once built and shared by every worker (OpenSSL allows SSL_new from many threads).
// Session tickets are sealed with a process-wide rotating key ring, so a ticket issued by one
// worker (or before a reload) resumes on any other.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config/config.h"
#include "routing/snapshot.h"

namespace weir::proxy {

enum class TlsFailure : uint8_t { kTimeout, kPeerClosed, kProtocol, kOther };

// The first queued OpenSSL error as text (and clears the queue).
std::string openssl_error();
// Why `path` cannot be opened, or "".
std::string unreadable(const std::string& path);

class TlsContext {
 public:
  // nullptr and one error per broken certificate/key (file:line:col of its key in the config).
  static std::shared_ptr<const TlsContext> build(const config::Listener& listener,
                                                 size_t listener_index,
                                                 std::vector<config::Error>* errors);
  // The admin listener's context from [admin.tls]: one certificate, ALPN http/1.1 only.
  static std::shared_ptr<const TlsContext> build_admin(const config::ListenerTls& tls,
                                                       std::vector<config::Error>* errors);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // A new server-side SSL for one connection (nullptr when OpenSSL is out of memory).
  SSL* new_ssl() const;
  SSL_CTX* select(std::string_view server_name) const;
  uint32_t handshake_timeout_ms() const { return handshake_timeout_ms_; }
  bool h2() const { return h2_; }
  bool http1() const { return http1_; }
  // The certificate names indexed for SNI, for tests and logs.
  std::vector<std::string> names() const;

 private:
  TlsContext() = default;
  // `tls_path` names the table in errors ("listener[0].tls"); cert_path(i) the keys of its
  // certificate i.
  template <typename CertPath>
  static std::shared_ptr<const TlsContext> build_from(const config::ListenerTls& tls, bool h2,
                                                      bool http1, const std::string& tls_path,
                                                      CertPath cert_path,
                                                      std::vector<config::Error>* errors);
  static int on_servername(SSL* ssl, int* alert, void* arg);
  static int on_alpn(SSL* ssl, const unsigned char** out, unsigned char* outlen,
                     const unsigned char* in, unsigned int inlen, void* arg);

  std::vector<SSL_CTX*> ctxs_;
  std::unordered_map<std::string, SSL_CTX*> exact_;     // lower-case host → context
  std::unordered_map<std::string, SSL_CTX*> wildcard_;  // "example.com" for "*.example.com"
  uint32_t handshake_timeout_ms_ = 10000;
  bool h2_ = false;
  bool http1_ = true;
};

// TLS contexts of every listener, indexed like config.listeners (nullptr = plain listener), and
// the client contexts of the versions that reach their endpoints over TLS.
struct TlsSet {
  std::vector<std::shared_ptr<const TlsContext>> listeners;
  routing::UpstreamTlsMap upstreams;
  std::shared_ptr<const TlsContext> admin;  // nullptr = plain HTTP admin listener
};

// Reads every certificate, key and CA file of `config`; nullptr with errors when any is broken,
// so a reload keeps the running certificates.
std::shared_ptr<const TlsSet> build_tls_set(const config::Config& config,
                                            std::vector<config::Error>* errors);

}  // namespace weir::proxy
