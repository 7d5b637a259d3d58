#include "proxy/upstream_pool.h"

#include <algorithm>
#include <cstdio>

#include "proxy/exchange.h"
#include "proxy/log.h"
#include "proxy/upstream_h2.h"
#include "proxy/upstream_tls.h"
#include "proxy/worker.h"

namespace weir::proxy {

namespace {
UpstreamConn* from_parser(llhttp_t* p) { return static_cast<UpstreamConn*>(p->data); }
}  // namespace

const llhttp_settings_t* UpstreamConn::settings() {
  static const llhttp_settings_t s = [] {
    llhttp_settings_t st;
    llhttp_settings_init(&st);
    st.on_message_begin = on_message_begin;
    st.on_header_field = on_header_field;
    st.on_header_value = on_header_value;
    st.on_headers_complete = on_headers_complete;
    st.on_body = on_body;
    st.on_message_complete = on_message_complete;
    return st;
  }();
  return &s;
}

UpstreamConn::UpstreamConn(Worker& worker, uint32_t endpoint_id)
    : worker_(worker), endpoint_id_(endpoint_id) {
  llhttp_init(&parser_, HTTP_RESPONSE, settings());
  parser_.data = this;
}

bool UpstreamConn::use_tls(std::shared_ptr<const routing::OpaqueTls> ctx,
                           const routing::Endpoint& ep) {
  tls_ctx_ = static_cast<const UpstreamTlsContext*>(ctx.get());
  tls_hold_ = std::move(ctx);
  address_ = ep.address;
  if (!tls_.init(tls_ctx_->new_ssl(ep.host), &out_.buffer())) return false;
  SSL_set_app_data(tls_.ssl(), this);
  if (SSL_SESSION* s = worker_.pool().session_for(endpoint_id_, tls_ctx_)) {
    SSL_set_session(tls_.ssl(), s);
  }
  return true;
}

bool UpstreamConn::resumed() const { return tls_.active() && SSL_session_reused(tls_.ssl()); }

int UpstreamConn::on_new_session(SSL* ssl, SSL_SESSION* session) {
  auto* self = static_cast<UpstreamConn*>(SSL_get_app_data(ssl));
  if (!self || self->state_ == State::kClosed) return 0;
  // A copy: OpenSSL marks the connection's own session unresumable when the connection ends
  // without close_notify, as pooled connections do.
  if (SSL_SESSION* copy = SSL_SESSION_dup(session)) {
    self->worker_.pool().store_session(self->endpoint_id_, self->tls_hold_, copy);
  }
  return 0;
}

int UpstreamConn::connect(const sockaddr* addr) {
  uv_tcp_init(worker_.loop(), &tcp_);
  tcp_.data = this;
  deadline_.init(worker_.loop(), this, on_deadline);
  open_handles_ = 2;
  out_.init(reinterpret_cast<uv_stream_t*>(&tcp_), &worker_.flush_list(), this);
  out_.hold();
  uv_tcp_nodelay(&tcp_, 1);
  connect_req_.data = this;
  connect_start_ns_ = uv_hrtime();
  int rc = uv_tcp_connect(&connect_req_, &tcp_, addr, on_connect);
  if (rc < 0) return rc;
  deadline_.set(worker_.settings().connect_timeout_ms);
  worker_.stats().upstream_connects.inc();
  return 0;
}

void UpstreamConn::write(std::string_view data) {
  if (!tls_.active()) {
    out_.append(data);
  } else if (!connected_) {
    tls_pending_.append(data);
  } else {
    tls_encrypt(data.data(), data.size());
  }
}

void UpstreamConn::tls_encrypt(const char* data, size_t len) {
  if (state_ == State::kClosed || broken_) return;
  const bool ok = tls_.write(data, len);
  if (tls_.take_output()) out_.mark_dirty();
  if (!ok) {
    // Reported from the loop, never from inside the caller's write.
    broken_ = true;
    deadline_.set(0);
  }
}

void UpstreamConn::attach(UpstreamHandler* h, bool head_request) {
  handler_ = h;
  head_request_ = head_request;
  request_done_ = false;
  got_bytes_ = head_seen_ = interim_ = message_done_ = false;
  if (state_ == State::kIdle) {
    state_ = State::kBusy;
    reused_ = true;
    deadline_.clear();
  }
}

void UpstreamConn::request_complete() {
  request_done_ = true;
  if (connected_ && !got_bytes_) deadline_.set(worker_.settings().upstream_response_timeout_ms);
}

void UpstreamConn::pause_reading() {
  if (reading_ && state_ != State::kClosed) {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
    reading_ = false;
  }
}

void UpstreamConn::resume_reading() {
  if (!reading_ && tcp_up_ && state_ != State::kClosed) {
    uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), on_alloc, on_read);
    reading_ = true;
  }
}

