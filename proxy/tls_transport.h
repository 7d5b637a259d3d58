// TLS between a client socket and the protocol session. To the socket (ClientConn) it is the
// Session that receives ciphertext; to the HTTP/1.1 or HTTP/2 session it is the Transport that
// carries plaintext. OpenSSL runs in a TlsIo: reads come straight from the socket's read buffer
// and writes go straight into the socket's send queue. Owned by the ClientConn (as its session);
// owns the inner session, created once the handshake picked a protocol by ALPN.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "proxy/io_buffer.h"
#include "proxy/session.h"
#include "proxy/tls_context.h"
#include "proxy/tls_io.h"

namespace weir::proxy {

class TlsTransport final : public Session, public Transport, private FlushList::Deferred {
 public:
  TlsTransport(Transport& lower, std::shared_ptr<const TlsContext> ctx);
  ~TlsTransport() override;

  // Session: ciphertext and events from the socket.
  void on_read(const char* data, size_t len) override;
  void on_eof() override;
  void on_drain() override;
  void on_timeout() override;
  void start_drain() override;
  void on_close() override;

  // Transport: plaintext from the inner session. It is encrypted once it fills a record, or at
  // the end of the loop turn: small writes (a response head, its body, the next stream's
  // frames) share records and SSL_write calls.
  void write(std::string_view data) override;
  std::string& write_buffer() override { return plain_out_; }
  void commit() override;
  bool congested() override { return lower_.congested(); }
  void pause_reading() override { lower_.pause_reading(); }
  void resume_reading() override { lower_.resume_reading(); }
  void set_deadline(uint64_t ms_from_now) override { lower_.set_deadline(ms_from_now); }
  void clear_deadline() override { lower_.clear_deadline(); }
  void close_after_flush(bool linger) override;
  void abort() override { lower_.abort(); }
  const ConnInfo& info() const override { return lower_.info(); }
  void set_client_subject(std::string subject) override {
    lower_.set_client_subject(std::move(subject));
  }
  Worker& worker() override { return lower_.worker(); }

 private:
  enum class State : uint8_t { kHandshake, kOpen, kClosed };

  void handshake();
  void established();
  void read_plaintext();
  void encrypt(const char* data, size_t len);
  // Encrypts plain_out_ now if it fills a record, else at the end of the loop turn.
  void stage();
  void encrypt_staged();
  void run_deferred() override { encrypt_staged(); }
  void fail(TlsFailure why);
  // Hands what OpenSSL wrote to the socket's send queue.
  void flush_lower();

  Transport& lower_;
  FlushList& flush_list_;
  std::shared_ptr<const TlsContext> ctx_;
  TlsIo io_;
  std::unique_ptr<Session> inner_;
  State state_ = State::kHandshake;
  bool draining_ = false;
  bool closing_ = false;      // close_notify queued: no more reads or writes
  std::string plain_out_;     // write_buffer(): plaintext not yet encrypted, under a record
};

}  // namespace weir::proxy
