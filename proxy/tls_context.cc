#include "proxy/tls_context.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "proxy/http_util.h"
#include "proxy/upstream_tls.h"

namespace weir::proxy {

namespace {

// TLS 1.2 suites with forward secrecy and AEAD only (TLS 1.3 suites are all modern).
constexpr const char* kCiphers12 =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// Ticket keys: the newest seals new tickets; older ones still open tickets (which are then
// renewed) until they fall off the ring. Shared by every worker and kept across reloads.
class TicketKeys {
 public:
  static TicketKeys& instance() {
    static TicketKeys keys;
    return keys;
  }

  struct Key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
    int64_t created_s = 0;
  };

  // Copies the current sealing key, rotating first when it is too old.
  bool current(Key* out) {
    std::lock_guard<std::mutex> lock(mu_);
    const int64_t now = now_s();
    if (count_ == 0 || now - keys_[0].created_s >= kRotateSeconds) {
      Key k;
      if (RAND_bytes(k.name, sizeof k.name) != 1 || RAND_bytes(k.aes, sizeof k.aes) != 1 ||
          RAND_bytes(k.hmac, sizeof k.hmac) != 1) {
        return false;
      }
      k.created_s = now;
      for (size_t i = kRing - 1; i > 0; --i) keys_[i] = keys_[i - 1];
      keys_[0] = k;
      if (count_ < kRing) ++count_;
    }
    *out = keys_[0];
    return true;
  }

  // Finds the key named `name`; *newest tells whether it is the sealing key.
  bool find(const unsigned char* name, Key* out, bool* newest) {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < count_; ++i) {
      if (std::memcmp(keys_[i].name, name, sizeof keys_[i].name) == 0) {
        *out = keys_[i];
        *newest = i == 0 && now_s() - keys_[0].created_s < kRotateSeconds;
        return true;
      }
    }
    return false;
  }

 private:
  static constexpr int64_t kRotateSeconds = 12 * 3600;
  static constexpr size_t kRing = 3;  // a ticket stays valid for 24-36 h
  static int64_t now_s() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  std::mutex mu_;  // taken once per full handshake or resumption, never per request
  Key keys_[kRing];
  size_t count_ = 0;
};

int on_ticket_key(SSL*, unsigned char key_name[16], unsigned char* iv, EVP_CIPHER_CTX* cctx,
                  EVP_MAC_CTX* hctx, int enc) {
  TicketKeys::Key k;
  int rc = 1;
  if (enc) {
    if (!TicketKeys::instance().current(&k) || RAND_bytes(iv, EVP_MAX_IV_LENGTH) != 1) return -1;
    std::memcpy(key_name, k.name, sizeof k.name);
    if (EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), nullptr, k.aes, iv) != 1) return -1;
  } else {
    bool newest = false;
    if (!TicketKeys::instance().find(key_name, &k, &newest)) return 0;  // full handshake
    if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), nullptr, k.aes, iv) != 1) return -1;
    rc = newest ? 1 : 2;  // 2: accept, and issue a ticket under the current key
  }
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac, sizeof k.hmac),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>("SHA256"), 0),
      OSSL_PARAM_construct_end()};
  if (EVP_MAC_CTX_set_params(hctx, params) != 1) return -1;
  return rc;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ascii_lower(c);
  return out;
}

// DNS names of the certificate: its subjectAltNames, or its CN when it has none.
std::vector<std::string> certificate_names(X509* x) {
  std::vector<std::string> out;
  auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr,
                                                            nullptr));
  if (sans) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* n = sk_GENERAL_NAME_value(sans, i);
      if (n->type != GEN_DNS) continue;
      const unsigned char* p = ASN1_STRING_get0_data(n->d.dNSName);
      out.push_back(lower(std::string_view(reinterpret_cast<const char*>(p),
                                           static_cast<size_t>(ASN1_STRING_length(n->d.dNSName)))));
    }
    GENERAL_NAMES_free(sans);
  }
  if (out.empty()) {
    char cn[256];
    int n = X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn);
    if (n > 0) out.push_back(lower(std::string_view(cn, static_cast<size_t>(n))));
  }
  return out;
}

}  // namespace

