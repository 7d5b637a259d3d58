#include "proxy/h1_framing.h"

#include <cstdint>
#include <cstring>

namespace weir::proxy {

namespace {

bool is_vchar_or_obs(unsigned char c) { return (c >= 0x21 && c != 0x7f); }

bool is_field_value_char(unsigned char c) { return c == ' ' || c == '\t' || is_vchar_or_obs(c); }

// Characters allowed in a Host value: reg-name, IP literals, port. Excludes '/', '@', '?', '#'
// and whitespace so that a Host cannot smuggle a path or userinfo into routing or backend logs.
bool is_host_char(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::strchr("-._~%!$&'()*+,;=:[]", c) != nullptr && c != 0;
}

bool parse_decimal(std::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 18) return false;  // 18 digits cannot overflow
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  *out = v;
  return true;
}

// One field line (without its CRLF) of a head or a trailer section: why it is refused, or ""
// with `out` filled (the value without surrounding whitespace).
std::string_view parse_field_line(std::string_view line, HeaderField* out) {
  if (line[0] == ' ' || line[0] == '\t') return "obsolete line folding";
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return "header line without colon";
  std::string_view name = line.substr(0, colon);
  if (name.empty()) return "empty header name";
  if (!is_token(name)) return "invalid header name";
  std::string_view value = line.substr(colon + 1);
  for (unsigned char c : value) {
    if (!is_field_value_char(c)) return "invalid character in header value";
  }
  *out = {name, trim_ows(value)};
  return {};
}

// The size of a block of lines up to and including the blank line that ends it (CRLF or bare
// LF, found so the parser can refuse the latter), or 0 while it has not arrived. `from` as in
// scan_request_head.
size_t find_blank_line(const char* data, size_t len, size_t from) {
  size_t start = from >= 3 ? from - 3 : 0;
  const char* p = data + start;
  const char* end = data + len;
  while (p < end) {
    const char* lf = static_cast<const char*>(std::memchr(p, '\n', static_cast<size_t>(end - p)));
    if (!lf) break;
    size_t pos = static_cast<size_t>(lf - data);
    if ((pos >= 1 && data[pos - 1] == '\n') ||
        (pos >= 2 && data[pos - 1] == '\r' && data[pos - 2] == '\n')) {
      return pos + 1;
    }
    p = lf + 1;
  }
  return 0;
}

// A CR must start a CRLF: the index of the byte after the first CR in data[from - 1, scan_len)
// that is followed by something else (data holds `len` bytes), or SIZE_MAX. Refused as soon as
// that byte arrives, rather than when the rest of the block (or the header timeout) does.
size_t bare_cr_at(const char* data, size_t len, size_t from, size_t scan_len) {
  for (size_t i = from >= 1 ? from - 1 : 0; i < scan_len;) {
    const void* cr = std::memchr(data + i, '\r', scan_len - i);
    if (!cr) break;
    i = static_cast<size_t>(static_cast<const char*>(cr) - data);
    if (i + 1 < len && data[i + 1] != '\n') return i + 1;
    ++i;
  }
  return SIZE_MAX;
}

HeadScan scan_failed(int status) {
  HeadScan r;
  r.state = HeadScan::State::kError;
  r.status = status;
  return r;
}

}  // namespace

bool method_is_idempotent(std::string_view m) {
  return m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "PUT" || m == "DELETE" ||
         m == "TRACE";
}

void RequestHead::clear() {
  method = target = host = {};
  version_minor = 1;
  headers.clear();
  body = BodyKind::kNone;
  content_length = 0;
  keep_alive = true;
  expect_continue = idempotent = is_head = false;
  connection_tokens.clear();
}

HeadScan scan_request_head(const char* data, size_t len, size_t from, const HeadLimits& limits) {
  HeadScan r;
  // A blank line right at the start is the leftover CRLF some clients send after a body; the
  // parser rejects a head that starts with one.
  r.head_size = find_blank_line(data, len, from);
  if (r.head_size != 0) r.state = HeadScan::State::kComplete;
  size_t head_len = r.state == HeadScan::State::kComplete ? r.head_size : len;
  // Each refusal is dated by the byte that reveals it, and the earliest wins (ties in this
  // order: bare CR, request line, head size), so the answer does not depend on how the bytes
  // were split into reads.
  size_t first_at = bare_cr_at(data, len, from, head_len);
  int status = first_at == SIZE_MAX ? 0 : 400;
  const void* first_lf = std::memchr(data, '\n', head_len);
  size_t line_len = first_lf ? static_cast<size_t>(static_cast<const char*>(first_lf) - data)
                             : head_len;
  if (line_len > 0 && data[line_len - 1] == '\r') --line_len;
  if (line_len > limits.max_request_line) {
    // The byte past the limit reveals it, unless that byte is a CR, which could still end the
    // line: then the byte after it does.
    size_t at = limits.max_request_line + (data[limits.max_request_line] == '\r' ? 1 : 0);
    if (at < first_at) {
      first_at = at;
      status = 414;
    }
  }
  if (head_len > limits.max_header_bytes && limits.max_header_bytes < first_at) {
    status = 431;
  }
  return status == 0 ? r : scan_failed(status);
}

