// weir's own HTTP/1.1 request-head validation. llhttp 8.1 accepts several request shapes that
// let a front proxy and a backend disagree on where a request ends (request smuggling), so every
// head is checked here, byte by byte, before llhttp or any backend sees it. Pure code, no I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "proxy/http_util.h"

namespace weir::proxy {

struct HeadLimits {
  size_t max_header_bytes = 64 * 1024;  // the whole head, request line included
  size_t max_headers = 100;
  size_t max_request_line = 8 * 1024;
};

enum class BodyKind : uint8_t { kNone, kContentLength, kChunked };

// Where the head ends in a byte stream.
struct HeadScan {
  enum class State : uint8_t { kNeedMore, kComplete, kError } state = State::kNeedMore;
  size_t head_size = 0;  // kComplete: bytes up to and including the blank line
  int status = 0;        // kError: 400, 414 or 431
};

// Looks for the end of the head in data[0, len). `from` lets a caller that appends data resume
// the search without rescanning (pass the previous len).
HeadScan scan_request_head(const char* data, size_t len, size_t from, const HeadLimits& limits);

struct RequestHead {
  std::string_view method;
  std::string_view target;  // origin-form (absolute-form is reduced to its path)
  int version_minor = 1;    // HTTP/1.x
  std::vector<HeaderField> headers;  // in order, names as sent, values trimmed
  std::string_view host;             // from Host (or the absolute-form authority)
  BodyKind body = BodyKind::kNone;
  uint64_t content_length = 0;
  bool keep_alive = true;
  bool expect_continue = false;
  bool idempotent = false;
  bool is_head = false;
  // Header names listed in Connection (besides close/keep-alive): also hop-by-hop.
  std::vector<std::string_view> connection_tokens;

  void clear();
};

struct HeadError {
  int status = 0;  // 0 = valid
  std::string_view reason;
};

// GET, HEAD, OPTIONS, PUT, DELETE, TRACE (RFC 9110 9.2.2): safe to send again.
bool method_is_idempotent(std::string_view method);

// Parses and validates a complete head (as found by scan_request_head). On success fills
// `out` with views into `head`. On failure says which status to send and why.
HeadError parse_request_head(std::string_view head, const HeadLimits& limits, RequestHead* out);

// Looks for the end of a chunked body's trailer section in data[0, len): what follows the last
// chunk's size line, up to and including the blank line (which may be all of it). `from` as in
// scan_request_head; the section counts against max_header_bytes (431), a bare CR is 400.
HeadScan scan_trailer_section(const char* data, size_t len, size_t from, const HeadLimits& limits);

// Validates a complete trailer section (as found by scan_trailer_section) as strictly as a head:
// CRLF line ends, no obs-fold, valid names and values, at most max_headers fields.
HeadError check_trailer_section(std::string_view section, const HeadLimits& limits);

}  // namespace weir::proxy
