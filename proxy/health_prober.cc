#include "proxy/health_prober.h"

#include <llhttp.h>

#include <cstdio>
#include <cstring>

#include "health/active_check.h"
#include "proxy/http_util.h"
#include "proxy/log.h"
#include "proxy/tls_io.h"
#include "proxy/upstream_h2.h"
#include "proxy/upstream_tls.h"

namespace weir::proxy {

namespace {

bool same_policy(const config::HealthCheck& a, const config::HealthCheck& b) {
  if (a.expected_status.size() != b.expected_status.size()) return false;
  for (size_t i = 0; i < a.expected_status.size(); ++i) {
    if (a.expected_status[i].lo != b.expected_status[i].lo ||
        a.expected_status[i].hi != b.expected_status[i].hi)
      return false;
  }
  return a.enabled == b.enabled && a.path == b.path && a.host == b.host &&
         a.interval_ms == b.interval_ms && a.timeout_ms == b.timeout_ms &&
         a.jitter_ms == b.jitter_ms && a.healthy_threshold == b.healthy_threshold &&
         a.unhealthy_threshold == b.unhealthy_threshold;
}

}  // namespace

// One probe attempt's connection. Freed in its handle's close callback; `probe` is cleared
// when the probe goes away first, so late callbacks (ECANCELED writes) touch nothing else.
struct Attempt {
  uv_tcp_t tcp{};
  uv_connect_t connect_req{};
  llhttp_t parser{};
  std::string request;
  HealthProber::Probe* probe = nullptr;
  bool closing = false;
  char buf[4096];
  // Versions with upstream TLS are probed over TLS: ciphertext collects in `out` and leaves by
  // send(); the request goes once the handshake is done.
  TlsIo tls;
  std::string out;
  bool tls_open = false;
  // h2 versions are probed over HTTP/2 (h2c by prior knowledge, or h2 by ALPN): one GET
  // stream, whose final response head decides.
  nghttp2_session* ng = nullptr;
  int h2_status = 0;

  ~Attempt() {
    if (ng) nghttp2_session_del(ng);
  }

  // Writes `data`; its buffer lives until the write callback (which, after uv_close, still runs
  // with ECANCELED before the close callback frees this attempt).
  void send(std::string data);
  // Plaintext to the backend: through TLS when the attempt has it.
  void send_plain(std::string data);
  void handshake();
  // The connection (and TLS) is up: the request goes.
  void on_open();
  void start_h2();
  void flush_h2();
  void rc_failed(const char* what);
  void parse(const char* data, size_t len);

  void close() {
    if (closing) return;
    closing = true;
    probe = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp),
             [](uv_handle_t* h) { delete static_cast<Attempt*>(h->data); });
  }
};

struct HealthProber::Probe {
  HealthProber* owner;
  uint32_t endpoint_id;
  sockaddr_storage addr;
  std::shared_ptr<const routing::OpaqueTls> tls;  // nullptr: plain HTTP
  std::string host;                               // the endpoint's, for SNI and verification
  std::string label;  // "service/version endpoint host:port"
  std::string host_header;
  bool h2;
  health::ActiveCheck check;
  uv_timer_t timer{};  // next probe, or the running probe's timeout
  Attempt* attempt = nullptr;

  Probe(HealthProber* o, const routing::Endpoint& ep, std::shared_ptr<const routing::OpaqueTls> t,
        const std::string& lbl, const config::HealthCheck& policy, bool http2)
      : owner(o), endpoint_id(ep.id), addr(ep.addr), tls(std::move(t)), host(ep.host), label(lbl),
        host_header(policy.host.empty() ? ep.address : policy.host), h2(http2), check(policy) {
    uv_timer_init(owner->loop_, &timer);
    timer.data = this;
    // The first probe comes soon but spread out, so a big config does not probe all at once.
    uint64_t first = owner->next_random() % (uint64_t{policy.interval_ms} / 4 + 1);
    uv_timer_start(&timer, on_timer, first, 0);
  }

