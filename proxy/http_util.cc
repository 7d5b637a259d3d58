#include "proxy/http_util.h"

#include <array>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <charconv>

namespace weir::proxy {

namespace {

constexpr std::array<bool, 256> make_token_table() {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}
constexpr auto kTokenTable = make_token_table();

}  // namespace

bool is_token_char(unsigned char c) { return kTokenTable[c]; }

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if (!kTokenTable[c]) return false;
  }
  return true;
}

char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool list_contains(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view item = trim_ows(list.substr(0, comma));
    if (iequals(item, token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

bool is_hop_by_hop(std::string_view name) {
  switch (name.size()) {
    case 2: return iequals(name, "te");
    case 7: return iequals(name, "upgrade");
    case 10: return iequals(name, "connection") || iequals(name, "keep-alive");
    case 16: return iequals(name, "proxy-connection");
    case 17: return iequals(name, "transfer-encoding");
    default: return false;
  }
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 428: return "Precondition Required";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

int64_t unix_time_ms() {
  auto now = std::chrono::system_clock::now();
  return std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
}

std::string utc_timestamp_ms() { return utc_timestamp_ms(unix_time_ms()); }

std::string utc_timestamp_ms(int64_t ms) {
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

void append_number(std::string& out, uint64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
}

void append_hex(std::string& out, uint64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v, 16);
  out.append(buf, end);
}

std::string error_body(int status, std::string_view detail) {
  std::string body = "weir: ";
  append_number(body, static_cast<uint64_t>(status));
  body += ' ';
  body += reason_phrase(status);
  if (!detail.empty()) {
    body += ": ";
    body += detail;
  }
  body += '\n';
  return body;
}

bool is_grpc_content_type(std::string_view value) {
  constexpr std::string_view kGrpc = "application/grpc";
  return value.size() >= kGrpc.size() && iequals(value.substr(0, kGrpc.size()), kGrpc);
}

int grpc_status_for(int http_status) {
  // Codes from grpc/include/grpc/impl/codegen/status.h (the gRPC wire protocol).
  constexpr int kUnknown = 2, kDeadlineExceeded = 4, kPermissionDenied = 7,
                kResourceExhausted = 8, kUnimplemented = 12, kInternal = 13, kUnavailable = 14,
                kUnauthenticated = 16;
  switch (http_status) {
    case 400: return kInternal;
    case 401: return kUnauthenticated;
    case 403: return kPermissionDenied;
    case 404:
    case 405:
    case 501: return kUnimplemented;
    case 408:
    case 504: return kDeadlineExceeded;
    case 413:
    case 414:
    case 431: return kResourceExhausted;
    case 429:
    case 502:
    case 503: return kUnavailable;
    default: return kUnknown;
  }
}

LocalReply local_reply(int status, std::string_view detail, bool grpc) {
  LocalReply r;
  if (!grpc) {
    r.status = status;
    r.content_type = "text/plain";
    r.body = error_body(status, detail);
    return r;
  }
  r.status = 200;
  r.content_type = "application/grpc";
  r.grpc_status = grpc_status_for(status);
  std::string text = error_body(status, detail);
  text.pop_back();  // the newline
  // grpc-message is percent-encoded: '%' and bytes outside printable ASCII.
  for (unsigned char c : text) {
    if (c < 0x20 || c > 0x7e || c == '%') {
      constexpr char kHex[] = "0123456789ABCDEF";
      r.grpc_message.push_back('%');
      r.grpc_message.push_back(kHex[c >> 4]);
      r.grpc_message.push_back(kHex[c & 15]);
    } else {
      r.grpc_message.push_back(static_cast<char>(c));
    }
  }
  return r;
}

std::string error_response(int status, bool close, bool head_request, std::string_view detail,
                           bool grpc) {
  LocalReply r = local_reply(status, detail, grpc);
  std::string out = "HTTP/1.1 ";
  append_number(out, static_cast<uint64_t>(r.status));
  out += ' ';
  out += reason_phrase(r.status);
  out += "\r\nContent-Type: ";
  out += r.content_type;
  if (r.grpc_status >= 0) {
    out += "\r\ngrpc-status: ";
    append_number(out, static_cast<uint64_t>(r.grpc_status));
    out += "\r\ngrpc-message: ";
    out += r.grpc_message;
  }
  out += "\r\nContent-Length: ";
  append_number(out, r.body.size());
  out += close ? "\r\nConnection: close\r\n\r\n" : "\r\n\r\n";
  if (!head_request) out += r.body;
  return out;
}

}  // namespace weir::proxy
