// weirctl: the admin API from a shell. One blocking HTTP/1.1 request per call (two for
// set-weights: GET for the ETag, then PUT with If-Match), tables for people, --json for scripts;
// `get --watch` and `events --follow` poll until SIGINT. https:// URLs go over TLS (OpenSSL),
// verifying weir's certificate and host name by default.
#include <arpa/inet.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/version.h"
#include "proxy/weirctl_completion.h"

namespace {

using nlohmann::json;

constexpr const char* kUsage =
    "usage: weirctl [--admin URL] [--token TOKEN | --token-file FILE] [--json]\n"
    "               [--cacert FILE] [--cert FILE --key FILE] [--insecure] COMMAND [ARGS]\n"
    "commands:\n"
    "  status [SERVICE]                       services, versions, weights, rollout, req/s,\n"
    "                                         error rate and p99 (10 s window), endpoints\n"
    "  get SERVICE [--watch [--interval S]]   one service in detail: rollout step and timing,\n"
    "                                         versions; --watch redraws it every S seconds\n"
    "                                         (default 2) until Ctrl-C\n"
    "  set-weights SERVICE VERSION=WEIGHT... [--reason TEXT] [--force]\n"
    "                                         fetches the ETag and sends it as If-Match;\n"
    "                                         --force sends If-Match: *\n"
    "  promote SERVICE VERSION [--reason TEXT]   VERSION becomes stable with 100%\n"
    "  rollback SERVICE [--to-previous] [--reason TEXT]\n"
    "                                         all traffic to the stable version; with\n"
    "                                         --to-previous, the stable before the last promotion\n"
    "  guard SERVICE on|off [--reason TEXT]   turn the service's guard on or off\n"
    "  explain SERVICE                        the guard's decisions\n"
    "  rollout SERVICE start|pause|resume|abort|promote [--reason TEXT]\n"
    "  rollout SERVICE approve --reason TEXT  approve the gate the rollout waits at\n"
    "  events [--since SEQ] [--limit N] [--follow [--interval S]]\n"
    "                                         the audit log after SEQ (the newest N of it);\n"
    "                                         --follow then prints new events as they come,\n"
    "                                         polling every S seconds (default 1)\n"
    "  fleet                                  the fleet: replicas, leader, store (fleet mode)\n"
    "  reload                                 re-read the configuration file\n"
    "  metrics                                the Prometheus exposition\n"
    "  health                                 /healthz\n"
    "  completion bash                        the bash completion script:\n"
    "                                         source <(weirctl completion bash)\n"
    "--admin defaults to $WEIR_ADMIN, else http://127.0.0.1:9901. The token comes from\n"
    "--token (visible to other users in ps: prefer a file) or --token-file, else $WEIR_TOKEN.\n"
    "https:// admin URLs: weir's certificate is verified against --cacert ($WEIR_CACERT;\n"
    "default: the system CAs) and must name the URL's host; --insecure skips both checks.\n"
    "--cert/--key ($WEIR_CERT/$WEIR_KEY): a client certificate, for an admin listener with\n"
    "client_ca (mTLS).\n"
    "--json: the API's answer; with --watch or --follow one JSON document a line.\n"
    "exit status: 0 done (also a watch or follow ended by SIGINT/SIGTERM), 1 the API refused\n"
    "or failed, 2 usage, 3 weir unreachable (or the TLS handshake with it failed)\n";

// Why weirctl stops: an exit status and the one line it prints.
struct Failure {
  int code;
  std::string message;
};
// SIGINT or SIGTERM during --watch / --follow: the normal end of those.
struct Stopped {};

volatile std::sig_atomic_t g_stop = 0;
int g_timeout_ms = 10000;
// The audit events the API keeps and answers at most at once (its limit's maximum).
constexpr size_t kKeptEvents = 10000;

[[noreturn]] void die(int code, const std::string& message) { throw Failure{code, message}; }

// A usage error: one line, exit status 2.
[[noreturn]] void usage(const std::string& message) {
  die(2, message + " (weirctl --help shows the usage)");
}

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
};

struct Options {
  std::string host = "127.0.0.1";
  std::string port = "9901";
  bool https = false;
  std::string token;
  bool json = false;
  std::string cacert, cert, key;  // https only
  bool insecure = false;
};

bool parse_url(std::string_view url, Options& o) {
  o.https = url.starts_with("https://");
  if (url.starts_with("http://")) url.remove_prefix(7);
  if (o.https) url.remove_prefix(8);
  if (url.ends_with("/")) url.remove_suffix(1);
  if (url.empty() || url.find('/') != std::string_view::npos) return false;
  size_t colon = url.rfind(':');
  std::string_view host = url, port = o.https ? "443" : "80";
  if (colon != std::string_view::npos && url.back() != ']') {
    host = url.substr(0, colon);
    port = url.substr(colon + 1);
  }
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (host.empty() || port.empty()) return false;
  o.host = host;
  o.port = port;
  return true;
}

// Waits until fd is ready for `events`; false on timeout. A stop signal ends the wait.
bool wait_fd(int fd, short events) {
  pollfd p{fd, events, 0};
  int rc;
  do {
    rc = ::poll(&p, 1, g_timeout_ms);
    if (g_stop) throw Stopped{};
  } while (rc < 0 && errno == EINTR);
  return rc > 0;
}

