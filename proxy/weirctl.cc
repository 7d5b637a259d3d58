// weirctl: the admin API from a shell. One blocking HTTP/1.1 request per call (two for
// set-weights: GET for the ETag, then PUT with If-Match), tables for people, --json for scripts.
// https:// URLs go over TLS (OpenSSL), verifying weir's certificate and host name by default.
#include <arpa/inet.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

using nlohmann::json;

constexpr const char* kUsage =
    "usage: weirctl [--admin URL] [--token-file FILE] [--json]\n"
    "               [--cacert FILE] [--cert FILE --key FILE] [--insecure] COMMAND [ARGS]\n"
    "commands:\n"
    "  status [SERVICE]                       services, versions, weights, endpoints\n"
    "  set-weights SERVICE VERSION=WEIGHT... [--reason TEXT] [--force]\n"
    "                                         fetches the ETag and sends it as If-Match;\n"
    "                                         --force sends If-Match: *\n"
    "  promote SERVICE VERSION [--reason TEXT]   VERSION becomes stable with 100%\n"
    "  rollback SERVICE [--reason TEXT]          all traffic to the stable version\n"
    "  guard SERVICE on|off [--reason TEXT]   turn the service's guard on or off\n"
    "  explain SERVICE                        the guard's decisions\n"
    "  rollout SERVICE start|pause|resume|abort|promote\n"
    "  events [--since SEQ]                   the audit log\n"
    "  fleet                                  the fleet: replicas, leader, store (fleet mode)\n"
    "  reload                                 re-read the configuration file\n"
    "  metrics                                the Prometheus exposition\n"
    "  health                                 /healthz\n"
    "--admin defaults to $WEIR_ADMIN, else http://127.0.0.1:9901. The token comes from\n"
    "--token-file, else $WEIR_TOKEN.\n"
    "https:// admin URLs: weir's certificate is verified against --cacert ($WEIR_CACERT;\n"
    "default: the system CAs) and must name the URL's host; --insecure skips both checks.\n"
    "--cert/--key ($WEIR_CERT/$WEIR_KEY): a client certificate, for an admin listener with\n"
    "client_ca (mTLS).\n"
    "exit status: 0 done, 1 the API refused or failed, 2 usage, 3 weir unreachable\n"
    "(or the TLS handshake with it failed)\n";

constexpr int kTimeoutMs = 10000;

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

[[noreturn]] void die(int code, const std::string& message) {
  std::fprintf(stderr, "weirctl: %s\n", message.c_str());
  std::exit(code);
}

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

// Waits until fd is ready for `events`; false on timeout.
bool wait_fd(int fd, short events) {
  pollfd p{fd, events, 0};
  int rc;
  do {
    rc = ::poll(&p, 1, kTimeoutMs);
  } while (rc < 0 && errno == EINTR);
  return rc > 0;
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
// bounded by kTimeoutMs, and every failure ends weirctl with status 3.
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

// A left-aligned text table.
void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    if (width.size() < row.size()) width.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::printf("%s\n", line.c_str());
  }
}

std::string str(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_null()) return "-";
  return j.dump();
}

void print_services(const json& services) {
  std::vector<std::vector<std::string>> rows = {
      {"SERVICE", "STABLE", "STATE", "GUARD", "VERSION", "WEIGHT", "CONFIGURED", "SHARE",
       "ENDPOINTS"}};
  for (const auto& s : services) {
    bool first = true;
    for (const auto& v : s["versions"]) {
      char share[16];
      std::snprintf(share, sizeof share, "%.1f%%", v["share"].get<double>() * 100);
      std::string eps;
      for (const auto& ep : v["endpoints"]) {
        eps += (eps.empty() ? "" : ",") + ep["address"].get<std::string>();
        if (ep["health"] != "unknown") eps += "(" + ep["health"].get<std::string>() + ")";
      }
      rows.push_back({first ? str(s["name"]) : "", first ? str(s["stable"]) : "",
                      first ? str(s["state_version"]) : "", first ? str(s["guard"]["state"]) : "",
                      str(v["name"]), str(v["effective_weight"]), str(v["configured_weight"]),
                      share, eps});
      first = false;
    }
  }
  print_table(rows);
}

