// Small HTTP helpers shared by the downstream sessions and the upstream side: character
// classes, case-insensitive comparison, hop-by-hop names, status texts, weir's error responses.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace weir::proxy {

struct HeaderField {
  std::string_view name;
  std::string_view value;
};

// RFC 9110 tchar.
bool is_token_char(unsigned char c);
bool is_token(std::string_view s);
char ascii_lower(char c);
bool iequals(std::string_view a, std::string_view b);
// true when comma-separated `list` contains `token` (case-insensitive, OWS trimmed).
bool list_contains(std::string_view list, std::string_view token);
std::string_view trim_ows(std::string_view s);

// Connection-specific headers a proxy never forwards (RFC 9110 7.6.1), plus Proxy-Connection
// and Keep-Alive which old clients still send. Transfer-Encoding is handled as framing.
bool is_hop_by_hop(std::string_view name);

std::string_view reason_phrase(int status);

// true for the content types of gRPC (and gRPC-Web) requests: "application/grpc*".
bool is_grpc_content_type(std::string_view value);
// The gRPC status code that stands for one of weir's own HTTP statuses: UNIMPLEMENTED for no
// route, UNAVAILABLE for nothing to send to or a failed connect, DEADLINE_EXCEEDED for timeouts,
// RESOURCE_EXHAUSTED for limits, INTERNAL for a malformed request, else UNKNOWN.
int grpc_status_for(int http_status);

// A response weir makes itself (no route, no endpoint, timeouts, limits, malformed requests).
// Both downstream protocols render this one description. A gRPC client reads only grpc-status,
// so gRPC requests get HTTP 200 with grpc-status and grpc-message and no body (a trailers-only
// response); others get `status` with a short text body.
struct LocalReply {
  int status = 0;  // on the wire
  std::string_view content_type;
  std::string body;
  int grpc_status = -1;  // >= 0: gRPC-shaped
  std::string grpc_message;  // percent-encoded as gRPC requires
};
LocalReply local_reply(int status, std::string_view detail, bool grpc);

// The short text body of a weir-generated error response; `detail` (if any) says why.
std::string error_body(int status, std::string_view detail = {});
// A complete weir-generated HTTP/1.1 response (local_reply rendered).
std::string error_response(int status, bool close, bool head_request = false,
                           std::string_view detail = {}, bool grpc = false);

// Now as RFC 3339 UTC with milliseconds ("2026-11-26T17:00:29.123Z"), for logs.
std::string utc_timestamp_ms();
// The same for a time given in milliseconds since the Unix epoch.
std::string utc_timestamp_ms(int64_t unix_ms);
// Milliseconds since the Unix epoch (wall clock).
int64_t unix_time_ms();

// Appends the decimal form of `v`.
void append_number(std::string& out, uint64_t v);
// Appends `v` in lower-case hex (chunk sizes).
void append_hex(std::string& out, uint64_t v);

}  // namespace weir::proxy
