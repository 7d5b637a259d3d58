#include "proxy/http_client.h"

#include <arpa/inet.h>
#include <llhttp.h>
#include <netdb.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <cstring>

#include "config/config.h"
#include "proxy/http_util.h"
#include "proxy/tls_io.h"
#include "proxy/upstream_tls.h"

namespace weir::proxy {

namespace {

constexpr size_t kMaxIdlePerOrigin = 4;
constexpr uint64_t kIdleCloseMs = 30000;
constexpr size_t kMaxHeadBytes = 64 * 1024;

struct Url {
  bool https = false;
  std::string host;       // without brackets
  std::string authority;  // as written, for Host
  uint16_t port = 0;
  std::string path;  // with the query
  std::string origin;
};

// "" on success, else what is wrong with `url`.
std::string parse_url(const std::string& url, Url* out) {
  std::string_view rest = url;
  if (rest.starts_with("http://")) {
    rest.remove_prefix(7);
  } else if (rest.starts_with("https://")) {
    out->https = true;
    rest.remove_prefix(8);
  } else {
    return "the URL must start with http:// or https://";
  }
  const size_t slash = rest.find_first_of("/?#");
  std::string_view auth = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash);
  if (path.find('#') != std::string_view::npos) path = path.substr(0, path.find('#'));
  out->path = path.empty() || path[0] != '/' ? "/" + std::string(path) : std::string(path);
  if (auth.find('@') != std::string_view::npos) return "user information in URLs is not supported";
  std::string_view port;
  if (auth.starts_with("[")) {
    const size_t close = auth.find(']');
    if (close == std::string_view::npos) return "an IPv6 address must end with ']'";
    out->host = std::string(auth.substr(1, close - 1));
    std::string_view after = auth.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return "expected ':' and a port after the IPv6 address";
      port = after.substr(1);
    }
    in6_addr a6;
    if (inet_pton(AF_INET6, out->host.c_str(), &a6) != 1) return "bad IPv6 address";
  } else {
    const size_t colon = auth.rfind(':');
    out->host = std::string(auth.substr(0, colon));
    if (colon != std::string_view::npos) port = auth.substr(colon + 1);
  }
  if (out->host.empty()) return "the URL has no host";
  for (char ch : out->host) {
    if (static_cast<unsigned char>(ch) <= ' ' || ch == '/' || ch == '\\') {
      return "the host contains a character that is not allowed";
    }
  }
  if (!auth.starts_with("[") && out->host.find(':') != std::string::npos) {
    return "an IPv6 address must be written in brackets ([::1]:2379)";
  }
  if (!port.empty() || (auth.size() > 0 && auth.back() == ':')) {
    uint32_t p = 0;
    if (port.empty() || port.size() > 5) return "bad port";
    for (char ch : port) {
      if (ch < '0' || ch > '9') return "bad port";
      p = p * 10 + static_cast<uint32_t>(ch - '0');
    }
    if (p == 0 || p > 65535) return "the port must be 1-65535";
    out->port = static_cast<uint16_t>(p);
  } else {
    out->port = out->https ? 443 : 80;
  }
  out->authority = std::string(auth);
  out->origin = (out->https ? "https://" : "http://") + out->authority;
  return "";
}

bool has_ctl(std::string_view s) {
  return std::any_of(s.begin(), s.end(),
                     [](char ch) { return ch == '\r' || ch == '\n' || ch == 0; });
}

}  // namespace

const char* to_string(HttpError::Kind kind) {
  switch (kind) {
    case HttpError::Kind::kNone: return "ok";
    case HttpError::Kind::kInvalid: return "invalid request";
    case HttpError::Kind::kConnect: return "connect";
    case HttpError::Kind::kTls: return "tls";
    case HttpError::Kind::kTimeout: return "timeout";
    case HttpError::Kind::kProtocol: return "protocol";
    case HttpError::Kind::kClosed: return "connection closed";
  }
  return "?";
}

const std::string* HttpResponse::header(std::string_view lower_name) const {
  for (const auto& [n, v] : headers) {
    if (n == lower_name) return &v;
  }
  return nullptr;
}

