// A connection's single deadline on one uv_timer_t, re-armed lazily: moving the deadline later
// (every read) only stores a number; the timer, when it fires early, re-arms itself for the rest.
// This keeps per-read cost free of timer-heap operations.
#pragma once

#include <uv.h>

#include <cstdint>

namespace weir::proxy {

class Deadline {
 public:
  using Fire = void (*)(void* owner);

  void init(uv_loop_t* loop, void* owner, Fire fire) {
    uv_timer_init(loop, &timer_);
    timer_.data = this;
    owner_ = owner;
    fire_ = fire;
  }
  void set(uint64_t ms_from_now) {
    uint64_t now = uv_now(timer_.loop);
    at_ = now + ms_from_now;
    if (!armed_ || armed_at_ > at_) arm(now);
  }
  void clear() { at_ = 0; }
  bool active() const { return at_ != 0; }
  uv_handle_t* handle() { return reinterpret_cast<uv_handle_t*>(&timer_); }
  // uv_close()s the timer; `done(owner)` runs from its close callback.
  void close(Fire done) {
    stop();
    closed_ = done;
    uv_close(handle(), [](uv_handle_t* h) {
      auto* self = static_cast<Deadline*>(h->data);
      self->closed_(self->owner_);
    });
  }
  void stop() {
    at_ = 0;
    if (!uv_is_closing(handle())) uv_timer_stop(&timer_);
    armed_ = false;
  }

 private:
  void arm(uint64_t now) {
    armed_ = true;
    armed_at_ = at_;
    uv_timer_start(&timer_, on_timer, at_ - now, 0);
  }
  static void on_timer(uv_timer_t* t) {
    auto* self = static_cast<Deadline*>(t->data);
    self->armed_ = false;
    if (self->at_ == 0) return;
    uint64_t now = uv_now(t->loop);
    if (now < self->at_) {
      self->arm(now);
      return;
    }
    self->at_ = 0;
    self->fire_(self->owner_);
  }

  uv_timer_t timer_{};
  void* owner_ = nullptr;
  Fire fire_ = nullptr;
  Fire closed_ = nullptr;
  uint64_t at_ = 0;
  uint64_t armed_at_ = 0;
  bool armed_ = false;
};

}  // namespace weir::proxy
