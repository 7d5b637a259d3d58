// The test backend: N libuv loops, each with its own SO_REUSEPORT listening socket. Ownership:
// Backend::Impl owns the Loops (and the immutable precomputed responses they share); a Loop
// owns its Connections (intrusive list) and a free list of WriteReqs; a Connection frees itself
// in the last close callback of its three handles.
#include "bench/backend.h"

#include <llhttp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace weir::bench {
namespace {

// Stop reading once this much response data is queued; resume below the low mark.
constexpr size_t kHighWater = 256 * 1024;
constexpr size_t kLowWater = 64 * 1024;
constexpr size_t kReadBufferSize = 64 * 1024;
constexpr size_t kMaxHeldInput = 64 * 1024;  // pipelined input parked while a response runs
constexpr size_t kPieceSize = 64 * 1024;     // /bytes and large default bodies
constexpr size_t kChunkSize = 16 * 1024;     // /chunked
constexpr size_t kMaxFreeWriteReqs = 256;
constexpr size_t kMaxHeaderBytes = 64 * 1024;  // /headers collection cap
constexpr uint32_t kLingerMs = 2000;           // drain time after shutdown before closing
constexpr size_t kPrecomputedBodyLimit = 256 * 1024;

constexpr uint64_t kUnknownLength = UINT64_MAX;  // body delimited by the connection close

constexpr std::string_view kCrlf = "\r\n";
constexpr std::string_view kLastChunk = "0\r\n\r\n";
constexpr std::string_view kLastChunkWithTrailer = "0\r\nx-trailer: done\r\n\r\n";

const char* reason_phrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 408: return "Request Timeout";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
  }
}

bool status_has_body(int status) { return status >= 200 && status != 204 && status != 304; }

// Digits only, no sign, bounded; false on anything else.
bool parse_u64(std::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 19) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  *out = v;
  return true;
}

void append_json_string(std::string* out, std::string_view s) {
  out->push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      default:
        if (c < 0x20 || c >= 0x7f) {
          // Header bytes are not necessarily UTF-8; \u00XX keeps the JSON valid either way.
          char esc[8];
          std::snprintf(esc, sizeof esc, "\\u%04x", c);
          out->append(esc);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
  out->push_back('"');
}

enum class Route {
  kDefault, kStatus, kDelay, kBytes, kChunked, kEcho, kSink, kHeaders, kStats, kForceStatus,
  kHealth, kSetHealth, kForceDelay
};

// How the response announces the connection's fate.
enum class ConnMode { kKeepAlive11 = 0, kKeepAlive10 = 1, kClose = 2 };

struct Loop;

// One uv_write: owned bytes plus references to immutable data that outlives every connection
// (precomputed responses, the byte pattern). Recycled through the loop's free list.
struct WriteReq {
  struct Seg {
    const char* ext;  // nullptr: `off` indexes into `owned`
    size_t off;
    size_t len;
  };
  uv_write_t req;
  std::string owned;
  std::vector<Seg> segs;
  size_t bytes = 0;

  void add_owned(std::string_view s) {
    if (s.empty()) return;
    if (!segs.empty() && segs.back().ext == nullptr) {
      segs.back().len += s.size();
    } else {
      segs.push_back({nullptr, owned.size(), s.size()});
    }
    owned.append(s);
    bytes += s.size();
  }
  void add_ext(const char* data, size_t len) {
    if (len == 0) return;
    segs.push_back({data, 0, len});
    bytes += len;
  }
  void reset() {
    owned.clear();
    if (owned.capacity() > 1024 * 1024) owned.shrink_to_fit();
    segs.clear();
    bytes = 0;
  }
};

// Immutable after start(); shared by every loop.
struct Shared {
  BackendOptions options;
  std::string pattern;  // 'a'..'z' repeated; pattern.data() + (i % 26) starts byte i
  // Default response per ConnMode: headers only (HEAD, or a body too large to precompute)
  // and headers + body.
  std::string default_head[3];
  std::string default_full[3];
  bool default_body_streamed = false;
  size_t default_body_size = 0;
  // Set at run time by /__status/NNN (0 = back to options.status): lets a test make a version
  // start failing at a moment of its choosing.
  mutable std::atomic<int> forced_status{0};
  // Set by /__delay/MS (0 = back to options.delay_ms): a version that turns slow on command.
  mutable std::atomic<uint32_t> forced_delay_ms{0};
  // What /healthz answers; the one mutable field, set through /__health/NNN by any loop.
  mutable std::atomic<int> health_status{200};
};

struct Connection {
  explicit Connection(Loop* loop);
  void start();
  void close();
  void on_read(ssize_t nread, const uv_buf_t* buf);
  void on_write_done(int status);
  void on_timer();

  // Parsing.
  size_t execute(const char* data, size_t len);
  void route_request();
  int on_headers_complete();
  int on_body(const char* at, size_t len);
  int on_message_complete();

  // Responses.
  void start_response();
  void stage_head(int status, std::string_view content_type, bool chunked, uint64_t length,
                  std::string_view extra_headers = {});
  void stage_default(int status);
  void stage_json(std::string_view json);
  void pump();
  void response_finished();
  void fail_request(int status);

  // Output and flow control.
  WriteReq* staging();
  size_t queued_bytes() const;
  void flush();
  void settle();
  void update_reading();
  void begin_shutdown();
  void arm_timer(uint64_t ms);

  uv_tcp_t tcp_;
  uv_timer_t delay_timer_;
  uv_timer_t idle_timer_;  // keep-alive idle timeout, and the linger cap after shutdown
  uv_shutdown_t shutdown_req_;
  llhttp_t parser_;
  Loop* loop_;
  const Shared* shared_;
  Connection* prev_ = nullptr;
  Connection* next_ = nullptr;
  int pending_closes_ = 0;

  WriteReq* staging_ = nullptr;
  int writes_in_flight_ = 0;
  std::string held_;  // unparsed input kept while the parser is paused

  bool closing_ = false;
  bool reading_ = false;
  bool peer_eof_ = false;
  bool draining_ = false;    // shut down our side; discarding input until EOF
  bool want_close_ = false;  // no more requests; close once the output drains
  bool paused_ = false;      // parser paused at a message end while its response runs
  bool in_parser_ = false;
  bool in_message_ = false;
  bool responding_ = false;
  bool idle_armed_ = false;

  // The current request.
  std::string url_;
  Route route_ = Route::kDefault;
  uint64_t route_arg_ = 0;
  bool close_after_ = false;
  bool is_head_ = false;
  bool chunked_ok_ = true;  // HTTP/1.1 client; 1.0 gets raw bodies delimited by close
  ConnMode mode_ = ConnMode::kKeepAlive11;
  bool collect_headers_ = false;
  bool in_header_field_ = false;
  // Expect: 100-continue is tracked for every request (clients wait for it before uploading).
  char field_[16];
  size_t field_len_ = 0;
  bool in_expect_ = false;
  bool expect_continue_ = false;
  size_t header_bytes_ = 0;
  std::vector<std::pair<std::string, std::string>> headers_;
  uint64_t body_bytes_ = 0;
  uint64_t fnv_ = 0;

  // A streamed body in progress.
  bool gen_active_ = false;
  bool gen_chunked_ = false;
  uint64_t gen_offset_ = 0;
  uint64_t gen_remaining_ = 0;
};

struct Loop {
  const Shared* shared = nullptr;
  const std::vector<std::unique_ptr<Loop>>* siblings = nullptr;  // every loop, for /__stats
  uv_loop_t loop;
  uv_tcp_t listener;
  uv_async_t stop_async;
  std::thread thread;
  bool stopping = false;
  Connection* conns = nullptr;
  std::vector<WriteReq*> free_reqs;
  std::vector<uv_buf_t> scratch_bufs;
  char read_buf[kReadBufferSize];

  // Single writer (this loop's thread), read by anyone.
  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> active{0};
  std::atomic<uint64_t> requests{0};

  WriteReq* get_req() {
    if (free_reqs.empty()) return new WriteReq;
    WriteReq* w = free_reqs.back();
    free_reqs.pop_back();
    return w;
  }
  void put_req(WriteReq* w) {
    if (free_reqs.size() >= kMaxFreeWriteReqs) {
      delete w;
      return;
    }
    w->reset();
    free_reqs.push_back(w);
  }
  void link(Connection* c) {
    c->next_ = conns;
    if (conns) conns->prev_ = c;
    conns = c;
  }
  void unlink(Connection* c) {
    (c->prev_ != nullptr ? c->prev_->next_ : conns) = c->next_;
    if (c->next_) c->next_->prev_ = c->prev_;
  }
};

}  // namespace