// One request. Freed in its timer's close callback (the timer is the timeout, then the
// deferral of on_done); `client` is nullptr once it ended or was cancelled.
struct HttpClient::Call {
  HttpClient* client = nullptr;
  HttpClient* delivering = nullptr;  // while on_done waits for the next loop turn
  RequestId id = 0;
  HttpRequest req;
  HttpCallbacks cb;
  Url url;
  uv_timer_t timer{};
  Conn* conn = nullptr;
  Resolve* resolve = nullptr;
  std::vector<sockaddr_storage> addrs;
  size_t next_addr = 0;
  std::string connect_error;
  HttpResponse response;
  HttpError result;
  bool sent = false;       // bytes of the request were handed to the socket
  bool head_seen = false;  // streams: on_head ran
  bool reused = false;     // on a pooled connection
  bool retried = false;
  bool lost_once = false;  // went out on a kept-alive connection that closed without a reply

  void close_timer() {
    uv_close(reinterpret_cast<uv_handle_t*>(&timer),
             [](uv_handle_t* h) { delete static_cast<Call*>(h->data); });
  }
  static void on_timeout(uv_timer_t* t) {
    auto* c = static_cast<Call*>(t->data);
    if (!c->client) return;
    HttpClient* client = c->client;
    std::string what =
        c->head_seen ? "no data for " + std::to_string(c->req.idle_timeout_ms) + " ms on the stream"
                     : "no response within " + std::to_string(c->req.timeout_ms) + " ms";
    client->finish(c, client->error_for(c, HttpError::Kind::kTimeout, what));
  }
  static void on_deliver(uv_timer_t* t) {
    auto* c = static_cast<Call*>(t->data);
    if (c->delivering) c->delivering->delivering_.erase(c->id);
    auto done = std::move(c->cb.on_done);
    HttpError error = std::move(c->result);
    HttpResponse response = std::move(c->response);
    c->cb = {};
    c->close_timer();
    if (done) done(std::move(error), std::move(response));
  }
};

// A name resolution in flight; freed by its callback (which also runs, with EAI_CANCELED, after
// uv_cancel).
struct HttpClient::Resolve {
  uv_getaddrinfo_t req{};
  Call* call = nullptr;
};

// One TCP connection (with TLS for https). Freed when both of its handles have closed.
struct HttpClient::Conn {
  HttpClient* client = nullptr;  // nullptr once closing
  std::string origin;
  std::string host;
  bool https = false;
  uv_tcp_t tcp{};
  uv_connect_t connect_req{};
  uv_timer_t idle_timer{};
  int open_handles = 0;
  llhttp_t parser{};
  TlsIo tls;
  std::string tls_out;
  bool tls_open = false;
  bool connected = false;
  Call* call = nullptr;
  bool idle = false;
  bool closing = false;
  // The response being parsed.
  std::string field, value;
  size_t head_bytes = 0;
  bool informational = false;
  bool complete = false;
  bool got_bytes = false;
  std::string parse_error;  // set by a callback that stopped the parser
  std::string stream_data;  // body bytes of a stream parsed in this read, delivered after it
  char buf[16384];

