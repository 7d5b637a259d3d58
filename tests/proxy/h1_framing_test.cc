#include "proxy/h1_framing.h"

#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace weir::proxy {
namespace {

using namespace std::literals;

// Small limits so boundaries are cheap to reach.
constexpr HeadLimits kSmall{.max_header_bytes = 128, .max_headers = 4, .max_request_line = 32};

// "GET / HTTP/1.1", Host: a, then `extra` header lines (each ending in CRLF), then the blank line.
std::string get11(std::string_view extra = "") {
  return "GET / HTTP/1.1\r\nHost: a\r\n" + std::string(extra) + "\r\n";
}

// `request_line`, then `headers` (each ending in CRLF), then the blank line.
std::string head_of(std::string_view request_line, std::string_view headers = "") {
  return std::string(request_line) + "\r\n" + std::string(headers) + "\r\n";
}

// A request line of exactly `size` bytes: "GET /aaa... HTTP/1.1".
std::string request_line_of(size_t size) {
  const size_t fixed = std::string_view("GET / HTTP/1.1").size();
  REQUIRE(size >= fixed);
  return "GET /" + std::string(size - fixed, 'a') + " HTTP/1.1";
}

// Owns the bytes the parsed views point into; neither copied nor moved, so the views stay valid.
struct Parsed {
  explicit Parsed(std::string text, const HeadLimits& limits = {}) : bytes(std::move(text)) {
    error = parse_request_head(bytes, limits, &head);
  }
  Parsed(const Parsed&) = delete;
  Parsed& operator=(const Parsed&) = delete;

