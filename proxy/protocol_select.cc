#include "proxy/protocol_select.h"

#include <algorithm>
#include <string_view>

#include "proxy/h1_session.h"
#include "proxy/h2_session.h"
#include "proxy/tls_transport.h"
#include "proxy/worker.h"

namespace weir::proxy {

namespace {
constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
}  // namespace

std::unique_ptr<Session> make_http_session(Transport& t, bool h2) {
  if (h2) return std::make_unique<H2Session>(t);
  return std::make_unique<H1Session>(t);
}

std::unique_ptr<Session> open_session(Transport& t, uint32_t listener) {
  Worker& w = t.worker();
  if (auto tls = w.tls_for(listener)) return std::make_unique<TlsTransport>(t, std::move(tls));
  const auto& listeners = w.snapshot()->config->listeners;
  const bool h2 = listener < listeners.size() && listeners[listener].h2;
  const bool http1 = listener >= listeners.size() || listeners[listener].http1;
  if (h2 && http1) return std::make_unique<ProtocolSelect>(t);
  return make_http_session(t, h2);
}

ProtocolSelect::ProtocolSelect(Transport& t) : t_(t) {
  t_.set_deadline(t_.worker().settings().request_header_timeout_ms);
}

void ProtocolSelect::on_read(const char* data, size_t len) {
  if (inner_) {
    inner_->on_read(data, len);
    return;
  }
  const size_t take = std::min(len, kPreface.size() - head_.size());
  head_.append(data, take);
  const bool h2 = kPreface.starts_with(head_);
  if (h2 && head_.size() < kPreface.size()) return;  // wait for all 24 preface bytes
  std::string all;  // the held bytes and the rest of this read, in order
  all.swap(head_);
  all.append(data + take, len - take);
  choose(h2);
  inner_->on_read(all.data(), all.size());
}

void ProtocolSelect::choose(bool h2) {
  inner_ = make_http_session(t_, h2);
  if (draining_) inner_->start_drain();
}

void ProtocolSelect::on_eof() {
  if (inner_) {
    inner_->on_eof();
  } else {
    t_.close_after_flush(false);
  }
}

void ProtocolSelect::on_drain() {
  if (inner_) inner_->on_drain();
}

void ProtocolSelect::on_timeout() {
  if (inner_) {
    inner_->on_timeout();
  } else {
    t_.close_after_flush(false);
  }
}

void ProtocolSelect::start_drain() {
  draining_ = true;
  if (inner_) {
    inner_->start_drain();
  } else if (head_.empty()) {
    // Nothing read yet (perhaps accepted from the backlog at shutdown): the first request may
    // be on its way. on_timeout closes the connection if none comes.
    t_.set_deadline(kDrainIdleGraceMs);
  }
}

void ProtocolSelect::on_close() {
  if (inner_) inner_->on_close();
}

}  // namespace weir::proxy