struct Backend::Impl {
  Shared shared;
  std::vector<std::unique_ptr<Loop>> loops;
  uint16_t port = 0;
  std::mutex stop_mutex;
  bool started = false;
  bool stopped = false;
};

namespace {

// ---------------------------------------------------------------------------------------------
// llhttp glue

Connection* conn_of(llhttp_t* p) { return static_cast<Connection*>(p->data); }

int cb_message_begin(llhttp_t* p) {
  Connection* c = conn_of(p);
  c->in_message_ = true;
  if (c->idle_armed_) {
    uv_timer_stop(&c->idle_timer_);
    c->idle_armed_ = false;
  }
  c->url_.clear();
  c->headers_.clear();
  c->header_bytes_ = 0;
  c->in_header_field_ = false;
  c->collect_headers_ = false;
  c->expect_continue_ = false;
  c->body_bytes_ = 0;
  c->fnv_ = 0xcbf29ce484222325ULL;
  c->route_ = Route::kDefault;
  return 0;
}

int cb_url(llhttp_t* p, const char* at, size_t len) {
  Connection* c = conn_of(p);
  if (c->url_.size() + len > kMaxHeaderBytes) return -1;
  c->url_.append(at, len);
  return 0;
}

int cb_url_complete(llhttp_t* p) {
  conn_of(p)->route_request();
  return 0;
}

bool equals_lower(const char* a, size_t a_len, std::string_view lower) {
  if (a_len != lower.size()) return false;
  for (size_t i = 0; i < a_len; ++i) {
    char ch = a[i] >= 'A' && a[i] <= 'Z' ? static_cast<char>(a[i] - 'A' + 'a') : a[i];
    if (ch != lower[i]) return false;
  }
  return true;
}

int cb_header_field(llhttp_t* p, const char* at, size_t len) {
  Connection* c = conn_of(p);
  if (!c->in_header_field_) {
    c->in_header_field_ = true;
    c->field_len_ = 0;
    if (c->collect_headers_) c->headers_.emplace_back();
  }
  // Only "expect" matters, so longer names just mark the buffer as overflowed.
  if (c->field_len_ + len <= sizeof c->field_) std::memcpy(c->field_ + c->field_len_, at, len);
  c->field_len_ += len;
  if (!c->collect_headers_) return 0;
  c->header_bytes_ += len;
  if (c->header_bytes_ > kMaxHeaderBytes) return -1;
  c->headers_.back().first.append(at, len);
  return 0;
}

int cb_header_value(llhttp_t* p, const char* at, size_t len) {
  Connection* c = conn_of(p);
  if (c->in_header_field_) {
    c->in_header_field_ = false;
    c->in_expect_ = equals_lower(c->field_, c->field_len_, "expect");
    c->field_len_ = 0;  // reused for the value of Expect
  }
  if (c->in_expect_) {
    if (c->field_len_ + len <= sizeof c->field_) std::memcpy(c->field_ + c->field_len_, at, len);
    c->field_len_ += len;
  }
  if (!c->collect_headers_) return 0;
  c->header_bytes_ += len;
  if (c->header_bytes_ > kMaxHeaderBytes) return -1;
  c->headers_.back().second.append(at, len);
  return 0;
}

int cb_header_value_complete(llhttp_t* p) {
  Connection* c = conn_of(p);
  if (c->in_expect_) {
    c->expect_continue_ = equals_lower(c->field_, c->field_len_, "100-continue");
    c->in_expect_ = false;
  }
  return 0;
}

int cb_headers_complete(llhttp_t* p) { return conn_of(p)->on_headers_complete(); }
int cb_body(llhttp_t* p, const char* at, size_t len) { return conn_of(p)->on_body(at, len); }
int cb_message_complete(llhttp_t* p) { return conn_of(p)->on_message_complete(); }

const llhttp_settings_t* parser_settings() {
  static const llhttp_settings_t settings = [] {
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_message_begin = cb_message_begin;
    s.on_url = cb_url;
    s.on_url_complete = cb_url_complete;
    s.on_header_field = cb_header_field;
    s.on_header_value = cb_header_value;
    s.on_header_value_complete = cb_header_value_complete;
    s.on_headers_complete = cb_headers_complete;
    s.on_body = cb_body;
    s.on_message_complete = cb_message_complete;
    return s;
  }();
  return &settings;
}

// ---------------------------------------------------------------------------------------------
// libuv callbacks

void on_handle_closed(uv_handle_t* h) {
  auto* c = static_cast<Connection*>(h->data);
  if (--c->pending_closes_ > 0) return;
  c->loop_->unlink(c);
  c->loop_->active.fetch_sub(1, std::memory_order_relaxed);
  delete c;
}

void on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  // One buffer per loop: read callbacks run one at a time and never keep a pointer into it.
  auto* c = static_cast<Connection*>(h->data);
  *buf = uv_buf_init(c->loop_->read_buf, sizeof c->loop_->read_buf);
}

