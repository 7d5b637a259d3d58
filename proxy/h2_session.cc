#include "proxy/h2_session.h"

#include <algorithm>
#include <cstring>
#include <string_view>

#include "proxy/exchange.h"
#include "proxy/worker.h"

namespace weir::proxy {

namespace {

constexpr uint32_t kMaxConcurrentStreams = 100;
constexpr uint32_t kMaxHeaderList = 64 * 1024;       // decoded, as SETTINGS_MAX_HEADER_LIST_SIZE
constexpr uint32_t kAbusiveHeaderList = 4 * kMaxHeaderList;  // HPACK bomb: close the connection
constexpr int32_t kStreamWindow = 256 * 1024;
constexpr int32_t kConnectionWindow = 1024 * 1024;
constexpr size_t kStreamBufferHigh = 128 * 1024;  // response bytes buffered per stream
constexpr size_t kStreamBufferLow = 32 * 1024;
constexpr uint32_t kControlFramesPerSecond = 100;  // SETTINGS + PING from the client

std::string_view sv(const uint8_t* p, size_t n) {
  return std::string_view(reinterpret_cast<const char*>(p), n);
}

nghttp2_nv make_nv(std::string_view name, std::string_view value) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                    value.size(), NGHTTP2_NV_FLAG_NONE};
}

// Response header names that have no meaning in HTTP/2 (RFC 9113 8.2.2).
bool connection_specific(std::string_view name) {
  return is_hop_by_hop(name) || iequals(name, "content-length");
}

struct Callbacks {
  nghttp2_session_callbacks* cbs = nullptr;
  nghttp2_option* opt = nullptr;
};

}  // namespace

// One client stream: the request as received, its Exchange, and the response waiting to be
// framed. Owned by the session's stream table; freed after nghttp2 closes the stream.
struct H2Session::Stream final : public ExchangeOwner {
  Stream(H2Session& session, int32_t stream_id) : s(session), id(stream_id) {}

  void on_response_head(const ResponseMeta& meta, std::span<const HeaderField> headers) override;
  void on_response_data(const char* data, size_t len) override;
  void on_response_end(std::span<const HeaderField> trailers) override;
  void on_exchange_failed(int status) override;
  void on_request_drained() override;

  size_t buffered() const { return body.size() - body_off; }
  void wake_body() {
    if (deferred) {
      deferred = false;
      nghttp2_session_resume_data(s.ng_, id);
    }
  }

  H2Session& s;
  int32_t id;
  // Request.
  std::vector<std::pair<std::string, std::string>> fields;  // regular headers, cookie joined
  std::string method, path, authority, scheme, cookie;
  size_t header_bytes = 0;
  bool headers_too_large = false;
  RequestHead head;
  std::unique_ptr<Exchange> ex;
  std::vector<std::pair<std::string, std::string>> req_trailer_fields;
  std::vector<HeaderField> req_trailers;  // views into req_trailer_fields
  uint64_t body_bytes = 0;
  size_t unconsumed = 0;  // DATA bytes not yet acknowledged to the client
  bool request_ended = false;
  // Response.
  std::string body;
  size_t body_off = 0;
  std::vector<std::pair<std::string, std::string>> trailers;
  bool response_started = false;
  bool response_ended = false;
  bool deferred = false;
  bool upstream_paused = false;
  // The request body had not ended when the response did: once the whole response is framed,
  // RST_STREAM(NO_ERROR) tells the client to stop sending (RFC 9113 section 8.1). Sent any
  // earlier, it would overtake the response's DATA and the client would see a broken stream.
  bool reset_after_response = false;
  bool bodyless = false;  // the response's HEADERS end the stream (no read_body)
  bool grpc = false;      // a gRPC content type: weir's own replies are gRPC-shaped
};

H2Session::Entry::~Entry() {
  if (--s_.depth_ == 0) s_.closed_.clear();
}

