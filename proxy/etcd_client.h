// etcd v3 through its gRPC-JSON gateway (POST /v3/..., JSON bodies, base64 bytes, int64 as
// strings, zero values omitted), on HttpClient on the control thread's loop. Callers pass raw
// byte strings; every callback runs on a later loop turn, never from inside the call.
//
// Failover: calls go to one endpoint and move to the next on connect failure, timeout, HTTP 503
// or "no leader", retrying the same call on each endpoint at most once — except writes (put,
// txn, cas, del, lease_grant) whose request may have been applied: they end kIndeterminate and
// the caller re-reads (a CAS makes its retry safe). Every call sends Grpc-Metadata-Hasleader so
// a member without quorum answers at once instead of after its 7 s request timeout.
// Auth: with a user name, POST /v3/auth/authenticate before the first call; the token goes in
// Authorization as is; an invalid or expired token (401, code 16) re-authenticates once.
// Neither the password nor the token is ever put in a message.
//
// Owned by its user (the fleet store), control thread only. close() drops every callback; the
// client may be destroyed right after it. Watches are owned by their callers (EtcdWatch).
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "proxy/http_client.h"

namespace weir::proxy {

struct EtcdSettings {
  std::vector<std::string> endpoints;  // http(s)://host:port, no path
  uint32_t timeout_ms = 2000;          // per call and per endpoint tried
  ClientTls tls;                       // for https endpoints
  std::string username;                // "" = no auth
  std::string password;
};

struct EtcdKv {
  std::string key, value;
  int64_t create_revision = 0, mod_revision = 0, version = 0, lease = 0;
};

struct EtcdStatus {
  enum class Kind : uint8_t {
    kOk,
    kUnavailable,    // no endpoint answered (all tried, or none has a leader)
    kIndeterminate,  // a write may or may not have been applied
    kRejected,       // etcd said no (4xx, permission denied, lease not found, compacted ...)
  };
  Kind kind = Kind::kOk;
  std::string message;
  int http_status = 0;
  int grpc_code = 0;
  std::string endpoint;  // the endpoint that answered (or failed last)
  bool ok() const { return kind == Kind::kOk; }
};
const char* to_string(EtcdStatus::Kind kind);

// The range_end that selects every key starting with `prefix` ("/app/" -> "/app0"); "\0" (every
// key from the start key on) when no such end exists.
std::string prefix_range_end(std::string_view prefix);

struct EtcdRangeOptions {
  bool serializable = false;          // the member's local (possibly stale) copy
  bool sort_by_mod_revision = false;  // ascending
  int64_t limit = 0;                  // 0 = all
  int64_t revision = 0;               // 0 = the latest
};

struct EtcdCompare {
  enum class Target : uint8_t { kMod, kVersion, kCreate, kValue, kLease };
  enum class Result : uint8_t { kEqual, kNotEqual, kGreater, kLess };
  std::string key;
  Target target = Target::kMod;
  Result result = Result::kEqual;
  int64_t number = 0;  // mod/create revision, version or lease
  std::string value;   // kValue
};

struct EtcdOp {
  enum class Type : uint8_t { kPut, kRange, kDelete };
  Type type = Type::kPut;
  std::string key, value, range_end;
  int64_t lease = 0;  // put
  static EtcdOp put(std::string key, std::string value, int64_t lease = 0);
  static EtcdOp range(std::string key, std::string range_end = "");
  static EtcdOp del(std::string key, std::string range_end = "");
};

struct EtcdTxn {
  std::vector<EtcdCompare> compare;
  std::vector<EtcdOp> success, failure;
};

struct EtcdTxnResponse {
  EtcdOp::Type type = EtcdOp::Type::kPut;
  std::vector<EtcdKv> kvs;  // range
  int64_t deleted = 0;      // delete
};

struct EtcdTxnResult {
  bool succeeded = false;
  int64_t revision = 0;
  std::vector<EtcdTxnResponse> responses;  // one per op of the branch that ran
};

// Write `value` at `key` iff its mod_revision is `expected_mod_revision` (0: the key must not
// exist), with the extra ops in the same transaction (e.g. an audit event key).
struct EtcdCas {
  std::string key, value;
  int64_t expected_mod_revision = 0;
  int64_t lease = 0;
  std::vector<EtcdOp> also;
};

struct EtcdEvent {
  enum class Type : uint8_t { kPut, kDelete };
  Type type = Type::kPut;
  EtcdKv kv;  // a delete carries the key and mod_revision only
  std::optional<EtcdKv> prev_kv;
};

struct EtcdWatchHandler {
  // Changes, in revision order; `revision` is the store's revision when they were sent.
  std::function<void(int64_t revision, std::vector<EtcdEvent> events)> on_events;
  // The start revision was compacted away: the watch has stopped; re-read and watch anew.
  std::function<void(int64_t compact_revision)> on_compacted;
  // The stream is established (up) or lost (down, with why). Down is reported once per loss;
  // the watch reconnects by itself from the last revision it delivered + 1.
  std::function<void(bool up, const EtcdStatus& why)> on_state;
  // A progress notification: every change up to `revision` has been delivered.
  std::function<void(int64_t revision)> on_progress;
};

class EtcdClient;

// One watch stream (its own connection). Destroying it cancels the stream.
class EtcdWatch {
 public:
  ~EtcdWatch();
  EtcdWatch(const EtcdWatch&) = delete;
  EtcdWatch& operator=(const EtcdWatch&) = delete;
  bool up() const;
  // The revision the stream resumes from after a reconnect.
  int64_t next_revision() const;

