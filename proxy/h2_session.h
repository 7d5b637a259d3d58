// The HTTP/2 downstream protocol session (nghttp2, server side). Each client stream becomes one
// Exchange, routed and forwarded to HTTP/1.1 upstreams exactly like an HTTP/1.1 request. Flow
// control runs end to end: request DATA is acknowledged (WINDOW_UPDATE) only as the upstream
// takes it, a stream's response buffer pauses its upstream when full, and the send loop stops
// at the transport's high-water mark. Owned by the connection's outer session or ClientConn.
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "proxy/io_buffer.h"
#include "proxy/session.h"

namespace weir::proxy {

class Worker;

class H2Session final : public Session, private FlushList::Deferred {
 public:
  explicit H2Session(Transport& transport);
  ~H2Session() override;
  H2Session(const H2Session&) = delete;
  H2Session& operator=(const H2Session&) = delete;

  void on_read(const char* data, size_t len) override;
  void on_eof() override;
  void on_drain() override;
  void on_timeout() override;
  void start_drain() override;
  void on_close() override;

  struct Stream;

 private:
  friend struct Stream;
  // Marks a call into the session from outside (socket or upstream event). Streams closed
  // meanwhile are freed when the outermost one ends, never under a caller's feet.
  class Entry {
   public:
    explicit Entry(H2Session& s) : s_(s) { ++s_.depth_; }
    ~Entry();

   private:
    H2Session& s_;
  };

  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                       size_t namelen, const uint8_t* value, size_t valuelen, uint8_t flags,
                       void* user);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int on_data_chunk(nghttp2_session*, uint8_t flags, int32_t stream_id,
                           const uint8_t* data, size_t len, void* user);
  static int on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code,
                             void* user);
  static int on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static ssize_t read_body(nghttp2_session*, int32_t stream_id, uint8_t* buf, size_t length,
                           uint32_t* data_flags, nghttp2_data_source* source, void* user);

  Stream* find(int32_t stream_id);
  void start_stream(Stream& st, bool end_stream);
  // `detail` (if any) says why, in the body, as H1Session does.
  void respond_error(Stream& st, int status, std::string_view detail = {});
  // The access log line of a stream refused before routing (no Exchange logs it).
  void log_rejected(const Stream& st, int status, std::string_view host, std::string_view why);
  void count_abuse_close();
  bool control_flood();
  // Frames what is ready at the end of this loop turn (send_now from the worker's flush), so the
  // responses of many upstream events leave as one batch of frames.
  void send();
  void run_deferred() override;
  // Runs nghttp2's send loop into the transport until it is congested or nothing is left;
  // closes the connection when nghttp2 wants neither to read nor to write.
  void send_now();
  void fatal();
  void update_deadline();

  Transport& t_;
  Worker& worker_;
  nghttp2_session* ng_ = nullptr;
  std::unordered_map<int32_t, std::unique_ptr<Stream>> streams_;
  std::vector<std::unique_ptr<Stream>> closed_;  // freed when depth_ returns to 0
  int depth_ = 0;
  bool in_recv_ = false;  // inside nghttp2_session_mem_recv: send() waits for it to return
  bool closed_conn_ = false;
  bool abuse_counted_ = false;  // a connection closed for abuse counts once (error, then GOAWAY)
  bool draining_ = false;
  uint64_t flood_window_start_ = 0;
  uint32_t control_frames_ = 0;
  // Scratch for framing a response head: the header list, and lower-cased names it points to.
  std::vector<nghttp2_nv> nva_;
  std::string names_;
};

}  // namespace weir::proxy