  std::string bytes;
  RequestHead head;
  HeadError error;
};

void require_accepted(const Parsed& p) {
  CAPTURE(p.bytes);
  CAPTURE(p.error.reason);
  REQUIRE(p.error.status == 0);
}

HeadScan scan(std::string_view s, size_t from = 0, const HeadLimits& limits = {}) {
  return scan_request_head(s.data(), s.size(), from, limits);
}

void check_scan(const HeadScan& r, HeadScan::State state, size_t head_size = 0, int status = 0) {
  CHECK(r.state == state);
  if (state == HeadScan::State::kComplete) CHECK(r.head_size == head_size);
  CHECK(r.status == status);
}

// Feeds `text` in pieces that end at each of `cuts`, resuming each scan where the last stopped,
// and requires the head to be found, exactly once, when the byte that ends it arrives.
void check_incremental_scan(const std::string& text, size_t head_size,
                            const std::vector<size_t>& cuts) {
  size_t prev = 0;
  bool found = false;
  for (size_t cut : cuts) {
    CAPTURE(cut);
    HeadScan r = scan(std::string_view(text).substr(0, cut), prev);
    if (cut < head_size) {
      check_scan(r, HeadScan::State::kNeedMore);
    } else if (!found) {
      check_scan(r, HeadScan::State::kComplete, head_size);
      found = true;
    }
    prev = cut;
  }
  CHECK(found);
}

// ---- scan_request_head ------------------------------------------------------------------------

TEST_CASE("scan_request_head needs more until the blank line arrives") {
  for (std::string_view partial :
       {""sv, "G"sv, "GET / HTTP/1.1"sv, "GET / HTTP/1.1\r\n"sv, "GET / HTTP/1.1\r\nHost: a\r\n"sv,
        "GET / HTTP/1.1\r\nHost: a\r\n\r"sv, "GET / HTTP/1.1\n"sv, "GET / HTTP/1.1\r\nHost: a\n"sv,
        "\r\n"sv, "\r"sv}) {
    CAPTURE(partial);
    check_scan(scan(partial), HeadScan::State::kNeedMore);
  }
}

TEST_CASE("scan_request_head finds CRLF, bare-LF and mixed terminators") {
  const std::pair<std::string_view, size_t> cases[] = {
      {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27},
      {"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody", 27},
      {"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n\r\n", 27},
      {"GET / HTTP/1.1\nHost: a\n\n", 24},
      {"GET / HTTP/1.1\nHost: a\n\nxyz", 24},
      {"GET / HTTP/1.1\r\nHost: a\n\n", 25},
      {"GET / HTTP/1.1\r\nHost: a\r\n\n", 26},
      {"GET / HTTP/1.1\r\nHost: a\n\r\n", 26},
      {"GET / HTTP/1.0\r\n\r\n", 18},
      {"\r\n\r\n", 4},
      {"\n\n", 2},
  };
  for (const auto& c : cases) {
    const auto& text = c.first;
    const auto& size = c.second;
    CAPTURE(text);
    check_scan(scan(text), HeadScan::State::kComplete, size);
  }
}

TEST_CASE("scan_request_head resumes with `from` wherever the data is split") {
  const std::string crlf = "GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY";
  const std::string lf = "GET / HTTP/1.1\nHost: a\n\nBODY";
  for (const auto& c : {std::pair{crlf, size_t{27}}, std::pair{lf, size_t{24}}}) {
    const auto& text = c.first;
    const auto& head_size = c.second;
    CAPTURE(text);
    std::vector<size_t> every_byte;
    for (size_t i = 1; i <= text.size(); ++i) every_byte.push_back(i);
    check_incremental_scan(text, head_size, every_byte);
    for (size_t split = 1; split < text.size(); ++split) {
      check_incremental_scan(text, head_size, {split, text.size()});
    }
  }
}

TEST_CASE("scan_request_head: 414 for a long request line, even before it ends") {
  const HeadLimits limits{.max_header_bytes = 1024, .max_headers = 10, .max_request_line = 32};
  const std::string at_limit = request_line_of(32);
  const std::string over = request_line_of(33);
  check_scan(scan(head_of(at_limit, "Host: a\r\n"), 0, limits), HeadScan::State::kComplete,
             at_limit.size() + 13);
  check_scan(scan(at_limit, 0, limits), HeadScan::State::kNeedMore);
  check_scan(scan(at_limit + "\r", 0, limits), HeadScan::State::kNeedMore);
  check_scan(scan(at_limit + "\n\n", 0, limits), HeadScan::State::kComplete, 34);
  check_scan(scan(over, 0, limits), HeadScan::State::kError, 0, 414);
  check_scan(scan(over + "\r\n", 0, limits), HeadScan::State::kError, 0, 414);
  check_scan(scan(head_of(over, "Host: a\r\n"), 0, limits), HeadScan::State::kError, 0, 414);
  check_scan(scan(std::string(1000, 'G'), 0, limits), HeadScan::State::kError, 0, 414);
}

TEST_CASE("scan_request_head: 431 for a big head, even before it ends") {
  const HeadLimits limits{.max_header_bytes = 64, .max_headers = 10, .max_request_line = 32};
  const std::string line = "GET / HTTP/1.1\r\n";  // 16 bytes
  const std::string fill = "X: " + std::string(64 - 16 - 2 - 5, 'v') + "\r\n";
  const std::string at_limit = line + fill + "\r\n";
  REQUIRE(at_limit.size() == 64);
  check_scan(scan(at_limit, 0, limits), HeadScan::State::kComplete, 64);
  check_scan(scan(at_limit + "pipelined body bytes", 0, limits), HeadScan::State::kComplete, 64);
  const std::string over = line + "Y" + fill + "\r\n";
  check_scan(scan(over, 0, limits), HeadScan::State::kError, 0, 431);
  check_scan(scan(line + std::string(49, 'h'), 0, limits), HeadScan::State::kError, 0, 431);
  check_scan(scan(line + std::string(48, 'h'), 0, limits), HeadScan::State::kNeedMore);
  // The request line limit is checked first.
  check_scan(scan(request_line_of(80) + "\r\n\r\n", 0, limits), HeadScan::State::kError, 0, 414);
}

// ---- parse_request_head: rejections -----------------------------------------------------------

struct Rejection {
  const char* what;
  std::string head;
  int status;
  std::string_view reason;
};

void check_rejections(const std::vector<Rejection>& cases, const HeadLimits& limits = {}) {
  for (const Rejection& c : cases) {
    CAPTURE(c.what);
    CAPTURE(c.head);
    Parsed p(c.head, limits);
    CHECK(p.error.status == c.status);
    CHECK(p.error.reason == c.reason);
  }
}

TEST_CASE("parse_request_head refuses malformed line ends") {
  check_rejections({
      {"bare LF everywhere", "GET / HTTP/1.1\nHost: a\n\n", 400,
       "request line does not end with CRLF"},
      {"empty", "", 400, "request line does not end with CRLF"},
      {"bare LF ends a header", "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 400,
       "invalid character in header value"},
      {"bare LF ends the head", "GET / HTTP/1.1\r\nHost: a\r\n\n", 400,
       "header line does not end with CRLF"},
      {"bare LF inside the request line", "GET / HTTP/1.1\nX: y\r\nHost: a\r\n\r\n", 400,
       "unsupported HTTP version"},
      {"bare CR in a header value", get11("X: a\rb\r\n"), 400, "invalid character in header value"},
      {"bare CR before CRLF", get11("X: a\r\r\n"), 400, "invalid character in header value"},
      {"bare CR in a header name", get11("X\r: a\r\n"), 400, "invalid header name"},
      {"bare CR after the version", "GET / HTTP/1.1\r\r\nHost: a\r\n\r\n", 400,
       "unsupported HTTP version"},
      {"bare CR in the target", "GET /\ra HTTP/1.1\r\nHost: a\r\n\r\n", 400,
       "invalid character in request target"},
      {"bare CR line in the headers", get11("\r\r\n"), 400, "header line without colon"},
      {"no blank line", "GET / HTTP/1.1\r\nHost: a\r\n", 400, "header line does not end with CRLF"},
      {"leading CRLF", "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed request line"},
      {"bytes after the head", get11() + "x", 400, "data after the end of the head"},
      {"obs-fold with a space", get11("X: a\r\n b\r\n"), 400, "obsolete line folding"},
      {"obs-fold with a tab", get11("X: a\r\n\tb\r\n"), 400, "obsolete line folding"},
      {"obs-fold of the first header", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400,
       "obsolete line folding"},
  });
}

TEST_CASE("parse_request_head refuses malformed header fields") {
  check_rejections({
      {"empty name", get11(": a\r\n"), 400, "empty header name"},
      {"no colon", get11("X a\r\n"), 400, "header line without colon"},
      {"space before colon", get11("X-A : b\r\n"), 400, "invalid header name"},
      {"space before Host colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, "invalid header name"},
      {"tab before colon", get11("X\t: b\r\n"), 400, "invalid header name"},
      {"space inside name", get11("X Y: b\r\n"), 400, "invalid header name"},
      {"parenthesis in name", get11("X(y): b\r\n"), 400, "invalid header name"},
      {"slash in name", get11("X/y: b\r\n"), 400, "invalid header name"},
      {"non-ASCII name", get11("X\xc3\xa4: b\r\n"), 400, "invalid header name"},
      {"control in name", get11("X\x01: b\r\n"), 400, "invalid header name"},
      {"NUL in value", get11("X: a\0b\r\n"s), 400, "invalid character in header value"},
      {"SOH in value", get11("X: \x01\r\n"), 400, "invalid character in header value"},
      {"ESC in value", get11("X: a\x1b[0m\r\n"), 400, "invalid character in header value"},
      {"DEL in value", get11("X: a\x7f\r\n"), 400, "invalid character in header value"},
      {"bad Connection option", get11("Connection: a b\r\n"), 400, "invalid Connection option"},
      {"bad Connection character", get11("Connection: close, @\r\n"), 400,
       "invalid Connection option"},
  });
}

TEST_CASE("parse_request_head refuses malformed request lines") {
  check_rejections({
      {"no spaces", head_of("GET", "Host: a\r\n"), 400, "malformed request line"},
      {"leading space", head_of(" / HTTP/1.1", "Host: a\r\n"), 400, "malformed request line"},
      {"no version", head_of("GET /", "Host: a\r\n"), 400, "malformed request line"},
      {"double space", head_of("GET  / HTTP/1.1", "Host: a\r\n"), 400, "malformed request line"},
      {"empty line", head_of("", "Host: a\r\n"), 400, "malformed request line"},
      {"separator in method", head_of("GE(T / HTTP/1.1", "Host: a\r\n"), 400, "invalid method"},
      {"control in method", head_of("G\x01T / HTTP/1.1", "Host: a\r\n"), 400, "invalid method"},
      {"space in target", head_of("GET /a b HTTP/1.1", "Host: a\r\n"), 400,
       "unsupported HTTP version"},
      {"tab in target", head_of("GET /a\tb HTTP/1.1", "Host: a\r\n"), 400,
       "invalid character in request target"},
      {"NUL in target", head_of("GET /a\0b HTTP/1.1"s, "Host: a\r\n"), 400,
       "invalid character in request target"},
      {"DEL in target", head_of("GET /a\x7f HTTP/1.1", "Host: a\r\n"), 400,
       "invalid character in request target"},
      {"relative target", head_of("GET a/b HTTP/1.1", "Host: a\r\n"), 400,
       "invalid request target"},
      {"authority-form without CONNECT", head_of("GET a:80 HTTP/1.1", "Host: a\r\n"), 400,
       "invalid request target"},
      {"asterisk without OPTIONS", head_of("GET * HTTP/1.1", "Host: a\r\n"), 400,
       "invalid request target"},
      {"other scheme", head_of("GET ftp://a/ HTTP/1.1", "Host: a\r\n"), 400,
       "invalid target scheme"},
      {"no authority", head_of("GET http:///x HTTP/1.1", "Host: a\r\n"), 400,
       "absolute-form target without authority"},
      {"query without path", head_of("GET http://a?x HTTP/1.1", "Host: a\r\n"), 400,
       "absolute-form target without path"},
      {"userinfo in authority", head_of("GET http://u@a/ HTTP/1.1", "Host: a\r\n"), 400,
       "invalid authority in request target"},
      {"CONNECT", head_of("CONNECT a:443 HTTP/1.1", "Host: a:443\r\n"), 405,
       "CONNECT is not supported"},
  });
}

TEST_CASE("parse_request_head refuses every version but HTTP/1.0 and HTTP/1.1") {
  std::vector<Rejection> cases;
  for (const char* v : {"HTTP/2.0", "HTTP/1.1x", "HTTP/1.10", "http/1.1", "HTTP/1.2", "HTTP/0.9",
                        "HTTP/1", "HTTP/1.1 ", "HTTP /1.1", "HTTPS/1.1", ""}) {
    cases.push_back(
        {v, head_of("GET / " + std::string(v), "Host: a\r\n"), 400, "unsupported HTTP version"});
  }
  cases.push_back({"HTTP/0.9 style", head_of("GET /"), 400, "malformed request line"});
  check_rejections(cases);
}

TEST_CASE("parse_request_head refuses ambiguous or invalid Host") {
  check_rejections({
      {"duplicate Host", get11("Host: b\r\n"), 400, "duplicate Host header"},
      {"duplicate identical Host", get11("host: a\r\n"), 400, "duplicate Host header"},
      {"duplicate Host on 1.0", head_of("GET / HTTP/1.0", "Host: a\r\nHost: a\r\n"), 400,
       "duplicate Host header"},
      {"missing Host on 1.1", head_of("GET / HTTP/1.1", "X: y\r\n"), 400, "missing Host header"},
      {"absolute-form without Host on 1.1", head_of("GET http://a/ HTTP/1.1"), 400,
       "missing Host header"},
      {"empty Host", head_of("GET / HTTP/1.1", "Host:  \r\n"), 400, "empty Host header"},
      {"empty Host on 1.0", head_of("GET / HTTP/1.0", "Host:\r\n"), 400, "empty Host header"},
      {"slash in Host", head_of("GET / HTTP/1.1", "Host: a/b\r\n"), 400, "invalid Host header"},
      {"at in Host", head_of("GET / HTTP/1.1", "Host: u@a\r\n"), 400, "invalid Host header"},
      {"question mark in Host", head_of("GET / HTTP/1.1", "Host: a?b\r\n"), 400,
       "invalid Host header"},
      {"hash in Host", head_of("GET / HTTP/1.1", "Host: a#b\r\n"), 400, "invalid Host header"},
      {"space in Host", head_of("GET / HTTP/1.1", "Host: a b\r\n"), 400, "invalid Host header"},
      {"tab in Host", head_of("GET / HTTP/1.1", "Host: a\tb\r\n"), 400, "invalid Host header"},
      {"backslash in Host", head_of("GET / HTTP/1.1", "Host: a\\b\r\n"), 400,
       "invalid Host header"},
      {"non-ASCII Host", head_of("GET / HTTP/1.1", "Host: \xc3\xa4.com\r\n"), 400,
       "invalid Host header"},
      {"invalid Host beside an authority", head_of("GET http://a/ HTTP/1.1", "Host: a/b\r\n"), 400,
       "invalid Host header"},
  });
}

TEST_CASE("parse_request_head refuses ambiguous body framing") {
  check_rejections({
      {"TE on 1.0", head_of("POST / HTTP/1.0", "Transfer-Encoding: chunked\r\n"), 400,
       "Transfer-Encoding in an HTTP/1.0 request"},
      {"TE and CL", get11("Transfer-Encoding: chunked\r\nContent-Length: 3\r\n"), 400,
       "both Transfer-Encoding and Content-Length"},
      {"CL and TE", get11("Content-Length: 3\r\nTransfer-Encoding: chunked\r\n"), 400,
       "both Transfer-Encoding and Content-Length"},
      {"repeated TE", get11("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"), 400,
       "repeated Transfer-Encoding"},
      {"repeated TE, other case",
       get11("Transfer-Encoding: gzip\r\ntransfer-encoding: chunked\r\n"), 400,
       "repeated Transfer-Encoding"},
      {"TE gzip", get11("Transfer-Encoding: gzip\r\n"), 400,
       "chunked is not the final transfer coding"},
      {"TE identity", get11("Transfer-Encoding: identity\r\n"), 400,
       "chunked is not the final transfer coding"},
      {"TE chunked, gzip", get11("Transfer-Encoding: chunked, gzip\r\n"), 400,
       "chunked is not the final transfer coding"},
      {"TE chunked twice", get11("Transfer-Encoding: chunked, chunked\r\n"), 400,
       "chunked is not the final transfer coding"},
      {"TE trailing comma", get11("Transfer-Encoding: chunked,\r\n"), 400,
       "chunked is not the final transfer coding"},
      {"TE empty", get11("Transfer-Encoding:\r\n"), 400, "invalid Transfer-Encoding"},
      {"TE empty element", get11("Transfer-Encoding: , chunked\r\n"), 400,
       "invalid Transfer-Encoding"},
      {"TE with parameters", get11("Transfer-Encoding: chunked;q=1\r\n"), 400,
       "invalid Transfer-Encoding"},
      {"TE look-alike", get11("Transfer-Encoding: xchunked\r\n"), 400,
       "chunked is not the final transfer coding"},
      {"TE gzip, chunked", get11("Transfer-Encoding: gzip, chunked\r\n"), 501,
       "transfer codings other than chunked are not supported"},
      {"CL conflicting headers", get11("Content-Length: 1\r\nContent-Length: 2\r\n"), 400,
       "conflicting Content-Length values"},
      {"CL conflicting list", get11("Content-Length: 1, 2\r\n"), 400,
       "conflicting Content-Length values"},
      {"CL 0 and 00 agree, then 1", get11("Content-Length: 0, 00\r\nContent-Length: 1\r\n"), 400,
       "conflicting Content-Length values"},
      {"CL letters", get11("Content-Length: abc\r\n"), 400, "invalid Content-Length"},
      {"CL negative", get11("Content-Length: -1\r\n"), 400, "invalid Content-Length"},
      {"CL plus sign", get11("Content-Length: +1\r\n"), 400, "invalid Content-Length"},
      {"CL hex", get11("Content-Length: 0x10\r\n"), 400, "invalid Content-Length"},
      {"CL decimal point", get11("Content-Length: 1.0\r\n"), 400, "invalid Content-Length"},
      {"CL inner space", get11("Content-Length: 1 0\r\n"), 400, "invalid Content-Length"},
      {"CL empty", get11("Content-Length:\r\n"), 400, "invalid Content-Length"},
      {"CL empty element", get11("Content-Length: 1,,1\r\n"), 400, "invalid Content-Length"},
      {"CL trailing comma", get11("Content-Length: 1,\r\n"), 400, "invalid Content-Length"},
      {"CL 19 digits", get11("Content-Length: 1000000000000000000\r\n"), 400,
       "invalid Content-Length"},
      {"CL overflowing", get11("Content-Length: 99999999999999999999999\r\n"), 400,
       "invalid Content-Length"},
  });
}

TEST_CASE("parse_request_head: 417 for expectations other than 100-continue") {
  check_rejections({
      {"unknown expectation", get11("Expect: 200-ok\r\n"), 417, "unsupported expectation"},
      {"empty expectation", get11("Expect:\r\n"), 417, "unsupported expectation"},
      {"listed expectation", get11("Expect: 100-continue, x\r\n"), 417, "unsupported expectation"},
      {"1.0 too", head_of("GET / HTTP/1.0", "Expect: x\r\n"), 417, "unsupported expectation"},
  });
}

TEST_CASE("parse_request_head enforces the header count and request line limits") {
  check_rejections(
      {
          {"5 fields", get11("A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n"), 431, "too many header fields"},
          {"33-byte line", head_of(request_line_of(33), "Host: a\r\n"), 414,
           "request line too long"},
      },
      kSmall);
  Parsed four(get11("A: 1\r\nB: 2\r\nC: 3\r\n"), kSmall);
  require_accepted(four);
  CHECK(four.head.headers.size() == 4);
  Parsed line(head_of(request_line_of(32), "Host: a\r\n"), kSmall);
  require_accepted(line);
}

// ---- parse_request_head: accepted shapes ------------------------------------------------------

TEST_CASE("parse_request_head fills a simple request") {
  Parsed p(
      "GET /a/b?c=d HTTP/1.1\r\nhOST: Example.com:8080\r\nX-Empty:\r\n"
      "X-Pad: \t a  b \t\r\nX-Obs: caf\xc3\xa9\r\n\r\n");
  require_accepted(p);
  const RequestHead& h = p.head;
  CHECK(h.method == "GET");
  CHECK(h.target == "/a/b?c=d");
  CHECK(h.version_minor == 1);
  CHECK(h.host == "Example.com:8080");
  REQUIRE(h.headers.size() == 4);
  CHECK(h.headers[0].name == "hOST");
  CHECK(h.headers[0].value == "Example.com:8080");
  CHECK(h.headers[1].name == "X-Empty");
  CHECK(h.headers[1].value.empty());
  CHECK(h.headers[2].value == "a  b");
  CHECK(h.headers[3].value == "caf\xc3\xa9");
  CHECK(h.body == BodyKind::kNone);
  CHECK(h.content_length == 0);
  CHECK(h.keep_alive);
  CHECK_FALSE(h.expect_continue);
  CHECK(h.idempotent);
  CHECK_FALSE(h.is_head);
  CHECK(h.connection_tokens.empty());
}

TEST_CASE("parse_request_head accepts Host shapes") {
  for (std::string_view host :
       {"a"sv, "example.com"sv, "EXAMPLE.com:443"sv, "[::1]"sv, "[::1]:8080"sv, "127.0.0.1:80"sv,
        "xn--caf-dma.example"sv, "a_b~c%41!$&'()*+,;=.d"sv}) {
    Parsed p(head_of("GET / HTTP/1.1", "Host: " + std::string(host) + "\r\n"));
    require_accepted(p);
    CHECK(p.head.host == host);
  }
}

TEST_CASE("parse_request_head: Host is optional on HTTP/1.0 only") {
  Parsed p(head_of("GET / HTTP/1.0"));
  require_accepted(p);
  CHECK(p.head.version_minor == 0);
  CHECK(p.head.host.empty());
  CHECK(p.head.headers.empty());
}

TEST_CASE("parse_request_head: an absolute-form target's authority replaces Host") {
  struct Case {
    std::string head;
    std::string_view host;
    std::string_view target;
  };
  const Case cases[] = {
      {head_of("GET http://example.com:8080/a/b?q=1 HTTP/1.1", "Host: other\r\n"),
       "example.com:8080", "/a/b?q=1"},
      {head_of("GET http://example.com HTTP/1.1", "Host: example.com\r\n"), "example.com", "/"},
      {head_of("GET https://example.com/ HTTP/1.1", "Host: x\r\n"), "example.com", "/"},
      {head_of("GET HTTP://Example.COM/x HTTP/1.1", "Host: x\r\n"), "Example.COM", "/x"},
      {head_of("GET hTtPs://[::1]:8443/p HTTP/1.1", "Host: x\r\n"), "[::1]:8443", "/p"},
      {head_of("GET http://a/ HTTP/1.1", "Host:\r\n"), "a", "/"},
      {head_of("GET http://a/x HTTP/1.0"), "a", "/x"},
      {head_of("OPTIONS http://a HTTP/1.1", "Host: a\r\n"), "a", "/"},
  };
  for (const Case& c : cases) {
    Parsed p(c.head);
    require_accepted(p);
    CHECK(p.head.host == c.host);
    CHECK(p.head.target == c.target);
  }
}

TEST_CASE("parse_request_head accepts OPTIONS *") {
  Parsed p(head_of("OPTIONS * HTTP/1.1", "Host: a\r\n"));
  require_accepted(p);
  CHECK(p.head.method == "OPTIONS");
  CHECK(p.head.target == "*");
  CHECK(p.head.idempotent);
}

TEST_CASE("parse_request_head keep-alive rules and Connection tokens") {
  struct Case {
    std::string_view version;
    std::string headers;
    bool keep_alive;
    std::vector<std::string_view> tokens;
  };
  const Case cases[] = {
      {"HTTP/1.1", "", true, {}},
      {"HTTP/1.1", "Connection: close\r\n", false, {}},
      {"HTTP/1.1", "Connection: CLOSE\r\n", false, {}},
      {"HTTP/1.1", "Connection: keep-alive\r\n", true, {}},
      {"HTTP/1.1", "Connection: keep-alive, close\r\n", false, {}},
      {"HTTP/1.1", "Connection: close, keep-alive\r\n", false, {}},
      {"HTTP/1.1", "Connection: keep-alive\r\nConnection: close\r\n", false, {}},
      {"HTTP/1.1", "Connection:\r\n", true, {}},
      {"HTTP/1.1", "Connection: Upgrade, X-Foo,close\r\n", false, {"Upgrade", "X-Foo"}},
      {"HTTP/1.1", "Connection: , x-a ,,\t\r\nConnection: x-b\r\n", true, {"x-a", "x-b"}},
      {"HTTP/1.0", "", false, {}},
      {"HTTP/1.0", "Connection: keep-alive\r\n", true, {}},
      {"HTTP/1.0", "Connection: Keep-Alive\r\n", true, {}},
      {"HTTP/1.0", "Connection: x-a, keep-alive\r\n", true, {"x-a"}},
      {"HTTP/1.0", "Connection: keep-alive, close\r\n", false, {}},
      {"HTTP/1.0", "Connection: keep-alive\r\nConnection: close\r\n", false, {}},
      {"HTTP/1.0", "Connection: close\r\nConnection: keep-alive\r\n", false, {}},
      {"HTTP/1.0", "Connection: x-a\r\n", false, {"x-a"}},
  };
  for (const Case& c : cases) {
    Parsed p(head_of("GET / " + std::string(c.version), "Host: a\r\n" + c.headers));
    require_accepted(p);
    CHECK(p.head.keep_alive == c.keep_alive);
    CHECK(p.head.connection_tokens == c.tokens);
  }
}

TEST_CASE("parse_request_head body framing and 100-continue") {
  struct Case {
    std::string head;
    BodyKind body;
    uint64_t content_length;
    bool expect_continue;
  };
  const Case cases[] = {
      {get11("Content-Length: 5\r\n"), BodyKind::kContentLength, 5, false},
      {get11("content-length:  5 \r\n"), BodyKind::kContentLength, 5, false},
      {get11("Content-Length: 0\r\n"), BodyKind::kNone, 0, false},
      {get11("Content-Length: 007\r\n"), BodyKind::kContentLength, 7, false},
      {get11("Content-Length: 5\r\nContent-Length: 5\r\n"), BodyKind::kContentLength, 5, false},
      {get11("Content-Length: 5,5 , 5\r\n"), BodyKind::kContentLength, 5, false},
      {get11("Content-Length: 999999999999999999\r\n"), BodyKind::kContentLength,
       999999999999999999ULL, false},
      {get11("Transfer-Encoding: chunked\r\n"), BodyKind::kChunked, 0, false},
      {get11("Transfer-Encoding:  CHUNKED \r\n"), BodyKind::kChunked, 0, false},
      {get11("Expect: 100-continue\r\nContent-Length: 5\r\n"), BodyKind::kContentLength, 5, true},
      {get11("Expect: 100-Continue\r\nTransfer-Encoding: chunked\r\n"), BodyKind::kChunked, 0,
       true},
      {get11("Expect: 100-continue\r\n"), BodyKind::kNone, 0, false},
      {get11("Expect: 100-continue\r\nContent-Length: 0\r\n"), BodyKind::kNone, 0, false},
      {head_of("POST / HTTP/1.0", "Expect: 100-continue\r\nContent-Length: 5\r\n"),
       BodyKind::kContentLength, 5, false},
  };
  for (const Case& c : cases) {
    Parsed p(c.head);
    require_accepted(p);
    CHECK(p.head.body == c.body);
    CHECK(p.head.content_length == c.content_length);
    CHECK(p.head.expect_continue == c.expect_continue);
  }
}

TEST_CASE("parse_request_head method flags") {
  const std::pair<std::string_view, bool> methods[] = {
      {"GET", true},    {"HEAD", true},  {"OPTIONS", true}, {"PUT", true},
      {"DELETE", true}, {"TRACE", true}, {"POST", false},   {"PATCH", false},
      {"PURGE", false}, {"get", false},  {"head", false},   {"M-SEARCH", false},
  };
  for (const auto& [method, idempotent] : methods) {
    Parsed p(head_of(std::string(method) + " / HTTP/1.1", "Host: a\r\n"));
    require_accepted(p);
    CHECK(p.head.method == method);
    CHECK(p.head.idempotent == idempotent);
    CHECK(p.head.is_head == (method == "HEAD"));
  }
}

TEST_CASE("parse_request_head resets a reused RequestHead, on success and on failure") {
  RequestHead h;
  const std::string busy =
      "HEAD / HTTP/1.1\r\nHost: a\r\nConnection: close, x-a\r\nExpect: 100-continue\r\n"
      "Transfer-Encoding: chunked\r\n\r\n";
  REQUIRE(parse_request_head(busy, {}, &h).status == 0);
  REQUIRE(h.is_head);
  REQUIRE(h.expect_continue);
  const std::string plain = "POST /p HTTP/1.0\r\n\r\n";
  REQUIRE(parse_request_head(plain, {}, &h).status == 0);
  CHECK(h.method == "POST");
  CHECK(h.target == "/p");
  CHECK(h.version_minor == 0);
  CHECK(h.headers.empty());
  CHECK(h.host.empty());
  CHECK(h.body == BodyKind::kNone);
  CHECK_FALSE(h.keep_alive);
  CHECK_FALSE(h.expect_continue);
  CHECK_FALSE(h.idempotent);
  CHECK_FALSE(h.is_head);
  CHECK(h.connection_tokens.empty());

  REQUIRE(parse_request_head(busy, {}, &h).status == 0);
  CHECK(parse_request_head("GET / HTTP/1.1\r\n\r\n", {}, &h).status == 400);
  CHECK(h.version_minor == 1);
  CHECK(h.body == BodyKind::kNone);
  CHECK(h.connection_tokens.empty());
}

TEST_CASE("scan then parse: what the scanner finds, the parser judges") {
  const std::string stream = get11("Content-Length: 3\r\n") + "abc" + get11();
  HeadScan first = scan(stream);
  REQUIRE(first.state == HeadScan::State::kComplete);
  Parsed p(stream.substr(0, first.head_size));
  require_accepted(p);
  CHECK(p.head.content_length == 3);
  const size_t next = first.head_size + 3;
  HeadScan second = scan(std::string_view(stream).substr(next));
  REQUIRE(second.state == HeadScan::State::kComplete);
  CHECK(next + second.head_size == stream.size());

  const std::string lf = "GET / HTTP/1.1\nHost: a\n\n";
  HeadScan r = scan(lf);
  REQUIRE(r.state == HeadScan::State::kComplete);
  CHECK(Parsed(lf.substr(0, r.head_size)).error.status == 400);
}

TEST_CASE("scan_request_head: a bare CR is refused as soon as the byte after it arrives") {
  for (std::string_view head :
       {"GET / HTTP/1.1\r\nHost: a\rX"sv, "GET /\rx"sv, "GET / HTTP/1.1\r\nX: a\r\r"sv,
        "\rG"sv, "GET / HTTP/1.1\r\nHost: a\r\n\r\r\n"sv}) {
    CAPTURE(head);
    check_scan(scan(head), HeadScan::State::kError, 0, 400);
    // Also when the CR ended the previous piece.
    size_t cr = 0;
    while (!(head[cr] == '\r' && head[cr + 1] != '\n')) ++cr;
    CHECK(scan(head.substr(0, cr + 1)).state == HeadScan::State::kNeedMore);
    check_scan(scan(head, cr + 1), HeadScan::State::kError, 0, 400);
  }
  // A CR in the bytes after the head is the body's business.
  check_scan(scan("GET / HTTP/1.1\r\nHost: a\r\n\r\n\rx"), HeadScan::State::kComplete, 27);
}

TEST_CASE("scan_request_head: the earliest refusal wins, however the bytes are split") {
  HeadLimits small;
  small.max_request_line = 16;
  small.max_header_bytes = 40;
  struct Case {
    std::string text;
    int status;
  };
  const std::vector<Case> cases = {
      // The request line passes its limit before the bare CR further on arrives (fuzz finding).
      {"GET /aaaaaaaaaaaaaaaaaaaaaaaaa\rx HTTP/1.1\r\n\r\n", 414},
      // A bare CR inside the request line, before its limit.
      {"GET /a\rxaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n\r\n", 400},
      // A CR right at the limit: the byte after it decides.
      {"GET /aaaaaaaaaaa\rx HTTP/1.1\r\n\r\n", 400},
      // The head passes its size limit before a bare CR in a later field.
      {"GET / HTTP/1.1\r\nA: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\rx\r\n\r\n", 431},
      // A bare CR in a field before the size limit.
      {"GET / HTTP/1.1\r\nA: b\rxbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\r\n\r\n", 400},
  };
  for (const Case& c : cases) {
    CAPTURE(c.text);
    check_scan(scan(c.text, 0, small), HeadScan::State::kError, 0, c.status);
    for (size_t cut = 1; cut < c.text.size(); ++cut) {
      CAPTURE(cut);
      HeadScan first = scan(c.text.substr(0, cut), 0, small);
      if (first.state == HeadScan::State::kError) {
        CHECK(first.status == c.status);
        continue;
      }
      REQUIRE(first.state == HeadScan::State::kNeedMore);
      check_scan(scan(c.text, cut, small), HeadScan::State::kError, 0, c.status);
    }
  }
}

// ---- trailer sections -------------------------------------------------------------------------

HeadScan scan_trailers(std::string_view s, size_t from = 0, const HeadLimits& limits = {}) {
  return scan_trailer_section(s.data(), s.size(), from, limits);
}

TEST_CASE("scan_trailer_section finds the end of the trailers, with or without fields") {
  check_scan(scan_trailers(""), HeadScan::State::kNeedMore);
  check_scan(scan_trailers("\r"), HeadScan::State::kNeedMore);
  check_scan(scan_trailers("X: a\r\n"), HeadScan::State::kNeedMore);
  check_scan(scan_trailers("X: a\r\n\r"), HeadScan::State::kNeedMore);
  check_scan(scan_trailers("\r\nGET / HTTP/1.1"), HeadScan::State::kComplete, 2);
  check_scan(scan_trailers("X: a\r\nY: b\r\n\r\nnext"), HeadScan::State::kComplete, 14);
  // Bare-LF ends are found, so that they are refused, not read past.
  check_scan(scan_trailers("\nGET / HTTP/1.1\r\n"), HeadScan::State::kComplete, 1);
  check_scan(scan_trailers("X: a\r\n\nGET"), HeadScan::State::kComplete, 7);
  check_scan(scan_trailers("X: a\rY"), HeadScan::State::kError, 0, 400);
  check_scan(scan_trailers("\rX"), HeadScan::State::kError, 0, 400);
  const HeadLimits small{.max_header_bytes = 8};
  check_scan(scan_trailers("X: 123456789", 0, small), HeadScan::State::kError, 0, 431);
  // Resumed scans find the same end.
  const std::string_view text = "X: a\r\n\r\n";
  for (size_t split = 1; split < text.size(); ++split) {
    CAPTURE(split);
    CHECK(scan_trailers(text.substr(0, split)).state == HeadScan::State::kNeedMore);
    check_scan(scan_trailers(text, split), HeadScan::State::kComplete, text.size());
  }
}

TEST_CASE("check_trailer_section applies the head's rules") {
  CHECK(check_trailer_section("\r\n", {}).status == 0);
  CHECK(check_trailer_section("X: a\r\nChecksum: abc \r\n\r\n", {}).status == 0);
  const std::pair<std::string_view, std::string_view> bad[] = {
      {"\n", "trailer line does not end with CRLF"},
      {"X: a\r\n\n", "trailer line does not end with CRLF"},
      {"X: a\n\r\n", "invalid character in header value"},
      {"X: a\r\n folded\r\n\r\n", "obsolete line folding"},
      {"X: a\r\n\tfolded\r\n\r\n", "obsolete line folding"},
      {"X : a\r\n\r\n", "invalid header name"},
      {": a\r\n\r\n", "empty header name"},
      {"X\r\n\r\n", "header line without colon"},
      {"X: a\x01\r\n\r\n", "invalid character in header value"},
  };
  for (const auto& c : bad) {
    const auto& section = c.first;
    const auto& reason = c.second;
    CAPTURE(section);
    HeadError e = check_trailer_section(section, {});
    CHECK(e.status == 400);
    CHECK(e.reason == reason);
  }
  const HeadLimits two{.max_headers = 2};
  CHECK(check_trailer_section("A: 1\r\nB: 2\r\nC: 3\r\n\r\n", two).status == 431);
}

}  // namespace
}  // namespace weir::proxy
