// Upstream HTTP/1.1 connections and the per-worker keep-alive pool that owns the idle ones.
// An UpstreamConn parses responses with llhttp and reports to its current UpstreamHandler (an
// Exchange). Idle pooled connections keep reading, so a backend's close (EOF) or stray bytes
// take them out of the pool before any request can be sent on them. A connection to a version
// with upstream TLS runs OpenSSL (TlsIo) between the socket and the parser; the handshake is
// part of connecting (its failure is a connect failure), and the pool keeps the last TLS
// session per endpoint so new connections resume.
#pragma once

#include <llhttp.h>
#include <sys/socket.h>
#include <uv.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "proxy/deadline.h"
#include "proxy/http_util.h"
#include "proxy/io_buffer.h"
#include "proxy/tls_io.h"
#include "routing/snapshot.h"

namespace weir::proxy {

class Worker;
class UpstreamConn;
class UpstreamH2;
class UpstreamStream;
class UpstreamTlsContext;

enum class UpstreamError : uint8_t {
  kConnect,          // refused, unreachable, or connect timeout
  kReset,            // closed or reset before the response was complete
  kResponseTimeout,  // no response head within upstream_response_timeout_ms
  kBodyTimeout,      // response body stalled for body_timeout_ms
  kBadResponse,      // unparsable or unexpected bytes from the backend
  kRefused,          // HTTP/2: refused unprocessed (REFUSED_STREAM, or past the backend's GOAWAY)
};

struct UpstreamResponseHead {
  int status = 0;
  int version_minor = 1;
  std::span<const HeaderField> headers;
  bool chunked = false;
  bool has_length = false;
  uint64_t content_length = 0;
  bool until_close = false;  // body ends when the backend closes
  bool no_body = false;
};

class UpstreamHandler {
 public:
  virtual void on_upstream_head(UpstreamStream& c, const UpstreamResponseHead& head) = 0;
  virtual void on_upstream_body(UpstreamStream& c, const char* data, size_t len) = 0;
  // The response is complete; trailers are views valid during the call only.
  virtual void on_upstream_done(UpstreamStream& c, std::span<const HeaderField> trailers) = 0;
  // The stream is already closed when this is called; `unsent` holds the request bytes
  // when none had reached the socket yet (so the request may go elsewhere unchanged).
  virtual void on_upstream_error(UpstreamStream& c, UpstreamError e, std::string unsent) = 0;
  // The request send queue fell below its low-water mark.
  virtual void on_upstream_drained(UpstreamStream& c) = 0;

 protected:
  ~UpstreamHandler() = default;
};

// One request/response with a backend, as an Exchange sees it: a whole HTTP/1.1 connection
// (UpstreamConn) or one HTTP/2 stream (H2Stream). Exchange stays protocol-neutral through it.
class UpstreamStream {
 public:
  virtual uint32_t endpoint_id() const = 0;
  // Request bytes: HTTP/1.1 framed (head and body) on a connection, the body on an h2 stream.
  virtual void write(std::string_view data) = 0;
  virtual bool congested() = 0;
  // The whole request is queued: from now the response timeout runs.
  virtual void request_complete() = 0;
  virtual void pause_reading() = 0;
  virtual void resume_reading() = 0;
  // Detaches the handler and ends the stream (never reused). Idempotent.
  virtual void close() = 0;
  // The response is done: pooled (a connection) when `reusable`, else closed.
  virtual void release(bool reusable) = 0;
  // µs the connection took to connect (TCP and TLS) when it was opened for this request; -1
  // when it was reused or is shared (an HTTP/2 stream).
  virtual int64_t connect_us() const { return -1; }

 protected:
  ~UpstreamStream() = default;
};

class UpstreamConn final : public UpstreamStream, private OutQueue::Listener {
 public:
  UpstreamConn(Worker& worker, uint32_t endpoint_id);