void on_read_cb(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  static_cast<Connection*>(s->data)->on_read(nread, buf);
}

void on_write_cb(uv_write_t* req, int status) {
  auto* w = static_cast<WriteReq*>(req->data);
  auto* c = static_cast<Connection*>(req->handle->data);
  c->loop_->put_req(w);
  c->on_write_done(status);
}

void on_shutdown_cb(uv_shutdown_t* req, int status) {
  auto* c = static_cast<Connection*>(req->handle->data);
  if (status < 0) c->close();
}

void on_delay_timer(uv_timer_t* t) { static_cast<Connection*>(t->data)->on_timer(); }

void on_idle_timer(uv_timer_t* t) {
  // Idle keep-alive connection, or the linger after shutdown ran out.
  static_cast<Connection*>(t->data)->close();
}

void on_stop_async(uv_async_t* a) {
  auto* loop = static_cast<Loop*>(a->data);
  loop->stopping = true;
  if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&loop->listener))) {
    uv_close(reinterpret_cast<uv_handle_t*>(&loop->listener), nullptr);
  }
  for (Connection* c = loop->conns; c != nullptr; c = c->next_) c->close();
  uv_close(reinterpret_cast<uv_handle_t*>(&loop->stop_async), nullptr);
}

void on_connection(uv_stream_t* server, int status) {
  auto* loop = static_cast<Loop*>(server->data);
  if (status < 0 || loop->stopping) return;
  auto* c = new Connection(loop);
  uv_tcp_init(&loop->loop, &c->tcp_);
  uv_timer_init(&loop->loop, &c->delay_timer_);
  uv_timer_init(&loop->loop, &c->idle_timer_);
  loop->link(c);
  loop->active.fetch_add(1, std::memory_order_relaxed);
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&c->tcp_)) != 0) {
    c->close();
    return;
  }
  loop->accepted.fetch_add(1, std::memory_order_relaxed);
  c->start();
}

// ---------------------------------------------------------------------------------------------
// Connection

Connection::Connection(Loop* loop) : loop_(loop), shared_(loop->shared) {
  tcp_.data = this;
  delay_timer_.data = this;
  idle_timer_.data = this;
  llhttp_init(&parser_, HTTP_REQUEST, parser_settings());
  parser_.data = this;
}

void Connection::start() {
  uv_tcp_nodelay(&tcp_, 1);
  settle();  // starts reading and the idle timer
}

