#include "proxy/health_prober.h"

#include <llhttp.h>

#include <cstdio>
#include <cstring>

#include "health/active_check.h"
#include "proxy/http_util.h"

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
  uv_write_t write_req{};
  llhttp_t parser{};
  std::string request;
  HealthProber::Probe* probe = nullptr;
  bool closing = false;
  char buf[4096];

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
  std::string label;  // "service/version endpoint host:port"
  std::string host_header;
  health::ActiveCheck check;
  uv_timer_t timer{};  // next probe, or the running probe's timeout
  Attempt* attempt = nullptr;

  Probe(HealthProber* o, const routing::Endpoint& ep, const std::string& lbl,
        const config::HealthCheck& policy)
      : owner(o), endpoint_id(ep.id), addr(ep.addr), label(lbl),
        host_header(policy.host.empty() ? ep.address : policy.host), check(policy) {
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
    uv_buf_t b = uv_buf_init(a->request.data(), static_cast<unsigned>(a->request.size()));
    a->write_req.data = a;
    uv_write(&a->write_req, reinterpret_cast<uv_stream_t*>(&a->tcp), &b, 1,
             [](uv_write_t* w, int st) {
               auto* at = static_cast<Attempt*>(w->data);
               if (st < 0 && at->probe) at->probe->finish(false, std::string("write: ") +
                                                                     uv_strerror(st));
             });
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
          llhttp_errno_t err = llhttp_execute(&at->parser, buf->base, static_cast<size_t>(n));
          if (err != HPE_OK && err != HPE_PAUSED && at->probe) {
            at->probe->finish(false, std::string("bad response: ") + llhttp_errno_name(err));
          }
        });
  }

  // The attempt is over: close it, update the state, schedule the next probe.
  void finish(bool passed, const std::string& reason) {
    if (!attempt) return;
    attempt->close();
    attempt = nullptr;
    const uint64_t now = uv_now(owner->loop_);
    if (check.record(passed, reason, now)) {
      std::fprintf(stderr, "weir: health: %s is %s (%s)\n", label.c_str(),
                   check.healthy() ? "up" : "down", check.why().c_str());
      owner->on_change_(endpoint_id, check.healthy());
    }
    uv_timer_start(&timer, on_timer, check.next_probe_at(now, owner->next_random()) - now, 0);
  }
};

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
      for (const auto& ep : v.endpoints) {
        if (next.count(ep.id)) continue;  // an endpoint shared by versions is probed once
        auto it = probes_.find(ep.id);
        if (it != probes_.end() && same_policy(it->second->check.policy(), policy) &&
            std::memcmp(&it->second->addr, &ep.addr, sizeof ep.addr) == 0) {
          next.emplace(ep.id, it->second);
          probes_.erase(it);
          continue;
        }
        next.emplace(ep.id, new Probe(this, ep, svc.name + "/" + v.name + " endpoint " +
                                                    ep.address, policy));
      }
    }
  }
  stop();  // what is left is no longer checked
  probes_ = std::move(next);
}

}  // namespace weir::proxy