H2Session::H2Session(Transport& transport) : t_(transport), worker_(transport.worker()) {
  static const Callbacks setup = [] {
    Callbacks c;
    nghttp2_session_callbacks_new(&c.cbs);
    nghttp2_session_callbacks_set_on_begin_headers_callback(c.cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(c.cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(c.cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(c.cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(c.cbs, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(c.cbs, on_frame_send);
    nghttp2_option_new(&c.opt);
    // Closed streams are forgotten at once: their state would be memory a client controls.
    nghttp2_option_set_no_closed_streams(c.opt, 1);
    // Request DATA is acknowledged by weir as the upstream drains (backpressure).
    nghttp2_option_set_no_auto_window_update(c.opt, 1);
    nghttp2_option_set_max_send_header_block_length(c.opt, 256 * 1024);
    // CVE-2023-44487 (rapid reset) and the CONTINUATION flood, with the backported limits.
    nghttp2_option_set_stream_reset_rate_limit(c.opt, 1000, 33);
    nghttp2_option_set_max_continuations(c.opt, 8);
    // SETTINGS/PING floods: queued ACKs and entries per SETTINGS frame are capped.
    nghttp2_option_set_max_outbound_ack(c.opt, 1000);
    nghttp2_option_set_max_settings(c.opt, 32);
    return c;
  }();
  nghttp2_session_server_new2(&ng_, setup.cbs, this, setup.opt);
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, kMaxConcurrentStreams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, kMaxHeaderList},
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
  };
  nghttp2_submit_settings(ng_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  nghttp2_session_set_local_window_size(ng_, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
  worker_.stats().h2_connections.inc();
  t_.set_deadline(worker_.settings().keepalive_timeout_ms);
  send();
}

H2Session::~H2Session() {
  worker_.flush_list().cancel(this);
  for (auto& [id, st] : streams_) {
    if (st->ex) st->ex->abandon();
  }
  streams_.clear();
  closed_.clear();
  nghttp2_session_del(ng_);
}

H2Session::Stream* H2Session::find(int32_t stream_id) {
  auto it = streams_.find(stream_id);
  return it == streams_.end() ? nullptr : it->second.get();
}

void H2Session::on_read(const char* data, size_t len) {
  if (closed_conn_) return;
  Entry entry(*this);
  in_recv_ = true;
  ssize_t rc = nghttp2_session_mem_recv(ng_, reinterpret_cast<const uint8_t*>(data), len);
  in_recv_ = false;
  if (closed_conn_) return;
  if (rc < 0) {
    // Bad preface, flood, a callback's verdict: nghttp2 queued a GOAWAY where it could.
    worker_.stats().h2_abuse_closes.inc();
    if (rc != NGHTTP2_ERR_BAD_CLIENT_MAGIC) {
      nghttp2_session_terminate_session(ng_, NGHTTP2_PROTOCOL_ERROR);
    }
    fatal();
    return;
  }
  send();
}

void H2Session::fatal() {
  // Send what is queued (the GOAWAY) and close, whatever the peer does next.
  const uint8_t* p = nullptr;
  for (int i = 0; i < 64; ++i) {
    ssize_t n = nghttp2_session_mem_send(ng_, &p);
    if (n <= 0) break;
    t_.write(sv(p, static_cast<size_t>(n)));
  }
  closed_conn_ = true;
  for (auto& [id, st] : streams_) {
    if (st->ex) st->ex->abandon();
  }
  t_.close_after_flush(true);
}

void H2Session::send() {
  if (!closed_conn_) worker_.flush_list().defer(this);
}

void H2Session::run_deferred() {
  Entry entry(*this);
  send_now();
}

void H2Session::send_now() {
  if (in_recv_ || closed_conn_) return;
  while (!t_.congested()) {
    const uint8_t* p = nullptr;
    ssize_t n = nghttp2_session_mem_send(ng_, &p);
    if (n < 0) {
      fatal();
      return;
    }
    if (n == 0) break;
    t_.write(sv(p, static_cast<size_t>(n)));
    if (closed_conn_) return;
  }
  if (!nghttp2_session_want_read(ng_) && !nghttp2_session_want_write(ng_)) {
    closed_conn_ = true;
    t_.close_after_flush(false);
    return;
  }
  update_deadline();
}

void H2Session::update_deadline() {
  const config::ProxySettings& ps = worker_.settings();
  if (streams_.empty()) {
    t_.set_deadline(ps.keepalive_timeout_ms);
  } else {
    // Streams in flight: the upstream's own timeouts run; this only catches a connection on
    // which nothing at all moves.
    t_.set_deadline(std::max(ps.body_timeout_ms, ps.upstream_response_timeout_ms));
  }
}

bool H2Session::control_flood() {
  const uint64_t now = worker_.now_ms();
  if (now - flood_window_start_ >= 1000) {
    flood_window_start_ = now;
    control_frames_ = 0;
  }
  return ++control_frames_ > kControlFramesPerSecond;
}

int H2Session::on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto* self = static_cast<H2Session*>(user);
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  const int32_t id = frame->hd.stream_id;
  self->streams_.emplace(id, std::make_unique<Stream>(*self, id));
  self->worker_.stats().h2_streams.inc();
  return 0;
}

int H2Session::on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                         size_t namelen, const uint8_t* value, size_t valuelen, uint8_t,
                         void* user) {
  auto* self = static_cast<H2Session*>(user);
  Stream* st = self->find(frame->hd.stream_id);
  if (!st) return 0;
  // The decoded size is capped here: nghttp2 decodes whatever HPACK references expand to.
  st->header_bytes += namelen + valuelen + 32;
  if (st->header_bytes > kAbusiveHeaderList) return NGHTTP2_ERR_CALLBACK_FAILURE;
  if (st->header_bytes > kMaxHeaderList) {
    st->headers_too_large = true;
    return 0;
  }
  std::string_view n = sv(name, namelen), v = sv(value, valuelen);
  if (frame->headers.cat == NGHTTP2_HCAT_HEADERS) {  // trailers
    if (!n.starts_with(':')) st->req_trailer_fields.emplace_back(n, v);
    return 0;
  }
  if (n == ":method") {
    st->method = v;
  } else if (n == ":path") {
    st->path = v;
  } else if (n == ":authority") {
    st->authority = v;
  } else if (n == ":scheme") {
    st->scheme = v;
  } else if (n == "content-type") {
    st->grpc = is_grpc_content_type(v);
    st->fields.emplace_back(n, v);
  } else if (n == "cookie") {
    // RFC 9113 8.2.3: crumbs are joined with "; " for an HTTP/1.1 hop.
    if (!st->cookie.empty()) st->cookie.append("; ");
    st->cookie.append(v);
  } else if (!n.starts_with(':')) {
    st->fields.emplace_back(n, v);
  }
  return 0;
}

int H2Session::on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto* self = static_cast<H2Session*>(user);
  const bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  switch (frame->hd.type) {
    case NGHTTP2_HEADERS: {
      Stream* st = self->find(frame->hd.stream_id);
      if (!st) return 0;
      if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        self->start_stream(*st, end_stream);
      } else if (end_stream && st->ex && !st->request_ended) {
        st->request_ended = true;
        st->req_trailers.clear();
        for (const auto& [n, v] : st->req_trailer_fields) st->req_trailers.push_back({n, v});
        st->ex->end_body(st->req_trailers);
      }
      return 0;
    }
    case NGHTTP2_DATA: {
      Stream* st = self->find(frame->hd.stream_id);
      if (st && end_stream && st->ex && !st->request_ended) {
        st->request_ended = true;
        st->ex->end_body({});
      }
      return 0;
    }
    case NGHTTP2_SETTINGS:
    case NGHTTP2_PING:
      if ((frame->hd.flags & NGHTTP2_FLAG_ACK) == 0 && self->control_flood()) {
        nghttp2_session_terminate_session(self->ng_, NGHTTP2_ENHANCE_YOUR_CALM);
      }
      return 0;
    default:
      return 0;
  }
}

void H2Session::start_stream(Stream& st, bool end_stream) {
  worker_.stats().requests.inc();
  if (end_stream) st.request_ended = true;  // so a refusal below needs no RST_STREAM
  if (st.headers_too_large) {
    log_rejected(st, 431, st.authority);
    respond_error(st, 431);
    return;
  }
  if (draining_) {
    nghttp2_submit_rst_stream(ng_, NGHTTP2_FLAG_NONE, st.id, NGHTTP2_REFUSED_STREAM);
    return;
  }
  // nghttp2 has checked the pseudo-headers; weir still needs a path and a host to route.
  std::string_view host = st.authority;
  for (const auto& [n, v] : st.fields) {
    if (n == "host" && host.empty()) host = v;
  }
  if (st.method == "CONNECT" || st.path.empty() || host.empty() ||
      (st.path.front() != '/' && !(st.path == "*" && st.method == "OPTIONS"))) {
    log_rejected(st, 400, host);
    respond_error(st, 400);
    return;
  }
  RequestHead& h = st.head;
  h.clear();
  h.method = st.method;
  h.target = st.path;
  h.version_minor = 1;
  h.host = host;
  h.is_head = st.method == "HEAD";
  h.idempotent = method_is_idempotent(st.method);
  h.keep_alive = true;
  if (!st.cookie.empty()) st.fields.emplace_back("cookie", st.cookie);
  bool has_length = false;
  for (const auto& [n, v] : st.fields) {
    if (n == "host") continue;  // :authority (or this) becomes the one Host
    if (n == "content-length") {
      has_length = true;
      h.content_length = std::strtoull(v.c_str(), nullptr, 10);  // nghttp2 checked the digits
      continue;
    }
    h.headers.push_back({n, v});
  }
  if (end_stream) {
    h.body = BodyKind::kNone;
    st.request_ended = true;
  } else {
    h.body = has_length ? BodyKind::kContentLength : BodyKind::kChunked;
  }
  const uint64_t max = worker_.settings().max_request_body_bytes;
  if (max != 0 && has_length && h.content_length > max) {
    log_rejected(st, 413, host);
    respond_error(st, 413);
    return;
  }
  st.ex = std::make_unique<Exchange>(worker_, st, t_.info());
  int status = st.ex->start(RequestDesc{&h, t_.info().tls ? "https" : "http"});
  if (status != 0) {
    std::string detail(st.ex->error_detail());
    worker_.retire(std::move(st.ex));
    respond_error(st, status, detail);
  }
}

void H2Session::log_rejected(const Stream& st, int status, std::string_view host) {
  if (!worker_.logging()) return;
  // The whole header block has arrived by now: the stream began this loop turn.
  worker_.log_rejected(t_.info(), status, st.method, host, st.path, {}, worker_.now_ms());
}

void H2Session::respond_error(Stream& st, int status, std::string_view detail) {
  if (st.response_started) return;
  st.response_started = st.response_ended = true;
  WorkerStats& stats = worker_.stats();
  stats.responses_by_class[status / 100].inc();
  stats.generated_by_status[WorkerStats::generated_slot(status)].inc();
  LocalReply reply = local_reply(status, detail, st.grpc);
  st.body = std::move(reply.body);
  st.body_off = 0;
  const std::string status_text = std::to_string(reply.status);
  const std::string length = std::to_string(st.body.size());
  const std::string grpc_status = std::to_string(reply.grpc_status);
  std::vector<nghttp2_nv> nva = {make_nv(":status", status_text),
                                 make_nv("content-type", reply.content_type)};
  if (reply.grpc_status >= 0) {
    // Trailers-only: one HEADERS frame that ends the stream.
    nva.push_back(make_nv("grpc-status", grpc_status));
    nva.push_back(make_nv("grpc-message", reply.grpc_message));
  } else {
    nva.push_back(make_nv("content-length", length));
  }
  nghttp2_data_provider provider{};
  provider.source.ptr = &st;
  provider.read_callback = read_body;
  const bool bodyless = st.method == "HEAD" || reply.grpc_status >= 0;
  nghttp2_submit_response(ng_, st.id, nva.data(), nva.size(), bodyless ? nullptr : &provider);
  // Whatever body follows is not wanted: stop the client politely, after the response.
  if (!st.request_ended) st.reset_after_response = true;
}

int H2Session::on_data_chunk(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data,
                             size_t len, void* user) {
  auto* self = static_cast<H2Session*>(user);
  Stream* st = self->find(stream_id);
  if (!st || !st->ex) {
    // No one takes these bytes: give the window back at once.
    nghttp2_session_consume(self->ng_, stream_id, len);
    return 0;
  }
  st->body_bytes += len;
  const uint64_t max = self->worker_.settings().max_request_body_bytes;
  if (max != 0 && st->body_bytes > max) {
    nghttp2_session_consume(self->ng_, stream_id, len);
    st->ex->abandon();
    st->ex->answered_locally(413);
    self->worker_.retire(std::move(st->ex));
    if (st->response_started) {
      nghttp2_submit_rst_stream(self->ng_, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_CANCEL);
    } else {
      self->respond_error(*st, 413);
    }
    return 0;
  }
  st->ex->send_body(reinterpret_cast<const char*>(data), len);
  if (st->ex->request_congested()) {
    st->unconsumed += len;  // acknowledged in on_request_drained
  } else {
    nghttp2_session_consume(self->ng_, stream_id, len);
  }
  return 0;
}

int H2Session::on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t, void* user) {
  auto* self = static_cast<H2Session*>(user);
  auto it = self->streams_.find(stream_id);
  if (it == self->streams_.end()) return 0;
  Stream& st = *it->second;
  if (st.unconsumed > 0) nghttp2_session_consume_connection(self->ng_, st.unconsumed);
  if (st.ex) {
    st.ex->abandon();
    self->worker_.retire(std::move(st.ex));
  }
  if (!st.response_ended) self->worker_.stats().responses_by_class[0].inc();
  self->closed_.push_back(std::move(it->second));
  self->streams_.erase(it);
  return 0;
}