  void close() {
    if (attempt) attempt->close();
    attempt = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&timer),
             [](uv_handle_t* h) { delete static_cast<Probe*>(h->data); });
  }

  static void on_timer(uv_timer_t* t) {
    auto* self = static_cast<Probe*>(t->data);
    if (self->attempt) {
      self->finish(false, "timeout after " + std::to_string(self->check.policy().timeout_ms) +
                              " ms");
    } else {
      self->start();
    }
  }

  static const llhttp_settings_t* settings() {
    static const llhttp_settings_t s = [] {
      llhttp_settings_t st;
      llhttp_settings_init(&st);
      // The status is all a probe needs: stop parsing at the end of the head.
      st.on_headers_complete = [](llhttp_t* p) {
        auto* a = static_cast<Attempt*>(p->data);
        if (a->probe) {
          int status = p->status_code;
          a->probe->finish(health::status_expected(a->probe->check.policy(), status),
                           "status " + std::to_string(status));
        }
        return static_cast<int>(HPE_PAUSED);
      };
      return st;
    }();
    return &s;
  }

  void start() {
    const config::HealthCheck& p = check.policy();
    auto* a = new Attempt;
    a->probe = this;
    attempt = a;
    uv_tcp_init(owner->loop_, &a->tcp);
    a->tcp.data = a;
    llhttp_init(&a->parser, HTTP_RESPONSE, settings());
    a->parser.data = a;
    a->request = "GET " + p.path + " HTTP/1.1\r\nHost: " + host_header +
                 "\r\nUser-Agent: weir-health-check\r\nConnection: close\r\n\r\n";
    a->connect_req.data = a;
    uv_timer_start(&timer, on_timer, p.timeout_ms, 0);
    int rc = uv_tcp_connect(&a->connect_req, &a->tcp, reinterpret_cast<const sockaddr*>(&addr),
                            on_connect);
    if (rc < 0) finish(false, std::string("connect: ") + uv_strerror(rc));
  }

  static void on_connect(uv_connect_t* req, int status) {
    auto* a = static_cast<Attempt*>(req->data);
    if (!a->probe) return;
    if (status < 0) {
      a->probe->finish(false, std::string("connect: ") + uv_strerror(status));
      return;
    }
    if (a->probe->tls) {
      auto* ctx = static_cast<const UpstreamTlsContext*>(a->probe->tls.get());
      if (!a->tls.init(ctx->new_ssl(a->probe->host), &a->out)) {
        a->probe->finish(false, "TLS: out of memory");
        return;
      }
      a->handshake();
    } else {
      a->on_open();
    }
    if (!a->probe) return;
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(&a->tcp),
        [](uv_handle_t* h, size_t, uv_buf_t* buf) {
          auto* at = static_cast<Attempt*>(h->data);
          *buf = uv_buf_init(at->buf, sizeof at->buf);
        },
        [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
          auto* at = static_cast<Attempt*>(s->data);
          if (!at->probe) return;
          if (n < 0) {
            at->probe->finish(false, n == UV_EOF ? std::string("closed before a response")
                                                 : std::string("read: ") + uv_strerror(n));
            return;
          }
          if (!at->tls.active()) {
            at->parse(buf->base, static_cast<size_t>(n));
            return;
          }
          at->tls.set_input(buf->base, static_cast<size_t>(n));
          if (!at->tls_open) at->handshake();
          if (at->probe && at->tls_open) {
            char plain[4096];
            int err = SSL_ERROR_NONE;
            while (at->probe && err == SSL_ERROR_NONE) {
              size_t got = at->tls.read(plain, sizeof plain, &err);
              if (got > 0) at->parse(plain, got);
            }
            if (at->probe && err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
              at->probe->finish(false, "TLS: closed before a response");
            }
          }
          at->tls.clear_input();
        });
  }

  // The attempt is over: close it, update the state, schedule the next probe.
  void finish(bool passed, const std::string& reason) {
    if (!attempt) return;
    attempt->close();
    attempt = nullptr;
    const uint64_t now = uv_now(owner->loop_);
    if (check.record(passed, reason, now)) {
      log(check.healthy() ? LogLevel::kInfo : LogLevel::kWarn, "health: %s is %s (%s)",
          label.c_str(), check.healthy() ? "up" : "down", check.why().c_str());
      owner->on_change_(endpoint_id, check.healthy());
    }
    uv_timer_start(&timer, on_timer, check.next_probe_at(now, owner->next_random()) - now, 0);
  }
};