void UpstreamConn::close() { close_as(UpstreamError::kReset); }

void UpstreamConn::close_as(UpstreamError e) {
  if (state_ == State::kClosed) return;
  if (state_ == State::kIdle) worker_.pool().forget_idle(this);
  if (h2_) worker_.pool().forget_h2(this);
  state_ = State::kClosed;
  handler_ = nullptr;
  out_.close();
  deadline_.stop();
  // Streams hear of it after the connection is out of the pool, so a retry cannot pick it.
  std::unique_ptr<UpstreamH2> h2 = std::move(h2_);
  if (open_handles_ == 0) {  // connect() never ran
    delete this;
  } else {
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), on_tcp_close);
    deadline_.close(on_handle_closed);
  }
  if (h2) h2->fail_all(e);
}

void UpstreamConn::release(bool reusable) { worker_.pool().release(this, reusable); }

void UpstreamConn::h2_rearm() {
  if (!h2_ || state_ != State::kBusy) return;
  if (h2_->active() == 0) {
    deadline_.set(worker_.settings().upstream_idle_timeout_ms);
    return;
  }
  const uint64_t next = h2_->next_deadline();
  const uint64_t now = uv_now(worker_.loop());
  if (next == 0) {
    deadline_.clear();  // every stream is still uploading or paused
  } else {
    deadline_.set(next > now ? next - now : 0);
  }
}

void UpstreamConn::h2_limit_seen(uint32_t max_streams) {
  auto& limits = worker_.pool().h2_limits_;
  if (endpoint_id_ >= limits.size()) limits.resize(endpoint_id_ + 1, UpstreamPool::kH2DefaultStreams);
  limits[endpoint_id_] = max_streams;
}

void UpstreamConn::on_tcp_close(uv_handle_t* h) {
  on_handle_closed(h->data);
}

void UpstreamConn::on_handle_closed(void* p) {
  auto* self = static_cast<UpstreamConn*>(p);
  if (--self->open_handles_ == 0) delete self;
}

void UpstreamConn::fail(UpstreamError e) {
  UpstreamHandler* h = handler_;
  std::string unsent;
  if (tls_.active()) {
    // Once encrypted, request bytes cannot be told apart; before the handshake none were sent.
    if (!connected_) unsent.swap(tls_pending_);
  } else if (out_.bytes_written() == 0) {
    unsent = out_.take_unsent();
  }
  if (e == UpstreamError::kConnect) worker_.stats().upstream_connect_failures.inc();
  close_as(e);
  if (h) h->on_upstream_error(*this, e, std::move(unsent));
}

void UpstreamConn::on_connect(uv_connect_t* req, int status) {
  auto* self = static_cast<UpstreamConn*>(req->data);
  if (status == UV_ECANCELED || self->state_ == State::kClosed) return;
  if (status < 0) {
    self->fail(UpstreamError::kConnect);
    return;
  }
  self->tcp_up_ = true;
  self->out_.release_hold();
  self->resume_reading();
  if (self->tls_.active()) {
    // The handshake runs under the connect timeout, which starts again for it.
    self->deadline_.set(self->worker_.settings().connect_timeout_ms);
    self->tls_handshake();
  } else {
    self->ready();
  }
}

void UpstreamConn::ready() {
  connected_ = true;
  connect_us_ = static_cast<int64_t>((uv_hrtime() - connect_start_ns_) / 1000);
  state_ = State::kBusy;
  deadline_.clear();
  if (request_done_) deadline_.set(worker_.settings().upstream_response_timeout_ms);
  if (h2_) {
    h2_->flush();  // the preface, and the streams opened while connecting
    h2_rearm();
  }
}

void UpstreamConn::tls_handshake() {
  const int rc = tls_.handshake();
  if (tls_.take_output()) out_.mark_dirty();
  if (rc == SSL_ERROR_WANT_READ || rc == SSL_ERROR_WANT_WRITE) return;
  if (rc != SSL_ERROR_NONE) {
    tls_failed(tls_.last_error());
    return;
  }
  if (!tls_ctx_->alpn_ok(tls_.ssl())) {
    tls_failed("the backend did not select HTTP/2 by ALPN");
    return;
  }
  ready();
  std::string pending;
  pending.swap(tls_pending_);
  if (!pending.empty()) tls_encrypt(pending.data(), pending.size());
}

