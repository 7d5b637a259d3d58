// The HTTP/1.1 downstream protocol session: parses requests (weir's own head validation, then
// llhttp for body framing), runs one Exchange at a time in request order (pipelined requests wait
// in the input buffer), and writes responses with framing chosen for this client.
#pragma once

#include <llhttp.h>

#include <memory>
#include <string>
#include <vector>

#include "proxy/exchange.h"
#include "proxy/h1_framing.h"
#include "proxy/session.h"

namespace weir::proxy {

class H1Session final : public Session, public ExchangeOwner {
 public:
  explicit H1Session(Transport& transport);
  ~H1Session() override;

  void on_read(const char* data, size_t len) override;
  void on_eof() override;
  void on_drain() override;
  void on_timeout() override;
  void start_drain() override;
  void on_close() override;

 private:
  // kTrailers: a chunked body's last chunk has been read; its trailer section is checked by
  // weir (as a head is) before llhttp reads it.
  enum class Phase : uint8_t { kIdle, kHead, kBody, kTrailers, kWaitResponse, kClosed };

  // ExchangeOwner
  void on_response_head(const ResponseMeta& meta, std::span<const HeaderField> headers) override;
  void on_response_data(const char* data, size_t len) override;
  void on_response_end(std::span<const HeaderField> trailers) override;
  void on_exchange_failed(int status) override;
  void on_request_drained() override;

  void process_input();
  size_t consume(const char* p, size_t n);
  size_t consume_head(const char* p, size_t n);
  size_t consume_trailers(const char* p, size_t n);
  // Runs llhttp over request bytes; returns how many it took, or acts on its error and
  // returns n.
  size_t run_parser(const char* p, size_t n);
  // The request body or its trailers are malformed or over a limit: answer (if not answered
  // yet) and close.
  void body_failed(int status);
  bool begin_request();
  void respond_error(int status, std::string_view detail = {});
  // `raw`: the unparsed request bytes, for the access log line of a request refused before
  // routing.
  // `why` names the check that refused the request (derived from the status when empty).
  void reject(int status, std::string_view raw = {}, std::string_view why = {});
  void finish_if_done();
  void update_reading();
  void close_now();

  static int cb_headers_complete(llhttp_t* p);
  static int cb_header_field(llhttp_t* p, const char* at, size_t len);
  static int cb_header_value(llhttp_t* p, const char* at, size_t len);
  static int cb_body(llhttp_t* p, const char* at, size_t len);
  static int cb_chunk_header(llhttp_t* p);
  static int cb_message_complete(llhttp_t* p);
  static const llhttp_settings_t* settings();

  Transport& t_;
  Worker& worker_;
  llhttp_t parser_{};
  HeadLimits limits_;
  Phase phase_ = Phase::kIdle;
  std::string inbuf_;        // bytes received but not consumed yet
  size_t scan_from_ = 0;     // how much of inbuf_ the head (or trailer) scan has looked at
  RequestHead req_;
  std::unique_ptr<Exchange> ex_;
  uint64_t body_bytes_ = 0;
  int version_minor_ = 1;
  uint64_t head_started_ms_ = 0;  // the current request's first byte (loop clock)
  int pending_reject_ = 0;   // set by llhttp callbacks, acted on after llhttp_execute
  bool in_read_ = false;
  bool keep_alive_ = true;
  bool head_request_ = false;
  bool req_done_ = false;
  bool resp_started_ = false;
  bool resp_done_ = false;
  bool chunked_out_ = false;
  bool close_after_ = false;
  bool draining_ = false;
  bool paused_ = false;
  bool eof_ = false;
  bool early_response_ = false;  // answered before the request body was read to its end
  bool grpc_ = false;            // the request has a gRPC content type (for local replies)
  // Request trailers, only for a request that has some (an idle connection holds none).
  struct Trailers {
    std::string arena;
    std::vector<std::pair<uint32_t, uint32_t>> spans;  // (offset, length): name, value, ...
  };
  Trailers& trailers() {
    if (!trailers_) trailers_ = std::make_unique<Trailers>();
    return *trailers_;
  }
  std::unique_ptr<Trailers> trailers_;
};

}  // namespace weir::proxy
