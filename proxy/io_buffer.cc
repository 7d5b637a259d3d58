#include "proxy/io_buffer.h"

#include <algorithm>

namespace weir::proxy {

void FlushList::cancel(Deferred* d) {
  if (!d->scheduled_) return;
  d->scheduled_ = false;
  auto it = std::find(deferred_.begin() + static_cast<std::ptrdiff_t>(deferred_next_),
                      deferred_.end(), d);
  if (it != deferred_.end()) *it = nullptr;
}

void FlushList::flush_all() {
  // Deferred work appends to queues, and flushing can make owners append again (a drain
  // callback may queue data or schedule work); loop until quiet.
  while (!dirty_.empty() || !deferred_.empty()) {
    // Indexed: run_deferred may schedule more (HTTP/2 framing feeds TLS), appended behind.
    while (deferred_next_ < deferred_.size()) {
      Deferred* d = deferred_[deferred_next_++];
      if (!d) continue;
      d->scheduled_ = false;
      d->run_deferred();
    }
    deferred_.clear();
    deferred_next_ = 0;
    scratch_.swap(dirty_);
    for (OutQueue* q : scratch_) q->flush();
    scratch_.clear();
  }
  if (wake_) uv_idle_stop(wake_);
}

void OutQueue::init(uv_stream_t* stream, FlushList* flush_list, Listener* listener) {
  stream_ = stream;
  flush_list_ = flush_list;
  listener_ = listener;
}

void OutQueue::mark_dirty() {
  if (!dirty_ && !closed_) {
    dirty_ = true;
    flush_list_->add(this);
  }
}

void OutQueue::append(std::string_view data) {
  if (closed_ || data.empty()) return;
  if (pending_.empty()) flush_list_->buffers().take(pending_);
  pending_.append(data);
  mark_dirty();
}

std::string OutQueue::take_unsent() {
  std::string out;
  if (!writing_) out.swap(pending_);
  return out;
}

void OutQueue::flush() {
  dirty_ = false;
  if (closed_ || writing_ || held_ || pending_.empty()) {
    if (!closed_ && !writing_ && pending_.empty()) after_progress();
    return;
  }
  if (uv_is_closing(reinterpret_cast<uv_handle_t*>(stream_))) return;
  uv_buf_t buf = uv_buf_init(pending_.data(), static_cast<unsigned>(pending_.size()));
  int n = uv_try_write(stream_, &buf, 1);
  if (n == static_cast<int>(pending_.size())) {
    bytes_written_ += static_cast<uint64_t>(n);
    flush_list_->buffers().give(pending_);
    after_progress();
    return;
  }
  if (n < 0 && n != UV_EAGAIN && n != UV_ENOSYS) {
    if (listener_) listener_->on_out_error(n);
    return;
  }
  size_t done = n > 0 ? static_cast<size_t>(n) : 0;
  bytes_written_ += done;
  inflight_.swap(pending_);
  pending_.clear();
  inflight_off_ = done;
  uv_buf_t rest = uv_buf_init(inflight_.data() + done,
                              static_cast<unsigned>(inflight_.size() - done));
  if (!req_) req_ = std::make_unique<uv_write_t>();
  req_->data = this;
  int rc = uv_write(req_.get(), stream_, &rest, 1, on_write);
  if (rc < 0) {
    inflight_.clear();
    inflight_off_ = 0;
    if (listener_) listener_->on_out_error(rc);
    return;
  }
  writing_ = true;
  was_high_ = was_high_ || queued() >= kHighWater;
}

void OutQueue::on_write(uv_write_t* req, int status) {
  auto* self = static_cast<OutQueue*>(req->data);
  self->writing_ = false;
  if (status < 0) {
    // UV_ECANCELED after uv_close: the owner is closing and must not be called.
    if (!self->closed_ && self->listener_ && status != UV_ECANCELED) {
      self->listener_->on_out_error(status);
    }
    return;
  }
  self->bytes_written_ += self->inflight_.size() - self->inflight_off_;
  self->flush_list_->buffers().give(self->inflight_);
  self->inflight_off_ = 0;
  if (self->closed_) return;
  if (!self->pending_.empty()) self->flush();
  // libuv is done with the request once its callback runs; a new write makes a new one.
  if (!self->writing_) self->req_.reset();
  self->after_progress();
}

void OutQueue::after_progress() {
  if ((was_high_ && queued() <= kLowWater) || (want_empty_ && queued() == 0)) {
    was_high_ = false;
    want_empty_ = false;
    if (listener_) listener_->on_out_drained();
  }
}

}  // namespace weir::proxy