int H2Session::on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto* self = static_cast<H2Session*>(user);
  if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR) {
    self->worker_.stats().h2_abuse_closes.inc();
  }
  if (frame->hd.type == NGHTTP2_HEADERS && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
    // A bodyless response is out. A RST_STREAM submitted with it would have made nghttp2 drop
    // the HEADERS (the stream was closing), so the client learned nothing.
    Stream* st = self->find(frame->hd.stream_id);
    if (st && st->reset_after_response && !st->request_ended) {
      st->reset_after_response = false;
      nghttp2_submit_rst_stream(self->ng_, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
    }
  }
  return 0;
}

ssize_t H2Session::read_body(nghttp2_session* ng, int32_t, uint8_t* buf, size_t length,
                             uint32_t* data_flags, nghttp2_data_source* source, void*) {
  auto* st = static_cast<Stream*>(source->ptr);
  const size_t n = std::min(length, st->buffered());
  if (n == 0 && !st->response_ended) {
    st->deferred = true;  // on_response_data resumes it
    return NGHTTP2_ERR_DEFERRED;
  }
  std::memcpy(buf, st->body.data() + st->body_off, n);
  st->body_off += n;
  if (st->body_off == st->body.size()) {
    st->body.clear();
    st->body_off = 0;
  } else if (st->body_off > kStreamBufferHigh) {
    st->body.erase(0, st->body_off);
    st->body_off = 0;
  }
  if (st->response_ended && st->buffered() == 0) {
    *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    if (!st->trailers.empty()) {
      std::vector<nghttp2_nv> nva;
      for (const auto& [k, v] : st->trailers) nva.push_back(make_nv(k, v));
      if (nghttp2_submit_trailer(ng, st->id, nva.data(), nva.size()) == 0) {
        *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      }
    }
    if (st->reset_after_response && !st->request_ended) {
      st->reset_after_response = false;
      nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
    }
  }
  if (st->upstream_paused && st->buffered() <= kStreamBufferLow && st->ex) {
    st->upstream_paused = false;
    st->ex->resume_response();
  }
  return static_cast<ssize_t>(n);
}

