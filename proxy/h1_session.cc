#include "proxy/h1_session.h"

#include <charconv>
#include <cstring>

#include "proxy/worker.h"

namespace weir::proxy {

namespace {

// Pipelined bytes weir holds while a response is in progress before it stops reading.
constexpr size_t kPipelineLimit = 64 * 1024;

H1Session* from_parser(llhttp_t* p) { return static_cast<H1Session*>(p->data); }

// Trailer fields that would change framing or routing if a backend honoured them.
bool forbidden_trailer(std::string_view name) {
  return is_hop_by_hop(name) || iequals(name, "content-length") || iequals(name, "host") ||
         iequals(name, "trailer") || iequals(name, "content-type") ||
         iequals(name, "authorization") || iequals(name, "cookie");
}

// The method and target of a request weir refused before parsing it, as far as its request line
// can be read; a target longer than this is logged cut (a 414's is by definition too long).
constexpr size_t kLoggedTargetMax = 1024;
void readable_request_line(std::string_view raw, std::string_view* method,
                           std::string_view* target) {
  std::string_view line = raw.substr(0, raw.find_first_of("\r\n"));
  size_t sp = line.find(' ');
  if (sp == std::string_view::npos || sp > 32 || !is_token(line.substr(0, sp))) return;
  *method = line.substr(0, sp);
  line.remove_prefix(sp + 1);
  *target = line.substr(0, std::min(line.find(' '), kLoggedTargetMax));
}

}  // namespace

const llhttp_settings_t* H1Session::settings() {
  static const llhttp_settings_t s = [] {
    llhttp_settings_t st;
    llhttp_settings_init(&st);
    st.on_headers_complete = cb_headers_complete;
    st.on_header_field = cb_header_field;
    st.on_header_value = cb_header_value;
    st.on_body = cb_body;
    st.on_chunk_header = cb_chunk_header;
    st.on_message_complete = cb_message_complete;
    return st;
  }();
  return &s;
}

H1Session::H1Session(Transport& transport) : t_(transport), worker_(transport.worker()) {
  llhttp_init(&parser_, HTTP_REQUEST, settings());
  parser_.data = this;
  const config::ProxySettings& ps = worker_.settings();
  limits_.max_header_bytes = ps.max_header_bytes;
  limits_.max_headers = ps.max_headers;
  limits_.max_request_line = ps.max_request_line;
  t_.set_deadline(ps.keepalive_timeout_ms);
}

H1Session::~H1Session() = default;

void H1Session::on_read(const char* data, size_t len) {
  if (phase_ == Phase::kClosed) return;
  in_read_ = true;
  if (inbuf_.empty()) {
    size_t used = consume(data, len);
    if (used < len && phase_ != Phase::kClosed) inbuf_.assign(data + used, len - used);
  } else {
    inbuf_.append(data, len);
    size_t used = consume(inbuf_.data(), inbuf_.size());
    inbuf_.erase(0, used);
  }
  in_read_ = false;
  if (phase_ != Phase::kClosed) update_reading();
}

void H1Session::process_input() {
  if (inbuf_.empty() || phase_ == Phase::kClosed) return;
  in_read_ = true;
  size_t used = consume(inbuf_.data(), inbuf_.size());
  inbuf_.erase(0, used);
  in_read_ = false;
}

size_t H1Session::consume(const char* p, size_t n) {
  size_t off = 0;
  while (off < n) {
    size_t used = 0;
    switch (phase_) {
      case Phase::kIdle:
      case Phase::kHead:
        used = consume_head(p + off, n - off);
        break;
      case Phase::kBody:
        used = run_parser(p + off, n - off);
        break;
      case Phase::kTrailers:
        used = consume_trailers(p + off, n - off);
        break;
      case Phase::kWaitResponse:
        return off;
      case Phase::kClosed:
        return n;
    }
    if (used == 0) break;
    off += used;
  }
  return off;
}

size_t H1Session::consume_head(const char* p, size_t n) {
  size_t skipped = 0;
  if (phase_ == Phase::kIdle) {
    // Clients may send a stray CRLF after a body (RFC 9112 2.2): ignore it between requests.
    while (skipped < n && skipped < 4 && (p[skipped] == '\r' || p[skipped] == '\n')) ++skipped;
    if (skipped == n) return n;
    phase_ = Phase::kHead;
    head_started_ms_ = std::max<uint64_t>(worker_.now_ms(), 1);
    // A new request: nothing of it has been answered yet (reject() relies on this).
    req_done_ = resp_started_ = resp_done_ = grpc_ = false;
    scan_from_ = 0;
    t_.set_deadline(worker_.settings().request_header_timeout_ms);
    p += skipped;
    n -= skipped;
  }
  HeadScan scan = scan_request_head(p, n, scan_from_, limits_);
  if (scan.state == HeadScan::State::kError) {
    reject(scan.status, std::string_view(p, n));
    return skipped + n;
  }
  if (scan.state == HeadScan::State::kNeedMore) {
    scan_from_ = n;
    return skipped;  // wait for more; the caller keeps the bytes
  }
  scan_from_ = 0;
  HeadError err = parse_request_head(std::string_view(p, scan.head_size), limits_, &req_);
  if (err.status != 0) {
    reject(err.status, std::string_view(p, scan.head_size), err.reason);
    return skipped + n;
  }
  // llhttp frames the body only. It reads a head that says just what weir's validation found, so
  // the two cannot disagree on where the request ends; and llhttp's own head rules, stricter
  // than RFC 9110 in places (extension methods, a repeated identical Content-Length, OWS after
  // "chunked"), do not refuse requests weir accepted.
  // Built on the stack (llhttp keeps no pointer into it): a connection holds no buffer for it.
  char parser_head[96];
  size_t len = 0;
  auto put = [&](std::string_view s) {
    std::memcpy(parser_head + len, s.data(), s.size());
    len += s.size();
  };
  put("POST / HTTP/1.1\r\n");
  if (req_.body == BodyKind::kContentLength) {
    put("Content-Length: ");
    char digits[20];
    auto [end, ec] = std::to_chars(digits, digits + sizeof digits, req_.content_length);
    (void)ec;  // 20 digits hold any uint64_t
    put(std::string_view(digits, static_cast<size_t>(end - digits)));
    put("\r\n");
  } else if (req_.body == BodyKind::kChunked) {
    put("Transfer-Encoding: chunked\r\n");
  }
  put("\r\n");
  pending_reject_ = 0;
  llhttp_errno_t rc = llhttp_execute(&parser_, parser_head, len);
  if (rc == HPE_PAUSED || rc == HPE_PAUSED_UPGRADE) {
    if (rc == HPE_PAUSED_UPGRADE) {
      llhttp_resume_after_upgrade(&parser_);
    } else {
      llhttp_resume(&parser_);
    }
  } else if (rc != HPE_OK) {
    // reject() answers only if nothing was answered yet (-1: begin_request already did).
    reject(pending_reject_ > 0 ? pending_reject_ : 400, std::string_view(p, scan.head_size));
    return skipped + n;
  }
  return skipped + scan.head_size;
}

size_t H1Session::run_parser(const char* p, size_t n) {
  pending_reject_ = 0;
  llhttp_errno_t rc = llhttp_execute(&parser_, p, n);
  if (rc == HPE_OK) return n;
  if (rc == HPE_PAUSED || rc == HPE_PAUSED_UPGRADE) {
    size_t used = static_cast<size_t>(llhttp_get_error_pos(&parser_) - p);
    if (rc == HPE_PAUSED_UPGRADE) {
      llhttp_resume_after_upgrade(&parser_);
    } else {
      llhttp_resume(&parser_);
    }
    return used;
  }
  // A broken body (bad chunk framing) or a limit hit in a callback.
  body_failed(pending_reject_ > 0 ? pending_reject_ : 400);
  return n;
}

size_t H1Session::consume_trailers(const char* p, size_t n) {
  HeadScan scan = scan_trailer_section(p, n, scan_from_, limits_);
  if (scan.state == HeadScan::State::kNeedMore) {
    scan_from_ = n;
    return 0;  // wait for more; the caller keeps the bytes
  }
  scan_from_ = 0;
  int status = scan.status;
  if (scan.state == HeadScan::State::kComplete) {
    status = check_trailer_section(std::string_view(p, scan.head_size), limits_).status;
  }
  if (status != 0) {
    body_failed(status);
    return n;
  }
  return run_parser(p, scan.head_size);
}

void H1Session::body_failed(int status) {
  // The head (and maybe some body) went upstream already: dropping the Exchange closes that
  // connection, so the backend sees a cut request, never the bytes that follow.
  if (resp_started_ && !resp_done_) {
    close_now();
  } else {
    reject(status);
  }
}

int H1Session::cb_headers_complete(llhttp_t* p) {
  H1Session* s = from_parser(p);
  // Defence in depth: llhttp must have understood the body framing exactly as we did.
  const bool chunked = (p->flags & F_CHUNKED) != 0;
  if (chunked != (s->req_.body == BodyKind::kChunked) ||
      (s->req_.body == BodyKind::kContentLength && p->content_length != s->req_.content_length)) {
    s->pending_reject_ = 400;
    return -1;
  }
  if (!s->begin_request()) {
    // Already answered; a body we did not read means the connection cannot continue.
    if (s->req_.body != BodyKind::kNone) {
      s->pending_reject_ = -1;
      return -1;
    }
  }
  s->phase_ = Phase::kBody;
  return 0;
}

int H1Session::cb_chunk_header(llhttp_t* p) {
  if (p->content_length != 0) return 0;
  // The last chunk: weir checks the trailer section before llhttp reads it.
  H1Session* s = from_parser(p);
  s->phase_ = Phase::kTrailers;
  s->scan_from_ = 0;
  return HPE_PAUSED;
}

int H1Session::cb_header_field(llhttp_t* p, const char* at, size_t len) {
  H1Session* s = from_parser(p);
  if (s->phase_ != Phase::kTrailers) return 0;  // llhttp's view of the head: not the request's
  Trailers& t = s->trailers();
  if (t.spans.size() % 2 == 0) t.spans.emplace_back(static_cast<uint32_t>(t.arena.size()), 0);
  t.arena.append(at, len);
  t.spans.back().second += static_cast<uint32_t>(len);
  return 0;
}

int H1Session::cb_header_value(llhttp_t* p, const char* at, size_t len) {
  H1Session* s = from_parser(p);
  if (s->phase_ != Phase::kTrailers) return 0;
  Trailers& t = s->trailers();
  if (t.spans.size() % 2 == 1) t.spans.emplace_back(static_cast<uint32_t>(t.arena.size()), 0);
  t.arena.append(at, len);
  t.spans.back().second += static_cast<uint32_t>(len);
  return 0;
}

int H1Session::cb_body(llhttp_t* p, const char* at, size_t len) {
  H1Session* s = from_parser(p);
  s->body_bytes_ += len;
  const uint64_t max = s->worker_.settings().max_request_body_bytes;
  if (max != 0 && s->body_bytes_ > max) {
    s->pending_reject_ = 413;
    return -1;
  }
  s->t_.set_deadline(s->worker_.settings().body_timeout_ms);
  if (s->ex_) s->ex_->send_body(at, len);
  return 0;
}

int H1Session::cb_message_complete(llhttp_t* p) {
  H1Session* s = from_parser(p);
  s->req_done_ = true;
  s->phase_ = Phase::kWaitResponse;
  if (s->ex_) {
    std::vector<HeaderField> fields;  // empty (no allocation) without trailers
    if (s->trailers_) {
      const Trailers& t = *s->trailers_;
      std::string_view arena(t.arena);
      for (size_t i = 0; i + 1 < t.spans.size(); i += 2) {
        HeaderField f{arena.substr(t.spans[i].first, t.spans[i].second),
                      trim_ows(arena.substr(t.spans[i + 1].first, t.spans[i + 1].second))};
        if (!forbidden_trailer(f.name)) fields.push_back(f);
      }
    }
    s->ex_->end_body(fields);
    if (!s->resp_done_) s->t_.clear_deadline();  // the upstream's timeouts run now
  }
  s->finish_if_done();
  return HPE_PAUSED;
}

bool H1Session::begin_request() {
  worker_.stats().requests.inc();
  version_minor_ = req_.version_minor;
  head_request_ = req_.is_head;
  keep_alive_ = req_.keep_alive && !draining_;
  close_after_ = !keep_alive_;
  req_done_ = resp_started_ = resp_done_ = chunked_out_ = early_response_ = false;
  body_bytes_ = 0;
  for (const auto& f : req_.headers) {
    if (iequals(f.name, "content-type")) grpc_ = is_grpc_content_type(f.value);
  }
  trailers_.reset();
  const uint64_t max = worker_.settings().max_request_body_bytes;
  if (max != 0 && req_.body == BodyKind::kContentLength && req_.content_length > max) {
    close_after_ = true;
    if (worker_.logging()) {
      std::string_view request_id;
      const std::string& id_header = worker_.settings().request_id_header;
      for (const auto& f : req_.headers) {
        if (!id_header.empty() && iequals(f.name, id_header)) request_id = f.value;
      }
      worker_.log_rejected(t_.info(), 413, "body over max_request_body_bytes", false,
                           req_.method, req_.host, req_.target, request_id, head_started_ms_);
    }
    respond_error(413);
    return false;
  }
  ex_ = std::make_unique<Exchange>(worker_, *this, t_.info());
  int status = ex_->start(RequestDesc{&req_, t_.info().tls ? "https" : "http"});
  if (status != 0) {
    std::string detail(ex_->error_detail());
    ex_.reset();
    // A target or Host that cannot be normalized is malformed input: closed, as for a bad head.
    if (req_.body != BodyKind::kNone || status == 400) close_after_ = true;
    respond_error(status, detail);
    return false;
  }
  if (req_.expect_continue) t_.write("HTTP/1.1 100 Continue\r\n\r\n");
  if (req_.body != BodyKind::kNone) {
    t_.set_deadline(worker_.settings().body_timeout_ms);
  } else {
    t_.clear_deadline();
  }
  return true;
}

void H1Session::respond_error(int status, std::string_view detail) {
  resp_started_ = resp_done_ = true;
  WorkerStats& st = worker_.stats();
  st.responses_by_class[status / 100].inc();
  st.generated_by_status[WorkerStats::generated_slot(status)].inc();
  t_.write(error_response(status, close_after_ || draining_, head_request_, detail, grpc_));
}

void H1Session::reject(int status, std::string_view raw, std::string_view why) {
  if (why.empty()) {
    const llhttp_errno_t err = llhttp_get_errno(&parser_);
    why = status == 408   ? (phase_ == Phase::kHead ? "request header timeout" : "request body timeout")
          : status == 413 ? "body over max_request_body_bytes"
          : status == 414 ? "request line too long"
          : status == 431 ? "header block too large"
          : err != HPE_OK && err != HPE_USER ? llhttp_get_error_reason(&parser_)
          : std::string_view("malformed request");
  }
  // Malformed or over-limit input: answer (if nothing was answered yet) and close, since the
  // framing of whatever follows cannot be trusted.
  const bool routed = ex_ != nullptr;  // its Exchange writes the access log line
  if (ex_) {
    if (!resp_started_) ex_->answered_locally(status, why);
    worker_.retire(std::move(ex_));
  }
  if (!resp_started_ && !routed && worker_.logging()) {
    std::string_view method, target;
    readable_request_line(raw, &method, &target);
    worker_.log_rejected(t_.info(), status, why, false, method, {}, target, {}, head_started_ms_);
  }
  if (!resp_started_) {
    close_after_ = true;
    head_request_ = false;
    respond_error(status);
  }
  phase_ = Phase::kClosed;
  t_.close_after_flush(true);
}

void H1Session::close_now() {
  if (ex_) worker_.retire(std::move(ex_));
  phase_ = Phase::kClosed;
  t_.abort();
}

void H1Session::finish_if_done() {
  if (!req_done_ || !resp_done_ || phase_ == Phase::kClosed) return;
  if (ex_) worker_.retire(std::move(ex_));
  if (close_after_ || draining_ || (eof_ && inbuf_.empty())) {
    phase_ = Phase::kClosed;
    t_.close_after_flush(!inbuf_.empty() || early_response_);
    return;
  }
  phase_ = Phase::kIdle;
  t_.set_deadline(worker_.settings().keepalive_timeout_ms);
  // From an upstream callback, go on with pipelined input now; inside on_read the loop does.
  if (!in_read_) {
    process_input();
    if (phase_ != Phase::kClosed) update_reading();
  }
}

void H1Session::update_reading() {
  bool pause = inbuf_.size() > kPipelineLimit ||
               (phase_ == Phase::kBody && ex_ && ex_->request_congested());
  if (pause != paused_) {
    paused_ = pause;
    if (pause) {
      t_.pause_reading();
    } else {
      t_.resume_reading();
    }
  }
}

void H1Session::on_response_head(const ResponseMeta& meta,
                                 std::span<const HeaderField> headers) {
  resp_started_ = true;
  worker_.stats().responses_by_class[meta.status / 100].inc();
  std::string& out = t_.write_buffer();
  out.append("HTTP/1.1 ");
  append_number(out, static_cast<uint64_t>(meta.status));
  out.push_back(' ');
  out.append(reason_phrase(meta.status));
  out.append("\r\n");
  for (const auto& h : headers) {
    out.append(h.name);
    out.append(": ");
    out.append(h.value);
    out.append("\r\n");
  }
  if (meta.no_body) {
    if (!meta.content_length_text.empty() && meta.status != 204) {
      out.append("Content-Length: ");
      out.append(meta.content_length_text);
      out.append("\r\n");
    }
  } else if (meta.has_length) {
    out.append("Content-Length: ");
    append_number(out, meta.content_length);
    out.append("\r\n");
  } else if (version_minor_ == 1) {
    out.append("Transfer-Encoding: chunked\r\n");
    chunked_out_ = true;
  } else {
    close_after_ = true;  // an HTTP/1.0 client learns the end from the close
  }
  if (close_after_ || draining_) {
    close_after_ = true;
    out.append("Connection: close\r\n");
  } else if (version_minor_ == 0) {
    out.append("Connection: keep-alive\r\n");
  }
  out.append("\r\n");
  t_.commit();
}

void H1Session::on_response_data(const char* data, size_t len) {
  if (chunked_out_) {
    std::string& out = t_.write_buffer();
    append_hex(out, len);
    out.append("\r\n");
    out.append(data, len);
    out.append("\r\n");
    t_.commit();
  } else {
    t_.write(std::string_view(data, len));
  }
  if (t_.congested() && ex_) {
    ex_->pause_response();
    t_.set_deadline(worker_.settings().body_timeout_ms);
  }
}

void H1Session::on_response_end(std::span<const HeaderField> trailers) {
  if (chunked_out_) {
    std::string& out = t_.write_buffer();
    out.append("0\r\n");
    for (const auto& h : trailers) {
      out.append(h.name);
      out.append(": ");
      out.append(h.value);
      out.append("\r\n");
    }
    out.append("\r\n");
    t_.commit();
  }
  resp_done_ = true;
  if (!req_done_) {
    // The backend answered before the request body ended: the rest is not worth reading.
    close_after_ = true;
    req_done_ = true;
    early_response_ = true;
  }
  finish_if_done();
}

void H1Session::on_exchange_failed(int status) {
  if (resp_started_) {
    close_now();  // a cut response must look cut to the client
    return;
  }
  if (!req_done_) {
    close_after_ = true;
    early_response_ = true;
    req_done_ = true;
  }
  respond_error(status);
  finish_if_done();
}

void H1Session::on_request_drained() { update_reading(); }

void H1Session::on_drain() {
  if (ex_ && phase_ != Phase::kClosed) {
    ex_->resume_response();
    if (resp_started_ && !resp_done_) t_.clear_deadline();
  }
}

void H1Session::on_eof() {
  eof_ = true;
  switch (phase_) {
    case Phase::kWaitResponse:
      close_after_ = true;  // a half-closed client still gets its response
      return;
    case Phase::kIdle:
      if (inbuf_.empty()) {
        phase_ = Phase::kClosed;
        t_.close_after_flush(false);
      }
      return;
    default:
      close_now();
  }
}

void H1Session::on_timeout() {
  switch (phase_) {
    case Phase::kIdle:
      phase_ = Phase::kClosed;
      t_.close_after_flush(false);
      break;
    case Phase::kHead:
      reject(408, inbuf_);
      break;
    case Phase::kBody:
    case Phase::kTrailers:
      if (resp_started_) {
        close_now();
      } else {
        reject(408);
      }
      break;
    case Phase::kWaitResponse:
      close_now();  // the client stopped reading its response
      break;
    case Phase::kClosed:
      break;
  }
}

void H1Session::start_drain() {
  draining_ = true;
  if (phase_ == Phase::kIdle && inbuf_.empty()) {
    // A keep-alive client may be sending its next request this very moment, and a connection
    // closed under it fails that request. So an idle connection gets a short grace: a request
    // that comes is answered with Connection: close; otherwise the deadline closes it.
    t_.set_deadline(std::min<uint64_t>(kDrainIdleGraceMs, worker_.settings().keepalive_timeout_ms));
  }
}

void H1Session::on_close() {
  phase_ = Phase::kClosed;
  if (ex_) worker_.retire(std::move(ex_));
}

}  // namespace weir::proxy
