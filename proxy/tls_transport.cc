#include "proxy/tls_transport.h"

#include <openssl/err.h>

#include <openssl/x509.h>

#include "proxy/protocol_select.h"
#include "proxy/worker.h"

namespace weir::proxy {

namespace {
// Plaintext handed to the inner session per call: several TLS records' worth.
constexpr size_t kPlainChunk = 64 * 1024;
// The most plaintext one TLS record carries: staged output this large is encrypted at once.
constexpr size_t kRecordPlain = 16 * 1024;
}  // namespace

TlsTransport::TlsTransport(Transport& lower, std::shared_ptr<const TlsContext> ctx)
    : lower_(lower), flush_list_(lower.worker().flush_list()), ctx_(std::move(ctx)) {
  if (!io_.init(ctx_->new_ssl(), &lower_.write_buffer())) {
    state_ = State::kClosed;
    lower_.abort();
    return;
  }
  SSL_set_accept_state(io_.ssl());
  lower_.set_deadline(ctx_->handshake_timeout_ms());
}

TlsTransport::~TlsTransport() {
  inner_.reset();
  flush_list_.cancel(this);
}

void TlsTransport::flush_lower() {
  if (io_.take_output()) lower_.commit();
}

void TlsTransport::on_read(const char* data, size_t len) {
  if (state_ == State::kClosed) return;
  io_.set_input(data, len);
  if (state_ == State::kHandshake) handshake();
  if (state_ == State::kOpen) read_plaintext();
  io_.clear_input();  // the socket's read buffer is reused after this call
}

void TlsTransport::handshake() {
  const int rc = io_.handshake();
  flush_lower();  // the server flight, or an alert
  switch (rc) {
    case SSL_ERROR_NONE:
      established();
      return;
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
      return;
    case SSL_ERROR_SSL:
      fail(TlsFailure::kProtocol);
      return;
    case SSL_ERROR_SYSCALL:
    case SSL_ERROR_ZERO_RETURN:
      fail(TlsFailure::kPeerClosed);
      return;
    default:
      fail(TlsFailure::kOther);
  }
}

void TlsTransport::established() {
  state_ = State::kOpen;
  worker().stats().tls_handshakes.inc();
  lower_.clear_deadline();
  // With client_verify = "optional" a client may send none; a sent one passed verification.
  if (X509* peer = SSL_get0_peer_certificate(io_.ssl())) {
    if (BIO* mem = BIO_new(BIO_s_mem())) {
      X509_NAME_print_ex(mem, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253);
      char* text = nullptr;
      long n = BIO_get_mem_data(mem, &text);
      if (n > 0) set_client_subject(std::string(text, static_cast<size_t>(n)));
      BIO_free(mem);
    }
  }
  const unsigned char* alpn = nullptr;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(io_.ssl(), &alpn, &alpn_len);
  const bool h2 = (alpn_len == 2 && alpn[0] == 'h' && alpn[1] == '2') || !ctx_->http1();
  inner_ = make_http_session(*this, h2);
  if (draining_) inner_->start_drain();
}

void TlsTransport::read_plaintext() {
  // Everything decrypted from this socket read goes to the session now, even if it asks to
  // pause: what OpenSSL holds would otherwise wait for a read that may never come. The amount
  // is bounded by one socket read, as on a plain connection.
  static thread_local char buf[kPlainChunk];
  for (;;) {
    int err = SSL_ERROR_NONE;
    const size_t filled = io_.read(buf, sizeof buf, &err);
    flush_lower();  // TLS 1.3 tickets, key updates, alerts
    if (filled > 0 && state_ == State::kOpen && !closing_) inner_->on_read(buf, filled);
    if (state_ != State::kOpen || closing_) return;
    if (io_.retry_pending()) {
      const bool ok = io_.retry();
      flush_lower();
      if (!ok) {
        lower_.abort();
        return;
      }
    }
    switch (err) {
      case SSL_ERROR_NONE:
        continue;  // the buffer filled up; SSL_pending may hold more
      case SSL_ERROR_WANT_READ:
      case SSL_ERROR_WANT_WRITE:
        return;
      case SSL_ERROR_ZERO_RETURN:
        inner_->on_eof();  // close_notify: a clean end of the client's stream
        return;
      default:
        lower_.abort();
        return;
    }
  }
}

void TlsTransport::encrypt(const char* data, size_t len) {
  if (state_ != State::kOpen || closing_) return;
  const bool ok = io_.write(data, len);
  flush_lower();
  if (!ok) lower_.abort();
}

void TlsTransport::write(std::string_view data) {
  plain_out_.append(data);
  stage();
}

void TlsTransport::commit() { stage(); }

void TlsTransport::stage() {
  if (state_ != State::kOpen || closing_) {
    plain_out_.clear();
  } else if (plain_out_.size() >= kRecordPlain) {
    encrypt_staged();
  } else if (!plain_out_.empty()) {
    flush_list_.defer(this);
  }
}

void TlsTransport::encrypt_staged() {
  if (plain_out_.empty()) return;
  encrypt(plain_out_.data(), plain_out_.size());
  plain_out_.clear();
}

void TlsTransport::close_after_flush(bool linger) {
  if (state_ == State::kOpen && !closing_) {
    encrypt_staged();  // the response goes before close_notify
    io_.shutdown();  // queues close_notify after the response
    flush_lower();
  }
  closing_ = true;
  lower_.close_after_flush(linger);
}

void TlsTransport::fail(TlsFailure why) {
  worker().stats().tls_handshake_failures[static_cast<int>(why)].inc();
  state_ = State::kClosed;
  lower_.close_after_flush(false);  // still sends the alert OpenSSL queued
}

void TlsTransport::on_eof() {
  if (state_ == State::kHandshake) {
    fail(TlsFailure::kPeerClosed);
  } else if (state_ == State::kOpen) {
    inner_->on_eof();
  }
}

void TlsTransport::on_drain() {
  if (state_ == State::kOpen) inner_->on_drain();
}

void TlsTransport::on_timeout() {
  if (state_ == State::kHandshake) {
    fail(TlsFailure::kTimeout);
  } else if (state_ == State::kOpen) {
    inner_->on_timeout();
  }
}

void TlsTransport::start_drain() {
  draining_ = true;
  // A handshake in progress (perhaps of a connection accepted from the backlog at shutdown)
  // goes on under its timeout; its session starts draining once it exists.
  if (state_ == State::kOpen) {
    inner_->start_drain();
  }
}

void TlsTransport::on_close() {
  const bool had_session = state_ == State::kOpen;
  state_ = State::kClosed;
  if (had_session) inner_->on_close();
}

}  // namespace weir::proxy