void H2Session::Stream::on_response_head(const ResponseMeta& meta,
                                         std::span<const HeaderField> headers) {
  Entry entry(s);
  if (s.closed_conn_ || response_started) return;
  response_started = true;
  s.worker_.stats().responses_by_class[meta.status / 100].inc();
  // nghttp2 copies the header block on submit, so the fields are handed over as views: into
  // the upstream's parsed head, or into names_ for a name that needs lower-casing.
  std::string& names = s.names_;
  names.clear();
  size_t name_bytes = 2 * 20;  // the status and a content-length
  for (const auto& f : headers) name_bytes += f.name.size();
  names.reserve(name_bytes);  // never reallocates below: views into it stay valid
  auto number = [&names](uint64_t v) {
    const size_t at = names.size();
    append_number(names, v);
    return std::string_view(names).substr(at);
  };
  std::vector<nghttp2_nv>& nva = s.nva_;
  nva.clear();
  nva.push_back(make_nv(":status", number(static_cast<uint64_t>(meta.status))));
  for (const auto& f : headers) {
    if (connection_specific(f.name)) continue;
    std::string_view name = f.name;
    if (std::any_of(name.begin(), name.end(), [](char c) { return c >= 'A' && c <= 'Z'; })) {
      const size_t at = names.size();
      for (char c : name) names.push_back(ascii_lower(c));
      name = std::string_view(names).substr(at);
    }
    nva.push_back(make_nv(name, f.value));
  }
  const bool head = method == "HEAD";
  if (meta.no_body) {
    if (!meta.content_length_text.empty() && meta.status != 204 && meta.status != 304) {
      nva.push_back(make_nv("content-length", meta.content_length_text));
    }
  } else if (meta.has_length) {
    nva.push_back(make_nv("content-length", number(meta.content_length)));
  }
  nghttp2_data_provider provider{};
  provider.source.ptr = this;
  provider.read_callback = read_body;
  bodyless = meta.no_body || head;
  nghttp2_submit_response(s.ng_, id, nva.data(), nva.size(), bodyless ? nullptr : &provider);
  // A bodyless response goes out with on_response_end, which follows at once: sending it now
  // would close the stream and the upstream connection before it could return to the pool.
  if (!bodyless) s.send();
}