// Sleeps `seconds`, or until a stop signal (then throws Stopped).
void nap(double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!g_stop) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    if (left.count() <= 0) return;
    ::poll(nullptr, 0, static_cast<int>(left.count()));
  }
  throw Stopped{};
}

void on_stop_signal(int) { g_stop = 1; }

// SIGINT and SIGTERM end a watch or follow cleanly (exit status 0).
void catch_stop_signals() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

// The reason of the last OpenSSL error, and clears the queue.
std::string tls_error() {
  unsigned long e = ERR_peek_last_error();
  ERR_clear_error();
  if (e == 0) return "the connection closed";
  const char* reason = ERR_reason_error_string(e);
  return reason ? reason : "error " + std::to_string(e);
}

// A client SSL_CTX for o: TLS 1.2+, the CA to verify weir with, the client certificate.
// Unusable files end weirctl with status 2, as other bad arguments do.
SSL_CTX* client_context(const Options& o) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) die(3, "cannot create a TLS context: " + tls_error());
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // weir ends each answer with Content-Length and Connection: close; a missing close_notify
  // after it is harmless.
  SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
  static constexpr unsigned char kAlpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  SSL_CTX_set_alpn_protos(ctx, kAlpn, sizeof kAlpn);
  if (!o.insecure) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    const bool loaded = o.cacert.empty()
                            ? SSL_CTX_set_default_verify_paths(ctx) == 1
                            : SSL_CTX_load_verify_locations(ctx, o.cacert.c_str(), nullptr) == 1;
    if (!loaded)
      die(2, "--cacert " + o.cacert + ": not a readable PEM CA file (" + tls_error() + ")");
  }
  if (o.cert.empty() != o.key.empty()) die(2, "--cert and --key go together");
  if (!o.cert.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, o.cert.c_str()) != 1)
      die(2, "--cert " + o.cert + ": not a readable PEM certificate (" + tls_error() + ")");
    if (SSL_CTX_use_PrivateKey_file(ctx, o.key.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1)
      die(2, "--key " + o.key + ": not the PEM private key of " + o.cert + " (" + tls_error() +
                 ")");
  }
  return ctx;
}

// One connection to the admin listener, plain or TLS, on a non-blocking socket: every wait is
// bounded by g_timeout_ms, and every failure ends weirctl with status 3.
class Conn {
 public:
  explicit Conn(const Options& o)
      : where_((o.https ? "https://" : "http://") + o.host + ":" + o.port) {}
  ~Conn() {
    if (ssl_) SSL_free(ssl_);
    if (ctx_) SSL_CTX_free(ctx_);
    if (fd_ >= 0) ::close(fd_);
  }
  const std::string& where() const { return where_; }

  void connect(const Options& o) {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (int rc = ::getaddrinfo(o.host.c_str(), o.port.c_str(), &hints, &res); rc != 0)
      die(3, "cannot resolve " + where_ + ": " + gai_strerror(rc));
    fd_ = ::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int rc = fd_ < 0 ? -1 : ::connect(fd_, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (rc != 0 && errno == EINPROGRESS) {
      int err = ETIMEDOUT;
      socklen_t len = sizeof err;
      if (wait_fd(fd_, POLLOUT)) ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
      rc = err == 0 ? 0 : -1;
      errno = err;
    }
    if (rc != 0) die(3, "cannot connect to " + where_ + ": " + std::strerror(errno));
    if (o.https) handshake(o);
  }

  void send_all(const std::string& data) {
    for (size_t off = 0; off < data.size();) {
      if (ssl_) {
        ERR_clear_error();
        int n = SSL_write(ssl_, data.data() + off, static_cast<int>(data.size() - off));
        if (n > 0) {
          off += static_cast<size_t>(n);
        } else if (!tls_wait(n, "sending to")) {
          die(3, "cannot send to " + where_ + ": " + tls_failure());
        }
        continue;
      }
      ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        if (!wait_fd(fd_, POLLOUT)) die(3, "timed out sending to " + where_);
        continue;
      }
      if (n <= 0) die(3, "cannot send to " + where_ + ": " + std::strerror(errno));
      off += static_cast<size_t>(n);
    }
  }

