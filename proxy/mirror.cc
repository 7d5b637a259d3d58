#include "proxy/mirror.h"

#include <algorithm>

#include "proxy/exchange.h"
#include "proxy/worker.h"

namespace weir::proxy {

MirrorRequest::MirrorRequest(Mirrors& owner, std::shared_ptr<const routing::Snapshot> snap,
                             const routing::Version& target, health::MirrorCounters& counters,
                             uint64_t max_body, bool head_request, bool has_body, std::string head)
    : owner_(owner),
      snap_(std::move(snap)),
      target_(target),
      counters_(&counters),
      head_(std::move(head)),
      max_body_(max_body),
      head_request_(head_request),
      has_body_(has_body) {
  if (target_.stats_id >= owner_.active_.size()) owner_.active_.resize(target_.stats_id + 1, 0);
  ++owner_.active_[target_.stats_id];
}

MirrorRequest::~MirrorRequest() {
  if (!sent_) counters_->cancelled.add();
  end_outstanding();
  if (upstream_) upstream_->close();
  --owner_.active_[target_.stats_id];
}

bool MirrorRequest::add_body(const char* data, size_t len) {
  if (body_.size() + len > max_body_) {
    counters_->skipped_body.add();
    sent_ = true;  // accounted for: not a cancellation
    return false;
  }
  body_.append(data, len);
  return true;
}

void MirrorRequest::start() {
  Worker& w = owner_.worker_;
  sent_ = true;
  const routing::Endpoint* ep = w.picker().pick_endpoint(target_, w.now_ms());
  if (!ep) {
    counters_->no_endpoint.add();
    finish();
    return;
  }
  counters_->sent.add();
  int err = 0;
  // HTTP/1.1, plain or TLS, as the target version speaks (config refuses h2 targets).
  upstream_ = w.pool().acquire(target_, *ep, this, head_request_, &err);
  if (!upstream_) {
    counters_->failures[static_cast<size_t>(health::FailureKind::kConnect)].add();
    finish();
    return;
  }
  w.picker().on_request_start(ep->id);
  outstanding_id_ = ep->id;
  head_.append(kMirrorHeader);
  head_.append(": 1\r\n");
  if (has_body_) {
    head_.append("Content-Length: ");
    append_number(head_, body_.size());
    head_.append("\r\n");
  }
  head_.append("\r\n");
  upstream_->write(head_);
  if (!body_.empty()) upstream_->write(body_);
  // The connection's queue holds the bytes now.
  std::string().swap(head_);
  std::string().swap(body_);
  upstream_->request_complete();
}

void MirrorRequest::end_outstanding() {
  if (outstanding_id_ == routing::Picker::kNoEndpoint) return;
  owner_.worker_.picker().on_request_end(outstanding_id_);
  outstanding_id_ = routing::Picker::kNoEndpoint;
}

void MirrorRequest::finish() {
  auto& list = owner_.sending_;
  auto it = std::find(list.begin(), list.end(), this);
  if (it != list.end()) {
    *it = list.back();
    list.pop_back();
  }
  delete this;
}

void MirrorRequest::on_upstream_head(UpstreamStream&, const UpstreamResponseHead& head) {
  status_ = head.status;
}

void MirrorRequest::on_upstream_body(UpstreamStream&, const char*, size_t) {}

void MirrorRequest::on_upstream_done(UpstreamStream& c, std::span<const HeaderField>) {
  upstream_ = nullptr;
  end_outstanding();
  counters_->responses[static_cast<size_t>(status_ / 100) % 6].add();
  owner_.worker_.pool().release(&c, true);
  finish();  // the connection touches nothing of ours after this callback
}

void MirrorRequest::on_upstream_error(UpstreamStream&, UpstreamError e, std::string) {
  upstream_ = nullptr;
  counters_->failures[static_cast<size_t>(Exchange::failure_kind(e))].add();
  finish();
}

void MirrorRequest::on_upstream_drained(UpstreamStream&) {}

Mirrors::~Mirrors() { close_all(); }

std::unique_ptr<MirrorRequest> Mirrors::select(const std::shared_ptr<const routing::Snapshot>& snap,
                                               const routing::Service& svc,
                                               const routing::Version& chosen,
                                               const RequestHead& req, std::string_view head) {
  if (svc.mirror < 0) return nullptr;
  const routing::Version& target = svc.versions[static_cast<size_t>(svc.mirror)];
  if (&target == &chosen) return nullptr;  // already the target's own live traffic
  const config::Mirror& mc = svc.config->mirror;
  if (!sampler_.take(target.stats_id, mc.percent)) return nullptr;
  health::VersionCounters* vc = worker_.stats().versions.get_or_create(target.stats_id);
  if (!vc) return nullptr;
  if (req.body == BodyKind::kContentLength && req.content_length > mc.max_body_bytes) {
    vc->mirror.skipped_body.add();
    return nullptr;
  }
  const uint32_t active = target.stats_id < active_.size() ? active_[target.stats_id] : 0;
  if (active >= mc.max_in_flight || worker_.draining()) {
    vc->mirror.dropped.add();
    return nullptr;
  }
  return std::unique_ptr<MirrorRequest>(
      new MirrorRequest(*this, snap, target, vc->mirror, mc.max_body_bytes, req.is_head,
                        req.body != BodyKind::kNone, std::string(head)));
}

void Mirrors::send(std::unique_ptr<MirrorRequest> m) {
  MirrorRequest* r = m.release();
  sending_.push_back(r);
  r->start();
}

void Mirrors::close_all() {
  while (!sending_.empty()) {
    MirrorRequest* r = sending_.back();
    sending_.pop_back();
    r->counters_->failures[static_cast<size_t>(health::FailureKind::kReset)].add();
    delete r;  // closes its connection without a callback
  }
}

}  // namespace weir::proxy