void Connection::close() {
  if (closing_) return;
  closing_ = true;
  pending_closes_ = 3;
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), on_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&delay_timer_), on_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&idle_timer_), on_handle_closed);
  if (staging_ != nullptr) {
    loop_->put_req(staging_);
    staging_ = nullptr;
  }
}

void Connection::on_read(ssize_t nread, const uv_buf_t* buf) {
  if (closing_) return;
  if (nread < 0) {
    if (nread != UV_EOF || draining_) {
      close();
      return;
    }
    peer_eof_ = true;
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
    reading_ = false;
    // Requests already received (and parked) are still answered; settle() drops a half-sent one.
    settle();
    return;
  }
  if (nread == 0 || draining_) return;
  const char* data = buf->base;
  size_t len = static_cast<size_t>(nread);
  if (held_.empty()) {
    size_t used = execute(data, len);
    if (used < len && !want_close_ && !closing_) held_.assign(data + used, len - used);
  } else {
    held_.append(data, len);
    size_t used = execute(held_.data(), held_.size());
    held_.erase(0, used);
    if (want_close_) held_.clear();
  }
  settle();
}

void Connection::on_write_done(int status) {
  --writes_in_flight_;
  if (closing_) return;
  if (status < 0) {
    close();
    return;
  }
  settle();
}

void Connection::on_timer() {
  if (closing_) return;
  start_response();
  settle();
}

size_t Connection::execute(const char* data, size_t len) {
  if (paused_ || want_close_ || closing_ || len == 0) return 0;
  in_parser_ = true;
  llhttp_errno_t err = llhttp_execute(&parser_, data, len);
  in_parser_ = false;
  if (closing_) return len;
  if (err == HPE_OK) return len;
  if (err == HPE_PAUSED) return static_cast<size_t>(llhttp_get_error_pos(&parser_) - data);
  if (err == HPE_PAUSED_UPGRADE) {
    // Answered like any request; this backend speaks no other protocol afterwards.
    want_close_ = true;
    return len;
  }
  if (responding_) {
    // A broken body in the middle of a streamed echo: there is no coherent way to end it.
    close();
    return len;
  }
  fail_request(400);
  return len;
}

void Connection::route_request() {
  std::string_view url(url_);
  std::string_view path = url;
  size_t q = url.find('?');
  if (q != std::string_view::npos) {
    path = url.substr(0, q);
    close_after_ = url.substr(q + 1).find("close=1") != std::string_view::npos;
  } else {
    close_after_ = false;
  }
  route_ = Route::kDefault;
  route_arg_ = 0;
  auto prefixed = [&](std::string_view prefix, Route r) {
    if (path.substr(0, prefix.size()) != prefix) return false;
    uint64_t v = 0;
    if (!parse_u64(path.substr(prefix.size()), &v)) return false;
    route_ = r;
    route_arg_ = v;
    return true;
  };
  if (path == "/echo") {
    route_ = Route::kEcho;
  } else if (path == "/sink") {
    route_ = Route::kSink;
  } else if (path == "/headers") {
    route_ = Route::kHeaders;
    collect_headers_ = true;
  } else if (path == "/__stats") {
    route_ = Route::kStats;
  } else if (prefixed("/__status/", Route::kForceStatus)) {
    if (route_arg_ != 0 && (route_arg_ < 100 || route_arg_ > 999)) route_ = Route::kDefault;
  } else if (prefixed("/__delay/", Route::kForceDelay)) {
    if (route_arg_ > 600000) route_ = Route::kDefault;
  } else if (path == "/healthz") {
    route_ = Route::kHealth;
  } else if (prefixed("/__health/", Route::kSetHealth)) {
    if (route_arg_ < 200 || route_arg_ > 599) route_ = Route::kDefault;
  } else if (prefixed("/status/", Route::kStatus)) {
    if (route_arg_ < 100 || route_arg_ > 999) route_ = Route::kDefault;
  } else if (!prefixed("/delay/", Route::kDelay) && !prefixed("/bytes/", Route::kBytes)) {
    prefixed("/chunked/", Route::kChunked);
  }
}

int Connection::on_headers_complete() {
  is_head_ = llhttp_get_method(&parser_) == HTTP_HEAD;
  chunked_ok_ = parser_.http_major > 1 || (parser_.http_major == 1 && parser_.http_minor >= 1);
  if (!llhttp_should_keep_alive(&parser_)) close_after_ = true;
  if (close_after_) {
    mode_ = ConnMode::kClose;
  } else {
    mode_ = chunked_ok_ ? ConnMode::kKeepAlive11 : ConnMode::kKeepAlive10;
  }
  if (route_ != Route::kStats && route_ != Route::kForceStatus && route_ != Route::kHealth &&
      route_ != Route::kSetHealth && route_ != Route::kForceDelay)
    loop_->requests.fetch_add(1, std::memory_order_relaxed);
  if (expect_continue_ && chunked_ok_ &&
      (parser_.content_length > 0 || (parser_.flags & F_CHUNKED) != 0)) {
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    staging()->add_ext(kContinue.data(), kContinue.size());
  }
  if (route_ == Route::kEcho) {
    // The echo starts now and streams the body as it arrives.
    if (!chunked_ok_) {
      close_after_ = true;
      mode_ = ConnMode::kClose;
    }
    responding_ = true;
    stage_head(200, "application/octet-stream", chunked_ok_, kUnknownLength);
  }
  return 0;
}