void H2Session::Stream::on_response_data(const char* data, size_t len) {
  Entry entry(s);
  if (s.closed_conn_) return;
  body.append(data, len);
  if (buffered() >= kStreamBufferHigh && !upstream_paused && ex) {
    upstream_paused = true;  // the client's window, or the socket, is behind
    ex->pause_response();
  }
  wake_body();
  s.send();
}

void H2Session::Stream::on_response_end(std::span<const HeaderField> trailer_fields) {
  Entry entry(s);
  if (s.closed_conn_) return;
  response_ended = true;
  trailers.clear();
  for (const auto& f : trailer_fields) {
    if (connection_specific(f.name)) continue;
    std::string name(f.name);
    for (char& c : name) c = ascii_lower(c);
    trailers.emplace_back(std::move(name), std::string(f.value));
  }
  // The backend answered before the upload ended; the rest of it is not wanted.
  if (!request_ended) reset_after_response = true;
  wake_body();
  s.send();
}

void H2Session::Stream::on_exchange_failed(int status) {
  Entry entry(s);
  if (s.closed_conn_) return;
  if (response_started) {
    // A cut response must look cut to the client.
    nghttp2_submit_rst_stream(s.ng_, NGHTTP2_FLAG_NONE, id, NGHTTP2_INTERNAL_ERROR);
  } else {
    s.respond_error(*this, status);
  }
  s.send();
}

