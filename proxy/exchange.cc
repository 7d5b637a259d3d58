#include "proxy/exchange.h"

#include <algorithm>
#include <cstdio>

#include "proxy/log.h"
#include "proxy/mirror.h"
#include "proxy/trace_context.h"
#include "proxy/upstream_h2.h"
#include "proxy/worker.h"
#include "routing/normalize.h"

namespace weir::proxy {

namespace {

// Request bytes kept for a retry after they reached a socket; larger requests are not replayed.
constexpr size_t kReplayLimit = 64 * 1024;
// Times an HTTP/2 request the backend never processed (refused stream, failed connect) goes again.
constexpr int kMaxUnprocessedRetries = 8;

bool named_in(std::span<const std::string_view> tokens, std::string_view name) {
  for (auto t : tokens) {
    if (iequals(t, name)) return true;
  }
  return false;
}

// HTTP/2 field names are lower case.
void add_h2_field(std::vector<std::pair<std::string, std::string>>& to, std::string_view name,
                  std::string_view value) {
  std::string n(name);
  for (char& c : n) c = ascii_lower(c);
  to.emplace_back(std::move(n), std::string(value));
}

void append_header(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.append(": ");
  out.append(value);
  out.append("\r\n");
}

// An exchange lives for one request: its memory is reused on the thread that frees it (a worker
// is one thread), up to kKeptExchanges blocks, instead of going back to malloc every time.
constexpr size_t kKeptExchanges = 256;
struct ExchangeBlocks {
  std::vector<void*> free;
  ~ExchangeBlocks() {
    for (void* p : free) ::operator delete(p);
    free.clear();
    gone = true;
  }
  static thread_local bool gone;  // after the thread's list was destroyed: plain new/delete
};
thread_local bool ExchangeBlocks::gone = false;
thread_local ExchangeBlocks t_exchange_blocks;

}  // namespace

void* Exchange::operator new(size_t size) {
  if (!ExchangeBlocks::gone && size == sizeof(Exchange) && !t_exchange_blocks.free.empty()) {
    void* p = t_exchange_blocks.free.back();
    t_exchange_blocks.free.pop_back();
    return p;
  }
  return ::operator new(size);
}

void Exchange::operator delete(void* p) {
  if (!ExchangeBlocks::gone && t_exchange_blocks.free.size() < kKeptExchanges) {
    t_exchange_blocks.free.push_back(p);
    return;
  }
  ::operator delete(p);
}

Exchange::Exchange(Worker& worker, ExchangeOwner& owner, const ConnInfo& conn)
    : worker_(worker), owner_(owner), conn_info_(conn) {}

Exchange::~Exchange() {
  end_outstanding();
  if (upstream_) {
    // The client went before the response ended, unless weir refused the rest of its request.
    if ((flags_ & kFlagLocalReply) == 0) flags_ |= kFlagDownstreamClose;
    upstream_->close();  // mid-flight: the connection's state is unknown
  }
  if (started_ms_ != 0) log_access();
  BufferPool& buffers = worker_.flush_list().buffers();
  buffers.give(head_);
  buffers.give(replay_);
}

void Exchange::log_access() {
  AccessRecord r;
  r.client = conn_info_.peer_ip;
  r.method = std::move(method_);
  r.host = std::move(host_);
  r.path = std::move(target_);
  r.request_id = std::move(request_id_);
  if (service_) r.service = service_->name;
  if (version_) r.version = version_->name;
  if (endpoint_) r.endpoint = endpoint_->address;
  r.status = status_;
  r.bytes = response_bytes_;
  r.duration_us = (uv_hrtime() - started_ns_) / 1000;
  r.user_agent = std::move(user_agent_);
  r.trace_id = std::move(trace_id_);
  r.local_reason = std::move(local_reason_);
  r.protocol = protocol_;
  if (conn_info_.listener < snap_->config->listeners.size())
    r.listener = snap_->config->listeners[conn_info_.listener].name;
  r.route = route_;
  r.upstream_status = upstream_status_;
  r.retries = static_cast<uint32_t>(attempts_);
  r.flags = flags_ | (attempts_ > 0 ? static_cast<uint32_t>(kFlagRetried) : 0u);
  r.request_bytes = request_bytes_;
  r.upstream_connect_us = connect_us_;
  r.upstream_response_us = response_us_;
  worker_.log_access(r);
}

void Exchange::end_outstanding() {
  if (outstanding_id_ == routing::Picker::kNoEndpoint) return;
  worker_.picker().on_request_end(outstanding_id_);
  outstanding_id_ = routing::Picker::kNoEndpoint;
}

int Exchange::start(const RequestDesc& req) {
  const RequestHead& h = *req.head;
  if (worker_.logging()) {
    started_ms_ = std::max<uint64_t>(worker_.now_ms(), 1);
    started_ns_ = uv_hrtime();
    method_ = h.method;
    host_ = h.host;
    target_ = h.target;
    protocol_ = req.h2 ? "HTTP/2" : h.version_minor == 0 ? "HTTP/1.0" : "HTTP/1.1";
    for (const auto& f : h.headers) {
      if (iequals(f.name, "user-agent")) user_agent_ = f.value;
      // A request weir answers itself still logs the client's trace (the forwarded one wins).
      if (iequals(f.name, "traceparent")) {
        auto tp = parse_traceparent(f.value);
        trace_id_ = tp ? std::string(tp->trace()) : std::string();
      }
    }
  }
  status_ = route_and_send(req);
  return status_;
}

int Exchange::route_and_send(const RequestDesc& req) {
  const RequestHead& h = *req.head;
  // Routes match, and the backend gets, the normal form: no path or host spelling can reach a
  // backend by a route other than the one its canonical form takes.
  routing::Normalized target = routing::normalize_target(h.target, target_storage_);
  if (!target.ok()) {
    error_detail_ = target.error;
    return 400;
  }
  routing::Normalized host = routing::normalize_authority(h.host, host_storage_);
  if (!host.ok()) {
    error_detail_ = host.error;
    return 400;
  }
  target_view_ = target.value;
  host_view_ = host.value;
  snap_ = worker_.current_snapshot();
  if (conn_info_.listener >= snap_->listeners.size()) {
    local_reply("no route");
    flags_ |= kFlagNoRoute;
    return 404;
  }
  std::string_view path = target_view_.substr(0, target_view_.find('?'));
  auto match = snap_->listeners[conn_info_.listener].match_route(host_view_, path);
  if (!match) {
    local_reply("no route");
    flags_ |= kFlagNoRoute;
    return 404;
  }
  route_ = static_cast<int32_t>(match->route);
  service_ = &snap_->services[match->service];
  routing::RequestInfo info;
  info.ctx = &h;
  info.header = [](const void* ctx, std::string_view name) {
    for (const auto& f : static_cast<const RequestHead*>(ctx)->headers) {
      if (iequals(f.name, name)) return f.value;
    }
    return std::string_view();
  };
  info.client_ip = conn_info_.peer_ip;
  routing::Choice choice = worker_.picker().choose(*service_, info, worker_.now_ms());
  if (!choice.version) {
    error_detail_ = choice.why;
    flags_ |= kFlagNoHealthy;
    local_reply(error_detail_);
    return 503;
  }
  version_ = choice.version;
  assign_bucket_ = choice.assign_bucket;
  counters_ = worker_.stats().versions.get_or_create(version_->stats_id);
  if (counters_) counters_->requests.add();
  start_ns_ = uv_hrtime();
  idempotent_ = h.idempotent;
  head_request_ = h.is_head;
  chunked_body_ = h.body == BodyKind::kChunked && !version_->h2;  // HTTP/2 frames it itself
  has_body_ = h.body != BodyKind::kNone;
  build_request_head(req);
  mirror_ = worker_.mirrors().select(snap_, *service_, *version_, h,
                                     std::string_view(head_).substr(0, framing_at_));
  if (mirror_ && h.body == BodyKind::kNone) worker_.mirrors().send(std::move(mirror_));
  int status = 0;
  if (!connect_upstream(routing::Picker::kNoEndpoint, &status)) {
    if (status == 503) {
      flags_ |= kFlagNoHealthy;
      local_reply(error_detail_);
    } else {
      local_reply("upstream connect failed");
      worker_.pool().log_connect_failure(*endpoint_, service_->name, version_->name);
    }
    return status;
  }
  if (!send_head()) {
    local_reply("the upstream took no new stream");
    return 502;
  }
  if (h.body == BodyKind::kNone) end_body({});
  return 0;
}

bool Exchange::send_head() {
  if (!version_->h2) {
    write_upstream(head_);
    return true;
  }
  // acquire() gives an H2Stream for every h2 version.
  if (static_cast<H2Stream*>(upstream_)->send_head(h2_head_, has_body_)) return true;
  abandon();
  flags_ &= ~kFlagDownstreamClose;  // weir dropped the stream, not the client
  return false;
}

void Exchange::build_request_head(const RequestDesc& req) {
  const RequestHead& h = *req.head;
  const config::ProxySettings& ps = worker_.settings();
  const bool h2 = version_->h2;
  BufferPool& buffers = worker_.flush_list().buffers();
  std::string& out = head_;
  out.clear();
  if (!h2) buffers.take(out);
  h2_head_.clear();
  // One list of fields for both framings: HTTP/1.1 text, or (lower-case) HTTP/2 fields.
  auto emit = [&](std::string_view name, std::string_view value) {
    if (!h2) {
      append_header(out, name, value);
      return;
    }
    add_h2_field(h2_head_, name, value);
  };
  if (h2) {
    h2_head_.emplace_back(":method", std::string(h.method));
    h2_head_.emplace_back(":scheme", version_->tls ? "https" : "http");
    if (!host_view_.empty()) h2_head_.emplace_back(":authority", std::string(host_view_));
    h2_head_.emplace_back(":path", std::string(target_view_));
  } else {
    out.append(h.method);
    out.push_back(' ');
    out.append(target_view_);
    out.append(" HTTP/1.1\r\n");
    if (!host_view_.empty()) append_header(out, "Host", host_view_);
  }
  bool te_trailers = false;
  // Scratch buffers from the worker's pool (given back below).
  std::string xff, via;
  buffers.take(xff);
  buffers.take(via);
  bool have_request_id = ps.request_id_header.empty();
  // mTLS: the verified client's subject, and never a client's own claim of one.
  std::string_view subject_header;
  if (conn_info_.listener < snap_->config->listeners.size()) {
    const auto& lt = snap_->config->listeners[conn_info_.listener].tls;
    if (lt) subject_header = lt->client_subject_header;
  }
  // W3C trace context: weir is a hop of its own (proxy/trace_context.h).
  std::optional<std::string_view> traceparent;
  int traceparents = 0;
  std::vector<std::string_view> tracestate;
  for (const auto& f : h.headers) {
    if (!subject_header.empty() && iequals(f.name, subject_header)) continue;
    if (iequals(f.name, "traceparent")) {
      traceparent = f.value;
      ++traceparents;
      continue;
    }
    if (iequals(f.name, "tracestate")) {
      tracestate.push_back(f.value);
      continue;
    }
    if (iequals(f.name, "te") && f.value.find("trailers") != std::string_view::npos) {
      te_trailers = true;
    }
    if (is_hop_by_hop(f.name) || named_in(h.connection_tokens, f.name)) continue;
    if (iequals(f.name, "host") || iequals(f.name, "content-length") ||
        iequals(f.name, "expect") || iequals(f.name, "x-forwarded-proto") ||
        iequals(f.name, "x-forwarded-host") || iequals(f.name, kMirrorHeader)) {
      continue;
    }
    if (iequals(f.name, "x-forwarded-for")) {
      if (!xff.empty()) xff.append(", ");
      xff.append(f.value);
      continue;
    }
    if (iequals(f.name, "via")) {
      if (!via.empty()) via.append(", ");
      via.append(f.value);
      continue;
    }
    if (!have_request_id && iequals(f.name, ps.request_id_header)) {
      have_request_id = true;
      if (started_ms_ != 0) request_id_ = f.value;
    }
    emit(f.name, f.value);
  }
  // gRPC asks for trailers end to end; TE is hop-by-hop, so it is said again on an h2 hop.
  if (h2 && te_trailers) emit("te", "trailers");
  if (!subject_header.empty() && !conn_info_.client_subject.empty()) {
    emit(subject_header, conn_info_.client_subject);
  }
  if (traceparents > 1) traceparent.reset();  // several are as good as none (invalid)
  bool continued = false;
  TraceParent tp =
      next_hop_traceparent(traceparent, [this] { return worker_.next_random(); }, &continued);
  std::array<char, TraceParent::kHeaderSize> tp_text;
  emit("traceparent", tp.write_header(tp_text));
  // tracestate belongs to the trace it came with; a new trace starts without it.
  if (continued) {
    for (std::string_view ts : tracestate) emit("tracestate", ts);
  }
  if (started_ms_ != 0) trace_id_ = tp.trace();
  if (!xff.empty()) xff.append(", ");
  xff.append(conn_info_.peer_ip);
  emit("X-Forwarded-For", xff);
  emit("X-Forwarded-Proto", req.scheme);
  if (!host_view_.empty()) emit("X-Forwarded-Host", host_view_);
  if (!ps.via.empty()) {
    if (!via.empty()) via.append(", ");
    via.append(h.version_minor == 0 ? "1.0 " : "1.1 ");
    via.append(ps.via);
    emit("Via", via);
  }
  if (!have_request_id) {
    // A version-4 UUID from the worker's generator: unique enough to correlate logs.
    uint64_t a = worker_.next_random(), b = worker_.next_random();
    char id[40];
    std::snprintf(id, sizeof id, "%08x-%04x-4%03x-%04x-%012llx", static_cast<unsigned>(a >> 32),
                  static_cast<unsigned>((a >> 16) & 0xffff), static_cast<unsigned>(a & 0xfff),
                  static_cast<unsigned>(((b >> 48) & 0x3fff) | 0x8000),
                  static_cast<unsigned long long>(b & 0xffffffffffffULL));
    emit(ps.request_id_header, id);
    if (started_ms_ != 0) request_id_ = id;
  }
  framing_at_ = out.size();
  if (h.body == BodyKind::kContentLength) {
    std::string length;  // 20 digits at most: no allocation
    append_number(length, h.content_length);
    emit("Content-Length", length);
  } else if (h.body == BodyKind::kChunked && !h2) {
    out.append("Transfer-Encoding: chunked\r\n");
  }
  if (!h2) out.append("\r\n");
  via_ = "1.1 ";
  via_.append(ps.via);
  buffers.give(xff);
  buffers.give(via);
}

bool Exchange::connect_upstream(uint32_t exclude, int* status) {
  routing::Picker& picker = worker_.picker();
  const uint64_t now = worker_.now_ms();
  end_outstanding();
  bool tried = false;
  for (size_t tries = 0; tries < version_->endpoints.size(); ++tries) {
    const routing::Endpoint* ep = picker.pick_endpoint(*version_, now, exclude);
    if (!ep) ep = picker.pick_endpoint(*version_, now);  // the excluded one is all there is
    if (!ep) break;
    tried = true;
    endpoint_ = ep;
    int err = 0;
    upstream_ = worker_.pool().acquire(*version_, *ep, this, head_request_, &err);
    if (!upstream_) {
      worker_.streaks().record(ep->id, ep->eject_epoch, true);
      flags_ |= kFlagConnectFailure;
    }
    ep_counters_ = worker_.stats().endpoints.get_or_create(ep->id);
    if (ep_counters_) ep_counters_->attempts.add();
    if (upstream_) {
      picker.on_request_start(ep->id);
      outstanding_id_ = ep->id;
      return true;
    }
    picker.mark_failed(ep->id, now + 1000);
    exclude = ep->id;
  }
  if (!tried) error_detail_ = "the chosen version has no healthy endpoint";
  *status = tried ? 502 : 503;
  return false;
}

void Exchange::write_upstream(std::string_view data) {
  if (!upstream_) return;
  upstream_->write(data);
  if (!replayable_) return;
  // A refused HTTP/2 stream was never processed, so any method may go again.
  if ((!idempotent_ && !version_->h2) || replay().size() + data.size() > kReplayLimit) {
    replayable_ = false;
    replay_is_head_ = false;
    worker_.flush_list().buffers().give(replay_);
    return;
  }
  // The head alone (every request without a body) is replayed from head_, not copied.
  if (replay_.empty() && !replay_is_head_ && data.data() == head_.data() &&
      data.size() == head_.size()) {
    replay_is_head_ = true;
    return;
  }
  if (replay_is_head_) {
    worker_.flush_list().buffers().take(replay_);
    replay_.assign(head_);
    replay_is_head_ = false;
  }
  replay_.append(data);
}

void Exchange::send_body(const char* data, size_t len) {
  if (mirror_ && !mirror_->add_body(data, len)) mirror_.reset();
  if (!upstream_ || len == 0) return;
  request_bytes_ += len;
  if (counters_) counters_->request_bytes.add(len);
  if (chunked_body_) {
    std::string size;
    append_hex(size, len);
    size.append("\r\n");
    write_upstream(size);
    write_upstream(std::string_view(data, len));
    write_upstream("\r\n");
  } else {
    write_upstream(std::string_view(data, len));
  }
}

void Exchange::end_body(std::span<const HeaderField> trailers) {
  if (request_done_) return;  // a request without a body was ended by start()
  request_done_ = true;
  if (mirror_) worker_.mirrors().send(std::move(mirror_));  // trailers are not copied
  if (!upstream_) return;
  if (chunked_body_) {
    std::string tail = "0\r\n";
    for (const auto& t : trailers) append_header(tail, t.name, t.value);
    tail.append("\r\n");
    write_upstream(tail);
  } else if (version_->h2) {
    // Kept for a stream that goes again; HTTP/2 forbids connection-specific fields anywhere.
    for (const auto& t : trailers) {
      if (!t.name.starts_with(':') && !is_hop_by_hop(t.name)) {
        add_h2_field(h2_trailers_, t.name, t.value);
      }
    }
  }
  complete_request();
}

void Exchange::complete_request() {
  if (version_->h2 && !h2_trailers_.empty()) {
    static_cast<H2Stream*>(upstream_)->set_trailers(h2_trailers_);
  }
  upstream_->request_complete();
}

bool Exchange::request_congested() { return upstream_ && upstream_->congested(); }

void Exchange::pause_response() {
  response_paused_ = true;
  if (upstream_) upstream_->pause_reading();
}

void Exchange::resume_response() {
  response_paused_ = false;
  if (upstream_) upstream_->resume_reading();
}

uint64_t Exchange::elapsed_us() const { return (uv_hrtime() - start_ns_) / 1000; }

health::FailureKind Exchange::failure_kind(UpstreamError e) {
  using health::FailureKind;
  if (e == UpstreamError::kConnect) return FailureKind::kConnect;
  if (e == UpstreamError::kResponseTimeout || e == UpstreamError::kBodyTimeout) {
    return FailureKind::kTimeout;
  }
  return FailureKind::kReset;
}

void Exchange::count_failure(UpstreamError e) {
  if (!counters_) return;
  counters_->failures[static_cast<size_t>(failure_kind(e))].add();
  // Before a head the client gets weir's 502/504; after it, a cut response (class 0).
  counters_->responses[response_started_ ? 0 : 5].add();
  counters_->total_latency[health::Histogram::index(elapsed_us())].add();
}

void Exchange::abandon() {
  mirror_.reset();  // the request will not complete: its copy is cancelled
  if (upstream_) flags_ |= kFlagDownstreamClose;
  end_outstanding();
  if (UpstreamStream* u = upstream_) {
    upstream_ = nullptr;
    u->close();
  }
}

void Exchange::count_response(int status_class) {
  const size_t cls = static_cast<size_t>(status_class) % 6;
  worker_.streaks().record(endpoint_->id, endpoint_->eject_epoch, cls == 5);
  if (ep_counters_) ep_counters_->responses[cls].add();
  if (counters_) counters_->responses[cls].add();
}

// A non-zero grpc-status fails the call whatever the HTTP status said.
static bool grpc_failed(std::span<const HeaderField> fields) {
  for (const auto& f : fields) {
    if (iequals(f.name, "grpc-status")) return trim_ows(f.value) != "0";
  }
  return false;
}

void Exchange::on_upstream_head(UpstreamStream& c, const UpstreamResponseHead& head) {
  response_started_ = true;
  status_ = head.status;
  upstream_status_ = head.status;
  if (c.connect_us() >= 0) connect_us_ = c.connect_us();
  response_us_ = static_cast<int64_t>(elapsed_us());
  if (version_->h2) {
    for (const auto& f : head.headers) {
      if (iequals(f.name, "content-type") && f.value.starts_with("application/grpc")) grpc_ = true;
    }
  }
  // A gRPC call's outcome is in its trailers (or a trailers-only head): counted at its end.
  if (grpc_) {
    grpc_failed_ = grpc_failed(head.headers);
  } else {
    count_response(head.status / 100);
  }
  if (counters_) counters_->headers_latency[health::Histogram::index(elapsed_us())].add();
  // The owner reads the list during on_response_head only: one list per worker serves all.
  std::vector<HeaderField>& out_headers = worker_.header_scratch();
  out_headers.clear();
  // Names listed in the backend's Connection header are hop-by-hop too.
  std::vector<std::string_view> tokens;
  for (const auto& f : head.headers) {
    if (!iequals(f.name, "connection")) continue;
    std::string_view list = f.value;
    while (!list.empty()) {
      size_t comma = list.find(',');
      tokens.push_back(trim_ows(list.substr(0, comma)));
      if (comma == std::string_view::npos) break;
      list.remove_prefix(comma + 1);
    }
  }
  ResponseMeta meta;
  meta.status = head.status;
  meta.no_body = head.no_body;
  meta.has_length = head.has_length;
  meta.content_length = head.content_length;
  for (const auto& f : head.headers) {
    if (is_hop_by_hop(f.name) || (!tokens.empty() && named_in(tokens, f.name))) continue;
    if (iequals(f.name, "content-length")) {
      meta.content_length_text = f.value;
      continue;
    }
    out_headers.push_back(f);
  }
  if (!worker_.settings().via.empty()) out_headers.push_back({"Via", via_});
  const config::ProxySettings& ps = worker_.settings();
  if (!ps.version_header.empty()) out_headers.push_back({ps.version_header, version_->name});
  if (assign_bucket_ >= 0) {
    // Anonymous clients keep their bucket, so they stay on their version across requests.
    set_cookie_ = service_->config->assign_cookie;
    set_cookie_.push_back('=');
    append_number(set_cookie_, static_cast<uint64_t>(assign_bucket_));
    set_cookie_.append("; Path=/; Max-Age=31536000; HttpOnly");
    out_headers.push_back({"Set-Cookie", set_cookie_});
  }
  owner_.on_response_head(meta, out_headers);
}

void Exchange::on_upstream_body(UpstreamStream&, const char* data, size_t len) {
  response_bytes_ += len;
  if (counters_) counters_->response_bytes.add(len);
  owner_.on_response_data(data, len);
}

void Exchange::on_upstream_done(UpstreamStream& c, std::span<const HeaderField> trailers) {
  upstream_ = nullptr;
  if (grpc_) {
    if (grpc_failed(trailers)) grpc_failed_ = true;
    count_response(grpc_failed_ ? 5 : status_ / 100);
  }
  end_outstanding();
  if (counters_) counters_->total_latency[health::Histogram::index(elapsed_us())].add();
  worker_.pool().release(&c, request_done_);
  owner_.on_response_end(trailers);
}

void Exchange::on_upstream_error(UpstreamStream& c, UpstreamError e, std::string unsent) {
  upstream_ = nullptr;
  if (e == UpstreamError::kConnect) {
    flags_ |= kFlagConnectFailure;
  } else if (e == UpstreamError::kResponseTimeout || e == UpstreamError::kBodyTimeout) {
    flags_ |= kFlagUpstreamTimeout;
  } else {
    flags_ |= kFlagUpstreamReset;
  }
  // Every failed attempt counts on its endpoint, retried or not.
  if (ep_counters_) {
    ep_counters_->failures[static_cast<size_t>(failure_kind(e))].add();
    if (response_started_) ep_counters_->responses[0].add();
  }
  end_outstanding();
  const uint32_t failed = c.endpoint_id();
  if (e == UpstreamError::kConnect) {
    worker_.picker().mark_failed(failed, worker_.now_ms() + 1000);
    worker_.streaks().record(failed, endpoint_->eject_epoch, true);
  }
  const bool unprocessed = e == UpstreamError::kRefused || e == UpstreamError::kConnect;
  if (version_->h2 && unprocessed && !response_started_ && replayable_ &&
      attempts_ < (e == UpstreamError::kConnect ? 1 : kMaxUnprocessedRetries)) {
    // Again on a fresh stream (a refusing connection takes no more; a failed connect's endpoint
    // is avoided): head, then the body. A retried stream may land on another connection that is
    // rotating too, hence a few tries.
    ++attempts_;
    worker_.stats().upstream_retries.inc();
    int status = 0;
    const uint32_t avoid = e == UpstreamError::kConnect ? failed : routing::Picker::kNoEndpoint;
    if (connect_upstream(avoid, &status) && send_head()) {
      if (!replay().empty()) upstream_->write(replay());
      if (request_done_) complete_request();
      return;
    }
  }
  const bool retryable_error = e == UpstreamError::kConnect || e == UpstreamError::kReset;
  if (!version_->h2 && !response_started_ && retryable_error && attempts_ == 0) {
    // Unsent bytes can go anywhere; sent ones only for idempotent requests kept in full.
    std::string data = !unsent.empty() ? std::move(unsent)
                                       : (idempotent_ && replayable_ ? std::string(replay())
                                                                     : std::string());
    if (!data.empty()) {
      ++attempts_;
      worker_.stats().upstream_retries.inc();
      int status = 0;
      if (connect_upstream(failed, &status)) {
        upstream_->write(data);
        if (request_done_) upstream_->request_complete();
        return;
      }
    }
  }
  int status = 502;
  if (e == UpstreamError::kResponseTimeout || e == UpstreamError::kBodyTimeout) status = 504;
  if (!response_started_) {
    status_ = status;
    local_reply(e == UpstreamError::kConnect ? "upstream connect failed"
                        : status == 504                ? "upstream response timeout"
                                                       : "upstream reset before the response");
    if (e == UpstreamError::kConnect)
      worker_.pool().log_connect_failure(*endpoint_, service_->name, version_->name);
  }
  count_failure(e);
  owner_.on_exchange_failed(status);
}

void Exchange::on_upstream_drained(UpstreamStream&) { owner_.on_request_drained(); }

void Exchange::answered_locally(int status, std::string_view why) {
  if (response_started_) return;
  status_ = status;
  local_reply(why);
}

void Exchange::local_reply(std::string_view why) {
  flags_ |= kFlagLocalReply;
  if (started_ms_ != 0) local_reason_ = why;
}

}  // namespace weir::proxy
