#include "proxy/client_conn.h"

#include <unistd.h>

#include "proxy/protocol_select.h"
#include "proxy/worker.h"

namespace weir::proxy {

namespace {
// After weir decides to close, it shuts its write side and reads (discarding) for this long, so
// a client still sending does not get a reset that destroys the response it has not read yet.
constexpr uint64_t kLingerMs = 2000;
}  // namespace

ClientConn::ClientConn(Worker& worker) : worker_(worker) {}

ClientConn::~ClientConn() {
  worker_.remove_conn(this);
  worker_.stats().connections_active[WorkerStats::listener_slot(info_.listener)].dec();
}

ClientConn* ClientConn::create(Worker& worker, uint32_t listener) {
  auto* c = new ClientConn(worker);
  uv_tcp_init(worker.loop(), &c->tcp_);
  c->tcp_.data = c;
  c->deadline_.init(worker.loop(), c, on_deadline);
  c->open_handles_ = 2;
  worker.add_conn(c);
  c->info_.listener = listener;
  worker.stats().connections_accepted.inc();
  worker.stats().connections_active[WorkerStats::listener_slot(listener)].inc();
  return c;
}

void ClientConn::accept(Worker& worker, uv_stream_t* server, uint32_t listener) {
  ClientConn* c = create(worker, listener);
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&c->tcp_)) != 0) {
    c->close();
    return;
  }
  c->start();
}

void ClientConn::adopt(Worker& worker, int fd, uint32_t listener) {
  ClientConn* c = create(worker, listener);
  if (uv_tcp_open(&c->tcp_, fd) != 0) {
    ::close(fd);
    c->close();
    return;
  }
  c->start();
}

void ClientConn::start() {
  uv_tcp_nodelay(&tcp_, 1);
  sockaddr_storage peer{};
  int len = sizeof peer;
  if (uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&peer), &len) == 0) {
    char ip[64] = {0};
    if (peer.ss_family == AF_INET6) {
      uv_ip6_name(reinterpret_cast<sockaddr_in6*>(&peer), ip, sizeof ip);
    } else {
      uv_ip4_name(reinterpret_cast<sockaddr_in*>(&peer), ip, sizeof ip);
    }
    info_.peer_ip = ip;
  }
  out_.init(reinterpret_cast<uv_stream_t*>(&tcp_), &worker_.flush_list(), this);
  info_.tls = worker_.tls_for(info_.listener) != nullptr;
  session_ = open_session(*this, info_.listener);
  resume_reading();
  if (worker_.draining()) session_->start_drain();
}

void ClientConn::set_listener(uint32_t index) {
  WorkerStats& stats = worker_.stats();
  stats.connections_active[WorkerStats::listener_slot(info_.listener)].dec();
  stats.connections_active[WorkerStats::listener_slot(index)].inc();
  info_.listener = index;
}

void ClientConn::pause_reading() {
  read_paused_ = true;
  if (reading_ && !lingering_) {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
    reading_ = false;
  }
}

void ClientConn::resume_reading() {
  read_paused_ = false;
  if (!reading_ && !closing_) {
    uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), on_alloc, on_read);
    reading_ = true;
  }
}

void ClientConn::on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* self = static_cast<ClientConn*>(h->data);
  *buf = uv_buf_init(self->worker_.read_buffer(), Worker::kReadBufferSize);
}

void ClientConn::on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<ClientConn*>(s->data);
  if (nread == 0 || self->closing_) return;
  if (self->lingering_) {
    if (nread < 0) self->close();
    return;
  }
  if (nread == UV_EOF) {
    if (self->session_) self->session_->on_eof();
    return;
  }
  if (nread < 0) {
    self->close();
    return;
  }
  if (self->session_) self->session_->on_read(buf->base, static_cast<size_t>(nread));
}

void ClientConn::close_after_flush(bool linger) {
  if (closing_) return;
  linger_ = linger_ || linger;
  if (flush_then_close_) return;
  flush_then_close_ = true;
  if (out_.empty()) {
    on_out_drained();
  } else {
    out_.notify_when_empty();
  }
}

void ClientConn::on_out_drained() {
  if (closing_) return;
  if (flush_then_close_) {
    if (!out_.empty()) {
      out_.notify_when_empty();
      return;
    }
    if (lingering_) return;
    if (!linger_ || worker_.draining()) {
      close();  // the kernel still sends what is in the socket buffer, then FIN
      return;
    }
    lingering_ = true;
    if (session_) session_->on_close();
    shutdown_req_ = std::make_unique<uv_shutdown_t>();
    shutdown_req_->data = this;
    if (uv_shutdown(shutdown_req_.get(), reinterpret_cast<uv_stream_t*>(&tcp_), on_shutdown) != 0) {
      close();
      return;
    }
    deadline_.set(kLingerMs);
    if (!reading_) {
      uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), on_alloc, on_read);
      reading_ = true;
    }
    return;
  }
  if (session_) session_->on_drain();
}

void ClientConn::on_shutdown(uv_shutdown_t* req, int status) {
  auto* self = static_cast<ClientConn*>(req->data);
  if (status < 0 && status != UV_ECANCELED && !self->closing_) self->close();
}

void ClientConn::on_out_error(int) { close(); }

void ClientConn::abort() {
  if (closing_) return;
  // A reset tells the client the response was cut, rather than a clean end it may trust.
  uv_tcp_close_reset(&tcp_, on_tcp_closed);
  closing_ = true;
  out_.close();
  if (session_) session_->on_close();
  deadline_.close(on_handle_closed);
}

void ClientConn::close() {
  if (closing_) return;
  closing_ = true;
  out_.close();
  if (session_) session_->on_close();
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), on_tcp_closed);
  deadline_.close(on_handle_closed);
}

void ClientConn::on_tcp_closed(uv_handle_t* h) { on_handle_closed(h->data); }

void ClientConn::on_handle_closed(void* p) {
  auto* self = static_cast<ClientConn*>(p);
  if (--self->open_handles_ == 0) delete self;
}

void ClientConn::on_deadline(void* p) {
  auto* self = static_cast<ClientConn*>(p);
  if (self->closing_) return;
  if (self->lingering_ || self->flush_then_close_) {
    self->close();
    return;
  }
  if (self->session_) self->session_->on_timeout();
}

}  // namespace weir::proxy
