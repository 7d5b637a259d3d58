// Test helpers for HTTP clients on a libuv loop: a scripted HTTP/1.1 server on 127.0.0.1 port 0
// (blocking sockets, one thread per connection, optionally TLS), a loop runner with a deadline,
// and test certificates made with the openssl CLI.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace weir::test {

struct ServerRequest {
  std::string method, path, head, body;
  // The value of header `name` (case-insensitive), or "".
  std::string header(const std::string& name) const {
    std::string lower_head;
    for (char c : head)
      lower_head += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string key = "\r\n";
    for (char c : name) key += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    key += ":";
    size_t at = lower_head.find(key);
    if (at == std::string::npos) return "";
    size_t start = at + key.size();
    size_t end = head.find("\r\n", start);
    std::string v = head.substr(start, end - start);
    while (!v.empty() && v.front() == ' ') v.erase(v.begin());
    return v;
  }
};

// One accepted connection, handed to the server's handler on its own thread.
class ServerConn {
 public:
  ServerConn(int fd, SSL* ssl) : fd_(fd), ssl_(ssl) {}
  ~ServerConn() {
    if (ssl_) SSL_free(ssl_);
    ::close(fd_);
  }
  // The next request, or nullopt when the client closed (or sent garbage).
  std::optional<ServerRequest> read_request() {
    size_t end;
    while ((end = in_.find("\r\n\r\n")) == std::string::npos) {
      if (!fill()) return std::nullopt;
    }
    ServerRequest r;
    r.head = in_.substr(0, end + 2);
    size_t sp1 = r.head.find(' ');
    size_t sp2 = r.head.find(' ', sp1 + 1);
    r.method = r.head.substr(0, sp1);
    r.path = r.head.substr(sp1 + 1, sp2 - sp1 - 1);
    std::string cl = r.header("content-length");
    size_t len = cl.empty() ? 0 : std::stoul(cl);
    in_.erase(0, end + 4);
    while (in_.size() < len) {
      if (!fill()) return std::nullopt;
    }
    r.body = in_.substr(0, len);
    in_.erase(0, len);
    return r;
  }
  bool write(const std::string& data) {
    if (ssl_) return SSL_write(ssl_, data.data(), static_cast<int>(data.size())) > 0;
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }
  // A complete response with Content-Length.
  bool respond(int status, const std::string& body,
               const std::string& extra_headers = "Content-Type: application/json\r\n") {
    return write("HTTP/1.1 " + std::to_string(status) + " X\r\n" + extra_headers +
                 "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
  }
  static std::string chunk(const std::string& data) {
    char size[32];
    std::snprintf(size, sizeof size, "%zx\r\n", data.size());
    return size + data + "\r\n";
  }
  // Waits (bounded) until the client closes the connection; true when it did.
  bool wait_closed(int ms = 5000) {
    timeval tv{ms / 1000, (ms % 1000) * 1000};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char b[256];
    for (;;) {
      ssize_t n = ssl_ ? SSL_read(ssl_, b, sizeof b) : ::recv(fd_, b, sizeof b, 0);
      if (n == 0) return true;
      if (n < 0) return ssl_ ? true : errno != EAGAIN;
    }
  }
  int fd() const { return fd_; }

 private:
  bool fill() {
    char b[4096];
    ssize_t n = ssl_ ? SSL_read(ssl_, b, sizeof b) : ::recv(fd_, b, sizeof b, 0);
    if (n <= 0) return false;
    in_.append(b, static_cast<size_t>(n));
    return true;
  }
  int fd_;
  SSL* ssl_;
  std::string in_;
};

// Accepts on 127.0.0.1:0 until destroyed; runs handler(conn, index) per connection.
class FakeHttpServer {
 public:
  using Handler = std::function<void(ServerConn&, int index)>;
  explicit FakeHttpServer(Handler handler, SSL_CTX* tls = nullptr)
      : handler_(std::move(handler)), tls_(tls) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(fd_, 64);
    socklen_t len = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~FakeHttpServer() {
    stop_listening();
    acceptor_.join();
    ::close(fd_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (int cfd : open_fds_) ::shutdown(cfd, SHUT_RDWR);
    }
    for (auto& t : threads_) t.join();
  }
  // New connections are refused from now on; open ones go on. Callable from a handler.
  void stop_listening() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
  }
  uint16_t port() const { return port_; }
  std::string url(const std::string& path = "/") const {
    return std::string(tls_ ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_) + path;
  }
  int accepted() const { return accepted_; }

