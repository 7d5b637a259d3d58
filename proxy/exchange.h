// One request/response between a downstream Session (HTTP/1.1, or an HTTP/2 stream) and an
// upstream endpoint. Owns the routing decision (pinned to the snapshot it started with), the
// upstream stream while it is in use (an HTTP/1.1 UpstreamConn or an H2Stream, both behind
// UpstreamStream), the rewritten request head, retries, and the protocol-neutral response it
// hands back to its owner.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "health/version_counters.h"
#include "proxy/h1_framing.h"
#include "proxy/http_util.h"
#include "proxy/session.h"
#include "proxy/upstream_pool.h"
#include "routing/picker.h"
#include "routing/snapshot.h"

namespace weir::proxy {

class Worker;
class MirrorRequest;

// How the response body is delimited upstream, for the owner to choose its own framing.
struct ResponseMeta {
  int status = 0;
  bool no_body = false;          // HEAD, 204, 304
  bool has_length = false;
  uint64_t content_length = 0;
  std::string_view content_length_text;  // as sent, for HEAD/304 pass-through
};

class ExchangeOwner {
 public:
  // Headers are filtered (hop-by-hop and framing removed) and include weir's own additions.
  virtual void on_response_head(const ResponseMeta& meta, std::span<const HeaderField> headers) = 0;
  virtual void on_response_data(const char* data, size_t len) = 0;
  virtual void on_response_end(std::span<const HeaderField> trailers) = 0;
  // Before the response head: answer with `status` (502/503/504). After it: cut the response.
  virtual void on_exchange_failed(int status) = 0;
  // The upstream can take more request body again (after request_congested() said true).
  virtual void on_request_drained() = 0;

 protected:
  ~ExchangeOwner() = default;
};

// What a session hands to start(); views are read during start() only.
struct RequestDesc {
  const RequestHead* head = nullptr;
  std::string_view scheme = "http";
  bool h2 = false;  // the client speaks HTTP/2 (for the access log's protocol)
};

class Exchange final : private UpstreamHandler {
 public:
  Exchange(Worker& worker, ExchangeOwner& owner, const ConnInfo& conn);
  ~Exchange();
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;
  static void* operator new(size_t size);
  static void operator delete(void* p);

  // Routes and sends the request head. Returns 0, or the status to answer with at once
  // (400 a target or Host that cannot be normalized, 404 no route, 503 nothing to send to, 502
  // connect could not start); no callback follows.
  int start(const RequestDesc& req);
  void send_body(const char* data, size_t len);
  void end_body(std::span<const HeaderField> trailers);
  bool request_congested();
  void pause_response();
  void resume_response();
  // The owner is going away before the exchange ends (an HTTP/2 stream reset): drops the
  // upstream connection now, so no owner callback can follow.
  void abandon();
  // The owner answered the request itself after it was routed (a body over the limit or badly
  // framed): the access log line shows that status rather than none, and `why`.
  void answered_locally(int status, std::string_view why);

  const routing::Service* service() const { return service_; }
  const routing::Version* version() const { return version_; }
  // Why start() answered 400 or 503, for the response body ("" when it did not).
  std::string_view error_detail() const { return error_detail_; }
  static health::FailureKind failure_kind(UpstreamError e);

 private:
  void on_upstream_head(UpstreamStream& c, const UpstreamResponseHead& head) override;
  void on_upstream_body(UpstreamStream& c, const char* data, size_t len) override;
  void on_upstream_done(UpstreamStream& c, std::span<const HeaderField> trailers) override;
  void on_upstream_error(UpstreamStream& c, UpstreamError e, std::string unsent) override;
  void on_upstream_drained(UpstreamStream& c) override;

  int route_and_send(const RequestDesc& req);
  void build_request_head(const RequestDesc& req);
  // Sends the head built by build_request_head; false when the upstream refused it (h2).
  bool send_head();
  // The whole request is queued: its trailers (h2) go, then the end of the stream.
  void complete_request();
  // Response counts by status class, for the version and the endpoint (and outlier streaks).
  void count_response(int status_class);
  void log_access();
  // Picks an endpoint (not `exclude`) and attaches a connection; false when none could start.
  bool connect_upstream(uint32_t exclude, int* status);
  void write_upstream(std::string_view data);
  // The request stops counting towards its endpoint's outstanding requests.
  void end_outstanding();
  uint64_t elapsed_us() const;
  void count_failure(UpstreamError e);

  Worker& worker_;
  ExchangeOwner& owner_;
  const ConnInfo& conn_info_;
  std::shared_ptr<const routing::Snapshot> snap_;
  const routing::Service* service_ = nullptr;
  const routing::Version* version_ = nullptr;
  const routing::Endpoint* endpoint_ = nullptr;
  UpstreamStream* upstream_ = nullptr;
  health::VersionCounters* counters_ = nullptr;  // this worker's, for version_
  health::EndpointCounters* ep_counters_ = nullptr;  // this worker's, for endpoint_
  uint64_t start_ns_ = 0;
  // The request's target and Host in normal form (routing/normalize.h), valid during start():
  // views of the request, or of these buffers when normalizing changed them.
  std::string target_storage_, host_storage_;
  std::string_view target_view_, host_view_;
  std::string head_;      // the rewritten request head (HTTP/1.1)
  size_t framing_at_ = 0;  // where head_'s body framing headers start
  // A shadow copy of this request, held until its body is complete (proxy/mirror.h).
  std::unique_ptr<MirrorRequest> mirror_;
  std::vector<std::pair<std::string, std::string>> h2_head_;  // the same for an h2 upstream
  std::vector<std::pair<std::string, std::string>> h2_trailers_;  // request trailers (h2)
  bool grpc_ = false;     // an h2 response with a gRPC content type: counted at its end
  bool grpc_failed_ = false;  // grpc-status other than 0 seen (head or trailers)
  std::string replay_;    // every request byte sent, while small enough to send again
  bool replay_is_head_ = false;  // ... which is head_ alone (replay_ stays empty)
  std::string_view replay() const { return replay_is_head_ ? std::string_view(head_) : replay_; }
  bool replayable_ = true;
  bool idempotent_ = false;
  bool head_request_ = false;
  bool chunked_body_ = false;
  bool has_body_ = false;
  bool request_done_ = false;
  bool response_started_ = false;
  bool response_paused_ = false;
  int attempts_ = 0;
  // For the access log (filled only when the worker has one).
  int status_ = 0;
  uint64_t response_bytes_ = 0;
  uint64_t started_ms_ = 0;
  uint64_t started_ns_ = 0;
  std::string method_, host_, target_, request_id_, user_agent_, trace_id_, local_reason_;
  std::string_view protocol_;
  int32_t route_ = -1;
  int upstream_status_ = 0;
  uint32_t flags_ = 0;  // AccessFlag bits
  uint64_t request_bytes_ = 0;
  int64_t connect_us_ = -1, response_us_ = -1;
  // A local reply before any upstream response: the access log's LR flag and reason.
  void local_reply(std::string_view why);
  uint32_t outstanding_id_ = routing::Picker::kNoEndpoint;
  int32_t assign_bucket_ = -1;  // >= 0: answer with a Set-Cookie for this sticky bucket
  std::string_view error_detail_;
  std::string via_;
  std::string set_cookie_;
};

}  // namespace weir::proxy