  void close() {
    if (closing) return;
    closing = true;
    HttpClient* owner = client;
    client = nullptr;
    call = nullptr;
    if (owner) owner->forget(this);
    auto done = [](uv_handle_t* h) {
      auto* self = static_cast<Conn*>(h->data);
      if (--self->open_handles == 0) delete self;
    };
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp), done);
    uv_close(reinterpret_cast<uv_handle_t*>(&idle_timer), done);
  }

  void fail(HttpError::Kind kind, const std::string& what) {
    if (!client || !call) {
      close();
      return;
    }
    Call* c = call;
    client->finish(c, client->error_for(c, kind, what));
  }

  // Writes raw bytes; the buffer lives until the write callback (which, after uv_close, still
  // runs with ECANCELED before the close callback frees this connection).
  void write_raw(std::string data) {
    struct Write {
      uv_write_t req;
      std::string data;
    };
    if (data.empty() || !client) return;
    auto* w = new Write{{}, std::move(data)};
    w->req.data = this;
    uv_buf_t b = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
    int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&tcp), &b, 1,
                      [](uv_write_t* req, int status) {
                        auto* self = static_cast<Conn*>(req->data);
                        delete reinterpret_cast<Write*>(req);
                        if (status < 0 && self->client) {
                          self->fail(HttpError::Kind::kClosed,
                                     std::string("write failed: ") + uv_strerror(status));
                        }
                      });
    if (rc < 0) {
      delete w;
      fail(HttpError::Kind::kClosed, std::string("write failed: ") + uv_strerror(rc));
    }
  }

  void flush_tls() {
    if (tls_out.empty()) return;
    std::string flight;
    flight.swap(tls_out);
    write_raw(std::move(flight));
  }

  void write(std::string data) {
    if (!tls.active()) {
      write_raw(std::move(data));
      return;
    }
    if (!tls.write(data.data(), data.size())) {
      fail(HttpError::Kind::kTls, "TLS write: " + tls.last_error());
      return;
    }
    flush_tls();
  }

  void handshake() {
    const int rc = tls.handshake();
    flush_tls();
    if (!client) return;
    if (rc == SSL_ERROR_NONE) {
      tls_open = true;
      if (call) client->send_on(this, call);
    } else if (rc != SSL_ERROR_WANT_READ && rc != SSL_ERROR_WANT_WRITE) {
      fail(HttpError::Kind::kTls, "TLS handshake: " + tls.last_error());
    }
  }

  void start_reading() {
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(&tcp),
        [](uv_handle_t* h, size_t, uv_buf_t* b) {
          auto* self = static_cast<Conn*>(h->data);
          *b = uv_buf_init(self->buf, sizeof self->buf);
        },
        [](uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
          auto* self = static_cast<Conn*>(s->data);
          if (!self->client || n == 0) return;
          if (n < 0) {
            self->on_end(static_cast<int>(n));
            return;
          }
          self->on_bytes(b->base, static_cast<size_t>(n));
        });
  }

  void on_bytes(const char* data, size_t len) {
    if (idle) {
      close();  // an idle connection has nothing to say; it cannot be trusted any more
      return;
    }
    if (!tls.active()) {
      feed(data, len);
      return;
    }
    tls.set_input(data, len);
    if (!tls_open) handshake();
    if (client && tls_open) {
      char plain[16384];
      int err = SSL_ERROR_NONE;
      while (client && err == SSL_ERROR_NONE) {
        size_t got = tls.read(plain, sizeof plain, &err);
        flush_tls();
        if (got > 0 && client) feed(plain, got);
      }
      if (client && tls.retry_pending()) {
        if (!tls.retry()) fail(HttpError::Kind::kTls, "TLS write: " + tls.last_error());
        flush_tls();
      }
      if (client && err == SSL_ERROR_ZERO_RETURN) {
        tls.clear_input();
        on_end(UV_EOF);
        return;
      }
      if (client && err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
        fail(HttpError::Kind::kTls, "TLS: " + tls.last_error());
      }
    }
    tls.clear_input();
  }

  void on_end(int status) {
    if (idle || !call) {
      close();
      return;
    }
    Call* c = call;
    HttpClient* owner = client;
    if (!got_bytes && c->reused && !c->retried && connected) {
      // The server closed a kept-alive connection as the request went out: once more, fresh.
      c->retried = true;
      c->reused = false;
      c->sent = false;
      c->lost_once = true;
      c->conn = nullptr;
      call = nullptr;
      close();
      owner->start(c);
      return;
    }
    if (status == UV_EOF && got_bytes && !complete) {
      // A body delimited by the end of the connection ends here; anything else is cut short.
      llhttp_errno_t err = llhttp_finish(&parser);
      if ((err == HPE_OK || err == HPE_PAUSED) && complete) {
        deliver_stream();
        if (client && call) owner->finish(call, {}, false);
        return;
      }
    }
    std::string what;
    if (!connected) {
      what = std::string("connection failed: ") + uv_strerror(status);
    } else if (c->req.stream && c->head_seen) {
      what = status == UV_EOF ? "the stream ended without its terminating chunk"
                              : std::string("the stream broke: ") + uv_strerror(status);
    } else {
      what = status == UV_EOF ? "connection closed before the end of the response"
                              : std::string("connection lost: ") + uv_strerror(status);
    }
    fail(HttpError::Kind::kClosed, what);
  }

  void feed(const char* data, size_t len) {
    got_bytes = true;
    Call* c = call;
    if (!c) {
      close();
      return;
    }
    llhttp_errno_t err = llhttp_execute(&parser, data, len);
    size_t consumed = len;
    if (err == HPE_PAUSED) consumed = static_cast<size_t>(llhttp_get_error_pos(&parser) - data);
    if (err != HPE_OK && err != HPE_PAUSED) {
      const char* reason = llhttp_get_error_reason(&parser);
      fail(HttpError::Kind::kProtocol,
           !parse_error.empty() ? parse_error
                                : std::string("bad response: ") + llhttp_errno_name(err) +
                                      (reason ? std::string(" (") + reason + ")" : ""));
      return;
    }
    if (c->req.stream) {
      if (!c->head_seen && response_head_done()) {
        c->head_seen = true;
        // A copy: the callback may cancel the request, which drops c->cb.
        if (auto on_head = c->cb.on_head) on_head(c->response);
        if (!client || call != c) return;
        if (c->req.idle_timeout_ms > 0) {
          uv_timer_start(&c->timer, Call::on_timeout, c->req.idle_timeout_ms, 0);
        } else {
          uv_timer_stop(&c->timer);
        }
      } else if (c->head_seen && c->req.idle_timeout_ms > 0) {
        uv_timer_start(&c->timer, Call::on_timeout, c->req.idle_timeout_ms, 0);
      }
      deliver_stream();
      if (!client || call != c) return;
    }
    if (complete) {
      // Bytes past the response: the server is not speaking one response per request.
      const bool reusable = consumed == len && !c->req.stream && llhttp_should_keep_alive(&parser);
      client->finish(c, {}, reusable);
    }
  }

  bool response_head_done() const { return call && call->response.status != 0; }

  void deliver_stream() {
    Call* c = call;
    if (!c || !c->req.stream || stream_data.empty()) return;
    std::string chunk;
    chunk.swap(stream_data);
    if (auto on_data = c->cb.on_data) on_data(chunk);
  }

  void reset_parser() {
    llhttp_init(&parser, HTTP_RESPONSE, settings());
    parser.data = this;
    field.clear();
    value.clear();
    head_bytes = 0;
    informational = false;
    complete = false;
    got_bytes = false;
    stream_data.clear();
    parse_error.clear();
  }

  int too_large(const char* what) {
    parse_error = std::string(what) + " too large";
    return -1;
  }

  static Conn* of(llhttp_t* p) { return static_cast<Conn*>(p->data); }

  static int on_field(llhttp_t* p, const char* at, size_t len) {
    Conn* self = of(p);
    if ((self->head_bytes += len) > kMaxHeadBytes) return self->too_large("response head");
    self->field.append(at, len);
    return 0;
  }
  static int on_value(llhttp_t* p, const char* at, size_t len) {
    Conn* self = of(p);
    if ((self->head_bytes += len) > kMaxHeadBytes) return self->too_large("response head");
    self->value.append(at, len);
    return 0;
  }
  static int on_value_complete(llhttp_t* p) {
    Conn* self = of(p);
    std::string name = std::move(self->field);
    for (char& ch : name) ch = ascii_lower(ch);
    if (self->call) {
      self->call->response.headers.emplace_back(std::move(name),
                                                std::string(trim_ows(self->value)));
    }
    self->field.clear();
    self->value.clear();
    return 0;
  }
  static int on_headers_complete(llhttp_t* p) {
    Conn* self = of(p);
    Call* c = self->call;
    if (!c) return -1;
    if (p->status_code >= 100 && p->status_code < 200 && p->status_code != 101) {
      self->informational = true;  // 100 Continue and friends: the real response follows
      c->response.headers.clear();
      return 0;
    }
    c->response.status = p->status_code;
    return c->req.method == "HEAD" ? 1 : 0;
  }
  static int on_body(llhttp_t* p, const char* at, size_t len) {
    Conn* self = of(p);
    Call* c = self->call;
    if (!c) return -1;
    if (c->req.stream) {
      self->stream_data.append(at, len);
      return 0;
    }
    if (c->response.body.size() + len > c->req.max_body) return self->too_large("response body");
    c->response.body.append(at, len);
    return 0;
  }
  static int on_message_complete(llhttp_t* p) {
    Conn* self = of(p);
    if (self->informational) {
      self->informational = false;
      self->head_bytes = 0;
      return 0;
    }
    self->complete = true;
    return HPE_PAUSED;  // one response per request: what follows is not ours
  }
  static const llhttp_settings_t* settings() {
    static const llhttp_settings_t s = [] {
      llhttp_settings_t st;
      llhttp_settings_init(&st);
      st.on_header_field = on_field;
      st.on_header_value = on_value;
      st.on_header_value_complete = on_value_complete;
      st.on_headers_complete = on_headers_complete;
      st.on_body = on_body;
      st.on_message_complete = on_message_complete;
      return st;
    }();
    return &s;
  }
};

