#include "proxy/io_buffer.h"

#include <doctest/doctest.h>

#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <string>

namespace weir::proxy {
namespace {

// Records its runs in a shared log and runs an optional action (which may schedule more work).
struct Work final : FlushList::Deferred {
  Work(std::string name, std::string& log) : name(std::move(name)), log(log) {}
  void run_deferred() override {
    log += name;
    if (then) then();
  }
  std::string name;
  std::string& log;
  std::function<void()> then;
};

}  // namespace

TEST_CASE("FlushList runs deferred work once per flush, in order, work it schedules after it") {
  FlushList list;  // no wake handle: flush_all is called by hand
  std::string log;
  Work a("a", log), b("b", log), c("c", log);
  a.then = [&] { list.defer(&c); };  // as an HTTP/2 send loop schedules its TLS encryption
  list.defer(&a);
  list.defer(&b);
  list.defer(&a);  // already scheduled: runs once
  list.flush_all();
  CHECK(log == "abc");
  list.flush_all();
  CHECK(log == "abc");  // nothing left

  // Work may schedule itself again from its own run: it runs again in the same flush.
  int rounds = 0;
  a.then = [&] {
    if (++rounds < 3) list.defer(&a);
  };
  log.clear();
  list.defer(&a);
  list.flush_all();
  CHECK(log == "aaa");
}

TEST_CASE("FlushList: cancelled work does not run, and can be scheduled again") {
  FlushList list;
  std::string log;
  Work a("a", log), b("b", log);
  list.defer(&a);
  list.defer(&b);
  list.cancel(&a);
  list.cancel(&a);  // idempotent
  list.flush_all();
  CHECK(log == "b");

  // Cancelled from inside the flush by work that runs before it (an owner freed meanwhile).
  log.clear();
  b.then = [&] { list.cancel(&a); };
  list.defer(&b);
  list.defer(&a);
  list.flush_all();
  CHECK(log == "b");
  b.then = nullptr;
  log.clear();
  list.defer(&a);
  list.flush_all();
  CHECK(log == "a");
}

}  // namespace weir::proxy

namespace weir::proxy {

TEST_CASE("BufferPool hands back the buffers given to it, and keeps none of an idle holder") {
  BufferPool pool;
  std::string a(1000, 'x');
  const char* heap = a.data();
  pool.give(a);
  CHECK(a.empty());
  CHECK(a.capacity() == std::string().capacity());  // the holder keeps no heap buffer
  CHECK(pool.kept() == 1);
  std::string b;
  pool.take(b);
  CHECK(b.empty());
  CHECK(b.capacity() >= 1000);
  CHECK(b.data() == heap);  // the same memory, no allocation
  CHECK(pool.kept() == 0);

  std::string small = "short";
  pool.give(small);  // an inline string has no buffer to give
  CHECK(pool.kept() == 0);
  CHECK(small.empty());
  std::string huge(BufferPool::kMaxCapacity + 1, 'y');
  pool.give(huge);  // too large to keep: freed
  CHECK(pool.kept() == 0);
  CHECK(huge.capacity() == std::string().capacity());

  std::string held(100, 'z');
  const size_t cap = held.capacity();
  pool.give(b);
  pool.take(held);  // a holder with a buffer of its own keeps it
  CHECK(held.capacity() == cap);
  CHECK(pool.kept() == 1);
}

TEST_CASE("OutQueue: a fully written queue gives its buffer back to the worker's pool") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
  uv_pipe_t pipe;
  REQUIRE(uv_pipe_init(&loop, &pipe, 0) == 0);
  REQUIRE(uv_pipe_open(&pipe, fds[0]) == 0);
  FlushList list;
  OutQueue q;
  q.init(reinterpret_cast<uv_stream_t*>(&pipe), &list, nullptr);

  std::string big(2000, 'r');
  q.append(big);
  list.flush_all();  // written at once (the socket buffer has room)
  CHECK(q.empty());
  CHECK(list.buffers().kept() == 1);  // the connection holds no buffer while idle
  CHECK(q.buffer().capacity() >= 2000);  // the next write takes it again
  CHECK(list.buffers().kept() == 0);

  char got[4096];
  CHECK(::read(fds[1], got, sizeof got) == 2000);
  q.close();
  uv_close(reinterpret_cast<uv_handle_t*>(&pipe), nullptr);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  ::close(fds[1]);
}

}  // namespace weir::proxy