void UpstreamConn::tls_failed(const std::string& why) {
  worker_.stats().upstream_tls_failures.inc();
  worker_.pool().log_tls_failure("upstream " + address_ + ": TLS handshake failed: " + why);
  fail(UpstreamError::kConnect);
}

void UpstreamConn::on_deadline(void* p) {
  auto* self = static_cast<UpstreamConn*>(p);
  if (self->broken_) {
    self->fail(UpstreamError::kReset);
    return;
  }
  switch (self->state_) {
    case State::kConnecting:
      if (self->tcp_up_) {
        self->tls_failed("timed out");
      } else {
        self->fail(UpstreamError::kConnect);
      }
      break;
    case State::kIdle:
      self->close();
      break;
    case State::kBusy:
      if (self->h2_ && self->h2_->active() == 0) {
        self->close();  // an idle HTTP/2 connection
        break;
      }
      if (self->h2_) {
        // Only the overdue streams fail; the others go on on this connection.
        self->h2_->expire(uv_now(self->worker_.loop()));
        self->h2_rearm();
        break;
      }
      self->fail(self->head_seen_ ? UpstreamError::kBodyTimeout : UpstreamError::kResponseTimeout);
      break;
    case State::kClosed:
      break;
  }
}

void UpstreamConn::on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* self = static_cast<UpstreamConn*>(h->data);
  *buf = uv_buf_init(self->worker_.read_buffer(), Worker::kReadBufferSize);
}

void UpstreamConn::on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<UpstreamConn*>(s->data);
  if (nread == 0 || self->state_ == State::kClosed) return;
  self->handle_read(nread, buf->base);
}

void UpstreamConn::handle_read(ssize_t nread, const char* data) {
  if (!tls_.active()) {
    handle_plain(nread, data);
  } else if (nread < 0 && !connected_) {
    tls_failed("the backend closed the connection");
  } else if (nread < 0) {
    handle_plain(nread, data);
  } else {
    handle_tls_read(data, static_cast<size_t>(nread));
  }
}

void UpstreamConn::handle_tls_read(const char* data, size_t len) {
  tls_.set_input(data, len);
  if (!connected_) {
    tls_handshake();
    if (!connected_ || state_ == State::kClosed) {
      tls_.clear_input();
      return;
    }
  }
  // Everything one socket read decrypts to is parsed at once, as on a plain connection (so a
  // response followed by stray bytes is still seen as unclean).
  static thread_local std::string plain;
  plain.clear();
  int err = SSL_ERROR_NONE;
  char buf[16 * 1024];
  while (err == SSL_ERROR_NONE) {
    size_t n = tls_.read(buf, sizeof buf, &err);
    plain.append(buf, n);
  }
  tls_.clear_input();
  if (tls_.take_output()) out_.mark_dirty();  // key updates, alerts
  if (!plain.empty()) {
    std::string chunk;
    chunk.swap(plain);  // the parser's callbacks may start another read on this thread
    handle_plain(static_cast<ssize_t>(chunk.size()), chunk.data());
    if (state_ == State::kClosed) return;
  }
  if (tls_.retry_pending()) {
    const bool ok = tls_.retry();
    if (tls_.take_output()) out_.mark_dirty();
    if (!ok) err = SSL_ERROR_SSL;
  }
  if (err == SSL_ERROR_ZERO_RETURN) {
    handle_plain(UV_EOF, nullptr);  // close_notify: the backend's clean end of stream
  } else if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
    handle_plain(UV_ECONNRESET, nullptr);
  }
}