  // Everything until the server closes the stream.
  std::string read_all() {
    std::string raw;
    char buf[16384];
    while (true) {
      if (ssl_) {
        ERR_clear_error();
        int n = SSL_read(ssl_, buf, sizeof buf);
        if (n > 0) {
          raw.append(buf, static_cast<size_t>(n));
        } else if (SSL_get_error(ssl_, n) == SSL_ERROR_ZERO_RETURN) {
          break;
        } else if (!tls_wait(n, "waiting for")) {
          // OpenSSL reports a plain EOF as a syscall error with an empty queue.
          if (SSL_get_error(ssl_, n) == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && errno == 0)
            break;
          die(3, "cannot read from " + where_ + ": " + tls_failure());
        }
        continue;
      }
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        if (!wait_fd(fd_, POLLIN)) die(3, "timed out waiting for " + where_);
        continue;
      }
      if (n < 0) die(3, "cannot read from " + where_ + ": " + std::strerror(errno));
      if (n == 0) break;
      raw.append(buf, static_cast<size_t>(n));
    }
    return raw;
  }

 private:
  void handshake(const Options& o) {
    ctx_ = client_context(o);
    ssl_ = SSL_new(ctx_);
    if (!ssl_ || SSL_set_fd(ssl_, fd_) != 1) die(3, "cannot start TLS: " + tls_error());
    in6_addr ip;
    const bool is_ip = ::inet_pton(AF_INET, o.host.c_str(), &ip) == 1 ||
                       ::inet_pton(AF_INET6, o.host.c_str(), &ip) == 1;
    if (!is_ip) SSL_set_tlsext_host_name(ssl_, o.host.c_str());
    if (!o.insecure) {
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      const int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, o.host.c_str())
                           : X509_VERIFY_PARAM_set1_host(param, o.host.c_str(), 0);
      if (ok != 1) die(3, "cannot check the host name " + o.host + ": " + tls_error());
    }
    while (true) {
      ERR_clear_error();
      int rc = SSL_connect(ssl_);
      if (rc == 1) return;
      if (!tls_wait(rc, "the TLS handshake with"))
        die(3, "TLS handshake with " + where_ + " failed: " + tls_failure());
    }
  }

  // After an SSL call returned rc <= 0: waits for the socket when OpenSSL wants it (true), or
  // false on a real failure. Timeouts end weirctl here.
  bool tls_wait(int rc, const char* doing) {
    int err = SSL_get_error(ssl_, rc);
    if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) return false;
    if (!wait_fd(fd_, err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT))
      die(3, std::string("timed out in ") + doing + " " + where_);
    return true;
  }

  // What went wrong in TLS, with what to do about it where weirctl can tell.
  std::string tls_failure() {
    std::string why = tls_error();
    long verify = SSL_get_verify_result(ssl_);
    if (verify != X509_V_OK) {
      why = std::string("weir's certificate was not accepted: ") +
            X509_verify_cert_error_string(verify) +
            " (give the CA that signed it with --cacert, or --insecure to skip the check)";
    } else if (why.find("certificate required") != std::string::npos ||
               why.find("handshake failure") != std::string::npos ||
               why.find("unknown ca") != std::string::npos ||
               why.find("bad certificate") != std::string::npos) {
      why += " (the admin listener wants a client certificate its client_ca signed: --cert and "
             "--key)";
    } else if (why.find("wrong version number") != std::string::npos ||
               why.find("packet length too long") != std::string::npos) {
      why += " (is the admin listener plain HTTP? use an http:// URL)";
    }
    return why;
  }

  std::string where_;
  int fd_ = -1;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
};

HttpResponse http(const Options& o, const std::string& method, const std::string& target,
                  const std::string& body = "", const std::vector<std::string>& headers = {}) {
  Conn conn(o);
  conn.connect(o);
  const std::string& where = conn.where();
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: " + o.host +
                    "\r\nConnection: close\r\nUser-Agent: weirctl\r\n";
  if (!o.token.empty()) req += "Authorization: Bearer " + o.token + "\r\n";
  for (const auto& h : headers) req += h + "\r\n";
  if (!body.empty() || method == "PUT" || method == "POST")
    req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\n";
  req += "\r\n" + body;
  conn.send_all(req);
  // Connection: close, so the response ends where the stream does.
  const std::string raw = conn.read_all();

  if (raw.empty() && !o.https)
    die(3, where + " closed the connection without an answer (if its admin listener has "
               "[admin.tls], use an https:// URL)");
  HttpResponse r;
  size_t head_end = raw.find("\r\n\r\n");
  if (head_end == std::string::npos || raw.compare(0, 9, "HTTP/1.1 ") != 0)
    die(3, where + " did not answer with HTTP/1.1");
  // A status is three digits, then a space (RFC 9112 4); atoi took "2x" or "-5" as well.
  if (raw.size() < 13 || !std::isdigit(static_cast<unsigned char>(raw[9])) ||
      !std::isdigit(static_cast<unsigned char>(raw[10])) ||
      !std::isdigit(static_cast<unsigned char>(raw[11])) || raw[12] != ' ')
    die(3, where + " answered with a malformed status line");
  r.status = (raw[9] - '0') * 100 + (raw[10] - '0') * 10 + (raw[11] - '0');
  size_t pos = raw.find("\r\n") + 2;
  while (pos < head_end) {
    size_t eol = raw.find("\r\n", pos);
    std::string line = raw.substr(pos, eol - pos);
    size_t colon = line.find(':');
    if (colon != std::string::npos) {
      std::string name = line.substr(0, colon);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      size_t v = line.find_first_not_of(" \t", colon + 1);
      r.headers[name] = v == std::string::npos ? "" : line.substr(v);
    }
    pos = eol + 2;
  }
  r.body = raw.substr(head_end + 4);
  if (auto it = r.headers.find("content-length"); it != r.headers.end()) {
    r.body.resize(std::min(r.body.size(), static_cast<size_t>(std::stoull(it->second))));
  }
  return r;
}

json parse_json(const HttpResponse& r) {
  json j = json::parse(r.body, nullptr, false);
  if (j.is_discarded()) die(1, "HTTP " + std::to_string(r.status) + " with a body that is not JSON");
  return j;
}

