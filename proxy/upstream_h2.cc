#include "proxy/upstream_h2.h"

#include <algorithm>
#include <cstring>

#include "proxy/worker.h"

namespace weir::proxy {

namespace {

// Streams weir opens on one backend connection at most, even if the backend allows more.
constexpr uint32_t kMaxStreamsPerConn = 100;
static_assert(kMaxStreamsPerConn == UpstreamPool::kH2DefaultStreams);
constexpr uint32_t kMaxResponseHeaderBytes = 256 * 1024;
constexpr int32_t kStreamWindow = 256 * 1024;
constexpr int32_t kConnectionWindow = 4 * 1024 * 1024;

std::string_view sv(const uint8_t* p, size_t n) {
  return std::string_view(reinterpret_cast<const char*>(p), n);
}

}  // namespace

nghttp2_nv h2_nv(const std::string& name, const std::string& value) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                    value.size(), NGHTTP2_NV_FLAG_NONE};
}

nghttp2_session* new_h2_client(const nghttp2_session_callbacks* cbs, void* user) {
  static nghttp2_option* const opt = [] {
    nghttp2_option* o = nullptr;
    nghttp2_option_new(&o);
    nghttp2_option_set_no_closed_streams(o, 1);
    // Response DATA is acknowledged as the client side takes it (see H2Stream::paused_).
    nghttp2_option_set_no_auto_window_update(o, 1);
    nghttp2_option_set_max_continuations(o, 8);
    nghttp2_option_set_max_outbound_ack(o, 1000);
    nghttp2_option_set_max_settings(o, 32);
    return o;
  }();
  nghttp2_session* ng = nullptr;
  if (nghttp2_session_client_new2(&ng, cbs, user, opt) != 0) return nullptr;
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, kMaxResponseHeaderBytes},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow},
  };
  nghttp2_submit_settings(ng, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  nghttp2_session_set_local_window_size(ng, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
  return ng;
}

// --- H2Stream ---------------------------------------------------------------------------------

H2Stream::H2Stream(UpstreamH2& session, UpstreamHandler* handler, bool head_request)
    : s_(session), handler_(handler), head_request_(head_request) {}

uint32_t H2Stream::endpoint_id() const { return s_.conn_.endpoint_id(); }

bool H2Stream::send_head(std::span<const std::pair<std::string, std::string>> fields,
                         bool has_body) {
  std::vector<nghttp2_nv> nva;
  nva.reserve(fields.size());
  for (const auto& [n, v] : fields) nva.push_back(h2_nv(n, v));
  nghttp2_data_provider provider{};
  provider.read_callback = read_body;
  id_ = nghttp2_submit_request(s_.ng_, nullptr, nva.data(), nva.size(),
                               has_body ? &provider : nullptr, nullptr);
  if (id_ < 0) {
    s_.goaway_ = true;  // out of stream ids or memory: this connection takes no more
    return false;
  }
  s_.streams_[id_] = this;
  if (!has_body) request_complete();
  s_.flush();
  return true;
}

void H2Stream::write(std::string_view data) {
  if (finished_ || data.empty()) return;
  body_.append(data);
  if (deferred_ && id_ >= 0) {
    deferred_ = false;
    nghttp2_session_resume_data(s_.ng_, id_);
  }
  s_.flush();
}

void H2Stream::request_complete() {
  request_done_ = true;
  if (!head_seen_ && !finished_) arm(s_.conn_.worker().settings().upstream_response_timeout_ms);
  if (deferred_ && id_ >= 0) {
    deferred_ = false;
    nghttp2_session_resume_data(s_.ng_, id_);
  }
  s_.flush();
}

ssize_t H2Stream::read_body(nghttp2_session*, int32_t id, uint8_t* buf, size_t len,
                            uint32_t* flags, nghttp2_data_source*, void* user) {
  // By id: the stream object may be gone (closed by its exchange) while nghttp2 still asks.
  H2Stream* self = static_cast<UpstreamH2*>(user)->find(id);
  if (!self) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  const size_t avail = self->body_.size() - self->body_off_;
  const size_t n = std::min(avail, len);
  std::memcpy(buf, self->body_.data() + self->body_off_, n);
  self->body_off_ += n;
  // Body progress either way keeps a streaming call's idle deadline away (as for HTTP/1.1).
  if (n > 0 && self->head_seen_) self->body_progress();
  if (self->body_off_ == self->body_.size()) {
    self->body_.clear();
    self->body_off_ = 0;
  }
  if (self->was_congested_ && !self->congested() && self->handler_ && !self->finished_) {
    self->was_congested_ = false;
    self->handler_->on_upstream_drained(*self);
  }
  if (n == 0 && !self->request_done_) {
    self->deferred_ = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  if (self->request_done_ && self->body_off_ == self->body_.size()) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (!self->trailers_.empty()) {
      std::vector<nghttp2_nv> nva;
      for (const auto& [k, v] : self->trailers_) nva.push_back(h2_nv(k, v));
      // The trailing HEADERS ends the stream instead of this DATA frame.
      if (nghttp2_submit_trailer(self->s_.ng_, id, nva.data(), nva.size()) == 0) {
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      }
    }
  }
  return static_cast<ssize_t>(n);
}

void H2Stream::arm(uint32_t ms) {
  const uint64_t at = uv_now(s_.conn_.worker().loop()) + ms;
  const bool earlier = deadline_at_ == 0 || at < deadline_at_;
  deadline_at_ = at;
  // A later deadline needs no timer work: the connection's timer finds it when it fires.
  if (earlier) s_.conn_.h2_rearm();
}

void H2Stream::body_progress() {
  if (paused_ || finished_) return;
  // Only later: no timer work, the connection's timer finds the new deadline when it fires.
  deadline_at_ = uv_now(s_.conn_.worker().loop()) + s_.conn_.worker().settings().body_timeout_ms;
}

void H2Stream::pause_reading() {
  paused_ = true;
  if (head_seen_) deadline_at_ = 0;  // the client holds the body back, not the backend
}

void H2Stream::resume_reading() {
  paused_ = false;
  if (head_seen_ && !finished_) arm(s_.conn_.worker().settings().body_timeout_ms);
  if (unconsumed_ > 0 && id_ >= 0 && s_.streams_.count(id_)) {
    nghttp2_session_consume(s_.ng_, id_, unconsumed_);
    unconsumed_ = 0;
    s_.flush();
  }
}

void H2Stream::close() {
  UpstreamH2& s = s_;
  handler_ = nullptr;
  if (id_ >= 0 && s.streams_.erase(id_) && !(done_ && request_done_)) {
    // Still open on our side (an abandoned exchange, or a response that ended before the
    // upload): the backend may stop.
    nghttp2_submit_rst_stream(s.ng_, NGHTTP2_FLAG_NONE, id_, NGHTTP2_CANCEL);
    s.flush();
  }
  finished_ = true;
  s.forget(this);
}

void H2Stream::deliver_head() {
  views_.clear();
  UpstreamResponseHead head;
  head.status = status_;
  head.version_minor = 1;
  for (const auto& [n, v] : fields_) {
    if (n.starts_with(':')) continue;
    if (n == "content-length") {
      head.has_length = true;
      head.content_length = std::strtoull(v.c_str(), nullptr, 10);
    }
    views_.push_back({n, v});
  }
  head.headers = views_;
  head.no_body = head_request_ || status_ == 204 || status_ == 304;
  head_seen_ = true;
  deadline_at_ = 0;
  if (!paused_) arm(s_.conn_.worker().settings().body_timeout_ms);
  if (handler_) handler_->on_upstream_head(*this, head);
}

void H2Stream::deliver_done() {
  if (finished_) return;
  finished_ = done_ = true;
  // On this stack: the handler releases (and so frees) the stream before it reads them.
  const std::vector<std::pair<std::string, std::string>> trailers = std::move(fields_);
  std::vector<HeaderField> views;
  views.reserve(trailers.size());
  for (const auto& [n, v] : trailers) views.push_back({n, v});
  if (handler_) handler_->on_upstream_done(*this, views);
}

void H2Stream::deliver_error(UpstreamError e) {
  if (finished_) return;
  finished_ = true;
  UpstreamHandler* h = handler_;
  handler_ = nullptr;
  if (h) h->on_upstream_error(*this, e, std::string());
}

// --- UpstreamH2 -------------------------------------------------------------------------------

UpstreamH2::UpstreamH2(UpstreamConn& conn, uint32_t assumed_limit)
    : conn_(conn), assumed_limit_(std::max<uint32_t>(1, assumed_limit)) {
  static nghttp2_session_callbacks* const cbs = [] {
    nghttp2_session_callbacks* c = nullptr;
    nghttp2_session_callbacks_new(&c);
    nghttp2_session_callbacks_set_on_header_callback(c, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(c, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(c, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(c, on_stream_close);
    return c;
  }();
  ng_ = new_h2_client(cbs, this);
}

UpstreamH2::~UpstreamH2() {
  fail_all(UpstreamError::kReset);
  nghttp2_session_del(ng_);
}

bool UpstreamH2::has_capacity() const {
  if (goaway_) return false;
  const uint32_t remote =
      settings_seen_
          ? nghttp2_session_get_remote_settings(ng_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS)
          : assumed_limit_;
  return owned_.size() < std::min(remote, kMaxStreamsPerConn) &&
         nghttp2_session_get_next_stream_id(ng_) < (1u << 30);
}

H2Stream* UpstreamH2::open(UpstreamHandler* h, bool head_request) {
  auto* st = new H2Stream(*this, h, head_request);
  owned_.push_back(st);
  conn_.h2_rearm();  // not idle any more
  return st;
}

void UpstreamH2::forget(H2Stream* st) {
  owned_.erase(std::remove(owned_.begin(), owned_.end(), st), owned_.end());
  delete st;
  conn_.h2_rearm();
}

H2Stream* UpstreamH2::find(int32_t id) {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second;
}

bool UpstreamH2::on_read(const char* data, size_t len) {
  in_recv_ = true;
  ssize_t rc = nghttp2_session_mem_recv(ng_, reinterpret_cast<const uint8_t*>(data), len);
  in_recv_ = false;
  if (rc < 0) return false;
  flush();
  return true;
}

void UpstreamH2::flush() {
  // Never from inside nghttp2's own callbacks; on_read flushes once they are done.
  if (in_flush_ || in_recv_ || !conn_.connected()) return;
  in_flush_ = true;
  for (;;) {
    const uint8_t* data = nullptr;
    ssize_t n = nghttp2_session_mem_send(ng_, &data);
    if (n <= 0) break;
    conn_.write(std::string_view(reinterpret_cast<const char*>(data), static_cast<size_t>(n)));
  }
  in_flush_ = false;
}

uint64_t UpstreamH2::next_deadline() const {
  uint64_t next = 0;
  for (const H2Stream* st : owned_) {
    if (st->deadline_at_ != 0 && !st->finished_ && (next == 0 || st->deadline_at_ < next)) {
      next = st->deadline_at_;
    }
  }
  return next;
}

void UpstreamH2::expire(uint64_t now) {
  std::vector<H2Stream*> due;
  for (H2Stream* st : owned_) {
    if (st->deadline_at_ != 0 && st->deadline_at_ <= now && !st->finished_) due.push_back(st);
  }
  for (H2Stream* st : due) {
    // An earlier stream's handler may have closed this one.
    if (std::find(owned_.begin(), owned_.end(), st) == owned_.end()) continue;
    if (st->id_ >= 0 && streams_.erase(st->id_)) {
      nghttp2_submit_rst_stream(ng_, NGHTTP2_FLAG_NONE, st->id_, NGHTTP2_CANCEL);
    }
    st->deliver_error(st->head_seen_ ? UpstreamError::kBodyTimeout
                                     : UpstreamError::kResponseTimeout);
    forget(st);
  }
  flush();
}

void UpstreamH2::fail_all(UpstreamError e) {
  goaway_ = true;
  streams_.clear();
  std::vector<H2Stream*> all;
  all.swap(owned_);
  for (H2Stream* st : all) st->deliver_error(e);
  for (H2Stream* st : all) delete st;
}

int UpstreamH2::on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                          size_t namelen, const uint8_t* value, size_t valuelen, uint8_t,
                          void* user) {
  auto* self = static_cast<UpstreamH2*>(user);
  H2Stream* st = self->find(frame->hd.stream_id);
  if (!st) return 0;
  const std::string_view n = sv(name, namelen), v = sv(value, valuelen);
  if (n == ":status") {
    st->status_ = 0;
    for (char c : v) st->status_ = st->status_ * 10 + (c - '0');
    return 0;
  }
  st->fields_.emplace_back(std::string(n), std::string(v));
  return 0;
}

int UpstreamH2::on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto* self = static_cast<UpstreamH2*>(user);
  if (frame->hd.type == NGHTTP2_GOAWAY) {
    self->goaway_ = true;
    return 0;
  }
  if (frame->hd.type == NGHTTP2_SETTINGS && !(frame->hd.flags & NGHTTP2_FLAG_ACK)) {
    self->settings_seen_ = true;
    self->conn_.h2_limit_seen(
        nghttp2_session_get_remote_settings(self->ng_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS));
    return 0;
  }
  H2Stream* st = self->find(frame->hd.stream_id);
  if (!st) return 0;
  const bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (frame->hd.type == NGHTTP2_HEADERS) {
    if (!st->head_seen_) {
      if (st->status_ < 200) {
        st->fields_.clear();  // 1xx: the final head follows
        return 0;
      }
      st->deliver_head();
      st = self->find(frame->hd.stream_id);
      if (!st) return 0;  // the handler closed the stream
      st->fields_.clear();
    }
    if (end) st->deliver_done();
  } else if (frame->hd.type == NGHTTP2_DATA && end) {
    st->fields_.clear();
    st->deliver_done();
  }
  return 0;
}

int UpstreamH2::on_data_chunk(nghttp2_session*, uint8_t, int32_t id, const uint8_t* data,
                              size_t len, void* user) {
  auto* self = static_cast<UpstreamH2*>(user);
  H2Stream* st = self->find(id);
  if (!st || !st->handler_ || st->finished_) {
    nghttp2_session_consume_connection(self->ng_, len);  // nobody wants it
    return 0;
  }
  st->handler_->on_upstream_body(*st, reinterpret_cast<const char*>(data), len);
  st = self->find(id);  // the handler may have closed it
  if (!st) {
    nghttp2_session_consume_connection(self->ng_, len);
  } else if (st->paused_) {
    st->unconsumed_ += len;
  } else {
    nghttp2_session_consume(self->ng_, id, len);
  }
  if (st) st->body_progress();
  return 0;
}

int UpstreamH2::on_stream_close(nghttp2_session*, int32_t id, uint32_t error_code, void* user) {
  auto* self = static_cast<UpstreamH2*>(user);
  H2Stream* st = self->find(id);
  if (!st) return 0;
  self->streams_.erase(id);
  // Reset by the backend (or closed without END_STREAM): a failure; the exchange lets go. A
  // refused stream (a backend rotating its connection with GOAWAY) was never processed.
  st->deliver_error(error_code == NGHTTP2_REFUSED_STREAM ? UpstreamError::kRefused
                                                         : UpstreamError::kReset);
  self->forget(st);
  return 0;
}

}  // namespace weir::proxy
