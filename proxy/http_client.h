// A small asynchronous HTTP/1.1 client for the control thread's loop (the etcd gateway, outgoing
// hooks). http:// and https:// URLs; names resolved with uv_getaddrinfo, IP literals used as
// they are. Request bodies always go with Content-Length. A response is either buffered whole
// (unary) or streamed to the caller as its body arrives. Unary requests reuse idle keep-alive
// connections of their origin (a few per origin, one request per connection at a time); a
// stream has a connection of its own, closed when the stream ends or is cancelled.
// Owned by its user (e.g. EtcdClient), control thread only. The client has no libuv handle of
// its own: calls and connections free themselves in their close callbacks, so the client may be
// destroyed right after close().
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace weir::proxy {

class UpstreamTlsContext;

// TLS for https:// URLs (one client context, built on first use).
struct ClientTls {
  std::string ca_file;  // "" = the system trust store
  std::string cert;     // client certificate (PEM chain) for mTLS, with key; or neither
  std::string key;
  bool verify = true;  // verify the chain and the URL's host name (or IP literal)
};

struct HttpError {
  enum class Kind : uint8_t {
    kNone,
    kInvalid,   // the request cannot be sent (bad URL, bad header, TLS files unusable)
    kConnect,   // name resolution or TCP connect failed
    kTls,       // TLS handshake or record failure
    kTimeout,   // the request's timeout (or a stream's idle timeout) ran out
    kProtocol,  // the response is not valid HTTP/1.1 or is too large
    kClosed,    // the connection ended before the response did
  };
  Kind kind = Kind::kNone;
  std::string message;         // names the URL
  bool indeterminate = false;  // the request may have reached the server
  bool ok() const { return kind == Kind::kNone; }
};
const char* to_string(HttpError::Kind kind);

struct HttpRequest {
  std::string method = "GET";
  std::string url;  // http(s)://host[:port][/path?query]; host a name, IPv4 or [IPv6]
  std::vector<std::pair<std::string, std::string>> headers;  // Host and Content-Length are added
  std::string body;
  // Unary: connect + the whole exchange. Stream: connect until the response head.
  uint32_t timeout_ms = 5000;
  bool stream = false;           // deliver the body through on_data as it arrives
  uint32_t idle_timeout_ms = 0;  // stream: the longest silence between body bytes; 0 = none
  size_t max_body = 64u << 20;   // unary: a larger body is a kProtocol error
};

struct HttpResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names in lower case
  std::string body;                                          // unary only
  // The first header named `lower_name`, or nullptr.
  const std::string* header(std::string_view lower_name) const;
};

struct HttpCallbacks {
  // Exactly once per request unless cancelled, never from inside request(). Unary: the whole
  // response, or an error. Stream: after the body's end (error.ok()) or its failure; a stream
  // that ends without its terminating chunk (or short of its Content-Length) is kClosed.
  std::function<void(HttpError error, HttpResponse response)> on_done;
  // Streams: the response head (once), then body bytes as they are decoded (no framing kept:
  // one call may hold part of a message of the protocol above, or several).
  std::function<void(const HttpResponse& head)> on_head;
  std::function<void(std::string_view data)> on_data;
};

class HttpClient {
 public:
  using RequestId = uint64_t;

  HttpClient(uv_loop_t* loop, ClientTls tls);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Starts a request; 0 (and no callback) once the client is closed.
  RequestId request(HttpRequest req, HttpCallbacks callbacks);
  // No callback of that request runs any more; its connection is closed unless idle.
  void cancel(RequestId id);
  // Cancels every request and closes every connection. Idempotent.
  void close();

  // Builds the TLS context now; false with the reason when its files are unusable.
  bool tls_ready(std::string* error);

  // For tests and the admin view.
  size_t idle_connections() const;
  uint64_t connections_opened() const { return connections_opened_; }
  size_t pending() const { return calls_.size(); }

 private:
  struct Call;
  struct Conn;
  struct Resolve;
  friend struct Call;
  friend struct Conn;

  void start(Call* c);
  void connect_next(Call* c);
  void send_on(Conn* conn, Call* c);
  // Ends a call: its connection goes back to the pool when `reusable`, else closes; on_done
  // runs on the next loop turn.
  void finish(Call* c, HttpError error, bool reusable = false);
  void release(Conn* conn);
  void forget(Conn* conn);
  HttpError error_for(const Call* c, HttpError::Kind kind, const std::string& what) const;

  uv_loop_t* loop_;
  ClientTls tls_;
  std::shared_ptr<const UpstreamTlsContext> tls_ctx_;
  std::string tls_error_;
  bool tls_built_ = false;
  bool closed_ = false;
  RequestId next_id_ = 1;
  uint64_t connections_opened_ = 0;
  std::unordered_map<RequestId, Call*> calls_;
  std::unordered_map<RequestId, Call*> delivering_;           // ended, on_done not run yet
  std::vector<Conn*> conns_;                                  // every open connection
  std::unordered_map<std::string, std::vector<Conn*>> idle_;  // by origin
};

}  // namespace weir::proxy
