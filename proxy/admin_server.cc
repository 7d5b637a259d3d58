#include "proxy/admin_server.h"

#include <llhttp.h>
#include <openssl/err.h>

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <utility>

#include "proxy/dashboard.h"
#include "proxy/h1_framing.h"
#include "proxy/http_util.h"
#include "proxy/server.h"
#include "proxy/tls_io.h"

namespace weir::proxy {

namespace {

// Admin requests are small; these bound what one connection can make weir hold.
constexpr HeadLimits kLimits{16 * 1024, 64, 4096};
constexpr size_t kMaxQueuedOutput = 1 << 20;

}  // namespace

// One admin connection. Owned by itself: freed in its last close callback.
class AdminConn {
 public:
  AdminConn(AdminServer& server, std::shared_ptr<const TlsContext> tls)
      : server_(server), tls_(std::move(tls)) {}

  bool accept(uv_stream_t* listener) {
    uv_tcp_init(server_.loop(), &tcp_);
    uv_timer_init(server_.loop(), &timer_);
    tcp_.data = timer_.data = this;
    pending_closes_ = 2;
    if (uv_accept(listener, reinterpret_cast<uv_stream_t*>(&tcp_)) != 0) return false;
    uv_tcp_nodelay(&tcp_, 1);
    if (tls_) {
      if (!tls_io_.init(tls_->new_ssl(), &cipher_out_)) return false;
      SSL_set_accept_state(tls_io_.ssl());
      handshaking_ = true;
    }
    start_reading();
    return true;
  }

  void close() {
    if (closing_) return;
    closing_ = true;
    alive_.reset();  // an answer still on its way (a change the store commits) finds no one
    server_.remove(this);
    for (uv_handle_t* h : {reinterpret_cast<uv_handle_t*>(&tcp_),
                           reinterpret_cast<uv_handle_t*>(&timer_)}) {
      if (!uv_is_closing(h)) uv_close(h, on_close);
    }
  }

 private:
  struct Write {
    uv_write_t req;
    std::string data;
  };

  // The handshake has its own (shorter) deadline; then the idle timeout runs.
  uint64_t timeout_ms() const {
    return handshaking_ ? tls_->handshake_timeout_ms() : AdminServer::kIdleTimeoutMs;
  }