HttpClient::HttpClient(uv_loop_t* loop, ClientTls tls) : loop_(loop), tls_(std::move(tls)) {}

HttpClient::~HttpClient() { close(); }

bool HttpClient::tls_ready(std::string* error) {
  if (!tls_built_) {
    tls_built_ = true;
    config::UpstreamTls t;
    t.enabled = true;
    t.ca_file = tls_.ca_file;
    t.cert = tls_.cert;
    t.key = tls_.key;
    t.verify = tls_.verify;
    if (t.cert.empty() != t.key.empty()) {
      tls_error_ = "a client certificate needs both cert and key";
    } else {
      std::vector<config::Error> errors;
      tls_ctx_ = UpstreamTlsContext::build(t, false, "tls", &errors);
      if (!tls_ctx_) tls_error_ = errors.empty() ? "cannot build a TLS context" : errors[0].message;
    }
  }
  if (error) *error = tls_error_;
  return tls_ctx_ != nullptr;
}

size_t HttpClient::idle_connections() const {
  size_t n = 0;
  for (const auto& [origin, list] : idle_) n += list.size();
  return n;
}

HttpError HttpClient::error_for(const Call* c, HttpError::Kind kind,
                                const std::string& what) const {
  HttpError e;
  e.kind = kind;
  e.message = c->req.method + " " + c->req.url + ": " + what;
  // Before any byte went out, the server cannot have seen the request; a request that went out
  // on a kept-alive connection which then broke may have been read, whatever the retry says.
  const bool before_send = kind == HttpError::Kind::kInvalid || kind == HttpError::Kind::kConnect;
  e.indeterminate = c->lost_once || (c->sent && !before_send);
  return e;
}

