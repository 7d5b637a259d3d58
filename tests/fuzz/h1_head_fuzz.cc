// The HTTP/1.1 request-head validator (proxy/h1_framing.cc).
// Input: [split a][split b][limits flag] then the bytes of a request as a client sends them.
// - Split feed: the head found by feeding the bytes in three pieces (as reads deliver them,
//   resuming the scan as H1Session does) is the one found in the whole buffer.
// - Every view parse_request_head returns lies inside the head it was given.
// - A head the validator accepts and strict llhttp reads too is framed alike by both (chunked
//   or not, the same Content-Length): a disagreement is two ideas of where a body ends.
#include <llhttp.h>

#include <algorithm>

#include "proxy/h1_framing.h"
#include "tests/fuzz/fuzz_input.h"

namespace {

using weir::proxy::BodyKind;
using weir::proxy::HeadLimits;
using weir::proxy::HeadScan;
using weir::proxy::RequestHead;

bool inside(std::string_view part, std::string_view whole) {
  return part.empty() ||
         (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

struct LlhttpView {
  bool headers_complete = false;
  bool chunked = false;
  uint64_t content_length = 0;
};

int on_headers_complete(llhttp_t* p) {
  auto* v = static_cast<LlhttpView*>(p->data);
  v->headers_complete = true;
  v->chunked = (p->flags & F_CHUNKED) != 0;
  v->content_length = p->content_length;
  return 0;
}

void cross_check_llhttp(std::string_view head, const RequestHead& req) {
  llhttp_settings_t settings;
  llhttp_settings_init(&settings);
  settings.on_headers_complete = on_headers_complete;
  llhttp_t parser;
  llhttp_init(&parser, HTTP_REQUEST, &settings);
  LlhttpView view;
  parser.data = &view;
  llhttp_errno_t rc = llhttp_execute(&parser, head.data(), head.size());
  // llhttp's head rules are stricter than RFC 9110 in places weir accepts (extension methods, a
  // repeated identical Content-Length, OWS after "chunked"); H1Session shows llhttp only the
  // validated framing. Where llhttp does read the whole head, it must frame it alike.
  if (rc != HPE_OK && rc != HPE_PAUSED_UPGRADE) return;
  WEIR_FUZZ_CHECK(view.headers_complete, "llhttp did not reach the end of a validated head");
  WEIR_FUZZ_CHECK(view.chunked == (req.body == BodyKind::kChunked),
                  "llhttp and the validator disagree on chunked framing");
  if (req.body == BodyKind::kContentLength) {
    WEIR_FUZZ_CHECK(view.content_length == req.content_length,
                    "llhttp and the validator disagree on Content-Length");
  }
}

bool same(const HeadScan& a, const HeadScan& b) {
  return a.state == b.state && a.head_size == b.head_size && a.status == b.status;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  weir::fuzz::FuzzInput in(data, size);
  const uint8_t split_a = in.byte(), split_b = in.byte();
  HeadLimits limits;
  if (in.flag()) {  // small limits, so inputs reach the 414 and 431 paths
    limits.max_header_bytes = 256;
    limits.max_headers = 6;
    limits.max_request_line = 64;
  }
  const std::string_view bytes = in.rest();
  const HeadScan whole = scan_request_head(bytes.data(), bytes.size(), 0, limits);

  size_t cuts[3] = {bytes.size() * split_a / 256, bytes.size() * split_b / 256, bytes.size()};
  std::sort(cuts, cuts + 2);
  HeadScan fed;
  size_t from = 0;
  for (size_t end : cuts) {
    fed = scan_request_head(bytes.data(), end, from, limits);
    if (fed.state != HeadScan::State::kNeedMore) break;
    from = end;
  }
  WEIR_FUZZ_CHECK(same(fed, whole), "split feed finds another head end than the whole buffer");

  if (whole.state != HeadScan::State::kComplete) return 0;
  WEIR_FUZZ_CHECK(whole.head_size <= bytes.size(), "head longer than the input");
  const std::string_view head = bytes.substr(0, whole.head_size);
  RequestHead req;
  const weir::proxy::HeadError err = parse_request_head(head, limits, &req);
  if (err.status != 0) {
    WEIR_FUZZ_CHECK(err.status >= 400 && err.status <= 599, "refusal without an error status");
    WEIR_FUZZ_CHECK(!err.reason.empty(), "refusal without a reason");
    return 0;
  }
  WEIR_FUZZ_CHECK(!req.method.empty() && !req.target.empty(), "accepted head without a target");
  // An absolute-form target without a path stands for "/" (a view of a literal).
  WEIR_FUZZ_CHECK(inside(req.method, head) && (inside(req.target, head) || req.target == "/") &&
                      inside(req.host, head),
                  "request-line view outside the head");
  WEIR_FUZZ_CHECK(req.headers.size() <= limits.max_headers, "more headers than the limit");
  for (const auto& f : req.headers) {
    WEIR_FUZZ_CHECK(inside(f.name, head) && inside(f.value, head), "header view outside the head");
    WEIR_FUZZ_CHECK(!f.name.empty(), "accepted an empty header name");
  }
  for (std::string_view t : req.connection_tokens) {
    WEIR_FUZZ_CHECK(inside(t, head), "Connection token view outside the head");
  }
  WEIR_FUZZ_CHECK(req.body == BodyKind::kContentLength || req.content_length == 0,
                  "a Content-Length without Content-Length framing");
  cross_check_llhttp(head, req);
  return 0;
}