void print_events(const json& events) {
  std::vector<std::vector<std::string>> rows = {
      {"SEQ", "TIME", "ACTOR", "ACTION", "SERVICE", "AFTER", "REASON"}};
  for (const auto& e : events) {
    rows.push_back({str(e["seq"]), str(e["time"]), str(e["actor"]), str(e["action"]),
                    e["service"] == "" ? "-" : str(e["service"]),
                    e["after"].is_null() ? "-" : e["after"].dump(),
                    e["reason"] == "" ? "-" : str(e["reason"])});
  }
  print_table(rows);
}

void print_explain(const json& explain) {
  std::vector<std::vector<std::string>> rows = {
      {"TIME", "VERSION", "VERDICT", "IN_A_ROW", "REVERTED", "REASONS"}};
  for (const auto& d : explain["decisions"]) {
    std::string reasons;
    for (const auto& r : d["reasons"]) reasons += (reasons.empty() ? "" : "; ") + str(r);
    rows.push_back({str(d["time"]), str(d["version"]), str(d["verdict"]),
                    str(d["breaches_in_a_row"]), str(d["reverted"]),
                    reasons.empty() ? "-" : reasons});
  }
  print_table(rows);
}

void output(const Options& o, const json& j, void (*table)(const json&)) {
  if (o.json) {
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    table(j);
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

int run(int argc, char** argv) {
  Options o;
  if (const char* env = std::getenv("WEIR_ADMIN"); env && *env && !parse_url(env, o))
    die(2, std::string("WEIR_ADMIN is not a URL like http://127.0.0.1:9901: ") + env);
  if (const char* env = std::getenv("WEIR_TOKEN")) o.token = env;
  if (const char* env = std::getenv("WEIR_CACERT")) o.cacert = env;
  if (const char* env = std::getenv("WEIR_CERT")) o.cert = env;
  if (const char* env = std::getenv("WEIR_KEY")) o.key = env;
  std::vector<std::string> args;
  std::string reason, since = "0";
  bool force = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) die(2, std::string(a) + " needs a value\n" + kUsage);
      return argv[++i];
    };
    if (a == "--admin") {
      std::string url = value();
      if (!parse_url(url, o)) die(2, "--admin: not a URL like http://127.0.0.1:9901: " + url);
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
      reason = value();
    } else if (a == "--since") {
      since = value();
    } else if (a == "--force") {
      force = true;
    } else if (a == "--help" || a == "-h") {
      std::printf("%s", kUsage);
      return 0;
    } else if (a.starts_with("--")) {
      die(2, "unknown option " + std::string(a) + "\n" + kUsage);
    } else {
      args.emplace_back(a);
    }
  }
  if (args.empty()) die(2, std::string("no command\n") + kUsage);
  const std::string& cmd = args[0];
  auto need = [&](size_t min, size_t max) {
    if (args.size() - 1 < min || args.size() - 1 > max)
      die(2, "wrong number of arguments for " + cmd + "\n" + kUsage);
  };
  json with_reason = json::object();
  if (!reason.empty()) with_reason["reason"] = reason;

  if (cmd == "status") {
    need(0, 1);
    if (args.size() == 2) {
      json s = expect_ok(http(o, "GET", "/api/v1/services/" + args[1]));
      output(o, s, [](const json& j) { print_services(json::array({j})); });
    } else {
      json s = expect_ok(http(o, "GET", "/api/v1/services"));
      output(o, s, [](const json& j) { print_services(j["services"]); });
    }
  } else if (cmd == "set-weights") {
    if (args.size() < 3) die(2, "set-weights needs a service and VERSION=WEIGHT pairs\n" +
                                    std::string(kUsage));
    json weights = json::object();
    for (size_t i = 2; i < args.size(); ++i) {
      size_t eq = args[i].find('=');
      char* end = nullptr;
      long long w = eq == std::string::npos ? -1 : std::strtoll(args[i].c_str() + eq + 1, &end, 10);
      if (eq == std::string::npos || eq == 0 || !end || *end != '\0' || end == args[i].c_str() + eq + 1)
        die(2, "'" + args[i] + "' is not VERSION=WEIGHT");
      weights[args[i].substr(0, eq)] = w;
    }
    std::string etag = "*";
    if (!force) {
      HttpResponse current = http(o, "GET", "/api/v1/services/" + args[1]);
      expect_ok(current);
      etag = current.headers["etag"];
    }
    json body = with_reason;
    body["weights"] = weights;
    json s = expect_ok(http(o, "PUT", "/api/v1/services/" + args[1] + "/weights", body.dump(),
                            {"If-Match: " + etag}));
    output(o, s, [](const json& j) { print_services(json::array({j})); });
  } else if (cmd == "promote") {
    need(2, 2);
    json body = with_reason;
    body["version"] = args[2];
    json s = expect_ok(http(o, "POST", "/api/v1/services/" + args[1] + "/promote", body.dump()));
    output(o, s, [](const json& j) { print_services(json::array({j})); });
  } else if (cmd == "rollback") {
    need(1, 1);
    json s = expect_ok(
        http(o, "POST", "/api/v1/services/" + args[1] + "/rollback", with_reason.dump()));
    output(o, s, [](const json& j) { print_services(json::array({j})); });
  } else if (cmd == "guard") {
    need(2, 2);
    if (args[2] != "on" && args[2] != "off") die(2, "guard takes on or off, not " + args[2]);
    json body = with_reason;
    body["enabled"] = args[2] == "on";
    json s = expect_ok(http(o, "POST", "/api/v1/services/" + args[1] + "/guard", body.dump()));
    output(o, s, [](const json& j) { print_services(json::array({j})); });
  } else if (cmd == "explain") {
    need(1, 1);
    json e = expect_ok(http(o, "GET", "/api/v1/services/" + args[1] + "/explain"));
    output(o, e, print_explain);
  } else if (cmd == "rollout") {
    need(2, 2);
    json s = expect_ok(http(o, "POST", "/api/v1/services/" + args[1] + "/rollout/" + args[2]));
    output(o, s, [](const json& j) { print_services(json::array({j})); });
  } else if (cmd == "fleet") {
    need(0, 0);
    json f = expect_ok(http(o, "GET", "/api/v1/fleet"));
    output(o, f, [](const json& j) {
      auto str = [](const json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); };
      std::printf("%-20s %-22s %-7s %-8s %-5s %s\n", "REPLICA", "ADMIN", "LEADER", "HEALTHY",
                  "LAG", "LAST SEEN");
      for (const auto& r : j["replicas"]) {
        const std::string name = str(r["name"]);
        std::printf("%-20s %-22s %-7s %-8s %-5s %s\n", name.c_str(),
                    str(r["admin_address"]).c_str(), j["leader"] == r["name"] ? "yes" : "",
                    r.value("healthy", false) ? "yes" : "no", str(r["lag"]).c_str(),
                    str(r["last_seen"]).c_str());
      }
      const json& st = j["store"];
      std::printf("store: etcd %s, %s, revision %s\n", str(st["endpoint"]).c_str(),
                  st.value("up", false) ? "up" : "UNREACHABLE", str(st["revision"]).c_str());
    });
  } else if (cmd == "events") {
    need(0, 0);
    json e = expect_ok(http(o, "GET", "/api/v1/events?since=" + since));
    output(o, e, [](const json& j) { print_events(j["events"]); });
  } else if (cmd == "reload") {
    need(0, 0);
    json r = expect_ok(http(o, "POST", "/api/v1/reload"));
    output(o, r, [](const json& j) {
      std::printf("reloaded (generation %s)\n", str(j["generation"]).c_str());
      for (const auto& s : j["reset_services"])
        std::printf("runtime weights reset for %s: its versions changed\n", str(s).c_str());
    });
  } else if (cmd == "metrics" || cmd == "health") {
    need(0, 0);
    HttpResponse r = http(o, "GET", cmd == "metrics" ? "/metrics" : "/healthz");
    if (r.status != 200) expect_ok(r);
    std::fwrite(r.body.data(), 1, r.body.size(), stdout);
  } else {
    die(2, "unknown command " + cmd + "\n" + kUsage);
  }
  return 0;
}

}  // namespace

// An answer of an unexpected shape (a JSON field of another type) is an error, not an abort.
int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    die(3, std::string("unexpected answer from the admin API: ") + e.what());
  }
}