  uint32_t endpoint_id() const override { return endpoint_id_; }
  bool reused() const { return reused_; }
  bool tls() const { return tls_.active(); }
  // TLS: whether this connection resumed a cached session.
  bool resumed() const;
  bool connected() const { return connected_; }
  uint64_t bytes_sent() const { return out_.bytes_written(); }
  int64_t connect_us() const override { return connect_us_; }

  void attach(UpstreamHandler* h, bool head_request);
  void write(std::string_view data) override;
  bool congested() override { return out_.congested(); }
  void request_complete() override;
  void pause_reading() override;
  void resume_reading() override;
  void close() override;
  void release(bool reusable) override;
  // HTTP/2 mode: the session multiplexing this connection's streams (nullptr for HTTP/1.1).
  UpstreamH2* h2() const { return h2_.get(); }
  // HTTP/2: the connection's deadline becomes the earliest of its streams' (each stream has its
  // own response and body timeouts), or the idle timeout when no stream is open.
  void h2_rearm();
  Worker& worker() const { return worker_; }
  // The backend's SETTINGS_MAX_CONCURRENT_STREAMS, remembered for its next connections.
  void h2_limit_seen(uint32_t max_streams);
  // OpenSSL's new-session callback (SSL_CTX_sess_set_new_cb) for upstream contexts.
  static int on_new_session(SSL* ssl, SSL_SESSION* session);

 private:
  friend class UpstreamPool;
  enum class State : uint8_t { kConnecting, kBusy, kIdle, kClosed };

  // Before connect(): speak TLS to `ep` (its host names it for SNI and verification).
  bool use_tls(std::shared_ptr<const routing::OpaqueTls> ctx, const routing::Endpoint& ep);
  int connect(const sockaddr* addr);
  void make_idle();
  void fail(UpstreamError e);
  // close(); HTTP/2 streams hear `e`.
  void close_as(UpstreamError e);
  // The connection can carry requests (TCP connected, and the TLS handshake done).
  void ready();
  void tls_handshake();
  void tls_failed(const std::string& why);
  void tls_encrypt(const char* data, size_t len);
  void handle_read(ssize_t nread, const char* data);
  void handle_tls_read(const char* data, size_t len);
  void handle_plain(ssize_t nread, const char* data);
  void finish_response(bool clean);
  void on_out_drained() override;
  void on_out_error(int status) override;

  static void on_connect(uv_connect_t* req, int status);
  static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void on_tcp_close(uv_handle_t* h);
  static void on_handle_closed(void* self);
  static void on_deadline(void* self);
  static int on_message_begin(llhttp_t* p);
  static int on_header_field(llhttp_t* p, const char* at, size_t len);
  static int on_header_value(llhttp_t* p, const char* at, size_t len);
  static int on_headers_complete(llhttp_t* p);
  static int on_body(llhttp_t* p, const char* at, size_t len);
  static int on_message_complete(llhttp_t* p);
  static const llhttp_settings_t* settings();

  Worker& worker_;
  uint32_t endpoint_id_;
  uv_tcp_t tcp_{};
  uv_connect_t connect_req_{};
  Deadline deadline_;
  OutQueue out_;
  llhttp_t parser_{};
  UpstreamHandler* handler_ = nullptr;
  State state_ = State::kConnecting;
  int open_handles_ = 0;
  std::shared_ptr<const routing::OpaqueTls> tls_hold_;  // keeps tls_ctx_ alive
  const UpstreamTlsContext* tls_ctx_ = nullptr;
  TlsIo tls_;
  std::string tls_pending_;  // request bytes written before the handshake completed
  std::string address_;      // for logs
  std::unique_ptr<UpstreamH2> h2_;
  bool tcp_up_ = false;      // the socket connected (TLS may still be handshaking)
  bool broken_ = false;      // an SSL_write failed: fails at the next loop turn
  bool connected_ = false;
  bool reused_ = false;
  uint64_t connect_start_ns_ = 0;
  int64_t connect_us_ = -1;  // set when ready; -1 again once pooled
  bool reading_ = false;
  bool head_request_ = false;
  bool request_done_ = false;
  bool got_bytes_ = false;     // any byte of the current response
  bool head_seen_ = false;     // final (non-1xx) head delivered
  bool interim_ = false;       // current message is a 1xx
  bool message_done_ = false;
  bool keep_alive_ = false;
  // Header names/values of the current message, as offsets into arena_ (stable across reads).
  std::string arena_;
  std::vector<std::pair<uint32_t, uint32_t>> spans_;  // (offset, length): name, value, name, ...
  std::vector<HeaderField> fields_;
  size_t trailer_start_ = 0;   // index in spans_ where trailers begin
};

class UpstreamPool {
 public:
  explicit UpstreamPool(Worker& worker) : worker_(worker) {}