HeadError parse_request_head(std::string_view head, const HeadLimits& limits, RequestHead* out) {
  out->clear();
  auto bad = [](std::string_view why) { return HeadError{400, why}; };

  // Every line must end in CRLF; a lone CR or LF anywhere is refused.
  size_t line_end = head.find("\r\n");
  if (line_end == std::string_view::npos) return bad("request line does not end with CRLF");
  std::string_view line = head.substr(0, line_end);
  if (line.size() > limits.max_request_line) return {414, "request line too long"};

  size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos || sp1 == 0) return bad("malformed request line");
  out->method = line.substr(0, sp1);
  if (!is_token(out->method)) return bad("invalid method");
  size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || sp2 == sp1 + 1) return bad("malformed request line");
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  for (unsigned char c : target) {
    if (!is_vchar_or_obs(c)) return bad("invalid character in request target");
  }
  if (version == "HTTP/1.1") {
    out->version_minor = 1;
  } else if (version == "HTTP/1.0") {
    out->version_minor = 0;
  } else {
    return bad("unsupported HTTP version");
  }
  if (out->method == "CONNECT") return {405, "CONNECT is not supported"};

  std::string_view authority;
  if (target[0] == '/') {
    out->target = target;
  } else if (target == "*" && out->method == "OPTIONS") {
    out->target = target;
  } else {
    // absolute-form: its authority replaces Host (RFC 9112 3.2.2).
    size_t scheme_end = target.find("://");
    if (scheme_end == std::string_view::npos) return bad("invalid request target");
    std::string_view scheme = target.substr(0, scheme_end);
    if (!iequals(scheme, "http") && !iequals(scheme, "https")) return bad("invalid target scheme");
    std::string_view rest = target.substr(scheme_end + 3);
    size_t slash = rest.find_first_of("/?");
    authority = rest.substr(0, slash);
    if (authority.empty()) return bad("absolute-form target without authority");
    out->target = slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
    if (out->target[0] == '?') return bad("absolute-form target without path");
  }

  size_t host_count = 0;
  bool have_cl = false, have_te = false, te_chunked_last = false;
  std::string_view te_value;
  size_t pos = line_end + 2;
  while (true) {
    size_t eol = head.find("\r\n", pos);
    if (eol == std::string_view::npos) return bad("header line does not end with CRLF");
    if (eol == pos) {
      if (pos + 2 != head.size()) return bad("data after the end of the head");
      break;
    }
    HeaderField field;
    std::string_view why = parse_field_line(head.substr(pos, eol - pos), &field);
    if (!why.empty()) return bad(why);
    pos = eol + 2;
    const std::string_view name = field.name, value = field.value;
    if (out->headers.size() >= limits.max_headers) return {431, "too many header fields"};
    out->headers.push_back(field);

    if (iequals(name, "host")) {
      ++host_count;
      out->host = value;
    } else if (iequals(name, "content-length")) {
      // Repeated or listed values are tolerated only when identical (RFC 9112 6.3).
      std::string_view list = value;
      while (true) {
        size_t comma = list.find(',');
        uint64_t n = 0;
        if (!parse_decimal(trim_ows(list.substr(0, comma)), &n)) {
          return bad("invalid Content-Length");
        }
        if (have_cl && n != out->content_length) return bad("conflicting Content-Length values");
        have_cl = true;
        out->content_length = n;
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
      }
    } else if (iequals(name, "transfer-encoding")) {
      if (have_te) return bad("repeated Transfer-Encoding");
      have_te = true;
      te_value = value;
    } else if (iequals(name, "connection")) {
      std::string_view list = value;
      while (!list.empty()) {
        size_t comma = list.find(',');
        std::string_view token = trim_ows(list.substr(0, comma));
        if (iequals(token, "close")) {
          out->keep_alive = false;
        } else if (iequals(token, "keep-alive")) {
          if (out->version_minor == 0) out->keep_alive = true;
        } else if (!token.empty()) {
          if (!is_token(token)) return bad("invalid Connection option");
          out->connection_tokens.push_back(token);
        }
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
      }
    } else if (iequals(name, "expect")) {
      if (!iequals(value, "100-continue")) return {417, "unsupported expectation"};
      out->expect_continue = true;
    }
  }

  if (out->version_minor == 0) {
    // HTTP/1.0 is close-by-default; keep-alive only when asked and not also asked to close.
    bool asked = false, close = false;
    for (const auto& h : out->headers) {
      if (iequals(h.name, "connection")) {
        asked = asked || list_contains(h.value, "keep-alive");
        close = close || list_contains(h.value, "close");
      }
    }
    out->keep_alive = asked && !close;
    out->expect_continue = false;  // 1.0 clients do not understand 100 Continue
  }

  if (host_count > 1) return bad("duplicate Host header");
  // Also with an absolute-form target, whose authority then replaces Host (RFC 9112 3.2).
  if (host_count == 0 && out->version_minor == 1) return bad("missing Host header");
  if (host_count == 1) {
    if (out->host.empty() && authority.empty()) return bad("empty Host header");
    for (unsigned char c : out->host) {
      if (!is_host_char(c)) return bad("invalid Host header");
    }
  }
  if (!authority.empty()) {
    for (unsigned char c : authority) {
      if (!is_host_char(c)) return bad("invalid authority in request target");
    }
    out->host = authority;
  }

  if (have_te) {
    if (out->version_minor == 0) return bad("Transfer-Encoding in an HTTP/1.0 request");
    if (have_cl) return bad("both Transfer-Encoding and Content-Length");
    // The final coding must be chunked, or the length is unknowable (RFC 9112 6.3).
    std::string_view list = te_value;
    size_t codings = 0;
    while (true) {
      size_t comma = list.find(',');
      std::string_view coding = trim_ows(list.substr(0, comma));
      if (!is_token(coding)) return bad("invalid Transfer-Encoding");
      ++codings;
      te_chunked_last = iequals(coding, "chunked");
      if (te_chunked_last && comma != std::string_view::npos) {
        return bad("chunked is not the final transfer coding");
      }
      if (comma == std::string_view::npos) break;
      list.remove_prefix(comma + 1);
    }
    if (!te_chunked_last) return bad("chunked is not the final transfer coding");
    if (codings > 1) return {501, "transfer codings other than chunked are not supported"};
    out->body = BodyKind::kChunked;
  } else if (have_cl) {
    out->body = out->content_length > 0 ? BodyKind::kContentLength : BodyKind::kNone;
  }
  if (out->body == BodyKind::kNone) out->expect_continue = false;
  out->is_head = out->method == "HEAD";
  out->idempotent = method_is_idempotent(out->method);
  return {};
}