std::string openssl_error() {
  unsigned long e = ERR_peek_last_error();
  std::string out;
  if (const char* reason = ERR_reason_error_string(e)) {
    out = reason;
  } else {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    out = buf;
  }
  ERR_clear_error();
  return out;
}

std::string unreadable(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return std::string("cannot read ") + path + ": " + std::strerror(errno);
  std::fclose(f);
  return "";
}

std::shared_ptr<const TlsContext> TlsContext::build(const config::Listener& listener,
                                                    size_t listener_index,
                                                    std::vector<config::Error>* errors) {
  const std::string path = "listener[" + std::to_string(listener_index) + "].tls";
  return build_from(
      *listener.tls, listener.h2, listener.http1, path,
      [&](size_t i) { return path + ".certificate[" + std::to_string(i) + "]"; }, errors);
}

std::shared_ptr<const TlsContext> TlsContext::build_admin(const config::ListenerTls& tls,
                                                          std::vector<config::Error>* errors) {
  return build_from(
      tls, false, true, "admin.tls", [](size_t) { return std::string("admin.tls"); }, errors);
}

template <typename CertPath>
std::shared_ptr<const TlsContext> TlsContext::build_from(const config::ListenerTls& lt, bool h2,
                                                         bool http1, const std::string& tls_path,
                                                         CertPath cert_path,
                                                         std::vector<config::Error>* errors) {
  std::shared_ptr<TlsContext> out(new TlsContext());
  out->handshake_timeout_ms_ = lt.handshake_timeout_ms;
  out->h2_ = h2;
  out->http1_ = http1;
  const size_t errors_before = errors->size();
  for (size_t i = 0; i < lt.certificates.size(); ++i) {
    const config::TlsCertificate& c = lt.certificates[i];
    const std::string key_path = cert_path(i);
    auto fail = [&](const config::SourceLoc& loc, const char* key, std::string why) {
      errors->push_back({loc, key_path + "." + key, std::move(why)});
    };
    ERR_clear_error();
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
      fail(c.cert_loc, "cert", "cannot create a TLS context: " + openssl_error());
      continue;
    }
    out->ctxs_.push_back(ctx);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_cipher_list(ctx, kCiphers12);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    // Resumption is stateless (tickets), so it works across workers without a shared cache.
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (lt.session_tickets) {
      SSL_CTX_set_num_tickets(ctx, 1);
      SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, on_ticket_key);
    } else {
      SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
      SSL_CTX_set_num_tickets(ctx, 0);
    }
    SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
    SSL_CTX_set_tlsext_servername_arg(ctx, out.get());
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn, out.get());
    if (lt.client_verify != config::ListenerTls::ClientVerify::kOff) {
      auto ca_fail = [&](std::string why) {
        errors->push_back({lt.client_ca_loc, tls_path + ".client_ca", std::move(why)});
      };
      if (std::string why = unreadable(lt.client_ca); !why.empty()) {
        if (i == 0) ca_fail(why);
        continue;
      }
      STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(lt.client_ca.c_str());
      if (!names || SSL_CTX_load_verify_locations(ctx, lt.client_ca.c_str(), nullptr) != 1) {
        if (names) sk_X509_NAME_pop_free(names, X509_NAME_free);
        if (i == 0) ca_fail(lt.client_ca + " holds no PEM CA certificate (" + openssl_error() + ")");
        continue;
      }
      SSL_CTX_set_client_CA_list(ctx, names);
      int mode = SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE;
      if (lt.client_verify == config::ListenerTls::ClientVerify::kRequire)
        mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
      SSL_CTX_set_verify(ctx, mode, nullptr);
      // Resumed sessions keep the verified client; they need a context id to be accepted.
      static constexpr unsigned char kSessionContext[] = "weir";
      SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof kSessionContext - 1);
    }
    if (std::string why = unreadable(c.cert); !why.empty()) {
      fail(c.cert_loc, "cert", why);
      continue;
    }
    if (std::string why = unreadable(c.key); !why.empty()) {
      fail(c.key_loc, "key", why);
      continue;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, c.cert.c_str()) != 1) {
      fail(c.cert_loc, "cert",
           c.cert + " is not a PEM certificate chain (" + openssl_error() + ")");
      continue;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, c.key.c_str(), SSL_FILETYPE_PEM) != 1) {
      const bool mismatch = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH;
      std::string detail = openssl_error();
      fail(c.key_loc, "key",
           mismatch ? c.key + " does not match the certificate " + c.cert
                    : c.key + " is not a PEM private key (" + detail + ")");
      continue;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
      fail(c.key_loc, "key",
           c.key + " does not match the certificate " + c.cert + " (" + openssl_error() + ")");
      continue;
    }
    std::vector<std::string> names = certificate_names(SSL_CTX_get0_certificate(ctx));
    if (names.empty()) {
      fail(c.cert_loc, "cert", c.cert + " names no host (no DNS subjectAltName and no CN)");
      continue;
    }
    // The first certificate that names a host wins it, as with nginx's server blocks.
    for (const std::string& n : names) {
      if (n.starts_with("*.")) {
        out->wildcard_.emplace(n.substr(2), ctx);
      } else {
        out->exact_.emplace(n, ctx);
      }
    }
  }
  if (errors->size() != errors_before) return nullptr;
  return out;
}