// The JSON body of a 2xx answer; anything else ends weirctl with the API's error.
json expect_ok(const HttpResponse& r) {
  if (r.status >= 200 && r.status < 300) return parse_json(r);
  json j = json::parse(r.body, nullptr, false);
  std::string what = "HTTP " + std::to_string(r.status);
  if (!j.is_discarded() && j.is_object() && j.contains("error")) {
    what += " " + j["error"].get<std::string>();
    if (j.contains("detail")) what += ": " + j["detail"].get<std::string>();
    if (j.contains("errors") && j["errors"].size() > 1) {
      for (const auto& e : j["errors"]) what += "\n  " + e.get<std::string>();
    }
  }
  die(1, what);
}

using Rows = std::vector<std::vector<std::string>>;

// A left-aligned text table; columns at least `min_width` wide.
std::string table(const Rows& rows, const std::vector<size_t>& min_width = {}) {
  std::vector<size_t> width = min_width;
  for (const auto& row : rows) {
    if (width.size() < row.size()) width.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

std::string str(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_null()) return "-";
  return j.dump();
}

template <typename... Args>
std::string format(const char* f, Args... args) {
  char buf[128];
  std::snprintf(buf, sizeof buf, f, args...);
  return buf;
}

double number(const json& j, const char* key, double otherwise = 0) {
  return j.is_object() && j.contains(key) && j[key].is_number() ? j[key].get<double>()
                                                                 : otherwise;
}

// Milliseconds as people read them: 53us, 1.25ms, 250ms, 1.20s.
std::string fmt_ms(const json& ms) {
  if (!ms.is_number()) return "-";
  const double v = ms.get<double>();
  if (v < 1) return format("%.0fus", v * 1000);
  if (v < 10) return format("%.2fms", v);
  if (v < 1000) return format("%.1fms", v);
  return format("%.2fs", v / 1000);
}

std::string fmt_seconds(double s) {
  if (s < 60) return format("%.1fs", s);
  if (s < 3600) return format("%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  return format("%dh%02dm", static_cast<int>(s) / 3600, static_cast<int>(s) / 60 % 60);
}

// A version's traffic over the 10 s window: req/s, error rate, p99 ("-" where unknown).
std::vector<std::string> traffic(const json& version) {
  const json w = version.contains("stats") ? version["stats"].value("10s", json()) : json();
  if (!w.is_object()) return {"-", "-", "-"};
  const double rps = number(w, "rps", number(w, "requests") / 10);
  const bool answered = number(w, "requests") > 0;
  const json err = answered ? w.value("error_rate", json()) : json();
  return {format("%.1f", rps), err.is_number() ? format("%.2f%%", err.get<double>() * 100) : "-",
          answered ? fmt_ms(w.value("p99_ms", json())) : "-"};
}

// The rollout in one cell: "-", "idle", "running 2/3 50%", "promoted" ...
std::string rollout_cell(const json& ro) {
  const std::string state = ro.is_object() ? ro.value("state", "none") : "none";
  if (state == "none") return "-";
  if (state != "idle" && state != "promoted" && state != "aborted" && ro.contains("step"))
    return state + " " + std::to_string(ro["step"].get<int>() + 1) + "/" + str(ro["step_of"]) +
           " " + str(ro["weight"]) + "%";
  return state;
}

// A list of texts (or one text) as one line.
std::string joined(const json& list) {
  if (!list.is_array()) return list.is_null() ? "" : str(list);
  std::string out;
  for (const auto& x : list) out += (out.empty() ? "" : "; ") + str(x);
  return out;
}

// One step of a plan: 10 -> "10%", {"weight": 50, "step_s": 120} -> "50%/120s", a pause.
std::string step_text(const json& step) {
  if (step.is_number()) return str(step) + "%";
  if (step.is_object() && step.contains("weight"))
    return str(step["weight"]) + "%" + (step.contains("step_s") ? "/" + str(step["step_s"]) + "s" : "");
  if (step.is_object() && step.contains("pause_s")) return "pause " + str(step["pause_s"]) + "s";
  return str(step);
}

std::string endpoints_cell(const json& v) {
  std::string eps;
  for (const auto& ep : v["endpoints"]) {
    eps += (eps.empty() ? "" : ",") + ep["address"].get<std::string>();
    if (ep["health"] != "unknown") eps += "(" + ep["health"].get<std::string>() + ")";
  }
  return eps;
}

std::string services_table(const json& services) {
  Rows rows = {{"SERVICE", "STABLE", "STATE", "GUARD", "ROLLOUT", "VERSION", "WEIGHT",
                "CONFIGURED", "SHARE", "REQ/S", "ERR%", "P99", "ENDPOINTS"}};
  for (const auto& s : services) {
    bool first = true;
    for (const auto& v : s["versions"]) {
      std::vector<std::string> row = {
          first ? str(s["name"]) : "", first ? str(s["stable"]) : "",
          first ? str(s["state_version"]) : "", first ? str(s["guard"]["state"]) : "",
          first ? rollout_cell(s.value("rollout", json())) : "", str(v["name"]),
          str(v["effective_weight"]), str(v["configured_weight"]),
          format("%.1f%%", v["share"].get<double>() * 100)};
      for (auto& t : traffic(v)) row.push_back(std::move(t));
      row.push_back(endpoints_cell(v));
      rows.push_back(std::move(row));
      first = false;
    }
  }
  return table(rows);
}

// `weirctl get`: one service as an operator reads it, rollout first.
std::string service_detail(const json& s) {
  Rows facts = {{"Name:", str(s["name"])},
                {"Stable:", str(s["stable"]) + (s["stable"] == s["configured_stable"]
                                                    ? ""
                                                    : " (configured: " +
                                                          str(s["configured_stable"]) + ")")},
                {"State:", str(s["state_version"])}};
  std::string guard = str(s["guard"]["state"]);
  if (s["guard"].contains("reason") && s["guard"]["reason"] != "")
    guard += " (" + str(s["guard"]["reason"]) + ")";
  facts.push_back({"Guard:", guard});
  const json ro = s.value("rollout", json::object());
  const std::string state = ro.value("state", "none");
  if (state == "none") {
    facts.push_back({"Rollout:", "none"});
  } else {
    std::string line = state + ", version " + str(ro["version"]);
    if (ro.contains("step"))
      line += ", step " + std::to_string(ro["step"].get<int>() + 1) + " of " + str(ro["step_of"]) +
              " at " + str(ro["weight"]) + "%";
    facts.push_back({"Rollout:", line});
    std::string steps;
    for (size_t i = 0; i < ro["steps"].size(); ++i) {
      const std::string w = step_text(ro["steps"][i]);
      const bool here = ro.contains("step") && ro["step"].get<size_t>() == i;
      steps += (steps.empty() ? "" : " ") + (here ? "[" + w + "]" : w);
    }
    facts.push_back({"  Steps:", steps + " (each " + str(ro["step_s"]) + " s passing, at most " +
                                     str(ro["max_step_s"]) + " s)"});
    if (ro.contains("in_step_s"))
      facts.push_back({"  In step:", fmt_seconds(number(ro, "in_step_s")) + " (since " +
                                         str(ro["step_started"]) + ")"});
    if (ro.contains("passing_s"))
      facts.push_back({"  Passing:", fmt_seconds(number(ro, "passing_s"))});
    if (std::string w = joined(ro.value("waiting_for", json())); !w.empty())
      facts.push_back({"  Waiting for:", w});
    if (ro.contains("last_verdict")) {
      const json& v = ro["last_verdict"];
      const std::string reasons = joined(v["reasons"]);
      facts.push_back({"  Guard said:", str(v["verdict"]) + " at " + str(v["time"]) +
                                            (reasons.empty() ? "" : ": " + reasons)});
    }
    if (ro.contains("advances_at"))
      facts.push_back({"  Advances:", str(ro["advances_at"]) + " (in " +
                                          fmt_seconds(number(ro, "advances_in_s")) + ")"});
    if (ro.contains("pauses_at"))
      facts.push_back({"  Pauses:", str(ro["pauses_at"]) + " (in " +
                                        fmt_seconds(number(ro, "pauses_in_s")) +
                                        ", unless the step passes first)"});
    if (ro.value("reason", "") != "") facts.push_back({"  Last:", str(ro["reason"])});
  }
  std::string out = table(facts);
  if (s.value("stale", false))
    out += "Warning: the shared store is unreachable; this view may be behind it\n";
  Rows rows = {{"VERSION", "WEIGHT", "CONFIGURED", "SHARE", "REQ/S", "ERR%", "P99", "REQ/60S",
                "ENDPOINTS"}};
  for (const auto& v : s["versions"]) {
    std::vector<std::string> row = {str(v["name"]), str(v["effective_weight"]),
                                    str(v["configured_weight"]),
                                    format("%.1f%%", v["share"].get<double>() * 100)};
    for (auto& t : traffic(v)) row.push_back(std::move(t));
    const json w60 = v.contains("stats") ? v["stats"].value("60s", json()) : json();
    row.push_back(w60.is_object() ? str(w60["requests"]) : "-");
    row.push_back(endpoints_cell(v));
    rows.push_back(std::move(row));
  }
  return out + "\n" + table(rows);
}

const Rows kEventsHeader = {{"SEQ", "TIME", "ACTOR", "ACTION", "SERVICE", "AFTER", "REASON"}};

std::vector<std::string> event_row(const json& e) {
  return {str(e["seq"]),
          str(e["time"]),
          str(e["actor"]),
          str(e["action"]),
          e["service"] == "" ? "-" : str(e["service"]),
          e["after"].is_null() ? "-" : e["after"].dump(),
          e["reason"] == "" ? "-" : str(e["reason"])};
}

std::string events_table(const json& events) {
  Rows rows = kEventsHeader;
  for (const auto& e : events) rows.push_back(event_row(e));
  return table(rows);
}

std::string explain_table(const json& explain) {
  Rows rows = {{"TIME", "VERSION", "VERDICT", "IN_A_ROW", "REVERTED", "REASONS"}};
  for (const auto& d : explain["decisions"]) {
    const std::string reasons = joined(d["reasons"]);
    rows.push_back({str(d["time"]), str(d["version"]), str(d["verdict"]),
                    str(d["breaches_in_a_row"]), str(d["reverted"]),
                    reasons.empty() ? "-" : reasons});
  }
  return table(rows);
}

std::string fleet_table(const json& j) {
  Rows rows = {{"REPLICA", "ADMIN", "LEADER", "HEALTHY", "LAG", "LAST SEEN"}};
  for (const auto& r : j["replicas"]) {
    rows.push_back({str(r["name"]), str(r["admin_address"]),
                    j["leader"] == r["name"] ? "yes" : "", r.value("healthy", false) ? "yes" : "no",
                    str(r["lag"]), str(r["last_seen"])});
  }
  const json& st = j["store"];
  return table(rows) + "store: etcd " + str(st["endpoint"]) + ", " +
         (st.value("up", false) ? "up" : "UNREACHABLE") + ", revision " + str(st["revision"]) +
         "\n";
}

void emit(const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

void output(const Options& o, const json& j, const std::function<std::string(const json&)>& as) {
  emit(o.json ? j.dump(2) + "\n" : as(j));
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Redraws `fetch`'s view every `interval` seconds until a stop signal: in place on a terminal,
// as appended blocks (each under a time line) otherwise; with --json one document a line. An
// unreachable weir is shown and retried; any other failure ends the watch.
void watch(const Options& o, double interval, const std::string& title,
           const std::function<json()>& fetch, const std::function<std::string(const json&)>& as) {
  const bool tty = ::isatty(STDOUT_FILENO) == 1;
  while (true) {
    std::string body;
    try {
      const json j = fetch();
      body = o.json ? j.dump() + "\n" : as(j);
    } catch (const Failure& f) {
      if (f.code != 3) throw;
      body = "weirctl: " + f.message + " (retrying)\n";
      if (o.json) {
        std::fprintf(stderr, "%s", body.c_str());
        body.clear();
      }
    }
    if (o.json) {
      emit(body);
    } else {
      const std::string head = format("Every %.1fs: ", interval) + title + "    " + utc_now() +
                               "\n\n";
      // Home, clear to the end: the view replaces the last one without scrolling.
      emit(tty ? "\033[H\033[2J" + head + body : head + body + "\n");
    }
    nap(interval);
  }
}

// Prints the audit log after `since` (the newest `limit` of it, when given), then each new event
// as it comes. Every later poll asks for all the API keeps after the last sequence number seen
// (the events cursor), so nothing is printed twice and nothing the server kept is skipped.
void follow_events(const Options& o, uint64_t since, const std::string& limit, double interval) {
  uint64_t cursor = since;
  bool header = !o.json, outage = false;
  const std::vector<size_t> widths = {4, 24, 8, 14, 8, 30, 0};
  std::string page = limit.empty() ? std::to_string(kKeptEvents) : limit;
  while (true) {
    json j;
    try {
      j = expect_ok(http(o, "GET", "/api/v1/events?since=" + std::to_string(cursor) +
                                       "&limit=" + page));
    } catch (const Failure& f) {
      if (f.code != 3) throw;
      if (!outage) std::fprintf(stderr, "weirctl: %s (retrying)\n", f.message.c_str());
      outage = true;
      nap(interval);
      continue;
    }
    if (outage)
      std::fprintf(stderr, "weirctl: %s:%s answers again\n", o.host.c_str(), o.port.c_str());
    outage = false;
    const json& events = j["events"];
    if (page == std::to_string(kKeptEvents) && events.size() >= kKeptEvents)
      std::fprintf(stderr, "weirctl: more than %zu events since %llu: older ones may be missing\n",
                   kKeptEvents, static_cast<unsigned long long>(cursor));
    page = std::to_string(kKeptEvents);
    std::string text;
    if (header) {
      // Fixed widths: the rows of later answers line up under this header.
      text = table(kEventsHeader, widths);
      header = false;
    }
    for (const auto& e : events) {
      if (e["seq"].get<uint64_t>() <= cursor) continue;  // a server that ignores since
      text += o.json ? e.dump() + "\n" : table({event_row(e)}, widths);
      cursor = e["seq"].get<uint64_t>();
    }
    emit(text);
    nap(interval);
  }
}

std::string read_token_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) die(2, "cannot read token file " + path + ": " + std::strerror(errno));
  std::string token;
  std::getline(in, token);
  while (!token.empty() && (token.back() == '\r' || token.back() == ' ')) token.pop_back();
  if (token.empty()) die(2, "token file " + path + " is empty");
  return token;
}

// Names of services and versions as weir's config allows them: they go into URL paths as-is.
bool is_name(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
  });
}

