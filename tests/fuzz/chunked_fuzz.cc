// Chunked request bodies as weir decodes them (proxy/h1_session.cc's composition): strict llhttp
// (LLHTTP_STRICT_MODE, the build's setting) for the chunks, weir's trailer scanner and checker
// (proxy/h1_framing.cc) for the trailer section.
// Input: [split a][split b] then the bytes after the head of a `Transfer-Encoding: chunked`
// request.
// - Split feed: reads cut anywhere give the same body, the same end of message and the same
//   verdict as one read.
// - Where llhttp ends the message, and the body it delivers, agree with an independent decoder
//   of RFC 9112 7.1 (CRLF line ends only, no obs-fold, trailer fields as strict as head fields):
//   a message that ends elsewhere makes the bytes after it a second request.
#include <llhttp.h>

#include <algorithm>
#include <string>

#include "proxy/h1_framing.h"
#include "proxy/http_util.h"
#include "tests/fuzz/fuzz_input.h"

namespace {

using weir::proxy::HeadScan;

struct Outcome {
  enum class State { kNeedMore, kComplete, kError } state = State::kNeedMore;
  size_t end = 0;  // kComplete: bytes of the body part, up to and including the last CRLF
  std::string body;
  bool operator==(const Outcome& o) const {
    return state == o.state && (state != State::kComplete || (end == o.end && body == o.body));
  }
};

// ---- the reference decoder -------------------------------------------------------------------

bool is_hex(char c, unsigned* v) {
  if (c >= '0' && c <= '9')
    *v = static_cast<unsigned>(c - '0');
  else if (c >= 'a' && c <= 'f')
    *v = static_cast<unsigned>(c - 'a' + 10);
  else if (c >= 'A' && c <= 'F')
    *v = static_cast<unsigned>(c - 'A' + 10);
  else
    return false;
  return true;
}

bool is_field_value_byte(unsigned char c) {
  return c == '\t' || c == ' ' || (c >= 0x21 && c != 0x7f);
}

// A line ending in CRLF from `pos`; false when the line is incomplete (need more) or has a bare
// CR or LF (*bad).
bool take_line(std::string_view s, size_t pos, std::string_view* line, size_t* next, bool* bad) {
  for (size_t i = pos; i < s.size(); ++i) {
    if (s[i] == '\n') {
      *bad = true;
      return false;
    }
    if (s[i] == '\r') {
      if (i + 1 == s.size()) return false;
      if (s[i + 1] != '\n') {
        *bad = true;
        return false;
      }
      *line = s.substr(pos, i - pos);
      *next = i + 2;
      return true;
    }
  }
  return false;
}

Outcome reference(std::string_view s) {
  Outcome out;
  auto fail = [&] {
    out.state = Outcome::State::kError;
    return out;
  };
  size_t pos = 0;
  for (;;) {
    std::string_view line;
    size_t next = 0;
    bool bad = false;
    if (!take_line(s, pos, &line, &next, &bad)) return bad ? fail() : out;
    uint64_t size = 0;
    size_t i = 0;
    unsigned v = 0;
    for (; i < line.size() && is_hex(line[i], &v); ++i) {
      if (size > (UINT64_MAX >> 4)) return fail();
      size = size * 16 + v;
    }
    if (i == 0) return fail();
    // chunk-ext: BWS ";" ... (its content does not change framing), or nothing.
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    if (i < line.size() && line[i] != ';') return fail();
    pos = next;
    if (size == 0) break;
    if (s.size() - pos < size) return out;  // need more
    out.body.append(s.substr(pos, size));
    pos += size;
    if (s.size() - pos < 2) {
      if (s.size() > pos && s[pos] != '\r') return fail();
      return out;
    }
    if (s[pos] != '\r' || s[pos + 1] != '\n') return fail();
    pos += 2;
  }
  // trailer-section CRLF
  for (;;) {
    std::string_view line;
    size_t next = 0;
    bool bad = false;
    if (!take_line(s, pos, &line, &next, &bad)) return bad ? fail() : out;
    pos = next;
    if (line.empty()) break;
    size_t colon = line.find(':');
    if (colon == 0 || colon == std::string_view::npos) return fail();
    for (size_t k = 0; k < colon; ++k) {
      if (!weir::proxy::is_token_char(static_cast<unsigned char>(line[k])))
        return fail();  // also refuses obs-fold's leading SP
    }
    for (size_t k = colon + 1; k < line.size(); ++k) {
      if (!is_field_value_byte(static_cast<unsigned char>(line[k]))) return fail();
    }
  }
  out.state = Outcome::State::kComplete;
  out.end = pos;
  return out;
}

// ---- weir's decoder, composed as H1Session composes it -----------------------------------------
// llhttp (strict) frames the chunks after a head holding only the validated framing; at the last
// chunk it pauses and weir's own scanner and checker (proxy/h1_framing) take the trailer section,
// then llhttp reads that section and ends the message.

enum class Phase { kBody, kTrailers, kDone };

struct Run {
  Outcome out;
  Phase phase = Phase::kBody;
};

int on_body(llhttp_t* p, const char* at, size_t len) {
  static_cast<Run*>(p->data)->out.body.append(at, len);
  return 0;
}
int on_chunk_header(llhttp_t* p) {
  if (p->content_length != 0) return 0;
  static_cast<Run*>(p->data)->phase = Phase::kTrailers;
  return HPE_PAUSED;
}
int on_message_complete(llhttp_t* p) {
  static_cast<Run*>(p->data)->phase = Phase::kDone;
  return HPE_PAUSED;
}

// Bytes of `buf` llhttp took; -1 on an error.
long execute(llhttp_t* parser, const char* buf, size_t n) {
  llhttp_errno_t rc = llhttp_execute(parser, buf, n);
  if (rc == HPE_OK) return static_cast<long>(n);
  if (rc != HPE_PAUSED) return -1;
  llhttp_resume(parser);
  return static_cast<long>(llhttp_get_error_pos(parser) - buf);
}

Outcome decode(std::string_view body, const size_t* cuts, size_t ncuts) {
  llhttp_settings_t settings;
  llhttp_settings_init(&settings);
  settings.on_body = on_body;
  settings.on_chunk_header = on_chunk_header;
  settings.on_message_complete = on_message_complete;
  llhttp_t parser;
  llhttp_init(&parser, HTTP_REQUEST, &settings);
  Run run;
  parser.data = &run;
  constexpr std::string_view kParserHead = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  WEIR_FUZZ_CHECK(execute(&parser, kParserHead.data(), kParserHead.size()) ==
                      static_cast<long>(kParserHead.size()),
                  "llhttp refused the framing head");
  const weir::proxy::HeadLimits limits;
  std::string inbuf;  // read but not consumed yet, as H1Session keeps it
  size_t consumed = 0, scan_from = 0, start = 0;
  for (size_t c = 0; c < ncuts; ++c) {
    inbuf.append(body.substr(start, cuts[c] - start));
    start = cuts[c];
    while (!inbuf.empty()) {
      long used = 0;
      if (run.phase == Phase::kBody) {
        used = execute(&parser, inbuf.data(), inbuf.size());
      } else {
        HeadScan scan =
            weir::proxy::scan_trailer_section(inbuf.data(), inbuf.size(), scan_from, limits);
        if (scan.state == HeadScan::State::kNeedMore) {
          scan_from = inbuf.size();
          break;
        }
        scan_from = 0;
        if (scan.state == HeadScan::State::kError ||
            weir::proxy::check_trailer_section(std::string_view(inbuf.data(), scan.head_size),
                                               limits)
                    .status != 0) {
          used = -1;
        } else {
          used = execute(&parser, inbuf.data(), scan.head_size);
          WEIR_FUZZ_CHECK(used == static_cast<long>(scan.head_size) && run.phase == Phase::kDone,
                          "llhttp did not end the message where weir's trailer scan did");
        }
      }
      if (used < 0) {
        run.out.state = Outcome::State::kError;
        return run.out;
      }
      consumed += static_cast<size_t>(used);
      inbuf.erase(0, static_cast<size_t>(used));
      if (run.phase == Phase::kDone) {
        run.out.state = Outcome::State::kComplete;
        run.out.end = consumed;
        return run.out;
      }
      if (used == 0 && run.phase == Phase::kBody) break;
    }
  }
  return run.out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  weir::fuzz::FuzzInput in(data, size);
  const uint8_t split_a = in.byte(), split_b = in.byte();
  const std::string_view body = in.rest();
  const size_t one[1] = {body.size()};
  size_t three[3] = {body.size() * split_a / 256, body.size() * split_b / 256, body.size()};
  std::sort(three, three + 2);

  const Outcome whole = decode(body, one, 1);
  const Outcome split = decode(body, three, 3);
  WEIR_FUZZ_CHECK(whole == split, "split reads decode the chunked body differently");

  if (whole.state == Outcome::State::kComplete) {
    const Outcome ref = reference(body);
    if (!(ref == whole)) {
      std::fprintf(stderr, "llhttp ends the body at %zu (%zu body bytes); the reference %s\n",
                   whole.end, whole.body.size(),
                   ref.state == Outcome::State::kError      ? "refuses it"
                   : ref.state == Outcome::State::kNeedMore ? "needs more bytes"
                                                            : "ends it elsewhere");
    }
    WEIR_FUZZ_CHECK(ref == whole, "chunked message end or body differs from RFC 9112 7.1");
  }
  return 0;
}