HeadScan scan_trailer_section(const char* data, size_t len, size_t from,
                              const HeadLimits& limits) {
  HeadScan r;
  if (len >= 1 && (data[0] == '\n' || (len >= 2 && data[0] == '\r' && data[1] == '\n'))) {
    r.state = HeadScan::State::kComplete;  // no trailer fields
    r.head_size = data[0] == '\n' ? 1 : 2;
  } else if ((r.head_size = find_blank_line(data, len, from)) != 0) {
    r.state = HeadScan::State::kComplete;
  }
  size_t section_len = r.state == HeadScan::State::kComplete ? r.head_size : len;
  // As in scan_request_head, the earliest refusal wins.
  size_t cr_at = bare_cr_at(data, len, from, section_len);
  if (section_len > limits.max_header_bytes && limits.max_header_bytes < cr_at) {
    return scan_failed(431);
  }
  return cr_at == SIZE_MAX ? r : scan_failed(400);
}

HeadError check_trailer_section(std::string_view section, const HeadLimits& limits) {
  size_t pos = 0, fields = 0;
  while (true) {
    size_t eol = section.find("\r\n", pos);
    if (eol == std::string_view::npos) return {400, "trailer line does not end with CRLF"};
    if (eol == pos) {
      if (pos + 2 != section.size()) return {400, "data after the end of the trailers"};
      return {};
    }
    HeaderField field;
    std::string_view why = parse_field_line(section.substr(pos, eol - pos), &field);
    if (!why.empty()) return {400, why};
    if (++fields > limits.max_headers) return {431, "too many trailer fields"};
    pos = eol + 2;
  }
}

}  // namespace weir::proxy