void Attempt::send(std::string data) {
  struct Write {
    uv_write_t req;
    std::string data;
  };
  if (data.empty() || closing) return;
  auto* w = new Write{{}, std::move(data)};
  w->req.data = this;
  uv_buf_t b = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&tcp), &b, 1,
                    [](uv_write_t* req, int st) {
                      auto* at = static_cast<Attempt*>(req->data);
                      delete reinterpret_cast<Write*>(req);
                      if (st < 0 && at->probe) {
                        at->probe->finish(false, std::string("write: ") + uv_strerror(st));
                      }
                    });
  if (rc < 0) {
    delete w;
    if (probe) probe->finish(false, std::string("write: ") + uv_strerror(rc));
  }
}

void Attempt::handshake() {
  const int rc = tls.handshake();
  if (rc == SSL_ERROR_NONE) {
    tls_open = true;
    auto* ctx = static_cast<const UpstreamTlsContext*>(probe->tls.get());
    if (probe->h2 && !ctx->alpn_ok(tls.ssl())) {
      probe->finish(false, "TLS: the backend did not select HTTP/2 by ALPN");
      return;
    }
    on_open();
  }
  if (!out.empty()) {
    std::string flight;
    flight.swap(out);
    send(std::move(flight));
  }
  if (probe && rc != SSL_ERROR_NONE && rc != SSL_ERROR_WANT_READ &&
      rc != SSL_ERROR_WANT_WRITE) {
    rc_failed("TLS handshake");
  }
}

void Attempt::send_plain(std::string data) {
  if (!tls.active()) {
    send(std::move(data));
    return;
  }
  if (!tls.write(data.data(), data.size())) {
    rc_failed("TLS write");
    return;
  }
  std::string flight;
  flight.swap(out);
  send(std::move(flight));
}

void Attempt::on_open() {
  if (probe->h2) {
    start_h2();
  } else {
    send_plain(std::move(request));
  }
}

void Attempt::start_h2() {
  static nghttp2_session_callbacks* const cbs = [] {
    nghttp2_session_callbacks* c = nullptr;
    nghttp2_session_callbacks_new(&c);
    nghttp2_session_callbacks_set_on_header_callback(
        c, [](nghttp2_session*, const nghttp2_frame* f, const uint8_t* name, size_t namelen,
              const uint8_t* value, size_t valuelen, uint8_t, void* user) {
          auto* a = static_cast<Attempt*>(user);
          if (f->hd.type == NGHTTP2_HEADERS && namelen == 7 && std::memcmp(name, ":status", 7) == 0) {
            a->h2_status = 0;
            for (size_t i = 0; i < valuelen; ++i) a->h2_status = a->h2_status * 10 + (value[i] - '0');
          }
          return 0;
        });
    nghttp2_session_callbacks_set_on_frame_recv_callback(
        c, [](nghttp2_session*, const nghttp2_frame* f, void* user) {
          auto* a = static_cast<Attempt*>(user);
          // The status is all a probe needs; 1xx heads are skipped.
          if (a->probe && f->hd.type == NGHTTP2_HEADERS && f->hd.stream_id == 1 &&
              a->h2_status >= 200) {
            a->probe->finish(health::status_expected(a->probe->check.policy(), a->h2_status),
                             "status " + std::to_string(a->h2_status));
          }
          return 0;
        });
    nghttp2_session_callbacks_set_on_stream_close_callback(
        c, [](nghttp2_session*, int32_t, uint32_t error_code, void* user) {
          auto* a = static_cast<Attempt*>(user);
          if (a->probe) {
            a->probe->finish(false, "stream closed before a response (HTTP/2 error " +
                                        std::to_string(error_code) + ")");
          }
          return 0;
        });
    return c;
  }();
  ng = new_h2_client(cbs, this);
  if (!ng) {
    probe->finish(false, "HTTP/2: out of memory");
    return;
  }
  const std::string fields[][2] = {
      {":method", "GET"},
      {":scheme", probe->tls ? "https" : "http"},
      {":authority", probe->host_header},
      {":path", probe->check.policy().path},
      {"user-agent", "weir-health-check"},
  };
  nghttp2_nv nva[std::size(fields)];
  for (size_t i = 0; i < std::size(fields); ++i) nva[i] = h2_nv(fields[i][0], fields[i][1]);
  if (nghttp2_submit_request(ng, nullptr, nva, std::size(nva), nullptr, nullptr) < 0) {
    probe->finish(false, "HTTP/2: cannot submit the request");
    return;
  }
  flush_h2();
}

