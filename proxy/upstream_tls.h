// Client-side TLS to backends: one SSL_CTX per distinct [service.tls]/[service.version.tls]
// setting, built on the control thread with the config (ca_file and client certificate read at
// load and at every reload) and then immutable, shared by every worker through the snapshot.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "routing/snapshot.h"

namespace weir::proxy {

class UpstreamTlsContext final : public routing::OpaqueTls {
 public:
  // nullptr and errors (file:line:col of the offending key) when a file cannot be used.
  static std::shared_ptr<const UpstreamTlsContext> build(const config::UpstreamTls& tls, bool h2,
                                                         const std::string& key_path,
                                                         std::vector<config::Error>* errors);
  ~UpstreamTlsContext() override;
  UpstreamTlsContext(const UpstreamTlsContext&) = delete;
  UpstreamTlsContext& operator=(const UpstreamTlsContext&) = delete;

  // A client SSL for one connection to `host` (nullptr when out of memory). SNI and the name
  // verified are the configured sni, else `host` when it is a DNS name; an IP literal is
  // verified against the certificate's IP addresses and sends no SNI.
  SSL* new_ssl(const std::string& host) const;
  SSL_CTX* ctx() const { return ctx_; }
  // The connection negotiated what the version speaks (h2 needs ALPN "h2").
  bool alpn_ok(SSL* ssl) const;

 private:
  UpstreamTlsContext() = default;

  SSL_CTX* ctx_ = nullptr;
  std::string sni_;
  bool verify_ = true;
  bool h2_ = false;
};

// The client contexts of every version with upstream TLS, by "service/version". false with
// errors when a CA file or client certificate is broken, so a reload keeps the running set.
bool build_upstream_tls(const config::Config& config, routing::UpstreamTlsMap* out,
                        std::vector<config::Error>* errors);

}  // namespace weir::proxy