int Connection::on_body(const char* at, size_t len) {
  body_bytes_ += len;
  if (route_ == Route::kSink) {
    uint64_t h = fnv_;
    for (size_t i = 0; i < len; ++i) {
      h ^= static_cast<unsigned char>(at[i]);
      h *= 0x100000001b3ULL;
    }
    fnv_ = h;
  } else if (route_ == Route::kEcho && !is_head_) {
    WriteReq* w = staging();
    if (chunked_ok_) {
      char line[24];
      int n = std::snprintf(line, sizeof line, "%zx\r\n", len);
      w->add_owned(std::string_view(line, static_cast<size_t>(n)));
    }
    w->add_owned(std::string_view(at, len));
    if (chunked_ok_) w->add_owned(kCrlf);
  }
  return 0;
}

int Connection::on_message_complete() {
  in_message_ = false;
  if (route_ == Route::kEcho) {
    if (chunked_ok_ && !is_head_) staging()->add_owned(kLastChunk);
    response_finished();
  } else if (route_ == Route::kDelay ||
             (route_ == Route::kDefault && (shared_->options.delay_ms ||
                                            shared_->forced_delay_ms.load(std::memory_order_relaxed)))) {
    responding_ = true;
    uint64_t forced = shared_->forced_delay_ms.load(std::memory_order_relaxed);
    uint64_t ms = route_ == Route::kDelay ? route_arg_
                                          : (forced ? forced : shared_->options.delay_ms);
    uv_timer_start(&delay_timer_, on_delay_timer, ms, 0);
  } else {
    start_response();
  }
  if (responding_ || want_close_) {
    // Later pipelined requests wait until this response is fully staged (answers stay in
    // order); after a closing response nothing more is parsed.
    paused_ = true;
    return HPE_PAUSED;
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Responses

void Connection::stage_head(int status, std::string_view content_type, bool chunked,
                            uint64_t length, std::string_view extra_headers) {
  std::string head;
  head.reserve(256);
  char line[64];
  int n = std::snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\n", status, reason_phrase(status));
  head.append(line, static_cast<size_t>(n));
  head.append("x-backend: ").append(shared_->options.name).append(kCrlf);
  if (status_has_body(status)) {
    head.append("content-type: ").append(content_type).append(kCrlf);
    if (chunked) {
      head.append("transfer-encoding: chunked\r\n");
    } else if (length != kUnknownLength) {
      n = std::snprintf(line, sizeof line, "content-length: %llu\r\n",
                        static_cast<unsigned long long>(length));
      head.append(line, static_cast<size_t>(n));
    }
  }
  head.append(extra_headers);
  if (mode_ == ConnMode::kClose) head.append("connection: close\r\n");
  if (mode_ == ConnMode::kKeepAlive10) head.append("connection: keep-alive\r\n");
  head.append(kCrlf);
  staging()->add_owned(head);
}

void Connection::stage_default(int status) {
  const Shared& s = *shared_;
  int m = static_cast<int>(mode_);
  bool body = status_has_body(status) && !is_head_;
  if (status == s.options.status) {
    if (body && !s.default_body_streamed) {
      staging()->add_ext(s.default_full[m].data(), s.default_full[m].size());
    } else {
      staging()->add_ext(s.default_head[m].data(), s.default_head[m].size());
    }
  } else {
    stage_head(status, "text/plain", false, s.default_body_size);
    if (body && !s.default_body_streamed) {
      // default_full minus its head is exactly the body.
      const std::string& full = s.default_full[m];
      size_t head_len = s.default_head[m].size();
      staging()->add_ext(full.data() + head_len, full.size() - head_len);
    }
  }
  if (body && s.default_body_streamed) {
    gen_active_ = true;
    gen_chunked_ = false;
    gen_offset_ = 0;
    gen_remaining_ = s.default_body_size;
  }
}

void Connection::stage_json(std::string_view json) {
  stage_head(200, "application/json", false, json.size());
  if (!is_head_) staging()->add_owned(json);
}

void Connection::start_response() {
  responding_ = true;
  gen_active_ = false;
  switch (route_) {
    case Route::kDefault:
    case Route::kDelay: {
      int forced = shared_->forced_status.load(std::memory_order_relaxed);
      stage_default(forced ? forced : shared_->options.status);
      break;
    }
    case Route::kForceStatus:
      shared_->forced_status.store(static_cast<int>(route_arg_), std::memory_order_relaxed);
      stage_json("{\"ok\":true}");
      break;
    case Route::kForceDelay:
      shared_->forced_delay_ms.store(static_cast<uint32_t>(route_arg_), std::memory_order_relaxed);
      stage_json("{\"ok\":true}");
      break;
    case Route::kStatus: stage_default(static_cast<int>(route_arg_)); break;
    case Route::kHealth:
      stage_default(shared_->health_status.load(std::memory_order_relaxed));
      break;
    case Route::kSetHealth:
      shared_->health_status.store(static_cast<int>(route_arg_), std::memory_order_relaxed);
      stage_default(200);
      break;
    case Route::kBytes:
      stage_head(200, "application/octet-stream", false, route_arg_);
      if (!is_head_) {
        gen_active_ = true;
        gen_chunked_ = false;
        gen_offset_ = 0;
        gen_remaining_ = route_arg_;
      }
      break;
    case Route::kChunked:
      if (!chunked_ok_) {
        // HTTP/1.0 has no chunked coding: send the raw bytes and let the close delimit them.
        close_after_ = true;
        mode_ = ConnMode::kClose;
        stage_head(200, "application/octet-stream", false, route_arg_);
      } else {
        stage_head(200, "application/octet-stream", true, 0, "trailer: x-trailer\r\n");
      }
      if (!is_head_) {
        gen_active_ = true;
        gen_chunked_ = chunked_ok_;
        gen_offset_ = 0;
        gen_remaining_ = route_arg_;
      }
      break;
    case Route::kSink: {
      char json[96];
      int n = std::snprintf(json, sizeof json, "{\"bytes\":%llu,\"fnv1a64\":\"%016llx\"}",
                            static_cast<unsigned long long>(body_bytes_),
                            static_cast<unsigned long long>(fnv_));
      stage_json(std::string_view(json, static_cast<size_t>(n)));
      break;
    }
    case Route::kHeaders: {
      std::string json = "{\"method\":";
      append_json_string(
          &json, llhttp_method_name(static_cast<llhttp_method_t>(llhttp_get_method(&parser_))));
      json.append(",\"target\":");
      append_json_string(&json, url_);
      char version[16];
      std::snprintf(version, sizeof version, "%u.%u", parser_.http_major, parser_.http_minor);
      json.append(",\"version\":");
      append_json_string(&json, version);
      json.append(",\"headers\":[");
      for (size_t i = 0; i < headers_.size(); ++i) {
        if (i) json.push_back(',');
        json.push_back('[');
        append_json_string(&json, headers_[i].first);
        json.push_back(',');
        append_json_string(&json, headers_[i].second);
        json.push_back(']');
      }
      json.append("]}");
      stage_json(json);
      break;
    }
    case Route::kStats: {
      uint64_t accepted = 0, active = 0, requests = 0;
      for (const auto& l : *loop_->siblings) {
        accepted += l->accepted.load(std::memory_order_relaxed);
        active += l->active.load(std::memory_order_relaxed);
        requests += l->requests.load(std::memory_order_relaxed);
      }
      std::string json = "{\"name\":";
      append_json_string(&json, shared_->options.name);
      char rest[160];
      int n = std::snprintf(
          rest, sizeof rest, ",\"connections\":%llu,\"active_connections\":%llu,\"requests\":%llu}",
          static_cast<unsigned long long>(accepted), static_cast<unsigned long long>(active),
          static_cast<unsigned long long>(requests));
      json.append(rest, static_cast<size_t>(n));
      stage_json(json);
      break;
    }
    case Route::kEcho: break;  // started in on_headers_complete
  }
  if (!gen_active_) response_finished();
}

// Stages streamed body pieces until enough output is queued; the write callbacks call again.
void Connection::pump() {
  const std::string& pattern = shared_->pattern;
  while (gen_active_ && queued_bytes() < kHighWater) {
    if (gen_remaining_ == 0) {
      gen_active_ = false;
      if (gen_chunked_)
        staging()->add_ext(kLastChunkWithTrailer.data(), kLastChunkWithTrailer.size());
      response_finished();
      return;
    }
    size_t piece = gen_chunked_ ? kChunkSize : kPieceSize;
    if (gen_remaining_ < piece) piece = static_cast<size_t>(gen_remaining_);
    WriteReq* w = staging();
    if (gen_chunked_) {
      char line[24];
      int n = std::snprintf(line, sizeof line, "%zx\r\n", piece);
      w->add_owned(std::string_view(line, static_cast<size_t>(n)));
    }
    w->add_ext(pattern.data() + gen_offset_ % 26, piece);
    if (gen_chunked_) w->add_ext(kCrlf.data(), kCrlf.size());
    gen_offset_ += piece;
    gen_remaining_ -= piece;
  }
}

// The last byte of the current response is staged.
void Connection::response_finished() {
  responding_ = false;
  if (close_after_) want_close_ = true;
  if (in_parser_) return;  // on_message_complete decides whether to pause
  if (paused_ && !want_close_) {
    paused_ = false;
    llhttp_resume(&parser_);
    size_t used = execute(held_.data(), held_.size());
    held_.erase(0, used);
    if (want_close_) held_.clear();
  }
}

void Connection::fail_request(int status) {
  close_after_ = true;
  mode_ = ConnMode::kClose;
  is_head_ = false;
  const char* reason = reason_phrase(status);
  char body[64];
  int n = std::snprintf(body, sizeof body, "%d %s\n", status, reason);
  stage_head(status, "text/plain", false, static_cast<uint64_t>(n));
  staging()->add_owned(std::string_view(body, static_cast<size_t>(n)));
  want_close_ = true;
}

// ---------------------------------------------------------------------------------------------
// Output and flow control

WriteReq* Connection::staging() {
  if (staging_ == nullptr) staging_ = loop_->get_req();
  return staging_;
}

size_t Connection::queued_bytes() const {
  size_t n = uv_stream_get_write_queue_size(reinterpret_cast<const uv_stream_t*>(&tcp_));
  if (staging_ != nullptr) n += staging_->bytes;
  return n;
}

void Connection::flush() {
  if (closing_ || staging_ == nullptr || staging_->bytes == 0) return;
  WriteReq* w = staging_;
  w->req.data = w;
  std::vector<uv_buf_t>& bufs = loop_->scratch_bufs;
  bufs.clear();
  for (const WriteReq::Seg& s : w->segs) {
    const char* base = s.ext != nullptr ? s.ext : w->owned.data() + s.off;
    bufs.push_back(uv_buf_init(const_cast<char*>(base), static_cast<unsigned>(s.len)));
  }
  auto* stream = reinterpret_cast<uv_stream_t*>(&tcp_);
  size_t first = 0;
  if (writes_in_flight_ == 0) {
    int n = uv_try_write(stream, bufs.data(), static_cast<unsigned>(bufs.size()));
    if (n < 0 && n != UV_EAGAIN) {
      close();
      return;
    }
    size_t done = n > 0 ? static_cast<size_t>(n) : 0;
    if (done == w->bytes) {
      w->reset();  // keep it as the staging request: no allocation on the next response
      return;
    }
    while (done >= bufs[first].len) done -= bufs[first++].len;
    bufs[first].base += done;
    bufs[first].len -= done;
  }
  staging_ = nullptr;
  int rc = uv_write(&w->req, stream, bufs.data() + first,
                    static_cast<unsigned>(bufs.size() - first), on_write_cb);
  if (rc != 0) {
    loop_->put_req(w);
    close();
    return;
  }
  ++writes_in_flight_;
}

// Brings output, body generation, parsing, reading and closing up to date. Called after every
// event, never from inside the parser.
void Connection::settle() {
  while (!closing_) {
    flush();
    if (closing_) return;
    if (!gen_active_ || queued_bytes() >= kLowWater) break;
    pump();
  }
  if (closing_) return;
  if (peer_eof_ && in_message_ && !paused_) {
    // The rest of this request can never arrive, so neither can a coherent response.
    close();
    return;
  }
  if (peer_eof_ && !responding_ && !paused_) want_close_ = true;
  if (want_close_ && !responding_ && writes_in_flight_ == 0 &&
      (staging_ == nullptr || staging_->bytes == 0)) {
    begin_shutdown();
    return;
  }
  uint32_t idle_ms = shared_->options.keepalive_timeout_ms;
  if (idle_ms && !idle_armed_ && !in_message_ && !responding_ && !want_close_ && !draining_) {
    idle_armed_ = true;
    arm_timer(idle_ms);
  }
  update_reading();
}

void Connection::update_reading() {
  bool want = !closing_ && !peer_eof_ &&
              (draining_ || (queued_bytes() < (reading_ ? kHighWater : kLowWater) &&
                             held_.size() < kMaxHeldInput && !want_close_));
  if (want == reading_) return;
  auto* stream = reinterpret_cast<uv_stream_t*>(&tcp_);
  if (want) {
    if (uv_read_start(stream, on_alloc, on_read_cb) != 0) {
      close();
      return;
    }
  } else {
    uv_read_stop(stream);
  }
  reading_ = want;
}

// Our side is done: send FIN, then read and discard until the peer closes (closing with unread
// input would make the kernel send RST, which can destroy the response in flight).
void Connection::begin_shutdown() {
  if (draining_ || closing_) return;
  if (peer_eof_) {
    close();
    return;
  }
  draining_ = true;
  if (uv_shutdown(&shutdown_req_, reinterpret_cast<uv_stream_t*>(&tcp_), on_shutdown_cb) != 0) {
    close();
    return;
  }
  arm_timer(kLingerMs);
  update_reading();
}

void Connection::arm_timer(uint64_t ms) { uv_timer_start(&idle_timer_, on_idle_timer, ms, 0); }

}  // namespace

// ---------------------------------------------------------------------------------------------
// Backend

Backend::Backend(BackendOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->shared.options = std::move(options);
}

Backend::~Backend() { stop(); }

namespace {

void precompute(Shared* s) {
  s->pattern.resize(kPieceSize + 26);
  for (size_t i = 0; i < s->pattern.size(); ++i) s->pattern[i] = static_cast<char>('a' + i % 26);

  const BackendOptions& o = s->options;
  std::string body;
  if (o.body_size == 0) {
    body = o.name + "\n";
  } else if (o.body_size <= kPrecomputedBodyLimit) {
    body.resize(o.body_size);
    for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>('a' + i % 26);
  } else {
    s->default_body_streamed = true;
  }
  s->default_body_size = o.body_size == 0 ? body.size() : o.body_size;
  static const char* const kConnectionHeader[3] = {"", "connection: keep-alive\r\n",
                                                   "connection: close\r\n"};
  for (int m = 0; m < 3; ++m) {
    std::string& head = s->default_head[m];
    char line[64];
    std::snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\n", o.status, reason_phrase(o.status));
    head = line;
    head.append("x-backend: ").append(o.name).append(kCrlf);
    if (status_has_body(o.status)) {
      head.append("content-type: text/plain\r\n");
      std::snprintf(line, sizeof line, "content-length: %zu\r\n", s->default_body_size);
      head.append(line);
    }
    head.append(kConnectionHeader[m]).append(kCrlf);
    s->default_full[m] = head;
    if (status_has_body(o.status)) s->default_full[m].append(body);
  }
}

bool resolve(const std::string& host, uint16_t port, sockaddr_storage* addr) {
  std::memset(addr, 0, sizeof *addr);
  if (uv_ip4_addr(host.c_str(), port, reinterpret_cast<sockaddr_in*>(addr)) == 0) return true;
  return uv_ip6_addr(host.c_str(), port, reinterpret_cast<sockaddr_in6*>(addr)) == 0;
}

uint16_t port_of(const sockaddr_storage& addr) {
  if (addr.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6&>(addr).sin6_port);
  }
  return ntohs(reinterpret_cast<const sockaddr_in&>(addr).sin_port);
}

// libuv 1.44 has no SO_REUSEPORT flag, so the socket is made by hand and handed to uv_tcp_open.
int open_listen_socket(const sockaddr_storage& addr, std::string* error) {
  int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = std::string("socket: ") + std::strerror(errno);
    return -1;
  }
  int one = 1;
  socklen_t len = addr.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    *error = std::string("setsockopt SO_REUSEPORT: ") + std::strerror(errno);
  } else if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0) {
    *error = std::string("bind: ") + std::strerror(errno);
  } else {
    return fd;
  }
  ::close(fd);
  return -1;
}