void Attempt::flush_h2() {
  std::string pending;
  for (;;) {
    const uint8_t* data = nullptr;
    ssize_t n = nghttp2_session_mem_send(ng, &data);
    if (n < 0 && probe) probe->finish(false, std::string("HTTP/2: ") + nghttp2_strerror(int(n)));
    if (n <= 0) break;
    pending.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
  if (probe) send_plain(std::move(pending));
}

void Attempt::rc_failed(const char* what) {
  if (probe) probe->finish(false, std::string(what) + ": " + tls.last_error());
}

void Attempt::parse(const char* data, size_t len) {
  if (ng) {
    ssize_t rc = nghttp2_session_mem_recv(ng, reinterpret_cast<const uint8_t*>(data), len);
    if (rc < 0 && probe) {
      probe->finish(false, std::string("bad HTTP/2 response: ") + nghttp2_strerror(int(rc)));
    }
    if (probe) flush_h2();
    return;
  }
  llhttp_errno_t err = llhttp_execute(&parser, data, len);
  if (err != HPE_OK && err != HPE_PAUSED && probe) {
    probe->finish(false, std::string("bad response: ") + llhttp_errno_name(err));
  }
}

HealthProber::HealthProber(uv_loop_t* loop, OnChange on_change)
    : loop_(loop), on_change_(std::move(on_change)), rng_(uv_hrtime() | 1) {}

HealthProber::~HealthProber() { stop(); }

uint64_t HealthProber::next_random() {
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 7;
  rng_ ^= rng_ << 17;
  return rng_;
}

void HealthProber::stop() {
  for (auto& [id, probe] : probes_) probe->close();
  probes_.clear();
}

bool HealthProber::healthy(uint32_t endpoint_id) const {
  auto it = probes_.find(endpoint_id);
  return it == probes_.end() || it->second->check.healthy();
}

void HealthProber::sync(const routing::Snapshot& snap) {
  std::unordered_map<uint32_t, Probe*> next;
  for (const auto& svc : snap.services) {
    for (const auto& v : svc.versions) {
      if (!v.config || !v.config->health_check.enabled) continue;
      const config::HealthCheck& policy = v.config->health_check;
      const bool h2 = v.config->protocol == config::UpstreamProtocol::kH2;
      for (const auto& ep : v.endpoints) {
        if (next.count(ep.id)) continue;  // an endpoint shared by versions is probed once
        auto it = probes_.find(ep.id);
        if (it != probes_.end() && same_policy(it->second->check.policy(), policy) &&
            it->second->tls == v.tls && it->second->h2 == h2 &&
            std::memcmp(&it->second->addr, &ep.addr, sizeof ep.addr) == 0) {
          next.emplace(ep.id, it->second);
          probes_.erase(it);
          continue;
        }
        next.emplace(ep.id, new Probe(this, ep, v.tls,
                                      svc.name + "/" + v.name + " endpoint " + ep.address,
                                      policy, h2));
      }
    }
  }
  stop();  // what is left is no longer checked
  probes_ = std::move(next);
}

}  // namespace weir::proxy