void H2Session::Stream::on_request_drained() {
  Entry entry(s);
  if (s.closed_conn_ || unconsumed == 0) return;
  nghttp2_session_consume(s.ng_, id, unconsumed);
  unconsumed = 0;
  s.send();
}

void H2Session::on_drain() {
  if (closed_conn_) return;
  Entry entry(*this);
  send();
}

void H2Session::on_eof() {
  if (closed_conn_) return;
  // The client will send nothing more; streams it already sent can still be answered only if
  // it reads, but an HTTP/2 client that half-closes is gone in practice.
  Entry entry(*this);
  closed_conn_ = true;
  for (auto& [id, st] : streams_) {
    if (st->ex) st->ex->abandon();
  }
  t_.close_after_flush(false);
}

void H2Session::on_timeout() {
  if (closed_conn_) return;
  Entry entry(*this);
  if (streams_.empty()) {
    nghttp2_session_terminate_session(ng_, NGHTTP2_NO_ERROR);
    send_now();
    if (!closed_conn_) {
      closed_conn_ = true;
      t_.close_after_flush(false);
    }
    return;
  }
  closed_conn_ = true;
  for (auto& [id, st] : streams_) {
    if (st->ex) st->ex->abandon();
  }
  t_.abort();
}

void H2Session::start_drain() {
  if (closed_conn_ || draining_) return;
  Entry entry(*this);
  draining_ = true;
  // Graceful GOAWAY: streams already begun finish; nghttp2 then wants neither read nor write,
  // and send() closes.
  nghttp2_submit_goaway(ng_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(ng_),
                        NGHTTP2_NO_ERROR, nullptr, 0);
  send_now();
  if (!closed_conn_ && streams_.empty()) {
    closed_conn_ = true;
    t_.close_after_flush(false);
  }
}

void H2Session::on_close() {
  if (closed_conn_ && depth_ == 0 && streams_.empty()) return;
  closed_conn_ = true;
  for (auto& [id, st] : streams_) {
    if (st->ex) {
      st->ex->abandon();
      worker_.retire(std::move(st->ex));
    }
  }
}

}  // namespace weir::proxy
