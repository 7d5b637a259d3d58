#include "proxy/upstream_tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <map>
#include <tuple>

#include "proxy/tls_context.h"
#include "proxy/upstream_pool.h"

namespace weir::proxy {

namespace {

bool is_ip_literal(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

}  // namespace

std::shared_ptr<const UpstreamTlsContext> UpstreamTlsContext::build(
    const config::UpstreamTls& tls, bool h2, const std::string& key_path,
    std::vector<config::Error>* errors) {
  std::shared_ptr<UpstreamTlsContext> out(new UpstreamTlsContext());
  out->sni_ = tls.sni;
  out->verify_ = tls.verify;
  out->h2_ = h2;
  auto fail = [&](const config::SourceLoc& loc, const char* key, std::string why) {
    errors->push_back({loc, key_path + "." + key, std::move(why)});
    return nullptr;
  };
  ERR_clear_error();
  SSL_CTX* ctx = out->ctx_ = SSL_CTX_new(TLS_client_method());
  if (!ctx) return fail(tls.loc, "enabled", "cannot create a TLS context: " + openssl_error());
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  // Sessions are cached by the pools (per endpoint, per worker), not inside OpenSSL.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx, UpstreamConn::on_new_session);
  static constexpr unsigned char kH2[] = {2, 'h', '2'};
  static constexpr unsigned char kH1[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  if (h2) {
    SSL_CTX_set_alpn_protos(ctx, kH2, sizeof kH2);
  } else {
    SSL_CTX_set_alpn_protos(ctx, kH1, sizeof kH1);
  }
  SSL_CTX_set_verify(ctx, tls.verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
  if (tls.ca_file.empty()) {
    if (tls.verify && SSL_CTX_set_default_verify_paths(ctx) != 1)
      return fail(tls.loc, "ca_file", "cannot load the system trust store: " + openssl_error());
  } else {
    if (std::string why = unreadable(tls.ca_file); !why.empty())
      return fail(tls.ca_loc, "ca_file", why);
    if (SSL_CTX_load_verify_locations(ctx, tls.ca_file.c_str(), nullptr) != 1)
      return fail(tls.ca_loc, "ca_file",
                  tls.ca_file + " holds no PEM CA certificate (" + openssl_error() + ")");
  }
  if (!tls.cert.empty()) {
    if (std::string why = unreadable(tls.cert); !why.empty())
      return fail(tls.cert_loc, "cert", why);
    if (std::string why = unreadable(tls.key); !why.empty()) return fail(tls.key_loc, "key", why);
    if (SSL_CTX_use_certificate_chain_file(ctx, tls.cert.c_str()) != 1)
      return fail(tls.cert_loc, "cert",
                  tls.cert + " is not a PEM certificate chain (" + openssl_error() + ")");
    if (SSL_CTX_use_PrivateKey_file(ctx, tls.key.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1)
      return fail(tls.key_loc, "key",
                  tls.key + " is not the PEM private key of " + tls.cert + " (" +
                      openssl_error() + ")");
  }
  return out;
}

UpstreamTlsContext::~UpstreamTlsContext() {
  if (ctx_) SSL_CTX_free(ctx_);
}

SSL* UpstreamTlsContext::new_ssl(const std::string& host) const {
  SSL* ssl = SSL_new(ctx_);
  if (!ssl) return nullptr;
  const std::string& name = sni_.empty() ? host : sni_;
  const bool ip = sni_.empty() && is_ip_literal(host);
  bool ok = true;
  if (!ip) ok = SSL_set_tlsext_host_name(ssl, name.c_str()) == 1;
  if (ok && verify_) {
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str()) == 1
            : SSL_set1_host(ssl, name.c_str()) == 1;
  }
  if (!ok) {
    SSL_free(ssl);
    return nullptr;
  }
  SSL_set_connect_state(ssl);
  return ssl;
}

bool UpstreamTlsContext::alpn_ok(SSL* ssl) const {
  if (!h2_) return true;
  const unsigned char* alpn = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl, &alpn, &len);
  return len == 2 && alpn[0] == 'h' && alpn[1] == '2';
}

bool build_upstream_tls(const config::Config& config, routing::UpstreamTlsMap* out,
                        std::vector<config::Error>* errors) {
  const size_t errors_before = errors->size();
  // Versions that inherit one [service.tls] share its context (and report its errors once).
  using Key = std::tuple<std::string, std::string, std::string, std::string, bool, bool>;
  std::map<Key, std::shared_ptr<const UpstreamTlsContext>> built;
  for (size_t s = 0; s < config.services.size(); ++s) {
    const config::Service& svc = config.services[s];
    for (size_t v = 0; v < svc.versions.size(); ++v) {
      const config::Version& ver = svc.versions[v];
      if (!ver.tls.enabled) continue;
      const config::UpstreamTls& t = ver.tls;
      const bool h2 = ver.protocol == config::UpstreamProtocol::kH2;
      Key key{t.sni, t.ca_file, t.cert, t.key, t.verify, h2};
      auto it = built.find(key);
      if (it == built.end()) {
        const std::string path = "service[" + std::to_string(s) + "].version[" +
                                 std::to_string(v) + "].tls";
        it = built.emplace(key, UpstreamTlsContext::build(t, h2, path, errors)).first;
      }
      if (it->second) (*out)[svc.name + "/" + ver.name] = it->second;
    }
  }
  return errors->size() == errors_before;
}

}  // namespace weir::proxy
