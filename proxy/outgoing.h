// The HTTP clients of the control thread's outgoing calls (hooks, KPI queries): one HttpClient
// per distinct TLS setting (CA file, client certificate, verify), made on first use, so calls to
// one receiver share keep-alive connections. Owned by HookRunner or KpiRunner; control thread
// only.
#pragma once

#include <uv.h>

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>

#include "config/config.h"
#include "proxy/http_client.h"

namespace weir::proxy {

class OutgoingClients {
 public:
  explicit OutgoingClients(uv_loop_t* loop) : loop_(loop) {}
  ~OutgoingClients() { close(); }
  OutgoingClients(const OutgoingClients&) = delete;
  OutgoingClients& operator=(const OutgoingClients&) = delete;

  HttpClient& client(const config::OutgoingTarget& t) {
    auto key = std::make_tuple(t.ca_file, t.cert, t.key, t.verify);
    auto it = clients_.find(key);
    if (it == clients_.end()) {
      ClientTls tls{t.ca_file, t.cert, t.key, t.verify};
      it = clients_.emplace(key, std::make_unique<HttpClient>(loop_, std::move(tls))).first;
    }
    return *it->second;
  }
  // A request for `t` with its headers (values never logged), `body` and `t`'s timeout.
  static HttpRequest request(const config::OutgoingTarget& t, std::string method, std::string url,
                             std::string body = "") {
    HttpRequest r;
    r.method = std::move(method);
    r.url = std::move(url);
    r.body = std::move(body);
    r.timeout_ms = t.timeout_ms;
    r.max_body = 4u << 20;
    for (const auto& h : t.headers) r.headers.emplace_back(h.name, h.value);
    return r;
  }
  void close() {
    for (auto& [k, c] : clients_) c->close();
    clients_.clear();
  }

 private:
  uv_loop_t* loop_;
  std::map<std::tuple<std::string, std::string, std::string, bool>, std::unique_ptr<HttpClient>>
      clients_;
};

// The first `max` bytes of `body` as text an operator can read in explain and the audit log
// (control bytes shown as '.', "..." when cut).
inline std::string excerpt(std::string_view body, size_t max = 256) {
  std::string out;
  for (char c : body.substr(0, max)) {
    const auto u = static_cast<unsigned char>(c);
    out += u < 0x20 || u == 0x7f ? '.' : c;
  }
  if (body.size() > max) out += "...";
  return out;
}

}  // namespace weir::proxy