void UpstreamConn::handle_plain(ssize_t nread, const char* data) {
  if (h2_) {
    if (nread < 0) {
      fail(UpstreamError::kReset);
      return;
    }
    if (!h2_->on_read(data, static_cast<size_t>(nread)) && state_ != State::kClosed) {
      fail(UpstreamError::kBadResponse);
    }
    return;
  }
  if (state_ == State::kIdle) {
    // A pooled connection spoke or closed while no request was on it: unusable.
    close();
    return;
  }
  if (nread < 0) {
    if (nread == UV_EOF && head_seen_ && llhttp_message_needs_eof(&parser_)) {
      if (llhttp_finish(&parser_) == HPE_OK && message_done_) {
        keep_alive_ = false;
        finish_response(false);
        return;
      }
    }
    fail(UpstreamError::kReset);
    return;
  }
  if (!handler_) {
    close();
    return;
  }
  got_bytes_ = true;
  if (deadline_.active() || head_seen_) {
    deadline_.set(head_seen_ ? worker_.settings().body_timeout_ms
                             : worker_.settings().upstream_response_timeout_ms);
  }
  const size_t n = static_cast<size_t>(nread);
  llhttp_errno_t err = llhttp_execute(&parser_, data, n);
  if (state_ == State::kClosed) return;  // the handler closed us from a callback
  if (err == HPE_PAUSED) {
    size_t used = static_cast<size_t>(llhttp_get_error_pos(&parser_) - data);
    llhttp_resume(&parser_);
    // Bytes after a complete response that nobody asked for: never reuse this connection.
    finish_response(used == n);
    return;
  }
  if (err != HPE_OK) fail(UpstreamError::kBadResponse);
}

void UpstreamConn::finish_response(bool clean) {
  UpstreamHandler* h = handler_;
  handler_ = nullptr;
  deadline_.clear();
  bool reusable = clean && keep_alive_ && request_done_;
  fields_.clear();
  for (size_t i = trailer_start_; i + 1 < spans_.size(); i += 2) {
    fields_.push_back({std::string_view(arena_).substr(spans_[i].first, spans_[i].second),
                       std::string_view(arena_).substr(spans_[i + 1].first, spans_[i + 1].second)});
  }
  if (!reusable) {
    // Closed before the handler hears of it, so the handler may not hand it back to the pool.
    close();
  }
  if (h) h->on_upstream_done(*this, fields_);
}

int UpstreamConn::on_message_begin(llhttp_t* p) {
  auto* self = from_parser(p);
  self->arena_.clear();
  self->spans_.clear();
  self->trailer_start_ = 0;
  self->interim_ = false;
  return 0;
}

int UpstreamConn::on_header_field(llhttp_t* p, const char* at, size_t len) {
  auto* self = from_parser(p);
  // spans_ alternates name, value: an even count means a new name starts here; an odd one, a
  // name split across two reads continues.
  if (self->spans_.size() % 2 == 0) {
    self->spans_.emplace_back(static_cast<uint32_t>(self->arena_.size()), 0);
  }
  self->arena_.append(at, len);
  self->spans_.back().second += static_cast<uint32_t>(len);
  return 0;
}

int UpstreamConn::on_header_value(llhttp_t* p, const char* at, size_t len) {
  auto* self = from_parser(p);
  if (self->spans_.size() % 2 == 1) {
    self->spans_.emplace_back(static_cast<uint32_t>(self->arena_.size()), 0);
  }
  self->arena_.append(at, len);
  self->spans_.back().second += static_cast<uint32_t>(len);
  return 0;
}

int UpstreamConn::on_headers_complete(llhttp_t* p) {
  auto* self = from_parser(p);
  const int status = p->status_code;
  if (status < 200) {
    // 1xx interim responses are consumed here (weir answers Expect itself); 101 is never
    // solicited because Upgrade is not forwarded.
    if (status == 101) return -1;
    self->interim_ = true;
    return 0;
  }
  self->head_seen_ = true;
  self->fields_.clear();
  for (size_t i = 0; i + 1 < self->spans_.size(); i += 2) {
    self->fields_.push_back(
        {std::string_view(self->arena_).substr(self->spans_[i].first, self->spans_[i].second),
         std::string_view(self->arena_).substr(self->spans_[i + 1].first,
                                               self->spans_[i + 1].second)});
  }
  self->trailer_start_ = self->spans_.size();
  UpstreamResponseHead head;
  head.status = status;
  head.version_minor = p->http_minor;
  head.headers = self->fields_;
  head.chunked = (p->flags & F_CHUNKED) != 0;
  head.has_length = (p->flags & F_CONTENT_LENGTH) != 0;
  head.content_length = p->content_length;
  head.no_body = self->head_request_ || status == 204 || status == 304;
  head.until_close = !head.no_body && !head.chunked && !head.has_length;
  self->keep_alive_ = llhttp_should_keep_alive(p) != 0;
  if (self->handler_) self->handler_->on_upstream_head(*self, head);
  if (self->state_ == State::kClosed) return -1;
  return head.no_body ? 1 : 0;
}