HttpClient::RequestId HttpClient::request(HttpRequest req, HttpCallbacks callbacks) {
  if (closed_) return 0;
  auto* c = new Call;
  c->client = this;
  c->id = next_id_++;
  c->req = std::move(req);
  c->cb = std::move(callbacks);
  uv_timer_init(loop_, &c->timer);
  c->timer.data = c;
  calls_.emplace(c->id, c);
  std::string why = parse_url(c->req.url, &c->url);
  if (why.empty() && (!is_token(c->req.method) || has_ctl(c->req.url))) why = "bad method or URL";
  for (const auto& [n, v] : c->req.headers) {
    if (why.empty() && (!is_token(n) || has_ctl(v))) why = "bad header " + n;
  }
  if (why.empty() && c->url.https && !tls_ready(&why)) why = "TLS: " + why;
  const RequestId id = c->id;
  if (!why.empty()) {
    finish(c, error_for(c, HttpError::Kind::kInvalid, why));
    return id;
  }
  uv_timer_start(&c->timer, Call::on_timeout, c->req.timeout_ms, 0);
  start(c);
  return id;
}

void HttpClient::start(Call* c) {
  if (!c->req.stream) {
    auto it = idle_.find(c->url.origin);
    if (it != idle_.end() && !it->second.empty()) {
      Conn* conn = it->second.back();
      it->second.pop_back();
      conn->idle = false;
      uv_timer_stop(&conn->idle_timer);
      c->reused = true;
      send_on(conn, c);
      return;
    }
  }
  c->addrs.clear();
  c->next_addr = 0;
  sockaddr_storage ss{};
  if (uv_ip4_addr(c->url.host.c_str(), c->url.port, reinterpret_cast<sockaddr_in*>(&ss)) == 0 ||
      uv_ip6_addr(c->url.host.c_str(), c->url.port, reinterpret_cast<sockaddr_in6*>(&ss)) == 0) {
    c->addrs.push_back(ss);
    connect_next(c);
    return;
  }
  auto* r = new Resolve;
  r->call = c;
  r->req.data = r;
  c->resolve = r;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  const std::string port = std::to_string(c->url.port);
  int rc = uv_getaddrinfo(
      loop_, &r->req,
      [](uv_getaddrinfo_t* req, int status, addrinfo* res) {
        auto* self = static_cast<Resolve*>(req->data);
        Call* call = self->call;
        delete self;
        if (!call || !call->client) {
          uv_freeaddrinfo(res);
          return;
        }
        call->resolve = nullptr;
        if (status < 0) {
          uv_freeaddrinfo(res);
          call->client->finish(
              call, call->client->error_for(call, HttpError::Kind::kConnect,
                                            std::string("cannot resolve ") + call->url.host + ": " +
                                                uv_strerror(status)));
          return;
        }
        for (addrinfo* a = res; a; a = a->ai_next) {
          if (a->ai_family != AF_INET && a->ai_family != AF_INET6) continue;
          sockaddr_storage s{};
          std::memcpy(&s, a->ai_addr, a->ai_addrlen);
          call->addrs.push_back(s);
        }
        uv_freeaddrinfo(res);
        call->client->connect_next(call);
      },
      c->url.host.c_str(), port.c_str(), &hints);
  if (rc < 0) {
    delete r;
    c->resolve = nullptr;
    finish(c, error_for(c, HttpError::Kind::kConnect,
                        "cannot resolve " + c->url.host + ": " + uv_strerror(rc)));
  }
}