std::string checked_name(const std::string& what, const std::string& s) {
  if (!is_name(s)) usage("'" + s + "' is not a " + what + " name (letters, digits, '_', '.', '-')");
  return s;
}

std::optional<double> parse_seconds(std::string s) {
  if (s.ends_with("s")) s.pop_back();
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || errno || *end != '\0' || !(v >= 0.1 && v <= 3600)) return std::nullopt;
  return v;
}

bool is_digits(const std::string& s) {
  return !s.empty() && s.size() <= 19 &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

constexpr std::string_view kRolloutOps[] = {"start", "pause", "resume", "abort", "promote",
                                            "approve"};

struct Command {
  std::vector<std::string> args;
  std::optional<std::string> reason, since, limit;
  std::optional<double> interval;
  bool force = false, watch = false, follow = false, to_previous = false;
};

// Names for the completion script (weirctl __complete services | versions SERVICE): one a line,
// nothing at all when weir cannot be asked.
int complete(const Options& o, const std::vector<std::string>& args) {
  g_timeout_ms = 1500;
  try {
    if (args.size() == 2 && args[1] == "services") {
      const json j = expect_ok(http(o, "GET", "/api/v1/services"));
      for (const auto& s : j["services"]) std::printf("%s\n", str(s["name"]).c_str());
    } else if (args.size() == 3 && args[1] == "versions" && is_name(args[2])) {
      const json j = expect_ok(http(o, "GET", "/api/v1/services/" + args[2]));
      for (const auto& v : j["versions"]) std::printf("%s\n", str(v["name"]).c_str());
    } else {
      return 2;
    }
  } catch (const Failure&) {
    return 1;
  }
  return 0;
}

int run(int argc, char** argv) {
  Options o;
  if (const char* env = std::getenv("WEIR_ADMIN"); env && *env && !parse_url(env, o))
    die(2, std::string("WEIR_ADMIN is not a URL like http://127.0.0.1:9901: ") + env);
  if (const char* env = std::getenv("WEIR_TOKEN")) o.token = env;
  if (const char* env = std::getenv("WEIR_CACERT")) o.cacert = env;
  if (const char* env = std::getenv("WEIR_CERT")) o.cert = env;
  if (const char* env = std::getenv("WEIR_KEY")) o.key = env;
  Command c;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(std::string(a) + " needs a value");
      return argv[++i];
    };
    if (a == "--admin") {
      std::string url = value();
      if (!parse_url(url, o)) usage("--admin: not a URL like http://127.0.0.1:9901: " + url);
    } else if (a == "--token") {
      o.token = value();
      if (o.token.empty()) usage("--token is empty");
    } else if (a == "--token-file") {
      o.token = read_token_file(value());
    } else if (a == "--cacert") {
      o.cacert = value();
    } else if (a == "--cert") {
      o.cert = value();
    } else if (a == "--key") {
      o.key = value();
    } else if (a == "--insecure" || a == "-k") {
      o.insecure = true;
    } else if (a == "--json") {
      o.json = true;
    } else if (a == "--reason") {
      c.reason = value();
    } else if (a == "--since") {
      c.since = value();
      if (!is_digits(*c.since)) usage("--since takes an event sequence number, not " + *c.since);
    } else if (a == "--limit") {
      c.limit = value();
      if (!is_digits(*c.limit) || std::stoull(*c.limit) < 1 || std::stoull(*c.limit) > 10000)
        usage("--limit takes a number of events from 1 to 10000, not " + *c.limit);
    } else if (a == "--interval") {
      const std::string v = value();
      c.interval = parse_seconds(v);
      if (!c.interval) usage("--interval takes seconds from 0.1 to 3600 (e.g. 2 or 0.5s), not " + v);
    } else if (a == "--watch" || a == "-w") {
      c.watch = true;
    } else if (a == "--follow" || a == "-f") {
      c.follow = true;
    } else if (a == "--force") {
      c.force = true;
    } else if (a == "--to-previous") {
      c.to_previous = true;
    } else if (a == "--help" || a == "-h") {
      std::printf("%s", kUsage);
      return 0;
    } else if (a == "--version") {
      std::printf("weirctl %s\n", weir::proxy::kWeirVersion);
      return 0;
    } else if (a.starts_with("-") && a.size() > 1) {
      usage("unknown option " + std::string(a));
    } else {
      c.args.emplace_back(a);
    }
  }
  if (c.args.empty()) usage("no command");
  const std::string cmd = c.args[0];
  const std::vector<std::string>& args = c.args;
  if (cmd == "__complete") return complete(o, args);

  // Each option belongs to some commands; elsewhere it is a mistake, not something to ignore.
  auto only = [&](bool given, const char* option, std::initializer_list<std::string_view> cmds) {
    if (given && std::find(cmds.begin(), cmds.end(), cmd) == cmds.end())
      usage(std::string(option) + " does not go with " + cmd);
  };
  only(c.reason.has_value(), "--reason",
       {"set-weights", "promote", "rollback", "guard", "rollout"});
  only(c.force, "--force", {"set-weights"});
  only(c.to_previous, "--to-previous", {"rollback"});
  only(c.since.has_value(), "--since", {"events"});
  only(c.limit.has_value(), "--limit", {"events"});
  only(c.follow, "--follow", {"events"});
  only(c.watch, "--watch", {"get"});
  if (c.interval && !c.watch && !c.follow) usage("--interval goes with get --watch or events --follow");
  auto need = [&](size_t min, size_t max) {
    if (args.size() - 1 < min || args.size() - 1 > max)
      usage("wrong number of arguments for " + cmd);
  };
  json with_reason = json::object();
  if (c.reason) with_reason["reason"] = *c.reason;
  auto show_service = [&](const json& j) { return services_table(json::array({j})); };
  const std::string service = args.size() > 1 ? args[1] : "";
  auto service_path = [&] { return "/api/v1/services/" + checked_name("service", service); };

  if (cmd == "status") {
    need(0, 1);
    if (args.size() == 2) {
      output(o, expect_ok(http(o, "GET", service_path())), show_service);
    } else {
      output(o, expect_ok(http(o, "GET", "/api/v1/services")),
             [](const json& j) { return services_table(j["services"]); });
    }
  } else if (cmd == "get") {
    need(1, 1);
    const std::string path = service_path();
    auto fetch = [&] { return expect_ok(http(o, "GET", path)); };
    if (c.watch) {
      catch_stop_signals();
      watch(o, c.interval.value_or(2.0), "weirctl get " + service, fetch, service_detail);
    }
    output(o, fetch(), service_detail);
  } else if (cmd == "set-weights") {
    if (args.size() < 3) usage("set-weights needs a service and VERSION=WEIGHT pairs");
    const std::string path = service_path();
    json weights = json::object();
    for (size_t i = 2; i < args.size(); ++i) {
      const size_t eq = args[i].find('=');
      const std::string w = eq == std::string::npos ? "" : args[i].substr(eq + 1);
      if (eq == std::string::npos || !is_name(args[i].substr(0, eq)) || !is_digits(w) ||
          w.size() > 9)
        usage("'" + args[i] + "' is not VERSION=WEIGHT (a weight is a whole number, 0 or more)");
      weights[args[i].substr(0, eq)] = std::stoll(w);
    }
    std::string etag = "*";
    if (!c.force) {
      HttpResponse current = http(o, "GET", path);
      expect_ok(current);
      etag = current.headers["etag"];
    }
    json body = with_reason;
    body["weights"] = weights;
    output(o, expect_ok(http(o, "PUT", path + "/weights", body.dump(), {"If-Match: " + etag})),
           show_service);
  } else if (cmd == "promote") {
    need(2, 2);
    json body = with_reason;
    body["version"] = checked_name("version", args[2]);
    output(o, expect_ok(http(o, "POST", service_path() + "/promote", body.dump())), show_service);
  } else if (cmd == "rollback") {
    need(1, 1);
    json body = with_reason;
    if (c.to_previous) body["to"] = "previous";
    output(o, expect_ok(http(o, "POST", service_path() + "/rollback", body.dump())),
           show_service);
  } else if (cmd == "guard") {
    need(2, 2);
    if (args[2] != "on" && args[2] != "off") usage("guard takes on or off, not " + args[2]);
    json body = with_reason;
    body["enabled"] = args[2] == "on";
    output(o, expect_ok(http(o, "POST", service_path() + "/guard", body.dump())), show_service);
  } else if (cmd == "explain") {
    need(1, 1);
    output(o, expect_ok(http(o, "GET", service_path() + "/explain")), explain_table);
  } else if (cmd == "rollout") {
    need(2, 2);
    const std::string path = service_path();
    if (std::find(std::begin(kRolloutOps), std::end(kRolloutOps), args[2]) ==
        std::end(kRolloutOps))
      usage("rollout takes start, pause, resume, abort, promote or approve, not " + args[2]);
    if (args[2] == "approve" && !c.reason)
      usage("rollout approve needs --reason TEXT: the audit log records why it was approved");
    output(o, expect_ok(http(o, "POST", path + "/rollout/" + args[2], with_reason.dump())),
           show_service);
  } else if (cmd == "fleet") {
    need(0, 0);
    output(o, expect_ok(http(o, "GET", "/api/v1/fleet")), fleet_table);
  } else if (cmd == "events") {
    need(0, 0);
    const std::string since = c.since.value_or("0");
    if (c.follow) {
      catch_stop_signals();
      follow_events(o, std::stoull(since), c.limit.value_or(""), c.interval.value_or(1.0));
    }
    std::string target = "/api/v1/events?since=" + since;
    if (c.limit) target += "&limit=" + *c.limit;
    output(o, expect_ok(http(o, "GET", target)),
           [](const json& j) { return events_table(j["events"]); });
  } else if (cmd == "reload") {
    need(0, 0);
    output(o, expect_ok(http(o, "POST", "/api/v1/reload")), [](const json& j) {
      std::string out = "reloaded (generation " + str(j["generation"]) + ")\n";
      for (const auto& s : j["reset_services"])
        out += "runtime weights reset for " + str(s) + ": its versions changed\n";
      return out;
    });
  } else if (cmd == "metrics" || cmd == "health") {
    need(0, 0);
    HttpResponse r = http(o, "GET", cmd == "metrics" ? "/metrics" : "/healthz");
    if (r.status != 200) expect_ok(r);
    emit(r.body);
  } else if (cmd == "completion") {
    need(1, 1);
    if (args[1] != "bash") usage("completion takes bash, not " + args[1]);
    emit(weir::kWeirctlCompletionBash);
  } else {
    usage("unknown command " + cmd);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const Failure& f) {
    std::fprintf(stderr, "weirctl: %s\n", f.message.c_str());
    return f.code;
  } catch (const Stopped&) {
    return 0;
  } catch (const nlohmann::json::exception& e) {
    // An answer of an unexpected shape (a JSON field of another type) is an error, not an abort.
    std::fprintf(stderr, "weirctl: unexpected answer from the admin API: %s\n", e.what());
    return 3;
  }
}