 private:
  friend class EtcdClient;
  struct Impl;
  explicit EtcdWatch(Impl* impl) : impl_(impl) {}
  Impl* impl_;
};

class EtcdClient {
 public:
  using Done = std::function<void(const EtcdStatus&)>;
  using RangeDone =
      std::function<void(const EtcdStatus&, int64_t revision, std::vector<EtcdKv> kvs, bool more)>;
  using PutDone = std::function<void(const EtcdStatus&, int64_t revision)>;
  using DelDone = std::function<void(const EtcdStatus&, int64_t revision, int64_t deleted)>;
  using TxnDone = std::function<void(const EtcdStatus&, const EtcdTxnResult&)>;
  using CasDone = std::function<void(const EtcdStatus&, bool succeeded, int64_t revision,
                                     std::optional<EtcdKv> current)>;
  // ttl 0 from a keepalive: the lease is gone.
  using LeaseDone = std::function<void(const EtcdStatus&, int64_t id, int64_t ttl)>;

  EtcdClient(uv_loop_t* loop, EtcdSettings settings);
  ~EtcdClient();
  EtcdClient(const EtcdClient&) = delete;
  EtcdClient& operator=(const EtcdClient&) = delete;

  void range(const std::string& key, const std::string& range_end, RangeDone done);
  void range(const std::string& key, const std::string& range_end, const EtcdRangeOptions& options,
             RangeDone done);
  void put(const std::string& key, const std::string& value, int64_t lease, PutDone done);
  void del(const std::string& key, const std::string& range_end, DelDone done);
  void txn(const EtcdTxn& txn, TxnDone done);
  void cas(const EtcdCas& cas, CasDone done);
  void lease_grant(int64_t ttl_s, LeaseDone done);
  void lease_keepalive(int64_t id, LeaseDone done);
  void lease_revoke(int64_t id, Done done);
  // Watches [key, range_end) from start_revision (0 = from now), with prev_kv.
  std::unique_ptr<EtcdWatch> watch(std::string key, std::string range_end, int64_t start_revision,
                                   EtcdWatchHandler handler);

  const std::string& current_endpoint() const;
  // An endpoint answered (false until the first answer, and after kUnavailable).
  bool up() const { return up_; }
  const EtcdStatus& last_error() const { return last_error_; }
  // Drops every pending callback, stops every watch (their handlers are not called again).
  void close();

 private:
  struct Op;
  struct Deferred;
  friend struct EtcdWatch::Impl;

  void run(const std::shared_ptr<Op>& op);
  void send(const std::shared_ptr<Op>& op);
  void answer(const std::shared_ptr<Op>& op, size_t endpoint, const HttpError& error,
              const HttpResponse& response);
  void fail_over(const std::shared_ptr<Op>& op, size_t endpoint, EtcdStatus status);
  void finish(const std::shared_ptr<Op>& op, const EtcdStatus& status);
  // Runs `then` once a token is at hand (at once without auth).
  void with_token(std::function<void(const EtcdStatus&)> then);
  void authenticate();
  void drop_token(const std::string& token);
  std::vector<std::pair<std::string, std::string>> headers() const;
  void note(const EtcdStatus& status);
  void defer(std::function<void()> fn);
  void call(std::string path, std::string body, bool write,
            std::function<void(const EtcdStatus&, const nlohmann::json& answer)> done);

  uv_loop_t* loop_;
  EtcdSettings settings_;
  std::unique_ptr<HttpClient> http_;
  Deferred* deferred_ = nullptr;
  size_t current_ = 0;
  bool up_ = false;
  bool closed_ = false;
  EtcdStatus last_error_;
  std::string token_;
  bool authenticating_ = false;
  std::vector<std::function<void(const EtcdStatus&)>> waiting_token_;
  uint64_t next_watch_id_ = 1;
  std::unordered_map<uint64_t, EtcdWatch::Impl*> watches_;
};

}  // namespace weir::proxy