int UpstreamConn::on_body(llhttp_t* p, const char* at, size_t len) {
  auto* self = from_parser(p);
  if (self->handler_) self->handler_->on_upstream_body(*self, at, len);
  return self->state_ == State::kClosed ? -1 : 0;
}

int UpstreamConn::on_message_complete(llhttp_t* p) {
  auto* self = from_parser(p);
  if (self->interim_) {
    self->interim_ = false;
    return 0;
  }
  self->message_done_ = true;
  self->keep_alive_ = self->keep_alive_ && llhttp_should_keep_alive(p) != 0;
  return HPE_PAUSED;
}

void UpstreamConn::on_out_drained() {
  if (handler_) handler_->on_upstream_drained(*this);
}

void UpstreamConn::on_out_error(int) { fail(UpstreamError::kReset); }

void UpstreamConn::make_idle() {
  state_ = State::kIdle;
  handler_ = nullptr;
  reused_ = true;
  connect_us_ = -1;
  resume_reading();
  deadline_.set(worker_.settings().upstream_idle_timeout_ms);
}

UpstreamPool::~UpstreamPool() {
  for (auto& c : sessions_) {
    if (c.session) SSL_SESSION_free(c.session);
  }
}

UpstreamStream* UpstreamPool::acquire(const routing::Version& version,
                                      const routing::Endpoint& ep, UpstreamHandler* h,
                                      bool head_request, int* error) {
  if (version.h2) {
    if (ep.id < h2_.size()) {
      for (UpstreamConn* c : h2_[ep.id]) {
        if (!c->h2_->has_capacity()) continue;
        worker_.stats().upstream_reused.inc();
        return c->h2_->open(h, head_request);
      }
    }
    auto* c = new UpstreamConn(worker_, ep.id);
    if (version.tls && !c->use_tls(version.tls, ep)) {
      *error = UV_ENOMEM;
      c->close();
      return nullptr;
    }
    c->h2_ = std::make_unique<UpstreamH2>(
        *c, ep.id < h2_limits_.size() ? h2_limits_[ep.id] : kH2DefaultStreams);
    if (int rc = c->connect(reinterpret_cast<const sockaddr*>(&ep.addr)); rc < 0) {
      *error = rc;
      c->close();
      return nullptr;
    }
    if (ep.id >= h2_.size()) h2_.resize(ep.id + 1);
    h2_[ep.id].push_back(c);
    return c->h2_->open(h, head_request);
  }
  return acquire_as(ep.id, reinterpret_cast<const sockaddr*>(&ep.addr),
                    version.tls ? &version.tls : nullptr, &ep, h, head_request, error);
}

UpstreamConn* UpstreamPool::acquire(uint32_t endpoint_id, const sockaddr* addr,
                                    UpstreamHandler* h, bool head_request, int* error) {
  return acquire_as(endpoint_id, addr, nullptr, nullptr, h, head_request, error);
}

SSL_SESSION* UpstreamPool::session_for(uint32_t endpoint_id, const routing::OpaqueTls* ctx) const {
  if (endpoint_id >= sessions_.size() || sessions_[endpoint_id].ctx.get() != ctx) return nullptr;
  return sessions_[endpoint_id].session;
}

void UpstreamPool::store_session(uint32_t endpoint_id,
                                 std::shared_ptr<const routing::OpaqueTls> ctx,
                                 SSL_SESSION* session) {
  if (endpoint_id >= sessions_.size()) sessions_.resize(endpoint_id + 1);
  CachedSession& c = sessions_[endpoint_id];
  if (c.session) SSL_SESSION_free(c.session);
  c.ctx = std::move(ctx);
  c.session = session;
}

void UpstreamPool::log_tls_failure(const std::string& what) {
  const uint64_t now = worker_.now_ms();
  if (tls_log_ms_ != 0 && now - tls_log_ms_ < 1000) {
    ++tls_log_suppressed_;
    return;
  }
  tls_log_ms_ = std::max<uint64_t>(now, 1);
  if (tls_log_suppressed_ > 0) {
    log(LogLevel::kWarn, "%s (and %llu more TLS failures in the last second)", what.c_str(),
        static_cast<unsigned long long>(tls_log_suppressed_));
    tls_log_suppressed_ = 0;
  } else {
    log(LogLevel::kWarn, "%s", what.c_str());
  }
}

