// HTTP/2 to a backend (h2 by ALPN over upstream TLS, h2c by prior knowledge on plain TCP): one
// nghttp2 client session per UpstreamConn, multiplexing the streams of many exchanges. The
// UpstreamConn keeps doing what it does for HTTP/1.1 (socket, connect timeout, TLS); its
// plaintext goes to this session instead of llhttp. Each request is an H2Stream, which an
// Exchange drives through the same UpstreamStream interface as an HTTP/1.1 connection.
// UpstreamH2 is owned by its UpstreamConn; an H2Stream is owned by its Exchange until the
// exchange hands it back (UpstreamPool::release) or closes it.
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "proxy/upstream_pool.h"

namespace weir::proxy {

class UpstreamH2;

// A name/value pair for nghttp2_submit_*; the strings must outlive the submit call.
nghttp2_nv h2_nv(const std::string& name, const std::string& value);
// A client session with weir's limits (no closed-stream retention, CONTINUATION, ACK and
// SETTINGS caps, manual WINDOW_UPDATE) and its SETTINGS queued (no push, header list cap,
// windows). Shared by UpstreamH2 and the active health prober.
nghttp2_session* new_h2_client(const nghttp2_session_callbacks* cbs, void* user);

class H2Stream final : public UpstreamStream {
 public:
  H2Stream(UpstreamH2& session, UpstreamHandler* handler, bool head_request);

  // The request head: pseudo-headers and lower-case regular fields. `has_body` false ends the
  // stream with the HEADERS frame. false when the session takes no more streams.
  bool send_head(std::span<const std::pair<std::string, std::string>> fields, bool has_body);

  uint32_t endpoint_id() const override;
  void write(std::string_view data) override;
  bool congested() override { return body_.size() - body_off_ >= kHighWater; }
  void request_complete() override;
  // Request trailers: a HEADERS frame that ends the stream after the last DATA. Before
  // request_complete().
  void set_trailers(std::span<const std::pair<std::string, std::string>> fields) {
    trailers_.assign(fields.begin(), fields.end());
  }
  // Backpressure by flow control: DATA is acknowledged (WINDOW_UPDATE) only while not paused.
  void pause_reading() override;
  void resume_reading() override;
  void close() override;
  void release(bool) override { close(); }

 private:
  friend class UpstreamH2;
  static constexpr size_t kHighWater = 256 * 1024;

  static ssize_t read_body(nghttp2_session* ng, int32_t id, uint8_t* buf, size_t len,
                           uint32_t* flags, nghttp2_data_source* src, void* user);
  // This stream's own deadline: `ms` from now (the response or the body idle timeout).
  void arm(uint32_t ms);
  // Body bytes moved (either way): the idle deadline starts again.
  void body_progress();
  void deliver_head();
  void deliver_done();
  void deliver_error(UpstreamError e);

  UpstreamH2& s_;
  UpstreamHandler* handler_;
  int32_t id_ = -1;
  bool head_request_;
  bool request_done_ = false;
  bool deferred_ = false;   // the body provider said DEFERRED
  bool head_seen_ = false;  // the final (non-1xx) head was delivered
  bool finished_ = false;   // done or failed: no more handler calls
  bool done_ = false;       // the response ended cleanly
  bool was_congested_ = false;
  bool paused_ = false;
  size_t unconsumed_ = 0;   // DATA bytes delivered while paused, acknowledged on resume
  uint64_t deadline_at_ = 0;  // loop time it fails at (504), 0 while uploading or paused
  std::string body_;        // request body not yet framed
  size_t body_off_ = 0;
  std::vector<std::pair<std::string, std::string>> fields_;  // current header block
  std::vector<std::pair<std::string, std::string>> trailers_;  // request trailers to send
  std::vector<HeaderField> views_;
  int status_ = 0;
};

class UpstreamH2 {
 public:
  // `assumed_limit`: streams to allow until the backend's SETTINGS arrive (the last limit seen
  // from this endpoint, so a burst does not pile onto a connection that cannot take it).
  UpstreamH2(UpstreamConn& conn, uint32_t assumed_limit);
  ~UpstreamH2();
  UpstreamH2(const UpstreamH2&) = delete;
  UpstreamH2& operator=(const UpstreamH2&) = delete;

  UpstreamConn& conn() { return conn_; }
  // Another stream fits (the server's SETTINGS_MAX_CONCURRENT_STREAMS; no GOAWAY seen).
  bool has_capacity() const;
  size_t active() const { return owned_.size(); }
  H2Stream* open(UpstreamHandler* h, bool head_request);
  // Plaintext from the backend; false on a protocol error (the caller fails the connection).
  bool on_read(const char* data, size_t len);
  // The connection failed or closed: every stream hears `e` once.
  void fail_all(UpstreamError e);
  // Frames nghttp2 wants to send go to the connection.
  void flush();
  // The earliest stream deadline (loop time), 0 when none is set.
  uint64_t next_deadline() const;
  // Streams past their deadline fail with a timeout and are reset (CANCEL); the rest go on.
  void expire(uint64_t now);

 private:
  friend class H2Stream;
  void forget(H2Stream* st);

  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                       size_t namelen, const uint8_t* value, size_t valuelen, uint8_t flags,
                       void* user);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int on_data_chunk(nghttp2_session*, uint8_t flags, int32_t id, const uint8_t* data,
                           size_t len, void* user);
  static int on_stream_close(nghttp2_session*, int32_t id, uint32_t error_code, void* user);
  H2Stream* find(int32_t id);

  UpstreamConn& conn_;
  nghttp2_session* ng_ = nullptr;
  std::unordered_map<int32_t, H2Stream*> streams_;  // submitted, by stream id
  std::vector<H2Stream*> owned_;                    // every open stream object
  uint32_t assumed_limit_;
  bool settings_seen_ = false;
  bool goaway_ = false;
  bool in_flush_ = false;
  bool in_recv_ = false;
};

}  // namespace weir::proxy