 private:
  void accept_loop() {
    for (;;) {
      int cfd = ::accept(fd_, nullptr, nullptr);
      if (cfd < 0 || stop_) {
        if (cfd >= 0) ::close(cfd);
        return;
      }
      int index = accepted_++;
      std::lock_guard<std::mutex> lock(mu_);
      open_fds_.push_back(cfd);
      threads_.emplace_back([this, cfd, index] {
        SSL* ssl = nullptr;
        bool ok = true;
        if (tls_) {
          ssl = SSL_new(tls_);
          SSL_set_fd(ssl, cfd);
          ok = SSL_accept(ssl) == 1;
          if (!ok) ERR_clear_error();
        }
        auto conn = std::make_unique<ServerConn>(cfd, ssl);
        if (ok) handler_(*conn, index);
        // Forget the descriptor before closing it: its number may be reused at once.
        std::lock_guard<std::mutex> done(mu_);
        open_fds_.erase(std::find(open_fds_.begin(), open_fds_.end(), cfd));
        conn.reset();
      });
    }
  }
  Handler handler_;
  SSL_CTX* tls_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<std::thread> threads_;
  std::vector<int> open_fds_;
};

// Runs `loop` until done() or the deadline; true when done() became true.
inline bool run_until(uv_loop_t* loop, const std::function<bool()>& done, int timeout_ms = 5000) {
  uv_timer_t tick;
  uv_timer_init(loop, &tick);
  uv_timer_start(
      &tick, [](uv_timer_t*) {}, 5, 5);
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  bool ok = false;
  while (!(ok = done()) && std::chrono::steady_clock::now() < until) uv_run(loop, UV_RUN_ONCE);
  uv_close(reinterpret_cast<uv_handle_t*>(&tick), nullptr);
  uv_run(loop, UV_RUN_NOWAIT);
  return ok;
}

// Runs the loop for `ms` (lets late callbacks show up).
inline void run_for(uv_loop_t* loop, int ms) {
  run_until(
      loop, [] { return false; }, ms);
}

// Runs the loop until every handle is closed (bounded), for a clean teardown.
inline void drain(uv_loop_t* loop) {
  for (int i = 0; i < 1000 && uv_loop_alive(loop); ++i) uv_run(loop, UV_RUN_NOWAIT);
}

// A fresh folder for this test process.
inline std::filesystem::path fresh_dir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / (name + "_" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// A CA and a server certificate signed by it (for `san`, e.g. "IP:127.0.0.1,DNS:localhost"),
// plus a client certificate; made with the openssl CLI. Files: ca.crt, ca.key, server.crt,
// server.key, client.crt, client.key. false when openssl failed.
inline bool make_test_pki(const std::filesystem::path& dir, const std::string& san) {
  const std::string d = dir.string();
  auto run = [](const std::string& cmd) {
    return std::system((cmd + " >/dev/null 2>&1").c_str()) == 0;
  };
  const std::string ec = "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes ";
  return run(ec +
             "-x509 -days 2 -subj /CN=test-ca -addext basicConstraints=critical,CA:TRUE "
             "-addext keyUsage=critical,keyCertSign,cRLSign -keyout " +
             d + "/ca.key -out " + d + "/ca.crt") &&
         run(ec + "-subj /CN=server -addext subjectAltName=" + san + " -keyout " + d +
             "/server.key -out " + d + "/server.csr") &&
         run("openssl x509 -req -in " + d + "/server.csr -CA " + d + "/ca.crt -CAkey " + d +
             "/ca.key -CAcreateserial -days 2 -copy_extensions copy -out " + d + "/server.crt") &&
         run(ec + "-subj /CN=client -keyout " + d + "/client.key -out " + d + "/client.csr") &&
         run("openssl x509 -req -in " + d + "/client.csr -CA " + d + "/ca.crt -CAkey " + d +
             "/ca.key -CAcreateserial -days 2 -out " + d + "/client.crt");
}

struct CtxFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
using CtxPtr = std::unique_ptr<SSL_CTX, CtxFree>;

// A server SSL_CTX with `dir`'s server certificate; with client_ca, client certificates are
// required and checked against it.
inline CtxPtr server_tls(const std::filesystem::path& dir, bool client_ca = false) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  SSL_CTX_use_certificate_chain_file(ctx, (dir / "server.crt").c_str());
  SSL_CTX_use_PrivateKey_file(ctx, (dir / "server.key").c_str(), SSL_FILETYPE_PEM);
  if (client_ca) {
    SSL_CTX_load_verify_locations(ctx, (dir / "ca.crt").c_str(), nullptr);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  return CtxPtr(ctx);
}

}  // namespace weir::test