TlsContext::~TlsContext() {
  for (SSL_CTX* c : ctxs_) SSL_CTX_free(c);
}

SSL* TlsContext::new_ssl() const { return SSL_new(ctxs_.front()); }

SSL_CTX* TlsContext::select(std::string_view server_name) const {
  std::string host = lower(server_name);
  if (!host.empty() && host.back() == '.') host.pop_back();
  if (auto it = exact_.find(host); it != exact_.end()) return it->second;
  // A wildcard covers exactly one label.
  if (size_t dot = host.find('.'); dot != std::string::npos) {
    if (auto it = wildcard_.find(host.substr(dot + 1)); it != wildcard_.end()) return it->second;
  }
  return ctxs_.front();
}

std::vector<std::string> TlsContext::names() const {
  std::vector<std::string> out;
  for (const auto& [n, c] : exact_) out.push_back(n);
  for (const auto& [n, c] : wildcard_) out.push_back("*." + n);
  return out;
}

int TlsContext::on_servername(SSL* ssl, int*, void* arg) {
  const auto* self = static_cast<const TlsContext*>(arg);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (name) {
    SSL_CTX* chosen = self->select(name);
    if (chosen != SSL_get_SSL_CTX(ssl)) SSL_set_SSL_CTX(ssl, chosen);
  }
  return SSL_TLSEXT_ERR_OK;
}

int TlsContext::on_alpn(SSL*, const unsigned char** out, unsigned char* outlen,
                        const unsigned char* in, unsigned int inlen, void* arg) {
  const auto* self = static_cast<const TlsContext*>(arg);
  // Server preference: h2 when the client offers it and the listener allows it.
  static constexpr unsigned char kH2[] = {2, 'h', '2'};
  static constexpr unsigned char kH1[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  for (const unsigned char* want : {kH2, kH1}) {
    if ((want == kH2 && !self->h2_) || (want == kH1 && !self->http1_)) continue;
    for (unsigned int i = 0; i < inlen;) {
      unsigned int len = in[i];
      if (i + 1 + len > inlen) break;
      if (len == want[0] && std::memcmp(in + i + 1, want + 1, len) == 0) {
        *out = in + i + 1;
        *outlen = static_cast<unsigned char>(len);
        return SSL_TLSEXT_ERR_OK;
      }
      i += 1 + len;
    }
  }
  // No common protocol: go on without ALPN (HTTP/1.1 if the listener speaks it).
  return SSL_TLSEXT_ERR_NOACK;
}

std::shared_ptr<const TlsSet> build_tls_set(const config::Config& config,
                                            std::vector<config::Error>* errors) {
  auto set = std::make_shared<TlsSet>();
  const size_t errors_before = errors->size();
  for (size_t i = 0; i < config.listeners.size(); ++i) {
    const config::Listener& l = config.listeners[i];
    set->listeners.push_back(l.tls ? TlsContext::build(l, i, errors) : nullptr);
  }
  build_upstream_tls(config, &set->upstreams, errors);
  if (config.admin.tls) set->admin = TlsContext::build_admin(*config.admin.tls, errors);
  if (errors->size() != errors_before) return nullptr;
  return set;
}

}  // namespace weir::proxy