  void start_reading() {
    reading_ = true;
    uv_timer_start(&timer_, on_timer, timeout_ms(), 0);
    uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), on_alloc, on_read);
  }

  static void on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
    auto* self = static_cast<AdminConn*>(h->data);
    *buf = uv_buf_init(self->read_buf_, sizeof self->read_buf_);
  }

  static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
    auto* self = static_cast<AdminConn*>(s->data);
    if (n < 0) {
      self->close();
      return;
    }
    if (n == 0 || self->close_after_write_) return;
    if (self->tls_) {
      self->tls_io_.set_input(buf->base, static_cast<size_t>(n));
      const bool ok = self->decrypt();
      self->tls_io_.clear_input();  // read_buf_ is reused by the next read
      if (!ok) return;
    } else {
      self->in_.append(buf->base, static_cast<size_t>(n));
    }
    uv_timer_start(&self->timer_, on_timer, self->timeout_ms(), 0);
    self->process();
  }

  // Runs the handshake, then moves what the client sent, decrypted, into in_. false when the
  // connection is ending (a failed handshake still sends OpenSSL's alert first).
  bool decrypt() {
    if (handshaking_) {
      const int rc = tls_io_.handshake();
      flush_tls();
      if (rc == SSL_ERROR_WANT_READ || rc == SSL_ERROR_WANT_WRITE) return false;
      if (rc != SSL_ERROR_NONE) {
        // A client without an accepted certificate, or plain HTTP sent to the HTTPS port: no
        // request of it is ever read. The reason stays out of the control thread's error queue.
        ERR_clear_error();
        end_after_flush();
        return false;
      }
      handshaking_ = false;
    }
    static thread_local char plain[16 * 1024];
    for (;;) {
      int err = SSL_ERROR_NONE;
      const size_t filled = tls_io_.read(plain, sizeof plain, &err);
      in_.append(plain, filled);
      if (tls_io_.retry_pending() && !tls_io_.retry()) err = SSL_ERROR_SSL;
      flush_tls();  // TLS 1.3 tickets, key updates, alerts
      if (closing_) return false;
      if (err == SSL_ERROR_NONE) continue;  // the buffer filled up; SSL_pending may hold more
      if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return true;
      // close_notify or a broken record: the client's stream ended, as at a plain EOF.
      ERR_clear_error();
      close();
      return false;
    }
  }

  // Sends what OpenSSL wrote (handshake flights, records, alerts).
  void flush_tls() {
    if (tls_io_.take_output() && !cipher_out_.empty()) send(std::exchange(cipher_out_, {}));
  }

  void end_after_flush() {
    close_after_write_ = true;
    if (writes_pending_ == 0) close();
  }

  static void on_timer(uv_timer_t* t) { static_cast<AdminConn*>(t->data)->close(); }

  static void on_close(uv_handle_t* h) {
    auto* self = static_cast<AdminConn*>(h->data);
    if (--self->pending_closes_ == 0) delete self;
  }

  static void on_write(uv_write_t* req, int status) {
    auto* w = reinterpret_cast<Write*>(req);
    auto* self = static_cast<AdminConn*>(req->data);
    delete w;
    // After uv_close this still runs (UV_ECANCELED), before the close callbacks: self is alive.
    --self->writes_pending_;
    if (self->closing_) return;
    if (status < 0 || (self->close_after_write_ && self->writes_pending_ == 0)) {
      self->close();
      return;
    }
    auto* stream = reinterpret_cast<uv_stream_t*>(&self->tcp_);
    if (!self->reading_ && uv_stream_get_write_queue_size(stream) < kMaxQueuedOutput / 2) {
      self->start_reading();
      self->process();
    }
  }

  static const llhttp_settings_t* settings() {
    static const llhttp_settings_t s = [] {
      llhttp_settings_t st;
      llhttp_settings_init(&st);
      st.on_body = [](llhttp_t* p, const char* at, size_t len) {
        auto* self = static_cast<AdminConn*>(p->data);
        if (self->req_.body.size() + len > AdminApi::kMaxBody) {
          self->body_too_large_ = true;
          return -1;
        }
        self->req_.body.append(at, len);
        return 0;
      };
      // Pausing stops llhttp at the end of this request, so the caller knows where it ended.
      st.on_message_complete = [](llhttp_t*) { return static_cast<int>(HPE_PAUSED); };
      return st;
    }();
    return &s;
  }

  // Takes one request's head from in_; false when there is not a whole head yet or it failed.
  bool take_head() {
    HeadScan scan = scan_request_head(in_.data(), in_.size(), 0, kLimits);
    if (scan.state == HeadScan::State::kError) {
      fail(scan.status, "request head too large");
      return false;
    }
    if (scan.state == HeadScan::State::kNeedMore) return false;
    RequestHead head;
    HeadError err = parse_request_head(std::string_view(in_.data(), scan.head_size), kLimits, &head);
    if (err.status != 0) {
      fail(err.status, err.reason);
      return false;
    }
    if (head.body == BodyKind::kContentLength && head.content_length > AdminApi::kMaxBody) {
      fail(413, "request bodies are limited to 64 KiB");
      return false;
    }
    req_ = AdminRequest{};
    req_.method = std::string(head.method);
    std::string_view target = head.target;
    size_t q = target.find('?');
    req_.path = std::string(target.substr(0, q));
    if (q != std::string_view::npos) req_.query = std::string(target.substr(q + 1));
    for (const auto& h : head.headers) {
      std::string name(h.name);
      for (char& c : name) c = ascii_lower(c);
      req_.headers.emplace_back(std::move(name), std::string(h.value));
    }
    keep_alive_ = head.keep_alive;
    head_request_ = head.is_head;
    if (head.expect_continue) write("HTTP/1.1 100 Continue\r\n\r\n");
    llhttp_init(&parser_, HTTP_REQUEST, settings());
    parser_.data = this;
    body_too_large_ = false;
    have_head_ = true;
    return true;
  }

  void process() {
    while (!closing_ && !close_after_write_ && reading_ && !awaiting_) {
      if (!have_head_ && !take_head()) return;
      // llhttp re-reads the validated head so that its body framing matches it.
      llhttp_errno_t rc = llhttp_execute(&parser_, in_.data(), in_.size());
      if (rc == HPE_PAUSED) {
        size_t used = static_cast<size_t>(llhttp_get_error_pos(&parser_) - in_.data());
        in_.erase(0, used);
        have_head_ = false;
        dispatch();
        continue;
      }
      if (rc != HPE_OK) {
        fail(body_too_large_ ? 413 : 400,
             body_too_large_ ? "request bodies are limited to 64 KiB" : "malformed request body");
        return;
      }
      // Everything was consumed into the parser (the head) or into req_.body.
      in_.clear();
      return;
    }
  }

  void dispatch() {
    // The dashboard page is served before the API's token check: it holds no data.
    std::optional<AdminResponse> page = dashboard_response(req_);
    if (page) {
      respond(*page);
    } else {
      // The answer to a change comes once the store has it; until then pipelined requests wait
      // in in_, so answers keep the requests' order.
      awaiting_ = true;
      std::weak_ptr<int> alive = alive_;
      auto in_call = std::make_shared<bool>(true);
      server_.api().handle(req_, [this, alive, in_call](const AdminResponse& r) {
        if (alive.expired()) return;
        awaiting_ = false;
        respond(r);
        if (!*in_call) process();
      });
      *in_call = false;
      if (awaiting_) {
        // Not answered yet: later, from the store's callback (which then goes on reading).
        return;
      }
    }
    auto* stream = reinterpret_cast<uv_stream_t*>(&tcp_);
    if (!close_after_write_ && uv_stream_get_write_queue_size(stream) > kMaxQueuedOutput) {
      // A client pipelining without reading: stop reading until its answers drain.
      reading_ = false;
      uv_read_stop(stream);
    }
  }

  void respond(const AdminResponse& r) {
    const bool closes = close_after_write_;
    if (!keep_alive_) close_after_write_ = true;
    std::string out = "HTTP/1.1 ";
    append_number(out, static_cast<uint64_t>(r.status));
    out += ' ';
    out += reason_phrase(r.status);
    out += "\r\nContent-Type: " + r.content_type + "\r\nContent-Length: ";
    append_number(out, r.body.size());
    out += "\r\nCache-Control: no-store\r\n";
    for (const auto& [name, value] : r.headers) {
      out += name;
      out += ": ";
      out += value;
      out += "\r\n";
    }
    if (close_after_write_) out += "Connection: close\r\n";
    out += "\r\n";
    if (!head_request_) out += r.body;
    write(std::move(out));
    if (tls_ && close_after_write_ && !closes && !closing_) {
      tls_io_.shutdown();  // close_notify after the last answer
      flush_tls();
    }
  }

  void fail(int status, std::string_view why) {
    keep_alive_ = false;
    head_request_ = false;
    respond(admin_error(status, status == 413 ? "payload_too_large" : "bad_request", why));
  }

  // Plaintext to the client: encrypted first when the connection runs TLS.
  void write(std::string data) {
    if (!tls_) {
      send(std::move(data));
      return;
    }
    if (closing_) return;
    const bool ok = tls_io_.write(data.data(), data.size());
    flush_tls();
    if (!ok) close();
  }

  void send(std::string data) {
    if (closing_) return;
    auto* w = new Write{};
    w->data = std::move(data);
    w->req.data = this;
    uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
    ++writes_pending_;
    int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&tcp_), &buf, 1, on_write);
    if (rc != 0) {
      --writes_pending_;
      delete w;
      close();
    }
  }

  AdminServer& server_;
  std::shared_ptr<const TlsContext> tls_;  // nullptr: plain HTTP
  TlsIo tls_io_;
  std::string cipher_out_;  // what OpenSSL wrote since the last flush_tls()
  bool handshaking_ = false;
  uv_tcp_t tcp_{};
  uv_timer_t timer_{};
  int pending_closes_ = 0;
  bool closing_ = false;
  bool reading_ = false;
  bool have_head_ = false;
  bool keep_alive_ = true;
  bool head_request_ = false;
  bool body_too_large_ = false;
  bool close_after_write_ = false;
  size_t writes_pending_ = 0;
  bool awaiting_ = false;  // a request's answer is still to come
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
  llhttp_t parser_{};
  AdminRequest req_;
  std::string in_;
  char read_buf_[16 * 1024];
};

