// Validated, immutable weir configuration. Produced only by config::load_*; no other module
// sees TOML. Every field has its default here, so a Config{} is a valid empty config.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace weir::config {

// Where a value came from, for error messages and for `weir --check` output.
struct SourceLoc {
  std::string file;
  int line = 0;
  int column = 0;
};

// "host:port" split; host is an IPv4/IPv6 literal or a DNS name (resolved by proxy/).
struct HostPort {
  std::string host;
  uint16_t port = 0;
  std::string to_string() const;  // "[::1]:80" for IPv6 literals
};

struct ProxySettings {
  unsigned workers = 0;  // 0 = number of cores
  uint32_t connect_timeout_ms = 2000;
  uint32_t request_header_timeout_ms = 10000;   // first byte of a request → end of its headers (408)
  uint32_t body_timeout_ms = 30000;             // no body progress in either direction
  uint32_t upstream_response_timeout_ms = 30000;  // request sent → response headers (504)
  uint32_t keepalive_timeout_ms = 60000;        // idle downstream keep-alive connection
  uint32_t drain_timeout_ms = 10000;            // SIGTERM: wait for in-flight requests
  uint32_t max_header_bytes = 64 * 1024;        // whole request header block (431)
  uint32_t max_headers = 100;                   // header fields per request (431)
  uint32_t max_request_line = 8 * 1024;         // method + target + version (414)
  uint64_t max_request_body_bytes = 0;          // 0 = unlimited; else 413
  uint32_t upstream_max_idle = 1024;            // idle pooled connections per endpoint per worker
  uint32_t upstream_idle_timeout_ms = 30000;
  std::string via = "weir";                     // pseudonym in the Via header; "" disables Via
  std::string request_id_header = "x-request-id";  // "" disables generation
  std::string access_log;                       // "" = off, "-" = stdout, else a file path
  std::string version_header = "x-weir-version";   // response header naming the version; "" off
  SourceLoc loc;
};

// One certificate chain and its key for a TLS listener. Paths are absolute, or relative to the
// config file's folder (resolved by the loader). The files are read by proxy/, not here.
struct TlsCertificate {
  std::string cert;
  std::string key;
  SourceLoc cert_loc;
  SourceLoc key_loc;
};

struct ListenerTls {
  std::vector<TlsCertificate> certificates;  // at least one; the first is the SNI default
  uint32_t handshake_timeout_ms = 10000;
  bool session_tickets = true;
  // Client certificates (mTLS): verified against client_ca when verify is not kOff.
  enum class ClientVerify : uint8_t { kOff, kOptional, kRequire };
  std::string client_ca;
  SourceLoc client_ca_loc;
  ClientVerify client_verify = ClientVerify::kOff;  // kRequire when client_ca is set
  // Request header carrying the verified client certificate's subject upstream ("" = none);
  // any copy a client sends is removed.
  std::string client_subject_header;
};

struct Listener {
  std::string name;
  HostPort address;
  std::optional<ListenerTls> tls;
  // `protocols`: HTTP/1.1 and HTTP/2 (h2 by ALPN on TLS, h2c by prior knowledge on plain).
  // Default: ["http1"] on plain listeners, ["h2", "http1"] on TLS listeners.
  bool http1 = true;
  bool h2 = false;
  SourceLoc loc;
};

// An inclusive range of HTTP status codes ("200-299", or 204 alone as 204-204).
struct StatusRange {
  uint16_t lo = 200;
  uint16_t hi = 299;
};

// Active health probing ([service.health_check], overridable per version). Disabled unless the
// table is present.
struct HealthCheck {
  bool enabled = false;
  std::string path = "/healthz";
  std::string host;                  // Host header; "" = the endpoint's host:port
  uint32_t interval_ms = 5000;
  uint32_t timeout_ms = 1000;
  uint32_t jitter_ms = 0;            // each interval is lengthened by up to this much, at random
  uint32_t healthy_threshold = 2;    // consecutive passes to mark an unhealthy endpoint up
  uint32_t unhealthy_threshold = 3;  // consecutive failures to mark a healthy endpoint down
  std::vector<StatusRange> expected_status;  // empty = 200-299
};

