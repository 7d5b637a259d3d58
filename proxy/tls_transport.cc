#include "proxy/tls_transport.h"

#include <openssl/err.h>

#include <algorithm>
#include <climits>

#include "proxy/protocol_select.h"
#include "proxy/worker.h"

namespace weir::proxy {

namespace {
// Plaintext handed to the inner session per call: several TLS records' worth.
constexpr size_t kPlainChunk = 64 * 1024;
}  // namespace

BIO_METHOD* TlsTransport::bio_method() {
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

int TlsTransport::bio_write(BIO* b, const char* data, int len) {
  auto* self = static_cast<TlsTransport*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  self->lower_.write_buffer().append(data, static_cast<size_t>(len));
  self->wrote_ = true;
  return len;
}

int TlsTransport::bio_read(BIO* b, char* data, int len) {
  auto* self = static_cast<TlsTransport*>(BIO_get_data(b));
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

long TlsTransport::bio_ctrl(BIO*, int cmd, long, void*) { return cmd == BIO_CTRL_FLUSH ? 1 : 0; }

TlsTransport::TlsTransport(Transport& lower, std::shared_ptr<const TlsContext> ctx)
    : lower_(lower), ctx_(std::move(ctx)) {
  ssl_ = ctx_->new_ssl();
  BIO* bio = ssl_ ? BIO_new(bio_method()) : nullptr;
  if (!bio) {
    state_ = State::kClosed;
    lower_.abort();
    return;
  }
  BIO_set_data(bio, this);
  SSL_set_bio(ssl_, bio, bio);
  SSL_set_accept_state(ssl_);
  lower_.set_deadline(ctx_->handshake_timeout_ms());
}

TlsTransport::~TlsTransport() {
  inner_.reset();
  if (ssl_) SSL_free(ssl_);
}

void TlsTransport::flush_lower() {
  if (wrote_) {
    wrote_ = false;
    lower_.commit();
  }
}

void TlsTransport::on_read(const char* data, size_t len) {
  if (state_ == State::kClosed) return;
  in_ = data;
  in_len_ = len;
  if (state_ == State::kHandshake) handshake();
  if (state_ == State::kOpen) read_plaintext();
  in_len_ = 0;  // the socket's read buffer is reused after this call
  in_ = nullptr;
}

void TlsTransport::handshake() {
  ERR_clear_error();
  int rc = SSL_do_handshake(ssl_);
  flush_lower();  // the server flight, or an alert
  if (rc == 1) {
    established();
    return;
  }
  switch (SSL_get_error(ssl_, rc)) {
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
  const unsigned char* alpn = nullptr;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(ssl_, &alpn, &alpn_len);
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
    size_t filled = 0;
    int err = SSL_ERROR_NONE;
    while (filled < sizeof buf) {
      ERR_clear_error();
      int n = SSL_read(ssl_, buf + filled, static_cast<int>(sizeof buf - filled));
      if (n > 0) {
        filled += static_cast<size_t>(n);
        continue;
      }
      err = SSL_get_error(ssl_, n);
      break;
    }
    flush_lower();  // TLS 1.3 tickets, key updates, alerts
    if (filled > 0 && state_ == State::kOpen && !closing_) inner_->on_read(buf, filled);
    if (state_ != State::kOpen || closing_) return;
    if (!retry_.empty()) {
      std::string pending;
      pending.swap(retry_);
      encrypt(pending.data(), pending.size());
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
  if (!retry_.empty()) {
    retry_.append(data, len);  // keep order behind the write that must be retried
    return;
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
      // SSL_write must be retried with the same bytes and length; that happens after the next
      // read, in order before anything written meanwhile.
      retry_.assign(data, len);
      break;
    }
    flush_lower();
    lower_.abort();
    return;
  }
  flush_lower();
}

void TlsTransport::write(std::string_view data) { encrypt(data.data(), data.size()); }

void TlsTransport::commit() {
  encrypt(plain_out_.data(), plain_out_.size());
  plain_out_.clear();
}

void TlsTransport::close_after_flush(bool linger) {
  if (state_ == State::kOpen && retry_.empty() && !closing_) {
    ERR_clear_error();
    SSL_shutdown(ssl_);  // queues close_notify after the response
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
