#include "proxy/tls_io.h"

#include <openssl/err.h>
#include <openssl/x509.h>

#include <algorithm>
#include <climits>

namespace weir::proxy {

BIO_METHOD* TlsIo::bio_method() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "weir-transport");
    BIO_meth_set_write(m, bio_write);
    BIO_meth_set_read(m, bio_read);
    BIO_meth_set_ctrl(m, bio_ctrl);
    BIO_meth_set_create(m, [](BIO* b) {
      BIO_set_init(b, 1);
      return 1;
    });
    return m;
  }();
  return method;
}

int TlsIo::bio_write(BIO* b, const char* data, int len) {
  auto* self = static_cast<TlsIo*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  self->out_->append(data, static_cast<size_t>(len));
  self->wrote_ = true;
  return len;
}

int TlsIo::bio_read(BIO* b, char* data, int len) {
  auto* self = static_cast<TlsIo*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  if (self->in_len_ == 0) {
    BIO_set_retry_read(b);  // WANT_READ: more arrives with the next socket read
    return -1;
  }
  size_t n = std::min(self->in_len_, static_cast<size_t>(len));
  std::copy_n(self->in_, n, data);
  self->in_ += n;
  self->in_len_ -= n;
  return static_cast<int>(n);
}

long TlsIo::bio_ctrl(BIO*, int cmd, long, void*) { return cmd == BIO_CTRL_FLUSH ? 1 : 0; }

TlsIo::~TlsIo() {
  if (ssl_) SSL_free(ssl_);
}

bool TlsIo::init(SSL* ssl, std::string* out) {
  out_ = out;
  BIO* bio = ssl ? BIO_new(bio_method()) : nullptr;
  if (!bio) {
    if (ssl) SSL_free(ssl);
    return false;
  }
  BIO_set_data(bio, this);
  SSL_set_bio(ssl, bio, bio);
  ssl_ = ssl;
  return true;
}

int TlsIo::handshake() {
  ERR_clear_error();
  int rc = SSL_do_handshake(ssl_);
  return rc == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_, rc);
}

size_t TlsIo::read(char* buf, size_t cap, int* err) {
  size_t filled = 0;
  *err = SSL_ERROR_NONE;
  while (filled < cap) {
    ERR_clear_error();
    int n = SSL_read(ssl_, buf + filled, static_cast<int>(std::min<size_t>(cap - filled, INT_MAX)));
    if (n > 0) {
      filled += static_cast<size_t>(n);
      continue;
    }
    *err = SSL_get_error(ssl_, n);
    break;
  }
  return filled;
}

bool TlsIo::write(const char* data, size_t len) {
  if (!retry_.empty()) {
    retry_.append(data, len);  // keep order behind the write that must be retried
    return true;
  }
  while (len > 0) {
    const int chunk = static_cast<int>(std::min<size_t>(len, INT_MAX / 2));
    ERR_clear_error();
    int n = SSL_write(ssl_, data, chunk);
    if (n > 0) {
      data += n;
      len -= static_cast<size_t>(n);
      continue;
    }
    int err = SSL_get_error(ssl_, n);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      // SSL_write must be retried with the same bytes and length.
      retry_.assign(data, len);
      return true;
    }
    return false;
  }
  return true;
}

bool TlsIo::retry() {
  if (retry_.empty()) return true;
  std::string pending;
  pending.swap(retry_);
  return write(pending.data(), pending.size());
}

void TlsIo::shutdown() {
  if (!retry_.empty()) return;
  ERR_clear_error();
  SSL_shutdown(ssl_);
}

std::string TlsIo::last_error() const {
  std::string out;
  unsigned long e = ERR_peek_last_error();
  if (e != 0) {
    const char* reason = ERR_reason_error_string(e);
    out = reason ? reason : "error " + std::to_string(e);
  }
  ERR_clear_error();
  if (ssl_) {
    long v = SSL_get_verify_result(ssl_);
    if (v != X509_V_OK) {
      if (!out.empty()) out += ": ";
      out += X509_verify_cert_error_string(v);
    }
  }
  return out.empty() ? "connection closed during the handshake" : out;
}

}  // namespace weir::proxy