void HttpClient::connect_next(Call* c) {
  if (c->next_addr >= c->addrs.size()) {
    finish(c, error_for(c, HttpError::Kind::kConnect,
                        c->addrs.empty() ? "no address for " + c->url.host
                                         : "connect: " + c->connect_error));
    return;
  }
  const sockaddr_storage addr = c->addrs[c->next_addr++];
  auto* conn = new Conn;
  conn->client = this;
  conn->origin = c->url.origin;
  conn->host = c->url.host;
  conn->https = c->url.https;
  uv_tcp_init(loop_, &conn->tcp);
  uv_timer_init(loop_, &conn->idle_timer);
  conn->tcp.data = conn;
  conn->idle_timer.data = conn;
  conn->open_handles = 2;
  conn->connect_req.data = conn;
  conn->call = c;
  c->conn = conn;
  conns_.push_back(conn);
  ++connections_opened_;
  uv_tcp_nodelay(&conn->tcp, 1);
  // A peer that vanished without a FIN (host down, partition) is found even on a quiet stream.
  uv_tcp_keepalive(&conn->tcp, 1, 15);
  int rc = uv_tcp_connect(
      &conn->connect_req, &conn->tcp, reinterpret_cast<const sockaddr*>(&addr),
      [](uv_connect_t* req, int status) {
        auto* self = static_cast<Conn*>(req->data);
        if (!self->client) return;
        Call* call = self->call;
        HttpClient* owner = self->client;
        if (status < 0) {
          self->call = nullptr;
          self->close();
          if (call) {
            call->conn = nullptr;
            call->connect_error = uv_strerror(status);
            owner->connect_next(call);
          }
          return;
        }
        self->connected = true;
        self->start_reading();
        if (!call) return;
        if (self->https) {
          if (!self->tls.init(owner->tls_ctx_->new_ssl(self->host), &self->tls_out)) {
            self->fail(HttpError::Kind::kTls, "TLS: out of memory");
            return;
          }
          self->handshake();
        } else {
          owner->send_on(self, call);
        }
      });
  if (rc < 0) {
    conn->call = nullptr;
    c->conn = nullptr;
    conn->close();
    c->connect_error = uv_strerror(rc);
    connect_next(c);
  }
}