void run_loop(Loop* loop) {
  uv_run(&loop->loop, UV_RUN_DEFAULT);
  // Only reached once on_stop_async closed every handle.
  uv_loop_close(&loop->loop);
  for (WriteReq* w : loop->free_reqs) delete w;
  loop->free_reqs.clear();
}

}  // namespace

bool Backend::start(std::string* error) {
  std::string scratch;
  if (error == nullptr) error = &scratch;
  Impl& impl = *impl_;
  if (impl.started) {
    *error = "backend already started";
    return false;
  }
  const BackendOptions& o = impl.shared.options;
  if (o.threads == 0) {
    *error = "threads must be at least 1";
    return false;
  }
  sockaddr_storage addr;
  if (!resolve(o.host, o.port, &addr)) {
    *error = "cannot parse host '" + o.host + "' as an IPv4 or IPv6 address";
    return false;
  }
  // A peer that resets mid-write must cost an EPIPE, not the process.
  ::signal(SIGPIPE, SIG_IGN);

  // Bind every socket before creating any loop, so a failure leaves nothing to tear down.
  std::vector<int> fds;
  for (unsigned i = 0; i < o.threads; ++i) {
    int fd = open_listen_socket(addr, error);
    if (fd < 0) {
      *error = o.host + ":" + std::to_string(port_of(addr)) + ": " + *error;
      for (int f : fds) ::close(f);
      return false;
    }
    if (i == 0) {
      // Port 0: the first socket picks the port and the others join it.
      sockaddr_storage bound;
      socklen_t len = sizeof bound;
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
      impl.port = port_of(bound);
      if (addr.ss_family == AF_INET6) {
        reinterpret_cast<sockaddr_in6&>(addr).sin6_port = htons(impl.port);
      } else {
        reinterpret_cast<sockaddr_in&>(addr).sin_port = htons(impl.port);
      }
    }
    if (::listen(fd, 1024) != 0) {
      *error = std::string("listen: ") + std::strerror(errno);
      ::close(fd);
      for (int f : fds) ::close(f);
      return false;
    }
    fds.push_back(fd);
  }
  precompute(&impl.shared);

  impl.started = true;
  for (size_t i = 0; i < fds.size(); ++i) {
    auto loop = std::make_unique<Loop>();
    loop->shared = &impl.shared;
    loop->siblings = &impl.loops;
    uv_loop_init(&loop->loop);
    uv_async_init(&loop->loop, &loop->stop_async, on_stop_async);
    loop->stop_async.data = loop.get();
    uv_tcp_init(&loop->loop, &loop->listener);
    loop->listener.data = loop.get();
    int rc = uv_tcp_open(&loop->listener, fds[i]);
    if (rc == 0) {
      // The socket already listens; uv_listen only registers the accept callback.
      rc = uv_listen(reinterpret_cast<uv_stream_t*>(&loop->listener), 1024, on_connection);
    } else {
      ::close(fds[i]);
    }
    if (rc != 0 && error->empty()) *error = std::string("uv_listen: ") + uv_strerror(rc);
    impl.loops.push_back(std::move(loop));
  }
  for (auto& loop : impl.loops) loop->thread = std::thread(run_loop, loop.get());
  if (!error->empty()) {
    stop();
    return false;
  }
  return true;
}

void Backend::stop() {
  Impl& impl = *impl_;
  std::lock_guard<std::mutex> lock(impl.stop_mutex);
  if (!impl.started || impl.stopped) return;
  impl.stopped = true;
  for (auto& loop : impl.loops) uv_async_send(&loop->stop_async);
  for (auto& loop : impl.loops) {
    if (loop->thread.joinable()) loop->thread.join();
  }
}

uint16_t Backend::port() const { return impl_->port; }

const BackendOptions& Backend::options() const { return impl_->shared.options; }

uint64_t Backend::connections_accepted() const {
  uint64_t n = 0;
  for (const auto& loop : impl_->loops) n += loop->accepted.load(std::memory_order_relaxed);
  return n;
}

uint64_t Backend::requests() const {
  uint64_t n = 0;
  for (const auto& loop : impl_->loops) n += loop->requests.load(std::memory_order_relaxed);
  return n;
}

}  // namespace weir::bench