// Passive outlier ejection ([service.outlier_detection]); disabled unless the table is present.
struct OutlierDetection {
  bool enabled = false;
  uint32_t consecutive_failures = 5;   // 5xx responses or connect failures in a row
  uint32_t ejection_ms = 30000;        // first ejection; the n-th lasts n times as long
  uint32_t max_ejection_ms = 300000;
  uint32_t max_ejection_percent = 50;  // of a version's endpoints (at least one may always go)
};

// Sticky version assignment: where the per-user key comes from.
struct Sticky {
  enum class Source : uint8_t { kNone, kHeader, kCookie, kClientIp };
  Source source = Source::kNone;
  std::string name;  // header (lower-case) or cookie name
  std::string salt;  // "" = the service name
};

// Shadow traffic: a copy of `percent`% of requests goes to `version`; responses are discarded.
struct Mirror {
  std::string version;  // "" = no mirroring
  uint32_t percent = 100;  // of the requests whose chosen version is not `version`
  uint64_t max_body_bytes = 65536;  // requests with a larger body are not mirrored
  uint32_t max_in_flight = 64;  // per worker: copies beyond this are dropped (and counted)
};

// Client-side TLS to a version's endpoints ([service.tls], overridable per version by
// [service.version.tls]). Off unless a table is present. Paths are resolved like certificates';
// the files are read by proxy/ (at load and every reload).
struct UpstreamTls {
  bool enabled = false;
  std::string sni;      // "" = the endpoint's host when it is a name (none for an IP literal)
  std::string ca_file;  // "" = the system trust store
  bool verify = true;   // verify the chain and the name (sni, else the endpoint's host)
  std::string cert;     // client certificate for upstream mTLS; with key, or neither
  std::string key;
  SourceLoc loc, ca_loc, cert_loc, key_loc;
};

// What a version's endpoints speak: HTTP/1.1, or HTTP/2 (h2 by ALPN over TLS, h2c on plain).
enum class UpstreamProtocol : uint8_t { kHttp1, kH2 };

struct Version {
  std::string name;
  uint32_t weight = 0;
  std::vector<HostPort> endpoints;
  HealthCheck health_check;  // the service's, with this version's overrides applied
  SourceLoc loc;
  UpstreamTls tls = {};      // the service's, with this version's overrides applied
  UpstreamProtocol protocol = UpstreamProtocol::kHttp1;
};

// One header an outgoing call carries. The value may come from a file or the environment
// (read at load and at every reload); header values are never logged, echoed or audited.
struct HookHeader {
  std::string name;
  std::string value;
  enum class Source : uint8_t { kLiteral, kFile, kEnv };
  Source source = Source::kLiteral;
  std::string from;  // the file or environment variable it came from
};

// Where an outgoing HTTP call goes: http:// or https:// URL, TLS files for https, headers.
struct OutgoingTarget {
  std::string url;
  std::string ca_file;  // "" = the system trust store
  std::string cert;     // client certificate (mTLS), with key; or neither
  std::string key;
  bool verify = true;
  uint32_t timeout_ms = 5000;
  std::vector<HookHeader> headers;
};

// [[service.hook]]: an outgoing HTTP call at a point of the release process (Flagger's webhook
// types). Every call is a POST of a JSON body naming the service, the version, the hook's
// type and its metadata.
struct Hook {
  enum class Type : uint8_t {
    kEvent,                   // every audited change of the service; fire and forget
    kPreRollout,              // before the first step gets traffic; `threshold` failures abort
    kRollout,                 // each guard interval during a step; a failure is a breach
    kConfirmRollout,          // the first step waits for a 2xx
    kConfirmTrafficIncrease,  // every weight increase waits for a 2xx
    kConfirmPromotion,        // the promotion waits for a 2xx
    kPostRollout,             // after promotion or abort; failures only logged
    kRollback,                // polled during a rollout; a 2xx aborts it
  };
  std::string name;
  Type type = Type::kEvent;
  OutgoingTarget target;
  uint32_t retries = 2;         // further attempts after no answer, a 5xx or a 429, with backoff
  uint32_t backoff_ms = 500;    // the first retry's delay; doubled for each further one
  uint32_t interval_ms = 1000;  // confirm-*, rollback, pre-rollout: time between polls
  uint32_t threshold = 1;       // pre-rollout: failed calls that abort the rollout
  bool slack = false;           // event: a Slack-compatible body {"text": "..."} (format)
  std::vector<std::pair<std::string, std::string>> metadata;  // sent along, in order
  SourceLoc loc;
};
const char* to_string(Hook::Type t);  // "event", "pre-rollout", ...

