// weir-relay: the bench's floor. A bare L4 relay on libuv: for each accepted client one upstream
// TCP connection (upstreams taken in turn), bytes copied both ways, no HTTP at all. A keep-alive
// request through it costs the same 2 reads + 2 writes as through weir, so bench/run.sh shows
// what a proxy's own work per request adds on top of moving the bytes.
//
// usage: weir-relay --upstream HOST:PORT [--upstream ...] [--port 0] [--threads 1]
// Prints "relay listening on 127.0.0.1:PORT" once every thread accepts; runs until killed.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <uv.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr size_t kBufSize = 64 * 1024;

struct Loop {
  uv_loop_t loop{};
  uv_tcp_t listener{};
  unsigned next_upstream = 0;
};

std::vector<sockaddr_in> g_upstreams;

struct Conn;

// One direction: reads `from` into a buffer of its own and writes that buffer to the other side.
// While a write is in flight, reading `from` stops (the buffer is busy).
struct Side {
  Conn* conn = nullptr;
  uv_tcp_t tcp{};
  Side* peer = nullptr;
  uv_write_t write_req{};
  char buf[kBufSize];
};

struct Conn {
  Side client;
  Side upstream;
  uv_connect_t connect_req{};
  int open = 2;
  bool closing = false;
};

void on_closed(uv_handle_t* h) {
  auto* conn = static_cast<Side*>(h->data)->conn;
  if (--conn->open == 0) delete conn;
}

void close_conn(Conn* conn) {
  if (conn->closing) return;
  conn->closing = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&conn->client.tcp), on_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&conn->upstream.tcp), on_closed);
}

void on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* side = static_cast<Side*>(h->data);
  *buf = uv_buf_init(side->buf, kBufSize);
}

void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);

void on_written(uv_write_t* req, int status) {
  auto* from = static_cast<Side*>(req->data);
  if (status < 0 || from->conn->closing) return close_conn(from->conn);
  uv_read_start(reinterpret_cast<uv_stream_t*>(&from->tcp), on_alloc, on_read);
}

void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* from = static_cast<Side*>(s->data);
  if (nread == 0) return;
  if (nread < 0) return close_conn(from->conn);
  auto* to = reinterpret_cast<uv_stream_t*>(&from->peer->tcp);
  uv_buf_t out = uv_buf_init(buf->base, static_cast<unsigned>(nread));
  int n = uv_try_write(to, &out, 1);
  if (n == nread) return;
  if (n < 0 && n != UV_EAGAIN) return close_conn(from->conn);
  if (n > 0) out = uv_buf_init(buf->base + n, static_cast<unsigned>(nread - n));
  uv_read_stop(s);
  from->write_req.data = from;
  if (uv_write(&from->write_req, to, &out, 1, on_written) != 0) close_conn(from->conn);
}

void on_connected(uv_connect_t* req, int status) {
  auto* conn = static_cast<Conn*>(req->data);
  if (conn->closing) return;
  if (status < 0) return close_conn(conn);
  uv_read_start(reinterpret_cast<uv_stream_t*>(&conn->client.tcp), on_alloc, on_read);
  uv_read_start(reinterpret_cast<uv_stream_t*>(&conn->upstream.tcp), on_alloc, on_read);
}

void on_accept(uv_stream_t* server, int status) {
  if (status < 0) return;
  auto* loop = static_cast<Loop*>(server->data);
  auto* conn = new Conn;
  for (Side* side : {&conn->client, &conn->upstream}) {
    side->conn = conn;
    uv_tcp_init(&loop->loop, &side->tcp);
    side->tcp.data = side;
  }
  conn->client.peer = &conn->upstream;
  conn->upstream.peer = &conn->client;
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&conn->client.tcp)) != 0)
    return close_conn(conn);
  uv_tcp_nodelay(&conn->client.tcp, 1);
  uv_tcp_nodelay(&conn->upstream.tcp, 1);
  const sockaddr_in& to = g_upstreams[loop->next_upstream++ % g_upstreams.size()];
  conn->connect_req.data = conn;
  if (uv_tcp_connect(&conn->connect_req, &conn->upstream.tcp,
                     reinterpret_cast<const sockaddr*>(&to), on_connected) != 0)
    close_conn(conn);
}

// A listening socket on 127.0.0.1:port with SO_REUSEPORT, so every thread has its own.
int listen_socket(uint16_t port, uint16_t* bound) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
      ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    std::perror("weir-relay: listening socket");
    std::exit(1);
  }
  *bound = ntohs(a.sin_port);
  return fd;
}

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "weir-relay: %s\nusage: weir-relay --upstream HOST:PORT [--upstream ...] "
               "[--port 0] [--threads 1]\n",
               why);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  unsigned long port = 0, threads = 1;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (i + 1 >= argc) usage(("missing value for " + flag).c_str());
    std::string value = argv[++i];
    char* end = nullptr;
    if (flag == "--upstream") {
      size_t colon = value.rfind(':');
      sockaddr_in a{};
      if (colon == std::string::npos ||
          uv_ip4_addr(value.substr(0, colon).c_str(), std::atoi(value.c_str() + colon + 1), &a) != 0)
        usage(("bad --upstream " + value + " (want IPv4:PORT)").c_str());
      g_upstreams.push_back(a);
    } else if (flag == "--port") {
      port = std::strtoul(value.c_str(), &end, 10);
      if (*end != '\0' || port > 65535) usage(("bad --port " + value).c_str());
    } else if (flag == "--threads") {
      threads = std::strtoul(value.c_str(), &end, 10);
      if (*end != '\0' || threads < 1 || threads > 64) usage(("bad --threads " + value).c_str());
    } else {
      usage(("unknown option " + flag).c_str());
    }
  }
  if (g_upstreams.empty()) usage("at least one --upstream is needed");

  std::vector<Loop> loops(threads);
  uint16_t bound = static_cast<uint16_t>(port);
  for (auto& l : loops) {
    uv_loop_init(&l.loop);
    uv_tcp_init(&l.loop, &l.listener);
    l.listener.data = &l;
    int fd = listen_socket(bound, &bound);
    if (uv_tcp_open(&l.listener, fd) != 0 ||
        uv_listen(reinterpret_cast<uv_stream_t*>(&l.listener), 4096, on_accept) != 0) {
      std::fprintf(stderr, "weir-relay: cannot listen on port %u\n", bound);
      return 1;
    }
  }
  std::printf("relay listening on 127.0.0.1:%u\n", bound);
  std::fflush(stdout);
  std::vector<std::thread> running;
  for (auto& l : loops) running.emplace_back([&l] { uv_run(&l.loop, UV_RUN_DEFAULT); });
  for (auto& t : running) t.join();
  return 0;
}
