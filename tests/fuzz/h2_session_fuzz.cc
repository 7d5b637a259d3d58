// The HTTP/2 server session (proxy/h2_session.cc) fed client bytes after the connection
// preface, in reads cut where the input says, with the transport congested or not, then a
// timeout, a drain and a close. Input: [split a][split b][flags] then the frames.
// - weir's output is a sequence of whole HTTP/2 frames that starts with SETTINGS, uses only
//   frame types a server may send (no PUSH_PROMISE), answers on client (odd) streams only and
//   sends GOAWAY and SETTINGS on stream 0.
// - Nothing leaks or is used after free over the whole life (ASan), however the peer behaves.
#include <algorithm>
#include <memory>

#include "proxy/h2_session.h"
#include "tests/fuzz/fake_transport.h"
#include "tests/fuzz/fuzz_input.h"

namespace {

constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

uint32_t be(const std::string& s, size_t at, size_t n) {
  uint32_t v = 0;
  for (size_t i = 0; i < n; ++i) v = v << 8 | static_cast<unsigned char>(s[at + i]);
  return v;
}

void check_frames(const std::string& out) {
  size_t pos = 0;
  bool first = true;
  while (pos < out.size()) {
    WEIR_FUZZ_CHECK(out.size() - pos >= 9, "output ends inside a frame header");
    const uint32_t length = be(out, pos, 3);
    const uint32_t type = be(out, pos + 3, 1);
    const uint32_t stream = be(out, pos + 5, 4) & 0x7fffffffu;
    WEIR_FUZZ_CHECK(out.size() - pos - 9 >= length, "output ends inside a frame");
    if (first)
      WEIR_FUZZ_CHECK(type == 0x4 && stream == 0, "the server's first frame is not SETTINGS");
    first = false;
    WEIR_FUZZ_CHECK(type <= 0x9 && type != 0x5, "a frame type a server must not send");
    if (type == 0x4 || type == 0x6 || type == 0x7) {
      WEIR_FUZZ_CHECK(stream == 0, "a connection frame on a stream");
    } else if (type == 0x0 || type == 0x1 || type == 0x3 || type == 0x9) {
      WEIR_FUZZ_CHECK(stream != 0 && stream % 2 == 1, "a stream frame on no client stream");
    }
    pos += 9 + length;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  weir::fuzz::FuzzInput in(data, size);
  const uint8_t split_a = in.byte(), split_b = in.byte(), flags = in.byte();
  const std::string_view frames = in.rest();

  weir::proxy::Worker worker(0, {}, weir::fuzz::session_snapshot());
  weir::fuzz::FakeTransport t(worker);
  auto session = std::make_unique<weir::proxy::H2Session>(t);
  t.congested_now = (flags & 1) != 0;

  std::string bytes(kPreface);
  bytes.append(frames);
  size_t cuts[3] = {kPreface.size() + frames.size() * split_a / 256,
                    kPreface.size() + frames.size() * split_b / 256, bytes.size()};
  std::sort(cuts, cuts + 2);
  size_t start = 0;
  for (size_t end : cuts) {
    if (t.closed) break;
    if (end > start) session->on_read(bytes.data() + start, end - start);
    worker.flush_list().flush_all();
    if (t.congested_now && (flags & 2)) {
      t.congested_now = false;
      session->on_drain();
      worker.flush_list().flush_all();
    }
    start = std::max(start, end);
  }
  if (!t.closed && (flags & 4)) {
    session->start_drain();
    worker.flush_list().flush_all();
  }
  if (!t.closed && (flags & 8)) {
    session->on_timeout();
    worker.flush_list().flush_all();
  }
  if (!t.closed && (flags & 16)) {
    session->on_eof();
    worker.flush_list().flush_all();
  }
  check_frames(t.out);
  session->on_close();
  session.reset();
  return 0;
}
