// Request mirroring (shadow traffic, [service.mirror]). Mirrors, one per worker and owned by
// it, decides which requests get a copy and owns every copy under way. A MirrorRequest is one
// copy: while the request body is still arriving it is held by the primary Exchange (pending);
// once the body is complete Mirrors sends it as its own fire-and-forget upstream exchange, whose
// response is read and thrown away. Nothing a copy does reaches the client, the primary
// exchange, the guard's statistics or outlier ejection; its outcome is counted in the target
// version's health::MirrorCounters.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "health/version_counters.h"
#include "proxy/h1_framing.h"
#include "proxy/upstream_pool.h"
#include "routing/mirror_sampler.h"
#include "routing/picker.h"
#include "routing/snapshot.h"

namespace weir::proxy {

class Worker;
class Mirrors;

// Added to every copy; removed from every client request, so only weir can set it.
inline constexpr std::string_view kMirrorHeader = "x-weir-mirror";

class MirrorRequest final : private UpstreamHandler {
 public:
  // A copy destroyed before it was sent is counted as cancelled.
  ~MirrorRequest();
  MirrorRequest(const MirrorRequest&) = delete;
  MirrorRequest& operator=(const MirrorRequest&) = delete;

  // Request body bytes, kept until the copy is sent. false once the body has passed
  // max_body_bytes: counted as skipped, and the caller drops the copy.
  bool add_body(const char* data, size_t len);

 private:
  friend class Mirrors;
  MirrorRequest(Mirrors& owner, std::shared_ptr<const routing::Snapshot> snap,
                const routing::Version& target, health::MirrorCounters& counters, uint64_t max_body,
                bool head_request, bool has_body, std::string head);

  void start();
  // Counts nothing; unlinks from the owner and deletes this.
  void finish();
  void end_outstanding();
  void on_upstream_head(UpstreamStream& c, const UpstreamResponseHead& head) override;
  void on_upstream_body(UpstreamStream& c, const char* data, size_t len) override;
  void on_upstream_done(UpstreamStream& c, std::span<const HeaderField> trailers) override;
  void on_upstream_error(UpstreamStream& c, UpstreamError e, std::string unsent) override;
  void on_upstream_drained(UpstreamStream& c) override;

  Mirrors& owner_;
  std::shared_ptr<const routing::Snapshot> snap_;  // pins target_
  const routing::Version& target_;
  health::MirrorCounters* counters_;  // this worker's, for target_
  std::string head_;  // the primary's rewritten head + kMirrorHeader, without framing or CRLF
  std::string body_;
  uint64_t max_body_;
  UpstreamStream* upstream_ = nullptr;
  uint32_t outstanding_id_ = routing::Picker::kNoEndpoint;
  int status_ = 0;
  bool head_request_;
  bool has_body_;  // the request had a body (even an empty chunked one): send a length
  bool sent_ = false;
};

class Mirrors {
 public:
  explicit Mirrors(Worker& worker) : worker_(worker) {}
  ~Mirrors();
  Mirrors(const Mirrors&) = delete;
  Mirrors& operator=(const Mirrors&) = delete;

  // A request of `svc` routed to `chosen`; `head` is its rewritten upstream head without the
  // body framing headers and the final CRLF. A pending copy for the service's mirror target
  // when this request is selected and may be copied, else nullptr (skips and drops counted).
  std::unique_ptr<MirrorRequest> select(const std::shared_ptr<const routing::Snapshot>& snap,
                                        const routing::Service& svc, const routing::Version& chosen,
                                        const RequestHead& req, std::string_view head);
  // The request is complete: the copy goes out on its own from here.
  void send(std::unique_ptr<MirrorRequest> m);
  // Worker shutdown: cuts every copy under way (each counted as a reset).
  void close_all();
  size_t sending() const { return sending_.size(); }

 private:
  friend class MirrorRequest;

  Worker& worker_;
  routing::MirrorSampler sampler_;
  std::vector<uint32_t> active_;         // by target stats_id: copies pending or under way
  std::vector<MirrorRequest*> sending_;  // owned: sent and not yet finished
};

}  // namespace weir::proxy