void UpstreamPool::log_connect_failure(const routing::Endpoint& ep, std::string_view service,
                                       std::string_view version) {
  if (ep.id >= connect_log_.size()) connect_log_.resize(ep.id + 1);
  LogGate& g = connect_log_[ep.id];
  const uint64_t now = worker_.now_ms();
  if (g.last_ms != 0 && now - g.last_ms < 1000) {
    ++g.suppressed;
    return;
  }
  g.last_ms = std::max<uint64_t>(now, 1);
  const int sn = static_cast<int>(service.size()), vn = static_cast<int>(version.size());
  if (g.suppressed > 0) {
    log(LogLevel::kWarn,
        "upstream %s (service %.*s version %.*s): connect failed, answered 502 (and %llu more "
        "in the last second)",
        ep.address.c_str(), sn, service.data(), vn, version.data(),
        static_cast<unsigned long long>(g.suppressed));
    g.suppressed = 0;
  } else {
    log(LogLevel::kWarn, "upstream %s (service %.*s version %.*s): connect failed, answered 502",
        ep.address.c_str(), sn, service.data(), vn, version.data());
  }
}

UpstreamConn* UpstreamPool::acquire_as(uint32_t endpoint_id, const sockaddr* addr,
                                       const std::shared_ptr<const routing::OpaqueTls>* tls,
                                       const routing::Endpoint* ep, UpstreamHandler* h,
                                       bool head_request, int* error) {
  if (endpoint_id < idle_.size() && !idle_[endpoint_id].empty()) {
    UpstreamConn* c = idle_[endpoint_id].back();
    idle_[endpoint_id].pop_back();
    c->attach(h, head_request);
    worker_.stats().upstream_reused.inc();
    return c;
  }
  auto* c = new UpstreamConn(worker_, endpoint_id);
  if (tls && !c->use_tls(*tls, *ep)) {
    *error = UV_ENOMEM;
    c->close();
    return nullptr;
  }
  int rc = c->connect(addr);
  if (rc < 0) {
    *error = rc;
    c->close();
    return nullptr;
  }
  c->attach(h, head_request);
  return c;
}

void UpstreamPool::release(UpstreamConn* c, bool reusable) {
  if (c->state_ == UpstreamConn::State::kClosed) return;
  const uint32_t id = c->endpoint_id();
  if (!reusable || worker_.draining() || worker_.settings().upstream_max_idle == 0 ||
      !worker_.endpoint_live(id)) {
    c->close();
    return;
  }
  if (id >= idle_.size()) idle_.resize(id + 1);
  auto& list = idle_[id];
  if (list.size() >= worker_.settings().upstream_max_idle) {
    // Keep the warmest: drop the least recently used.
    UpstreamConn* oldest = list.front();
    oldest->close();
  }
  c->make_idle();
  list.push_back(c);
}

void UpstreamPool::forget_h2(UpstreamConn* c) {
  if (c->endpoint_id() >= h2_.size()) return;
  auto& list = h2_[c->endpoint_id()];
  list.erase(std::remove(list.begin(), list.end(), c), list.end());
}

void UpstreamPool::forget_idle(UpstreamConn* c) {
  auto& list = idle_[c->endpoint_id()];
  auto it = std::find(list.begin(), list.end(), c);
  if (it != list.end()) list.erase(it);
}

void UpstreamPool::close_all() {
  for (auto& list : idle_) {
    while (!list.empty()) list.back()->close();
  }
  for (auto& list : h2_) {
    while (!list.empty()) list.back()->close();
  }
}

void UpstreamPool::close_idle_except(const std::vector<bool>& live) {
  for (size_t id = 0; id < idle_.size(); ++id) {
    if (id < live.size() && live[id]) continue;
    while (!idle_[id].empty()) idle_[id].back()->close();
  }
  // HTTP/2 connections without streams to endpoints no longer used go too.
  for (size_t id = 0; id < h2_.size(); ++id) {
    if (id < live.size() && live[id]) continue;
    std::vector<UpstreamConn*> quiet;
    for (UpstreamConn* c : h2_[id]) {
      if (c->h2_->active() == 0) quiet.push_back(c);
    }
    for (UpstreamConn* c : quiet) c->close();
  }
}

size_t UpstreamPool::idle_count() const {
  size_t n = 0;
  for (const auto& list : idle_) n += list.size();
  return n;
}

}  // namespace weir::proxy
