// OpenSSL over a custom BIO, shared by both TLS ends of weir: the server side (TlsTransport, a
// client connection) and the client side (UpstreamConn, a backend connection). Ciphertext comes
// in from a buffer the owner lends for one call (the socket's read buffer) and goes out appended
// straight to the owner's send buffer, so no byte passes through an intermediate memory BIO.
// Owned by its connection; owns the SSL.
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <string>

namespace weir::proxy {

class TlsIo {
 public:
  TlsIo() = default;
  ~TlsIo();
  TlsIo(const TlsIo&) = delete;
  TlsIo& operator=(const TlsIo&) = delete;

  // Takes `ssl` (may be nullptr); what OpenSSL writes is appended to *out. false when out of
  // memory, and then active() stays false.
  bool init(SSL* ssl, std::string* out);
  bool active() const { return ssl_ != nullptr; }
  SSL* ssl() const { return ssl_; }

  // Ciphertext readable by OpenSSL until clear_input().
  void set_input(const char* data, size_t len) {
    in_ = data;
    in_len_ = len;
  }
  void clear_input() { set_input(nullptr, 0); }
  // True (once) when OpenSSL appended to the send buffer since the last call.
  bool take_output() {
    const bool w = wrote_;
    wrote_ = false;
    return w;
  }

  // SSL_do_handshake: SSL_ERROR_NONE when complete, else SSL_get_error's code.
  int handshake();
  // Decrypts into buf (up to cap bytes). *err is the SSL_get_error code that ended the read, or
  // SSL_ERROR_NONE when the buffer filled (SSL_pending may then hold more).
  size_t read(char* buf, size_t cap, int* err);
  // Encrypts. A write OpenSSL wants retried (WANT_READ/WRITE) is kept, and goes before anything
  // written later, by retry() after the next read. false on a fatal error.
  bool write(const char* data, size_t len);
  bool retry();
  bool retry_pending() const { return !retry_.empty(); }
  // Queues close_notify (unless a write is waiting for a retry).
  void shutdown();

  // The reason of the last OpenSSL error, plus the certificate verification result when that
  // failed; clears the error queue. For logs.
  std::string last_error() const;

 private:
  static int bio_write(BIO* b, const char* data, int len);
  static int bio_read(BIO* b, char* data, int len);
  static long bio_ctrl(BIO* b, int cmd, long num, void* ptr);
  static BIO_METHOD* bio_method();

  SSL* ssl_ = nullptr;
  std::string* out_ = nullptr;
  const char* in_ = nullptr;
  size_t in_len_ = 0;
  bool wrote_ = false;
  std::string retry_;  // plaintext an SSL_write must retry with the same length
};

}  // namespace weir::proxy