AdminServer::AdminServer(uv_loop_t* loop, AdminApi& api) : loop_(loop), api_(api) {}

AdminServer::~AdminServer() = default;

bool AdminServer::start(const config::HostPort& address, config::HostPort* bound,
                        std::string* error) {
  sockaddr_storage addr{};
  if (!resolve_endpoint(address.host, address.port, &addr, error)) return false;
  uv_tcp_init_ex(loop_, &listener_, addr.ss_family);
  listener_.data = this;
  listening_ = true;
  // SO_REUSEPORT, as the data listeners: during a binary upgrade the new weir binds the same
  // admin address while the old one still runs (the old one closes it at SIGQUIT).
  uv_os_fd_t fd = -1;
  int one = 1;
  int rc = uv_fileno(reinterpret_cast<uv_handle_t*>(&listener_), &fd);
  if (rc == 0 && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
    rc = uv_translate_sys_error(errno);
  if (rc == 0) rc = uv_tcp_bind(&listener_, reinterpret_cast<const sockaddr*>(&addr), 0);
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 128, on_connection);
  if (rc != 0) {
    *error = "admin: bind " + address.to_string() + ": " + uv_strerror(rc);
    return false;
  }
  int len = sizeof addr;
  uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&addr), &len);
  uint16_t port = ntohs(addr.ss_family == AF_INET6
                            ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                            : reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  *bound = {address.host, port};
  return true;
}

void AdminServer::stop() {
  if (listening_) {
    listening_ = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
  }
  std::vector<AdminConn*> conns = conns_;
  for (AdminConn* c : conns) c->close();
}

void AdminServer::remove(AdminConn* c) {
  auto it = std::find(conns_.begin(), conns_.end(), c);
  if (it != conns_.end()) conns_.erase(it);
}

void AdminServer::on_connection(uv_stream_t* server, int status) {
  auto* self = static_cast<AdminServer*>(server->data);
  if (status < 0) return;
  auto* c = new AdminConn(*self, self->tls_);
  if (!c->accept(server) || self->conns_.size() >= kMaxConnections) {
    c->close();  // frees itself in its close callbacks
    return;
  }
  self->conns_.push_back(c);
}

}  // namespace weir::proxy
