#include "proxy/io_buffer.h"

#include <doctest/doctest.h>

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
