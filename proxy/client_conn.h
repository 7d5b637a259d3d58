// One accepted downstream TCP connection: the socket, its send queue, its deadline timer and
// the protocol Session reading from it. Implements Transport for that session. Created by the
// Worker on accept; frees itself in the last close callback.
#pragma once

#include <uv.h>

#include <memory>

#include "proxy/deadline.h"
#include "proxy/io_buffer.h"
#include "proxy/session.h"

namespace weir::proxy {

class ClientConn final : public Transport, private OutQueue::Listener {
 public:
  static void accept(Worker& worker, uv_stream_t* server, uint32_t listener);
  // The same for a socket the worker accepted itself (the backlog taken in at shutdown).
  static void adopt(Worker& worker, int fd, uint32_t listener);

  // Transport
  void write(std::string_view data) override { out_.append(data); }
  std::string& write_buffer() override { return out_.buffer(); }
  void commit() override { out_.mark_dirty(); }
  bool congested() override { return out_.congested(); }
  void pause_reading() override;
  void resume_reading() override;
  void set_deadline(uint64_t ms_from_now) override { deadline_.set(ms_from_now); }
  void clear_deadline() override { deadline_.clear(); }
  void close_after_flush(bool linger) override;
  void abort() override;
  const ConnInfo& info() const override { return info_; }
  void set_client_subject(std::string subject) override {
    info_.client_subject = std::move(subject);
  }
  Worker& worker() override { return worker_; }

  // A reload moved (or, with UINT32_MAX, removed) this connection's listener.
  void set_listener(uint32_t index);

  // Graceful shutdown of the worker.
  void start_drain() { if (session_ && !closing_) session_->start_drain(); }
  void force_close() { close(); }

 private:
  explicit ClientConn(Worker& worker);
  static ClientConn* create(Worker& worker, uint32_t listener);
  void start();  // once the socket is open: peer address, session, reading
  ~ClientConn() override;
  void close();
  void on_out_drained() override;
  void on_out_error(int status) override;

  static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void on_tcp_closed(uv_handle_t* h);
  static void on_handle_closed(void* self);
  static void on_deadline(void* self);
  static void on_shutdown(uv_shutdown_t* req, int status);

  Worker& worker_;
  uv_tcp_t tcp_{};
  std::unique_ptr<uv_shutdown_t> shutdown_req_;  // only while lingering
  Deadline deadline_;
  OutQueue out_;
  std::unique_ptr<Session> session_;
  ConnInfo info_;
  int open_handles_ = 0;
  bool reading_ = false;
  bool read_paused_ = false;  // by the session
  bool closing_ = false;      // close() ran
  bool flush_then_close_ = false;
  bool linger_ = false;
  bool lingering_ = false;    // write side shut; discarding input until EOF or timeout
};

}  // namespace weir::proxy