// [[service.guard.query]]: a KPI the proxy cannot see, read from a Prometheus server's
// /api/v1/query and judged like the built-in rules.
struct KpiQuery {
  std::string name;
  OutgoingTarget target;  // url: the Prometheus server's base URL
  std::string query;      // PromQL with {{service}}, {{version}}, {{stable}}, {{window}}
  std::optional<double> max, min;  // at least one
  uint32_t interval_ms = 0;        // 0 = the guard's interval_ms
  enum class NoData : uint8_t { kHold, kFail, kPass };
  NoData on_no_data = NoData::kHold;
  SourceLoc loc;
};

// [service.guard]: when a non-stable version breaks these, its weight reverts to 0.
struct GuardConfig {
  bool enabled = false;                 // on when the table is present, unless enabled = false
  uint32_t interval_ms = 1000;
  uint32_t window_s = 30;
  uint64_t min_requests = 100;
  double max_error_rate = -1;           // < 0: not checked
  uint32_t max_p99_ms = 0;              // 0: not checked
  uint32_t max_p50_ms = 0;
  double max_error_rate_increase = -1;  // canary minus stable; < 0: not checked
  double max_p99_ratio = 0;             // canary p99 / stable p99; 0: not checked
  double confidence = 0.95;             // one-sided, for the error-rate tests
  uint32_t consecutive = 3;             // breaches in a row that revert
  uint32_t revert_ramp_ms = 0;          // 0: revert at once; else step the weight down over this
  std::vector<KpiQuery> queries;        // [[service.guard.query]]
  // Latency against stable by a one-sided Mann-Whitney U test over both versions' histograms in
  // the same window: breached when the canary is slower at latency_confidence and its median is
  // at least min_latency_increase_ms above stable's. < 0: not checked.
  double min_latency_increase_ms = -1;
  double latency_confidence = 0.98;
  // Dry run: breaches of these rules (by their key, "max_error_rate", "min_latency_increase_ms",
  // ...; `dry_run = true` is all of them) are recorded, never acted on.
  std::vector<std::string> dry_run;
  bool dry_run_all = false;
  bool is_dry(std::string_view rule) const {
    if (dry_run_all) return true;
    for (const auto& r : dry_run) {
      if (r == rule) return true;
    }
    return false;
  }
  SourceLoc loc;
};

// A time zone read from the system's tz database (/usr/share/zoneinfo, TZif files) at load:
// UTC offsets by instant, so change windows are judged without touching the process's TZ.
class TimeZone;

// One entry of [service.rollout] windows: days of the week and a local time span in a zone
// ("Mon-Fri 09:00-16:00 Europe/Berlin"). An end at or before the start spans midnight, and the
// window belongs to the day it opens on.
struct ChangeWindow {
  std::string text;           // as written, for messages
  uint8_t days = 0;           // bit d set: open on weekday d (0 = Sunday)
  uint32_t start_min = 0;     // minutes after local midnight
  uint32_t end_min = 0;
  std::string zone = "UTC";
  std::shared_ptr<const TimeZone> tz;  // never null once loaded
  SourceLoc loc;
};

// One entry of [service.rollout] steps: a weight held for its bake time, or a pause that keeps
// the previous step's weight.
struct RolloutStep {
  uint32_t weight = 0;   // percent of traffic on the version (a pause: the previous step's)
  bool pause = false;
  uint32_t pause_s = 0;  // a pause's length; 0 = until an operator resumes (or approves) it
  uint32_t step_s = 0;   // a weight step's own bake time; 0 = the plan's step_s
  SourceLoc loc;
};