void HttpClient::send_on(Conn* conn, Call* c) {
  conn->call = c;
  c->conn = conn;
  conn->reset_parser();
  c->response = {};
  std::string head;
  head.reserve(256 + c->req.body.size());
  head += c->req.method;
  head += ' ';
  head += c->url.path;
  head += " HTTP/1.1\r\nHost: ";
  head += c->url.authority;
  head += "\r\n";
  bool agent = false;
  for (const auto& [n, v] : c->req.headers) {
    if (iequals(n, "host") || iequals(n, "content-length") || iequals(n, "transfer-encoding")) {
      continue;
    }
    agent = agent || iequals(n, "user-agent");
    head += n;
    head += ": ";
    head += v;
    head += "\r\n";
  }
  if (!agent) head += "User-Agent: weir\r\n";
  head += "Content-Length: ";
  append_number(head, c->req.body.size());
  head += "\r\n\r\n";
  head += c->req.body;
  c->sent = true;
  conn->write(std::move(head));
}

void HttpClient::finish(Call* c, HttpError error, bool reusable) {
  if (!c->client) return;
  c->client = nullptr;
  calls_.erase(c->id);
  if (Conn* conn = c->conn) {
    c->conn = nullptr;
    conn->call = nullptr;
    if (reusable && !closed_) {
      release(conn);
    } else {
      conn->close();
    }
  }
  if (c->resolve) {
    c->resolve->call = nullptr;
    uv_cancel(reinterpret_cast<uv_req_t*>(&c->resolve->req));
    c->resolve = nullptr;
  }
  c->result = std::move(error);
  if (!c->cb.on_done) {
    c->close_timer();
    return;
  }
  // Until it runs, cancel() and close() can still take the callback back.
  c->delivering = this;
  delivering_.emplace(c->id, c);
  uv_timer_start(&c->timer, Call::on_deliver, 0, 0);
}

void HttpClient::release(Conn* conn) {
  std::vector<Conn*>& list = idle_[conn->origin];
  if (list.size() >= kMaxIdlePerOrigin) {
    conn->close();
    return;
  }
  conn->idle = true;
  list.push_back(conn);
  uv_timer_start(
      &conn->idle_timer,
      [](uv_timer_t* t) {
        auto* self = static_cast<Conn*>(t->data);
        if (self->client && self->idle) self->close();
      },
      kIdleCloseMs, 0);
}

void HttpClient::forget(Conn* conn) {
  conns_.erase(std::remove(conns_.begin(), conns_.end(), conn), conns_.end());
  auto it = idle_.find(conn->origin);
  if (it != idle_.end()) {
    auto& list = it->second;
    list.erase(std::remove(list.begin(), list.end(), conn), list.end());
    if (list.empty()) idle_.erase(it);
  }
}

void HttpClient::cancel(RequestId id) {
  if (auto d = delivering_.find(id); d != delivering_.end()) {
    d->second->cb = {};
    d->second->delivering = nullptr;
    delivering_.erase(d);
    return;
  }
  auto it = calls_.find(id);
  if (it == calls_.end()) return;
  Call* c = it->second;
  c->cb = {};
  finish(c, {});
}

void HttpClient::close() {
  if (closed_) return;
  closed_ = true;
  std::vector<Call*> calls;
  for (auto& [id, c] : calls_) calls.push_back(c);
  for (Call* c : calls) {
    c->cb = {};
    finish(c, {});
  }
  for (auto& [id, c] : delivering_) {
    c->cb = {};
    c->delivering = nullptr;
  }
  delivering_.clear();
  std::vector<Conn*> conns = conns_;
  for (Conn* conn : conns) conn->close();
  idle_.clear();
}

}  // namespace weir::proxy