  ~UpstreamPool();
  // Streams per HTTP/2 connection before a backend said otherwise.
  static constexpr uint32_t kH2DefaultStreams = 100;
  UpstreamPool(const UpstreamPool&) = delete;
  UpstreamPool& operator=(const UpstreamPool&) = delete;

  // A pooled idle connection to the endpoint, or a new one (connecting) speaking what `version`
  // speaks (TLS, HTTP/2). nullptr when the connect could not even start; `*error` then holds
  // the libuv error.
  // For an HTTP/2 version this is a new stream on a connection with room for it (a new
  // connection when none has); the caller sends its head with H2Stream::send_head.
  UpstreamStream* acquire(const routing::Version& version, const routing::Endpoint& ep,
                          UpstreamHandler* h, bool head_request, int* error);
  // The same over plain TCP to `addr`.
  UpstreamConn* acquire(uint32_t endpoint_id, const sockaddr* addr, UpstreamHandler* h,
                        bool head_request, int* error);
  // The exchange is done with `c`: pooled when `reusable`, closed otherwise.
  void release(UpstreamConn* c, bool reusable);
  void release(UpstreamStream* s, bool reusable) { s->release(reusable); }
  void close_all();
  // Draining: closes idle connections to every endpoint id not marked in `live`.
  void close_idle_except(const std::vector<bool>& live);
  // An upstream connect failure that became a 502: one line per endpoint per second per worker
  // (the rest are counted into the next line).
  void log_connect_failure(const routing::Endpoint& ep, std::string_view service,
                           std::string_view version);
  size_t idle_count() const;

 private:
  friend class UpstreamConn;
  // The last TLS session a backend gave for an endpoint, with the context it belongs to.
  struct CachedSession {
    std::shared_ptr<const routing::OpaqueTls> ctx;
    SSL_SESSION* session = nullptr;
  };

  UpstreamConn* acquire_as(uint32_t endpoint_id, const sockaddr* addr,
                           const std::shared_ptr<const routing::OpaqueTls>* tls,
                           const routing::Endpoint* ep, UpstreamHandler* h, bool head_request,
                           int* error);
  void forget_idle(UpstreamConn* c);
  void forget_h2(UpstreamConn* c);
  SSL_SESSION* session_for(uint32_t endpoint_id, const routing::OpaqueTls* ctx) const;
  void store_session(uint32_t endpoint_id, std::shared_ptr<const routing::OpaqueTls> ctx,
                     SSL_SESSION* session);
  // One line per failed handshake, at most one a second per worker (the rest are counted).
  void log_tls_failure(const std::string& what);

  Worker& worker_;
  std::vector<std::vector<UpstreamConn*>> idle_;  // by endpoint id; most recently used last
  std::vector<CachedSession> sessions_;           // by endpoint id
  std::vector<std::vector<UpstreamConn*>> h2_;    // open HTTP/2 connections, by endpoint id
  std::vector<uint32_t> h2_limits_;               // last SETTINGS limit seen, by endpoint id
  uint64_t tls_log_ms_ = 0;
  uint64_t tls_log_suppressed_ = 0;
  struct LogGate {
    uint64_t last_ms = 0;
    uint64_t suppressed = 0;
  };
  std::vector<LogGate> connect_log_;  // by endpoint id
};

}  // namespace weir::proxy
