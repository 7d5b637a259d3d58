#include "proxy/etcd_client.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <nlohmann/json.hpp>

namespace weir::proxy {

using nlohmann::json;

namespace {

constexpr uint32_t kWatchBackoffFirstMs = 100;
constexpr uint32_t kWatchBackoffMaxMs = 2000;
constexpr size_t kMaxWatchMessage = 64u << 20;

constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string b64(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v =
        uint32_t(uint8_t(in[i])) << 16 | uint32_t(uint8_t(in[i + 1])) << 8 | uint8_t(in[i + 2]);
    out += kB64[v >> 18];
    out += kB64[(v >> 12) & 63];
    out += kB64[(v >> 6) & 63];
    out += kB64[v & 63];
  }
  if (i < in.size()) {
    uint32_t v = uint32_t(uint8_t(in[i])) << 16;
    if (i + 1 < in.size()) v |= uint32_t(uint8_t(in[i + 1])) << 8;
    out += kB64[v >> 18];
    out += kB64[(v >> 12) & 63];
    out += i + 1 < in.size() ? kB64[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

// Standard alphabet, padding optional; false on anything else.
bool unb64(std::string_view in, std::string* out) {
  out->clear();
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  uint32_t acc = 0;
  int bits = 0;
  for (char ch : in) {
    const char* at = ch ? std::strchr(kB64, ch) : nullptr;
    if (!at) return false;
    const auto v = static_cast<uint32_t>(at - kB64);
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return bits < 6;
}

// int64 fields come as strings ("5"), sometimes as numbers; absent = 0.
int64_t i64(const json& j, const char* key) {
  if (!j.is_object()) return 0;
  auto it = j.find(key);
  if (it == j.end()) return 0;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_string()) {
    const auto& s = it->get_ref<const std::string&>();
    int64_t v = 0;
    std::from_chars(s.data(), s.data() + s.size(), v);
    return v;
  }
  return 0;
}

int64_t header_revision(const json& j) {
  auto it = j.find("header");
  return it == j.end() ? 0 : i64(*it, "revision");
}

std::string str(const json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

bool parse_kv(const json& j, EtcdKv* kv) {
  if (!j.is_object()) return false;
  if (!unb64(str(j, "key"), &kv->key) || !unb64(str(j, "value"), &kv->value)) return false;
  kv->create_revision = i64(j, "create_revision");
  kv->mod_revision = i64(j, "mod_revision");
  kv->version = i64(j, "version");
  kv->lease = i64(j, "lease");
  return true;
}

bool parse_kvs(const json& j, std::vector<EtcdKv>* kvs) {
  auto it = j.find("kvs");
  if (it == j.end()) return true;  // none found
  if (!it->is_array()) return false;
  for (const json& e : *it) {
    EtcdKv kv;
    if (!parse_kv(e, &kv)) return false;
    kvs->push_back(std::move(kv));
  }
  return true;
}

json op_json(const EtcdOp& op) {
  json body = {{"key", b64(op.key)}};
  switch (op.type) {
    case EtcdOp::Type::kPut:
      body["value"] = b64(op.value);
      if (op.lease) body["lease"] = std::to_string(op.lease);
      return {{"request_put", body}};
    case EtcdOp::Type::kRange:
      if (!op.range_end.empty()) body["range_end"] = b64(op.range_end);
      return {{"request_range", body}};
    case EtcdOp::Type::kDelete:
      if (!op.range_end.empty()) body["range_end"] = b64(op.range_end);
      return {{"request_delete_range", body}};
  }
  return body;
}

json compare_json(const EtcdCompare& c) {
  static constexpr const char* kTargets[] = {"MOD", "VERSION", "CREATE", "VALUE", "LEASE"};
  static constexpr const char* kFields[] = {"mod_revision", "version", "create_revision", "value",
                                            "lease"};
  static constexpr const char* kResults[] = {"EQUAL", "NOT_EQUAL", "GREATER", "LESS"};
  const auto t = static_cast<size_t>(c.target);
  json j = {{"key", b64(c.key)},
            {"target", kTargets[t]},
            {"result", kResults[static_cast<size_t>(c.result)]}};
  if (c.target == EtcdCompare::Target::kValue) {
    j["value"] = b64(c.value);
  } else {
    j[kFields[t]] = std::to_string(c.number);
  }
  return j;
}

// A 200 answer that does not hold what it should: for a write, nobody knows what happened.
EtcdStatus malformed(const EtcdStatus& st, bool write) {
  EtcdStatus out = st;
  out.kind = write ? EtcdStatus::Kind::kIndeterminate : EtcdStatus::Kind::kUnavailable;
  out.message = "malformed answer from etcd at " + st.endpoint;
  return out;
}

}  // namespace

const char* to_string(EtcdStatus::Kind kind) {
  switch (kind) {
    case EtcdStatus::Kind::kOk: return "ok";
    case EtcdStatus::Kind::kUnavailable: return "unavailable";
    case EtcdStatus::Kind::kIndeterminate: return "indeterminate";
    case EtcdStatus::Kind::kRejected: return "rejected";
  }
  return "?";
}

std::string prefix_range_end(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    if (static_cast<unsigned char>(end.back()) != 0xff) {
      end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

EtcdOp EtcdOp::put(std::string key, std::string value, int64_t lease) {
  EtcdOp op;
  op.type = Type::kPut;
  op.key = std::move(key);
  op.value = std::move(value);
  op.lease = lease;
  return op;
}

EtcdOp EtcdOp::range(std::string key, std::string range_end) {
  EtcdOp op;
  op.type = Type::kRange;
  op.key = std::move(key);
  op.range_end = std::move(range_end);
  return op;
}

EtcdOp EtcdOp::del(std::string key, std::string range_end) {
  EtcdOp op;
  op.type = Type::kDelete;
  op.key = std::move(key);
  op.range_end = std::move(range_end);
  return op;
}

// One API call: tried on the endpoints in turn, each at most once.
struct EtcdClient::Op {
  std::string path, body;
  bool write = false;
  bool auth_call = false;
  bool reauthed = false;
  size_t tried = 0;
  std::function<void(const EtcdStatus&, const json&)> done;
};

// Callbacks that must not run inside the call that produced them (no endpoint configured).
// Freed in its timer's close callback.
struct EtcdClient::Deferred {
  uv_timer_t timer{};
  std::vector<std::function<void()>> queue;
  bool closed = false;
};

// One watch stream; freed in its backoff timer's close callback after its EtcdWatch went away.
// `client` is nullptr once the client closed.
struct EtcdWatch::Impl {
  EtcdClient* client = nullptr;
  uint64_t id = 0;
  std::string key, range_end;
  int64_t next_revision = 0;  // 0: from now
  EtcdWatchHandler handler;
  uv_timer_t timer{};
  HttpClient::RequestId stream = 0;
  size_t endpoint = 0;
  uint32_t backoff_ms = kWatchBackoffFirstMs;
  int http_status = 0;
  std::string buffer;  // a partial message
  std::optional<EtcdStatus> stream_error;
  enum class Reported : uint8_t { kNone, kUp, kDown } reported = Reported::kNone;
  bool up = false;
  bool stopped = false;  // compacted: no reconnect
  bool closing = false;
  bool reauthed = false;
  std::string used_token;

  bool active() const { return client && !closing && !stopped; }

  void connect() {
    if (!active()) return;
    EtcdClient* c = client;
    const uint64_t my_id = id;
    c->with_token([c, my_id](const EtcdStatus& st) {
      auto it = c->watches_.find(my_id);
      if (it == c->watches_.end()) return;
      Impl* self = it->second;
      if (!self->active()) return;
      if (!st.ok()) {
        self->down(st);
        self->retry_later();
        return;
      }
      self->open_stream();
    });
  }

  void open_stream() {
    json create = {{"key", b64(key)}, {"prev_kv", true}, {"progress_notify", true}};
    if (!range_end.empty()) create["range_end"] = b64(range_end);
    if (next_revision > 0) create["start_revision"] = std::to_string(next_revision);
    HttpRequest req;
    req.method = "POST";
    req.url = client->settings_.endpoints[endpoint] + "/v3/watch";
    req.body = json{{"create_request", create}}.dump();
    req.headers = client->headers();
    req.timeout_ms = client->settings_.timeout_ms;
    req.stream = true;
    used_token = client->token_;
    http_status = 0;
    buffer.clear();
    stream_error.reset();
    HttpCallbacks cb;
    cb.on_head = [this](const HttpResponse& head) { http_status = head.status; };
    cb.on_data = [this](std::string_view data) { on_data(data); };
    cb.on_done = [this](const HttpError& error, const HttpResponse&) { on_end(error); };
    stream = client->http_->request(std::move(req), std::move(cb));
  }

  EtcdStatus status(EtcdStatus::Kind kind, std::string message) const {
    EtcdStatus st;
    st.kind = kind;
    st.message = std::move(message);
    st.http_status = http_status;
    st.endpoint = client ? client->settings_.endpoints[endpoint] : "";
    return st;
  }

  void on_data(std::string_view data) {
    if (buffer.size() + data.size() > kMaxWatchMessage) {
      stream_error =
          status(EtcdStatus::Kind::kUnavailable,
                 "a watch message beyond " + std::to_string(kMaxWatchMessage) + " bytes");
      client->http_->cancel(stream);
      stream = 0;
      lost();
      return;
    }
    buffer.append(data);
    if (http_status != 200) return;  // an error body, read whole at the end
    // Only the new bytes are searched: a large message arriving in many reads stays linear.
    size_t start = 0;
    size_t from = buffer.size() - data.size();
    for (size_t nl; active() && (nl = buffer.find('\n', from)) != std::string::npos;
         start = from = nl + 1) {
      message(std::string_view(buffer).substr(start, nl - start));
    }
    if (active()) buffer.erase(0, start);
  }

  // One message of the stream. Handlers may destroy the watch: check active() after each.
  void message(std::string_view text) {
    json j = json::parse(text, nullptr, false);
    if (!j.is_object()) {
      if (!text.empty())
        stream_error = status(EtcdStatus::Kind::kUnavailable, "malformed watch message from etcd");
      return;
    }
    if (auto e = j.find("error"); e != j.end()) {
      // {"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader",...}}
      EtcdStatus st =
          status(EtcdStatus::Kind::kUnavailable, "watch stream error: " + str(*e, "message"));
      st.grpc_code = static_cast<int>(i64(*e, "grpc_code"));
      st.http_status = static_cast<int>(i64(*e, "http_code"));
      stream_error = st;
      return;
    }
    auto r = j.find("result");
    if (r == j.end() || !r->is_object()) return;
    const json& res = *r;
    const int64_t rev = header_revision(res);
    const bool created = res.value("created", false);
    const bool canceled = res.value("canceled", false);
    if (canceled) {
      if (int64_t compact = i64(res, "compact_revision"); compact > 0) {
        stopped = true;
        client->http_->cancel(stream);
        stream = 0;
        if (handler.on_compacted) handler.on_compacted(compact);
        return;
      }
      std::string reason = str(res, "cancel_reason");
      EtcdStatus st = status(EtcdStatus::Kind::kRejected, "watch cancelled by etcd: " + reason);
      if (reason.find("Unauthenticated") != std::string::npos ||
          reason.find("invalid auth token") != std::string::npos) {
        st.grpc_code = 16;
      } else if (reason.find("PermissionDenied") != std::string::npos) {
        st.grpc_code = 7;
      }
      stream_error = st;
      client->http_->cancel(stream);
      stream = 0;
      lost();
      return;
    }
    if (created) {
      if (next_revision == 0 && rev > 0) next_revision = rev + 1;
      backoff_ms = kWatchBackoffFirstMs;
      reauthed = false;
      up = true;
      if (reported != Reported::kUp) {
        reported = Reported::kUp;
        if (handler.on_state) handler.on_state(true, status(EtcdStatus::Kind::kOk, "watching"));
      }
      return;
    }
    auto ev = res.find("events");
    if (ev == res.end()) {
      next_revision = std::max(next_revision, rev + 1);
      if (handler.on_progress) handler.on_progress(rev);
      return;
    }
    std::vector<EtcdEvent> events;
    if (ev->is_array()) {
      for (const json& e : *ev) {
        EtcdEvent out;
        out.type = str(e, "type") == "DELETE" ? EtcdEvent::Type::kDelete : EtcdEvent::Type::kPut;
        auto kv = e.find("kv");
        if (kv == e.end() || !parse_kv(*kv, &out.kv)) continue;
        if (auto pkv = e.find("prev_kv"); pkv != e.end()) {
          EtcdKv prev;
          if (parse_kv(*pkv, &prev)) out.prev_kv = std::move(prev);
        }
        next_revision = std::max(next_revision, out.kv.mod_revision + 1);
        events.push_back(std::move(out));
      }
    }
    if (!events.empty() && handler.on_events) handler.on_events(rev, std::move(events));
  }

  void on_end(const HttpError& error) {
    stream = 0;
    if (!active()) return;
    if (http_status != 200 && http_status != 0) {
      json j = json::parse(buffer, nullptr, false);
      EtcdStatus st =
          status(EtcdStatus::Kind::kRejected,
                 "watch refused by etcd: " +
                     (j.is_object() ? str(j, "error") : "HTTP " + std::to_string(http_status)));
      st.grpc_code = static_cast<int>(i64(j, "code"));
      if (http_status >= 500 || st.message.find("no leader") != std::string::npos) {
        st.kind = EtcdStatus::Kind::kUnavailable;
      }
      stream_error = st;
    } else {
      // The final error object has no trailing '\n'.
      std::string rest;
      rest.swap(buffer);
      if (!rest.empty()) message(rest);
      if (!active()) return;
      if (!stream_error) {
        stream_error = status(EtcdStatus::Kind::kUnavailable,
                              error.ok() ? "watch stream ended by etcd" : error.message);
      }
    }
    lost();
  }

  // The stream is gone: report down, reconnect (a token refused is renewed first).
  void lost() {
    if (!active()) return;
    up = false;
    EtcdStatus st = stream_error.value_or(status(EtcdStatus::Kind::kUnavailable, "watch lost"));
    stream_error.reset();
    if (st.grpc_code == 16 && !client->settings_.username.empty() && !reauthed) {
      reauthed = true;
      client->drop_token(used_token);
      connect();
      return;
    }
    down(st);
    if (!active()) return;
    retry_later();
  }

  void down(const EtcdStatus& st) {
    up = false;
    client->note(st);
    if (reported != Reported::kDown) {
      reported = Reported::kDown;
      if (handler.on_state) handler.on_state(false, st);
    }
  }

  void retry_later() {
    if (!active()) return;
    endpoint = (endpoint + 1) % client->settings_.endpoints.size();
    uv_timer_start(&timer, on_timer, backoff_ms, 0);
    backoff_ms = std::min(backoff_ms * 2, kWatchBackoffMaxMs);
  }

  static void on_timer(uv_timer_t* t) { static_cast<Impl*>(t->data)->connect(); }

  // The client is closing: no callback, no reconnect.
  void detach() {
    client = nullptr;
    stream = 0;
    uv_timer_stop(&timer);
  }

  void close() {
    closing = true;
    if (client) {
      if (stream) client->http_->cancel(stream);
      client->watches_.erase(id);
      client = nullptr;
    }
    uv_close(reinterpret_cast<uv_handle_t*>(&timer),
             [](uv_handle_t* h) { delete static_cast<Impl*>(h->data); });
  }
};

EtcdWatch::~EtcdWatch() { impl_->close(); }
bool EtcdWatch::up() const { return impl_->up; }
int64_t EtcdWatch::next_revision() const { return impl_->next_revision; }

EtcdClient::EtcdClient(uv_loop_t* loop, EtcdSettings settings)
    : loop_(loop), settings_(std::move(settings)) {
  for (std::string& e : settings_.endpoints) {
    while (!e.empty() && e.back() == '/') e.pop_back();
  }
  http_ = std::make_unique<HttpClient>(loop_, settings_.tls);
}

EtcdClient::~EtcdClient() { close(); }

const std::string& EtcdClient::current_endpoint() const {
  static const std::string kNone;
  return settings_.endpoints.empty() ? kNone : settings_.endpoints[current_];
}

void EtcdClient::close() {
  if (closed_) return;
  closed_ = true;
  http_->close();
  for (auto& [id, w] : watches_) w->detach();
  watches_.clear();
  waiting_token_.clear();
  if (deferred_) {
    deferred_->closed = true;
    deferred_->queue.clear();
    uv_close(reinterpret_cast<uv_handle_t*>(&deferred_->timer),
             [](uv_handle_t* h) { delete static_cast<Deferred*>(h->data); });
    deferred_ = nullptr;
  }
}

void EtcdClient::defer(std::function<void()> fn) {
  if (closed_) return;
  if (!deferred_) {
    deferred_ = new Deferred;
    uv_timer_init(loop_, &deferred_->timer);
    deferred_->timer.data = deferred_;
  }
  deferred_->queue.push_back(std::move(fn));
  uv_timer_start(
      &deferred_->timer,
      [](uv_timer_t* t) {
        auto* d = static_cast<Deferred*>(t->data);
        std::vector<std::function<void()>> queue;
        queue.swap(d->queue);
        for (auto& fn : queue) {
          if (d->closed) return;
          fn();
        }
      },
      0, 0);
}

std::vector<std::pair<std::string, std::string>> EtcdClient::headers() const {
  std::vector<std::pair<std::string, std::string>> h = {{"Content-Type", "application/json"},
                                                        {"Grpc-Metadata-Hasleader", "true"}};
  if (!token_.empty()) h.emplace_back("Authorization", token_);
  return h;
}

void EtcdClient::note(const EtcdStatus& status) {
  if (status.ok()) return;
  last_error_ = status;
  if (status.kind == EtcdStatus::Kind::kUnavailable) up_ = false;
}

void EtcdClient::call(std::string path, std::string body, bool write,
                      std::function<void(const EtcdStatus&, const json&)> done) {
  auto op = std::make_shared<Op>();
  op->path = std::move(path);
  op->body = std::move(body);
  op->write = write;
  op->done = std::move(done);
  run(op);
}

void EtcdClient::run(const std::shared_ptr<Op>& op) {
  if (closed_) return;
  if (settings_.endpoints.empty()) {
    defer([this, op] {
      EtcdStatus st;
      st.kind = EtcdStatus::Kind::kUnavailable;
      st.message = "no etcd endpoint is configured";
      finish(op, st);
    });
    return;
  }
  if (op->auth_call) {
    send(op);
    return;
  }
  with_token([this, op](const EtcdStatus& st) {
    if (st.ok()) {
      send(op);
    } else {
      finish(op, st);
    }
  });
}

void EtcdClient::send(const std::shared_ptr<Op>& op) {
  const size_t ep = current_;
  HttpRequest req;
  req.method = "POST";
  req.url = settings_.endpoints[ep] + op->path;
  req.body = op->body;
  req.timeout_ms = settings_.timeout_ms;
  req.headers = headers();
  if (op->auth_call) {
    // The authentication itself goes without a (stale) token.
    std::erase_if(req.headers, [](const auto& h) { return h.first == "Authorization"; });
  }
  HttpCallbacks cb;
  std::string used = op->auth_call ? "" : token_;
  cb.on_done = [this, op, ep, used](const HttpError& error, const HttpResponse& response) {
    if (error.ok() && response.status == 401 && !op->auth_call && !op->reauthed &&
        !settings_.username.empty()) {
      json j = json::parse(response.body, nullptr, false);
      if (i64(j, "code") == 16) {
        // The token expired (or the member lost it): once more with a new one.
        op->reauthed = true;
        drop_token(used);
        run(op);
        return;
      }
    }
    answer(op, ep, error, response);
  };
  http_->request(std::move(req), std::move(cb));
}

void EtcdClient::answer(const std::shared_ptr<Op>& op, size_t ep, const HttpError& error,
                        const HttpResponse& response) {
  EtcdStatus st;
  st.endpoint = settings_.endpoints[ep];
  if (!error.ok()) {
    st.message = error.message;
    if (error.indeterminate && op->write) {
      st.kind = EtcdStatus::Kind::kIndeterminate;
      if (current_ == ep) current_ = (ep + 1) % settings_.endpoints.size();
      finish(op, st);
      return;
    }
    fail_over(op, ep, std::move(st));
    return;
  }
  st.http_status = response.status;
  json j = json::parse(response.body, nullptr, false);
  if (response.status == 200) {
    if (!j.is_object()) {
      EtcdStatus bad = malformed(st, op->write);
      if (bad.kind == EtcdStatus::Kind::kIndeterminate) {
        finish(op, bad);
      } else {
        fail_over(op, ep, bad);
      }
      return;
    }
    up_ = true;
    op->done(st, j);
    return;
  }
  std::string what = j.is_object() ? str(j, "error") : "";
  if (what.empty()) what = "HTTP " + std::to_string(response.status);
  st.grpc_code = static_cast<int>(i64(j, "code"));
  st.message = "POST " + st.endpoint + op->path + ": " + what + " (HTTP " +
               std::to_string(response.status) + ", code " + std::to_string(st.grpc_code) + ")";
  if (what.find("no leader") != std::string::npos) {
    // Refused before it was processed (Grpc-Metadata-Hasleader): safe to send elsewhere.
    fail_over(op, ep, std::move(st));
    return;
  }
  if (response.status >= 500) {
    if (op->write) {
      // "request timed out", "context deadline exceeded": it may still be applied.
      st.kind = EtcdStatus::Kind::kIndeterminate;
      if (current_ == ep) current_ = (ep + 1) % settings_.endpoints.size();
      finish(op, st);
    } else {
      fail_over(op, ep, std::move(st));
    }
    return;
  }
  up_ = true;
  st.kind = EtcdStatus::Kind::kRejected;
  finish(op, st);
}

void EtcdClient::fail_over(const std::shared_ptr<Op>& op, size_t ep, EtcdStatus st) {
  ++op->tried;
  const size_t n = settings_.endpoints.size();
  if (current_ == ep) current_ = (ep + 1) % n;
  if (op->tried < n) {
    send(op);
    return;
  }
  st.kind = EtcdStatus::Kind::kUnavailable;
  st.message = "no etcd endpoint answered (" + std::to_string(n) + " tried); last: " + st.message;
  finish(op, st);
}

void EtcdClient::finish(const std::shared_ptr<Op>& op, const EtcdStatus& st) {
  note(st);
  if (op->done) op->done(st, json());
}

void EtcdClient::with_token(std::function<void(const EtcdStatus&)> then) {
  if (settings_.username.empty() || !token_.empty()) {
    then(EtcdStatus{});
    return;
  }
  waiting_token_.push_back(std::move(then));
  if (!authenticating_) authenticate();
}

void EtcdClient::drop_token(const std::string& token) {
  if (token_ == token) token_.clear();
}

void EtcdClient::authenticate() {
  authenticating_ = true;
  auto op = std::make_shared<Op>();
  op->path = "/v3/auth/authenticate";
  op->auth_call = true;
  op->body = json{{"name", settings_.username}, {"password", settings_.password}}.dump();
  op->done = [this](const EtcdStatus& st, const json& j) {
    authenticating_ = false;
    EtcdStatus s = st;
    if (s.ok()) {
      token_ = str(j, "token");
      if (token_.empty()) {
        s.kind = EtcdStatus::Kind::kRejected;
        s.message = "etcd at " + s.endpoint + " answered the authentication without a token";
      }
    } else {
      s.message = "authentication as " + settings_.username + " failed: " + s.message;
    }
    std::vector<std::function<void(const EtcdStatus&)>> waiting;
    waiting.swap(waiting_token_);
    for (auto& w : waiting) {
      if (closed_) return;
      w(s);
    }
  };
  send(op);
}

void EtcdClient::range(const std::string& key, const std::string& range_end, RangeDone done) {
  range(key, range_end, EtcdRangeOptions{}, std::move(done));
}

void EtcdClient::range(const std::string& key, const std::string& range_end,
                       const EtcdRangeOptions& options, RangeDone done) {
  json body = {{"key", b64(key)}};
  if (!range_end.empty()) body["range_end"] = b64(range_end);
  if (options.serializable) body["serializable"] = true;
  if (options.sort_by_mod_revision) {
    body["sort_order"] = "ASCEND";
    body["sort_target"] = "MOD";
  }
  if (options.limit > 0) body["limit"] = std::to_string(options.limit);
  if (options.revision > 0) body["revision"] = std::to_string(options.revision);
  call("/v3/kv/range", body.dump(), false,
       [done = std::move(done)](const EtcdStatus& st, const json& j) {
         if (!st.ok()) return done(st, 0, {}, false);
         std::vector<EtcdKv> kvs;
         if (!parse_kvs(j, &kvs)) return done(malformed(st, false), 0, {}, false);
         done(st, header_revision(j), std::move(kvs), j.value("more", false));
       });
}

void EtcdClient::put(const std::string& key, const std::string& value, int64_t lease,
                     PutDone done) {
  json body = {{"key", b64(key)}, {"value", b64(value)}};
  if (lease) body["lease"] = std::to_string(lease);
  call("/v3/kv/put", body.dump(), true,
       [done = std::move(done)](const EtcdStatus& st, const json& j) {
         done(st, st.ok() ? header_revision(j) : 0);
       });
}

void EtcdClient::del(const std::string& key, const std::string& range_end, DelDone done) {
  json body = {{"key", b64(key)}};
  if (!range_end.empty()) body["range_end"] = b64(range_end);
  call("/v3/kv/deleterange", body.dump(), true,
       [done = std::move(done)](const EtcdStatus& st, const json& j) {
         if (!st.ok()) return done(st, 0, 0);
         done(st, header_revision(j), i64(j, "deleted"));
       });
}

void EtcdClient::txn(const EtcdTxn& t, TxnDone done) {
  json compare = json::array(), success = json::array(), failure = json::array();
  for (const EtcdCompare& c : t.compare) compare.push_back(compare_json(c));
  for (const EtcdOp& op : t.success) success.push_back(op_json(op));
  for (const EtcdOp& op : t.failure) failure.push_back(op_json(op));
  json body = {{"compare", compare}, {"success", success}, {"failure", failure}};
  call("/v3/kv/txn", body.dump(), true,
       [done = std::move(done)](const EtcdStatus& st, const json& j) {
         EtcdTxnResult r;
         if (!st.ok()) return done(st, r);
         r.succeeded = j.value("succeeded", false);
         r.revision = header_revision(j);
         if (auto it = j.find("responses"); it != j.end() && it->is_array()) {
           for (const json& resp : *it) {
             EtcdTxnResponse out;
             if (auto p = resp.find("response_range"); p != resp.end()) {
               out.type = EtcdOp::Type::kRange;
               if (!parse_kvs(*p, &out.kvs)) return done(malformed(st, true), EtcdTxnResult{});
             } else if (auto d = resp.find("response_delete_range"); d != resp.end()) {
               out.type = EtcdOp::Type::kDelete;
               out.deleted = i64(*d, "deleted");
             }
             r.responses.push_back(std::move(out));
           }
         }
         done(st, r);
       });
}

void EtcdClient::cas(const EtcdCas& c, CasDone done) {
  EtcdTxn t;
  EtcdCompare cmp;
  cmp.key = c.key;
  if (c.expected_mod_revision == 0) {
    cmp.target = EtcdCompare::Target::kVersion;  // the key does not exist
  } else {
    cmp.target = EtcdCompare::Target::kMod;
    cmp.number = c.expected_mod_revision;
  }
  t.compare.push_back(cmp);
  t.success.push_back(EtcdOp::put(c.key, c.value, c.lease));
  t.success.insert(t.success.end(), c.also.begin(), c.also.end());
  t.failure.push_back(EtcdOp::range(c.key));
  txn(t, [done = std::move(done)](const EtcdStatus& st, const EtcdTxnResult& r) {
    std::optional<EtcdKv> current;
    if (st.ok() && !r.succeeded && !r.responses.empty() && !r.responses[0].kvs.empty()) {
      current = r.responses[0].kvs[0];
    }
    done(st, st.ok() && r.succeeded, r.revision, std::move(current));
  });
}

void EtcdClient::lease_grant(int64_t ttl_s, LeaseDone done) {
  call("/v3/lease/grant", json{{"TTL", std::to_string(ttl_s)}}.dump(), true,
       [done = std::move(done)](const EtcdStatus& st, const json& j) {
         if (!st.ok()) return done(st, 0, 0);
         if (std::string e = str(j, "error"); !e.empty()) {
           EtcdStatus bad = st;
           bad.kind = EtcdStatus::Kind::kRejected;
           bad.message = "lease grant refused by etcd at " + st.endpoint + ": " + e;
           return done(bad, 0, 0);
         }
         done(st, i64(j, "ID"), i64(j, "TTL"));
       });
}

void EtcdClient::lease_keepalive(int64_t id, LeaseDone done) {
  // Over HTTP/1.1 the keepalive stream answers one message, then ends: a unary call.
  call("/v3/lease/keepalive", json{{"ID", std::to_string(id)}}.dump(), false,
       [done = std::move(done), id](const EtcdStatus& st, const json& j) {
         if (!st.ok()) return done(st, id, 0);
         if (auto e = j.find("error"); e != j.end()) {
           EtcdStatus bad = st;
           bad.kind = EtcdStatus::Kind::kRejected;
           bad.grpc_code = static_cast<int>(i64(*e, "grpc_code"));
           bad.message =
               "lease keepalive refused by etcd at " + st.endpoint + ": " + str(*e, "message");
           return done(bad, id, 0);
         }
         auto r = j.find("result");
         if (r == j.end()) return done(malformed(st, false), id, 0);
         done(st, id, i64(*r, "TTL"));
       });
}

void EtcdClient::lease_revoke(int64_t id, Done done) {
  call("/v3/lease/revoke", json{{"ID", std::to_string(id)}}.dump(), false,
       [done = std::move(done)](const EtcdStatus& st, const json&) { done(st); });
}

std::unique_ptr<EtcdWatch> EtcdClient::watch(std::string key, std::string range_end,
                                             int64_t start_revision, EtcdWatchHandler handler) {
  auto* impl = new EtcdWatch::Impl;
  impl->client = closed_ ? nullptr : this;
  impl->id = next_watch_id_++;
  impl->key = std::move(key);
  impl->range_end = std::move(range_end);
  impl->next_revision = start_revision;
  impl->handler = std::move(handler);
  impl->endpoint = current_;
  uv_timer_init(loop_, &impl->timer);
  impl->timer.data = impl;
  std::unique_ptr<EtcdWatch> w(new EtcdWatch(impl));
  if (closed_) return w;
  watches_.emplace(impl->id, impl);
  if (settings_.endpoints.empty()) {
    EtcdStatus st;
    st.kind = EtcdStatus::Kind::kUnavailable;
    st.message = "no etcd endpoint is configured";
    const uint64_t id = impl->id;
    defer([this, id, st] {
      if (auto it = watches_.find(id); it != watches_.end()) it->second->down(st);
    });
    return w;
  }
  // Connecting from the next loop turn keeps every handler call out of watch().
  const uint64_t id = impl->id;
  defer([this, id] {
    if (auto it = watches_.find(id); it != watches_.end()) it->second->connect();
  });
  return w;
}

}  // namespace weir::proxy