// [service.rollout]: ramp `version` through `steps` (percent of traffic, or pauses), each held
// `step_s` with the guard passing throughout; 100 promotes it to stable.
struct RolloutConfig {
  bool present = false;
  std::string version;
  std::vector<RolloutStep> steps;  // weights increasing, each 1..100, ending at 100
  uint32_t step_s = 60;
  uint32_t max_step_s = 600;    // a step not passed by then pauses the rollout
  bool auto_start = false;      // start when weir starts (else through the admin API)
  // Separation of duties: approvals from tokens other than the starter's needed at each gate
  // (the promotion and the end of every pause step).
  uint32_t approvals = 0;
  std::vector<ChangeWindow> windows;  // empty = any time; else steps advance only inside one
  // Finish a weight step early once the guard passes with at least this many requests in its
  // window and every error-rate rule passes significantly (0 = off; see health/rollout.h).
  uint64_t success_after = 0;
  SourceLoc loc;

  // A step's bake time (its own step_s, else the plan's; a pause's pause_s).
  uint32_t bake_s(size_t i) const {
    const RolloutStep& s = steps[i];
    return s.pause ? s.pause_s : s.step_s ? s.step_s : step_s;
  }
};

struct Service {
  enum class Balance : uint8_t { kRoundRobin, kLeastRequest };

  std::string name;
  std::string stable;  // name of the fallback version; always one of `versions`
  std::vector<Version> versions;
  std::string override_header;  // lower-case; "" = no override by header
  std::string override_cookie;  // "" = no override by cookie
  bool override_strict = false;  // an unusable override answers 503 instead of falling through
  Sticky sticky;
  std::string assign_cookie;  // "" = off; else keyless clients get a bucket cookie
  Balance balance = Balance::kRoundRobin;
  uint32_t slow_start_ms = 0;  // 0 = new endpoints and revived versions take full share at once
  HealthCheck health_check;
  UpstreamTls tls;  // default for the versions
  UpstreamProtocol protocol = UpstreamProtocol::kHttp1;
  OutlierDetection outlier;
  Mirror mirror;
  GuardConfig guard;
  RolloutConfig rollout;
  std::vector<Hook> hooks;  // [[service.hook]], in file order
  SourceLoc loc;
};

struct Route {
  std::string listener;       // a Listener::name
  std::string host = "*";     // "*", "*.example.com" or an exact host (lower-cased, no port)
  std::string path_prefix = "/";
  std::string service;        // a Service::name
  SourceLoc loc;
};

// One admin API bearer token, from [admin] tokens_file. Only the SHA-256 of the token is ever
// held, so neither the config nor a memory dump gives the token away.
struct AdminToken {
  enum class Scope : uint8_t { kRead, kWrite };
  std::string name;  // the audit log's actor
  Scope scope = Scope::kRead;
  // May approve rollouts at their gates (scope "approve", alone or with "write"); approving
  // needs it even for a write token.
  bool approve = false;
  std::array<uint8_t, 32> sha256{};
  SourceLoc loc;
};

// [admin]: the admin API listener. Off unless the table is present (a fixed default port would
// collide between several weir processes on one machine).
struct AdminSettings {
  bool enabled = false;
  HostPort address{"127.0.0.1", 9901};
  std::string tokens_file;  // required when enabled; relative to the config file's directory
  std::string state_dir;    // "" = runtime state and audit log live in memory only
  bool open_healthz = true;   // /healthz without a token
  bool open_metrics = false;  // /metrics without a token
  std::vector<AdminToken> tokens;  // read from tokens_file at load (and at every reload)
  // [admin.tls]: HTTPS (and optionally mTLS) on the admin listener. One certificate (cert, key);
  // client_ca, client_verify and handshake_timeout_ms as on a listener; no subject header.
  std::optional<ListenerTls> tls;
  SourceLoc loc;
};

// One access log field, by its name in `[log] access_fields`.
enum class AccessField : uint8_t {
  kTime, kClient, kMethod, kHost, kPath, kProtocol, kListener, kRoute, kService, kVersion,
  kUpstream, kStatus, kUpstreamStatus, kFlags, kLocalReason, kBytes, kRequestBytes, kDurationMs,
  kUpstreamConnectMs, kUpstreamResponseMs, kRetries, kUserAgent, kRequestId, kTraceId,
};
// Names in enum order.
inline constexpr std::string_view kAccessFieldNames[] = {
    "time",     "client",  "method",   "host",     "path",
    "protocol", "listener", "route",   "service",  "version",
    "upstream", "status",  "upstream_status", "flags", "local_reason",
    "bytes",    "request_bytes", "duration_ms", "upstream_connect_ms", "upstream_response_ms",
    "retries",  "user_agent", "request_id", "trace_id",
};

// [log]: how the error log (stderr) and the access log ([proxy] access_log) are written.
struct LogSettings {
  enum class Format : uint8_t { kText, kJson };
  Format format = Format::kText;         // error log: text lines or JSON lines
  Format access_format = Format::kJson;  // access log: JSON lines or key=value text
  std::vector<AccessField> access_fields = default_access_fields();  // in this order
  SourceLoc loc;

  static std::vector<AccessField> default_access_fields() {
    std::vector<AccessField> all;
    for (size_t i = 0; i < std::size(kAccessFieldNames); ++i)
      all.push_back(static_cast<AccessField>(i));
    return all;
  }
};

// [fleet]: replicas with the same etcd prefix share runtime state, reverts, rollouts and the
// audit trail (proxy/fleet_store.h).
struct FleetSettings {
  bool enabled = false;
  std::string store = "etcd";
  std::vector<std::string> endpoints;  // http:// or https:// URLs of etcd members
  std::string prefix;                  // starts and ends with '/'
  std::string replica;                 // "" = host name + ":" + admin port
  uint32_t timeout_ms = 2000;          // every etcd call
  uint32_t lease_ttl_s = 10;           // leader and membership leases
  uint32_t publish_ms = 1000;          // how often a replica publishes its window summaries
  std::string ca_file, cert, key;      // https endpoints: CA, and a client certificate
  std::string username, password_file;
  std::string password;  // read from password_file at load (never logged)
  SourceLoc loc;
};

struct Config {
  std::string path;  // the file it was read from ("" for embedded configs)
  ProxySettings proxy;
  LogSettings log;
  AdminSettings admin;
  FleetSettings fleet;
  std::vector<Listener> listeners;
  std::vector<Service> services;
  std::vector<Route> routes;
  // Where each key and table of the file was written, by dotted path ("listener[1].address",
  // "service[0].version[1].endpoints[0]"), for messages about values found wrong after loading.
  // Shared: configs are copied for every snapshot (runtime weights applied).
  std::shared_ptr<const std::map<std::string, SourceLoc, std::less<>>> locs;
  // locs[key], else `fallback`.
  SourceLoc where(std::string_view key, const SourceLoc& fallback = {}) const;
  bool has(std::string_view key) const { return locs && locs->find(key) != locs->end(); }
};

struct Error {
  SourceLoc loc;
  std::string key;      // dotted path, e.g. "service[0].version[1].weight"
  std::string message;  // what is wrong and what to do
  // "file:line:col: key: message"
  std::string to_string() const;
};

struct LoadResult {
  std::optional<Config> config;  // set only when errors is empty
  std::vector<Error> errors;
};

LoadResult load_file(const std::string& path);
// `source_name` stands for the file name in errors (e.g. "<demo>").
LoadResult load_string(std::string_view toml_text, const std::string& source_name);

// Whether two listening addresses take each other's connections: the same port and the same
// address, or a wildcard ("0.0.0.0" for IPv4, "::" for both families) that covers the other.
// Port 0 (any free port) overlaps nothing. Hosts that are names compare as written.
bool addresses_overlap(const HostPort& a, const HostPort& b);

// Listeners on one address (or on the admin listener's): one error per listener that repeats
// an earlier one, at its `address`. load_* refuses these; proxy/ runs it again on resolved hosts.
std::vector<Error> listener_address_conflicts(const Config& config);

// Settings that load but can hardly be what the operator meant (a guard that can never fire, a
// service no route uses, ...), at the key's file:line:col. `weir --check` prints them.
std::vector<Error> warnings(const Config& config);

// A few lines for `weir --check`: listeners, routes, services with their versions' weights and
// guards.
std::string summary(const Config& config);

// Parses "host:port" / "[v6]:port"; nullopt when malformed or port is 0 and !allow_port_zero.
std::optional<HostPort> parse_host_port(std::string_view s, bool allow_port_zero);

}  // namespace weir::config
