#include "proxy/etcd_client.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "tests/proxy/fake_http_server.h"

extern char** environ;

namespace weir::proxy {
namespace {

using nlohmann::json;
using test::FakeHttpServer;
using test::run_until;
using test::ServerConn;
using test::ServerRequest;

// A reply recorded from etcd 3.4.23 by tests/proxy/etcd_replies/record.py: status line,
// headers and the body with its framing, byte for byte.
// The folder of the recordings. __FILE__ may be relative to the build folder (Ninja), so it is
// also tried from the test binary's folder and its parents.
std::filesystem::path replies_dir() {
  static const std::filesystem::path dir = [] {
    namespace fs = std::filesystem;
    const fs::path rel = fs::path(__FILE__).parent_path() / "etcd_replies";
    std::vector<fs::path> candidates = {rel};
    std::error_code ec;
    for (fs::path b = fs::read_symlink("/proc/self/exe", ec).parent_path(); !b.empty();
         b = b.parent_path()) {
      candidates.push_back(b / rel);
      if (b == b.parent_path()) break;
    }
    for (const fs::path& c : candidates) {
      if (fs::is_directory(c)) return c;
    }
    return rel;
  }();
  return dir;
}

std::string recorded(const std::string& name) {
  auto path = replies_dir() / (name + ".http");
  std::ifstream in(path, std::ios::binary);  // read on server threads: no doctest assertion
  if (!in) std::fprintf(stderr, "missing recorded reply %s\n", path.c_str());
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string b64(const std::string& s) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < s.size(); i += 3) {
    unsigned v = (unsigned char)s[i] << 16 | (unsigned char)s[i + 1] << 8 | (unsigned char)s[i + 2];
    out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], t[v & 63]};
  }
  if (i < s.size()) {
    unsigned v = (unsigned char)s[i] << 16 | (i + 1 < s.size() ? (unsigned char)s[i + 1] << 8 : 0);
    out += {t[v >> 18], t[(v >> 12) & 63], i + 1 < s.size() ? t[(v >> 6) & 63] : '=', '='};
  }
  return out;
}

// A fake gateway: every request is recorded, then answered by `route` (which writes a reply
// or returns false to drop the connection).
class Gateway {
 public:
  using Route = std::function<bool(ServerConn&, const ServerRequest&, int nth)>;
  explicit Gateway(Route route)
      : route_(std::move(route)), server_([this](ServerConn& c, int) {
          while (auto r = c.read_request()) {
            int nth;
            {
              std::lock_guard<std::mutex> lock(mu_);
              seen_.push_back(*r);
              nth = ++count_[r->path];
            }
            if (!route_(c, *r, nth)) return;
          }
        }) {}
  std::string url() const { return "http://127.0.0.1:" + std::to_string(server_.port()); }
  std::vector<ServerRequest> seen() const {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_;
  }
  int count(const std::string& path) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = count_.find(path);
    return it == count_.end() ? 0 : it->second;
  }
  int accepted() const { return server_.accepted(); }

 private:
  Route route_;
  mutable std::mutex mu_;
  std::vector<ServerRequest> seen_;
  std::map<std::string, int> count_;
  FakeHttpServer server_;  // last: its threads stop before the members above go
};

// Replays one recorded file for each path.
Gateway::Route replay(std::map<std::string, std::string> by_path) {
  return [by_path](ServerConn& c, const ServerRequest& r, int) {
    auto it = by_path.find(r.path);
    if (it == by_path.end()) return false;
    return c.write(recorded(it->second));
  };
}

std::string dead_endpoint() {
  uint16_t port;
  {
    FakeHttpServer gone([](ServerConn&, int) {});
    port = gone.port();
  }
  return "http://127.0.0.1:" + std::to_string(port);
}

struct Fixture {
  uv_loop_t loop{};
  std::unique_ptr<EtcdClient> etcd;
  explicit Fixture(EtcdSettings s) {
    uv_loop_init(&loop);
    etcd = std::make_unique<EtcdClient>(&loop, std::move(s));
  }
  explicit Fixture(std::vector<std::string> endpoints)
      : Fixture(EtcdSettings{std::move(endpoints), 2000, {}, "", ""}) {}
  ~Fixture() {
    etcd->close();
    etcd.reset();
    test::drain(&loop);
    uv_loop_close(&loop);
  }
  bool run(const std::function<bool()>& done, int ms = 5000) { return run_until(&loop, done, ms); }

  // Blocking forms of the calls: each runs the loop until its callback came.
  template <typename Start>
  void await(Start start) {
    bool done = false;
    start([&done] { done = true; });
    REQUIRE(run([&] { return done; }));
  }
  struct Range {
    EtcdStatus st;
    int64_t revision = 0;
    std::vector<EtcdKv> kvs;
  };
  Range range(const std::string& key, const std::string& end = "",
              const EtcdRangeOptions& options = {}) {
    Range r;
    await([&](auto done) {
      etcd->range(key, end, options,
                  [&, done](const EtcdStatus& s, int64_t rev, std::vector<EtcdKv> kvs, bool) {
                    r = {s, rev, std::move(kvs)};
                    done();
                  });
    });
    return r;
  }
  EtcdStatus put(const std::string& key, const std::string& value, int64_t lease = 0) {
    EtcdStatus st;
    await([&](auto done) {
      etcd->put(key, value, lease, [&, done](const EtcdStatus& s, int64_t) {
        st = s;
        done();
      });
    });
    return st;
  }
  struct Cas {
    EtcdStatus st;
    bool succeeded = false;
    int64_t revision = 0;
    std::optional<EtcdKv> current;
  };
  Cas cas(const EtcdCas& c) {
    Cas r;
    await([&](auto done) {
      etcd->cas(c, [&, done](const EtcdStatus& s, bool ok, int64_t rev, std::optional<EtcdKv> cur) {
        r = {s, ok, rev, std::move(cur)};
        done();
      });
    });
    return r;
  }
  struct Lease {
    EtcdStatus st;
    int64_t id = 0, ttl = 0;
  };
  // grant: a new lease of `n` seconds; else a keepalive of lease `n`.
  Lease lease(bool grant, int64_t n) {
    Lease r;
    await([&](auto done) {
      auto cb = [&, done](const EtcdStatus& s, int64_t id, int64_t ttl) {
        r = {s, id, ttl};
        done();
      };
      if (grant) {
        etcd->lease_grant(n, cb);
      } else {
        etcd->lease_keepalive(n, cb);
      }
    });
    return r;
  }
  EtcdStatus revoke(int64_t id) {
    EtcdStatus st;
    await([&](auto done) {
      etcd->lease_revoke(id, [&, done](const EtcdStatus& s) {
        st = s;
        done();
      });
    });
    return st;
  }
};

json body_of(const ServerRequest& r) { return json::parse(r.body, nullptr, false); }

// Server threads wait for the test (bounded, so a failed test still ends).
void wait_flag(const std::atomic<bool>& flag) {
  for (int i = 0; i < 1000 && !flag; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
}

TEST_CASE("etcd_client: prefix_range_end") {
  CHECK(prefix_range_end("/app/") == "/app0");
  CHECK(prefix_range_end("a\xff") == "b");
  CHECK(prefix_range_end("\xff\xff") == std::string(1, '\0'));
  CHECK(prefix_range_end("") == std::string(1, '\0'));
}

TEST_CASE("etcd_client: range found and missing (base64 and string int64 decoded)") {
  Gateway gw([](ServerConn& c, const ServerRequest& r, int) {
    const bool found = body_of(r)["key"] == b64("/app/a");
    return c.write(recorded(found ? "range_found" : "range_missing"));
  });
  Fixture f({gw.url()});
  bool done = false;
  EtcdStatus st;
  int64_t rev = 0;
  std::vector<EtcdKv> kvs;
  f.etcd->range("/app/a", "", [&](const EtcdStatus& s, int64_t r, std::vector<EtcdKv> k, bool) {
    done = true;
    st = s;
    rev = r;
    kvs = std::move(k);
  });
  CHECK_FALSE(done);  // never from inside the call
  REQUIRE(f.run([&] { return done; }));
  CHECK(st.ok());
  CHECK(rev == 3);
  REQUIRE(kvs.size() == 1);
  CHECK(kvs[0].key == "/app/a");
  CHECK(kvs[0].value == "hello");
  CHECK(kvs[0].create_revision == 2);
  CHECK(kvs[0].mod_revision == 2);
  CHECK(kvs[0].version == 1);
  CHECK(f.etcd->up());

  done = false;
  EtcdRangeOptions opt;
  opt.serializable = true;
  opt.sort_by_mod_revision = true;
  opt.limit = 10;
  f.etcd->range("/nokey", "/nokez", opt,
                [&](const EtcdStatus& s, int64_t r, std::vector<EtcdKv> k, bool) {
                  done = true;
                  st = s;
                  rev = r;
                  kvs = std::move(k);
                });
  REQUIRE(f.run([&] { return done; }));
  CHECK(st.ok());
  CHECK(rev == 3);
  CHECK(kvs.empty());
  auto seen = gw.seen();
  REQUIRE(seen.size() == 2);
  CHECK(seen[0].method == "POST");
  CHECK(seen[0].path == "/v3/kv/range");
  CHECK(seen[0].header("grpc-metadata-hasleader") == "true");
  CHECK(seen[0].header("authorization").empty());
  json b = body_of(seen[1]);
  CHECK(b["key"] == b64("/nokey"));
  CHECK(b["range_end"] == b64("/nokez"));
  CHECK(b["serializable"] == true);
  CHECK(b["sort_target"] == "MOD");
  CHECK(b["sort_order"] == "ASCEND");
  CHECK(b["limit"] == "10");
  CHECK(gw.accepted() == 1);  // one kept-alive connection
}

TEST_CASE("etcd_client: an answer that is not what etcd sends is not taken for one") {
  Gateway gw([](ServerConn& c, const ServerRequest& r, int) {
    if (r.path == "/v3/kv/range") {
      return c.respond(200, R"({"header":{"revision":"3"},"kvs":[{"key":"*not base64*"}]})");
    }
    return c.respond(200, "not json");
  });
  Fixture f({gw.url()});
  EtcdStatus range_st = f.range("/app/a").st;
  EtcdStatus put_st = f.put("/app/a", "x");
  CHECK(range_st.kind == EtcdStatus::Kind::kUnavailable);
  CHECK(range_st.message.find("malformed") != std::string::npos);
  CHECK(put_st.kind == EtcdStatus::Kind::kIndeterminate);  // 200: it may well be applied
}

TEST_CASE("etcd_client: put, delete, and what etcd rejects") {
  Gateway gw([](ServerConn& c, const ServerRequest& r, int nth) {
    json b = body_of(r);
    if (r.path == "/v3/kv/put") return c.write(recorded(b["key"] == "" ? "put_no_key" : "put"));
    return c.write(recorded(nth == 1 ? "delete_one" : "delete_none"));
  });
  Fixture f({gw.url()});
  int pending = 4;
  EtcdStatus put_st, bad_st, del_st, none_st;
  int64_t put_rev = 0, del_rev = 0, deleted = -1, none_deleted = -1;
  f.etcd->put("/app/a", std::string("h\0llo", 5), 42, [&](const EtcdStatus& s, int64_t r) {
    put_st = s;
    put_rev = r;
    --pending;
  });
  f.etcd->put("", "x", 0, [&](const EtcdStatus& s, int64_t) {
    bad_st = s;
    --pending;
  });
  REQUIRE(f.run([&] { return pending == 2; }));
  f.etcd->del("/app/a", "", [&](const EtcdStatus& s, int64_t r, int64_t d) {
    del_st = s;
    del_rev = r;
    deleted = d;
    --pending;
  });
  REQUIRE(f.run([&] { return pending == 1; }));
  f.etcd->del("/app/a", "", [&](const EtcdStatus& s, int64_t, int64_t d) {
    none_st = s;
    none_deleted = d;
    --pending;
  });
  REQUIRE(f.run([&] { return pending == 0; }));
  CHECK(put_st.ok());
  CHECK(put_rev == 2);
  CHECK(bad_st.kind == EtcdStatus::Kind::kRejected);
  CHECK(bad_st.http_status == 400);
  CHECK(bad_st.grpc_code == 3);
  CHECK(bad_st.message.find("key is not provided") != std::string::npos);
  CHECK(del_st.ok());
  CHECK(del_rev == 6);
  CHECK(deleted == 1);
  CHECK(none_st.ok());
  CHECK(none_deleted == 0);
  auto seen = gw.seen();
  json p = body_of(seen[0]);
  if (p["key"] != b64("/app/a")) p = body_of(seen[1]);
  CHECK(p["value"] == b64(std::string("h\0llo", 5)));
  CHECK(p["lease"] == "42");
  CHECK(f.etcd->last_error().kind == EtcdStatus::Kind::kRejected);
}

TEST_CASE("etcd_client: CAS that succeeds, CAS that fails with the current kv, txn with ranges") {
  Gateway gw([](ServerConn& c, const ServerRequest& r, int nth) {
    json b = body_of(r);
    if (!b["compare"].empty()) return c.write(recorded(nth == 1 ? "txn_cas_ok" : "txn_cas_failed"));
    return c.write(recorded("txn_range"));
  });
  Fixture f({gw.url()});
  EtcdCas cas;
  cas.key = "/app/a";
  cas.value = "v2";
  cas.expected_mod_revision = 2;
  cas.also = {EtcdOp::put("/events/1", "audit")};
  struct Result {
    bool done = false;
    EtcdStatus st;
    bool ok = false;
    int64_t rev = 0;
    std::optional<EtcdKv> current;
  } one, two;
  auto into = [](Result* r) {
    return [r](const EtcdStatus& s, bool ok, int64_t rev, std::optional<EtcdKv> cur) {
      *r = {true, s, ok, rev, std::move(cur)};
    };
  };
  f.etcd->cas(cas, into(&one));
  REQUIRE(f.run([&] { return one.done; }));
  f.etcd->cas(cas, into(&two));
  REQUIRE(f.run([&] { return two.done; }));
  CHECK(one.st.ok());
  CHECK(one.ok);
  CHECK(one.rev == 4);
  CHECK_FALSE(one.current);
  CHECK(two.st.ok());  // a failed compare is an answer, not an error
  CHECK_FALSE(two.ok);
  CHECK(two.rev == 4);
  REQUIRE(two.current);
  CHECK(two.current->value == "v2");
  CHECK(two.current->mod_revision == 4);

  json b = body_of(gw.seen()[0]);
  CHECK(b["compare"][0]["target"] == "MOD");
  CHECK(b["compare"][0]["result"] == "EQUAL");
  CHECK(b["compare"][0]["mod_revision"] == "2");
  CHECK(b["success"].size() == 2);
  CHECK(b["success"][0]["request_put"]["value"] == b64("v2"));
  CHECK(b["success"][1]["request_put"]["key"] == b64("/events/1"));
  CHECK(b["failure"][0]["request_range"]["key"] == b64("/app/a"));

  // Create-if-absent compares the version with 0.
  Result three;
  cas.expected_mod_revision = 0;
  f.etcd->cas(cas, into(&three));
  REQUIRE(f.run([&] { return three.done; }));
  b = body_of(gw.seen()[2]);
  CHECK(b["compare"][0]["target"] == "VERSION");
  CHECK(b["compare"][0]["version"] == "0");

  EtcdTxn t;
  t.success = {EtcdOp::range("/app/", prefix_range_end("/app/")), EtcdOp::del("/app/b")};
  bool done = false;
  EtcdTxnResult res;
  f.etcd->txn(t, [&](const EtcdStatus& s, const EtcdTxnResult& r) {
    CHECK(s.ok());
    res = r;
    done = true;
  });
  REQUIRE(f.run([&] { return done; }));
  CHECK(res.succeeded);
  CHECK(res.revision == 5);
  REQUIRE(res.responses.size() == 2);
  CHECK(res.responses[0].type == EtcdOp::Type::kRange);
  REQUIRE(res.responses[0].kvs.size() == 2);
  CHECK(res.responses[0].kvs[1].key == "/app/b");
  CHECK(res.responses[0].kvs[1].value == "world");
  CHECK(res.responses[1].type == EtcdOp::Type::kDelete);
  CHECK(res.responses[1].deleted == 1);
  b = body_of(gw.seen()[3]);
  CHECK(b["success"][0]["request_range"]["range_end"] == b64("/app0"));
  CHECK(b["success"][1]["request_delete_range"]["key"] == b64("/app/b"));
}

TEST_CASE("etcd_client: lease grant, keepalive, revoke, and a lease that is gone") {
  Gateway gw([](ServerConn& c, const ServerRequest& r, int nth) {
    if (r.path == "/v3/lease/grant") return c.write(recorded("lease_grant"));
    if (r.path == "/v3/lease/keepalive")
      return c.write(recorded(nth == 1 ? "lease_keepalive" : "lease_keepalive_gone"));
    if (r.path == "/v3/lease/revoke")
      return c.write(recorded(nth == 1 ? "lease_revoke" : "lease_revoke_gone"));
    return c.write(recorded("put_lease_gone"));
  });
  Fixture f({gw.url()});
  Fixture::Lease granted = f.lease(true, 30);
  CHECK(granted.st.ok());
  CHECK(granted.id == 3104284509754227730);
  CHECK(granted.ttl == 30);
  CHECK(body_of(gw.seen()[0])["TTL"] == "30");

  Fixture::Lease kept = f.lease(false, granted.id);
  CHECK(kept.st.ok());
  CHECK(kept.ttl == 30);
  CHECK(body_of(gw.seen()[1])["ID"] == "3104284509754227730");

  CHECK(f.revoke(granted.id).ok());
  EtcdStatus again = f.revoke(granted.id);
  CHECK(again.kind == EtcdStatus::Kind::kRejected);
  CHECK(again.grpc_code == 5);
  EtcdStatus put = f.put("/app/eph", "x", granted.id);
  CHECK(put.kind == EtcdStatus::Kind::kRejected);
  CHECK(put.http_status == 404);
  CHECK(put.message.find("requested lease not found") != std::string::npos);

  Fixture::Lease gone = f.lease(false, granted.id);
  CHECK(gone.st.ok());
  CHECK(gone.ttl == 0);  // no "TTL": the lease is gone
}

TEST_CASE("etcd_client: failover to the next endpoint on connect refused, and unavailable") {
  Gateway gw(replay({{"/v3/kv/put", "put"}}));
  const std::string dead = dead_endpoint();
  Fixture f({dead, gw.url()});
  CHECK(f.etcd->current_endpoint() == dead);
  EtcdStatus st = f.put("/app/a", "x");
  CHECK(st.ok());
  CHECK(st.endpoint == gw.url());
  CHECK(f.etcd->current_endpoint() == gw.url());
  CHECK(gw.count("/v3/kv/put") == 1);

  Fixture none({dead, dead_endpoint()});
  st = none.put("/app/a", "x");
  CHECK(st.kind == EtcdStatus::Kind::kUnavailable);
  CHECK(st.message.find("2 tried") != std::string::npos);
  CHECK_FALSE(none.etcd->up());
  CHECK(none.etcd->last_error().kind == EtcdStatus::Kind::kUnavailable);

  Fixture empty(std::vector<std::string>{});
  bool done = false;
  empty.etcd->range("/a", "", [&](const EtcdStatus& s, int64_t, std::vector<EtcdKv>, bool) {
    st = s;
    done = true;
  });
  CHECK_FALSE(done);
  REQUIRE(empty.run([&] { return done; }));
  CHECK(st.kind == EtcdStatus::Kind::kUnavailable);
}

TEST_CASE("etcd_client: 503 no leader moves even a write to the next endpoint") {
  Gateway sick(replay({{"/v3/kv/put", "put_no_leader"}, {"/v3/kv/range", "put_no_leader"}}));
  Gateway fine(replay({{"/v3/kv/put", "put"}}));
  Fixture f({sick.url(), fine.url()});
  EtcdStatus st = f.put("/app/a", "x");
  CHECK(st.ok());
  CHECK(sick.count("/v3/kv/put") == 1);
  CHECK(fine.count("/v3/kv/put") == 1);

  // Every endpoint without a leader: unavailable, each tried once.
  Fixture all({sick.url()});
  st = all.range("/a").st;
  CHECK(st.kind == EtcdStatus::Kind::kUnavailable);
  CHECK(st.grpc_code == 14);
  CHECK(st.message.find("no leader") != std::string::npos);
  CHECK(sick.count("/v3/kv/range") == 1);
}

TEST_CASE("etcd_client: a write that timed out is indeterminate and not retried; a read is") {
  std::atomic<bool> release{false};
  Gateway slow([&](ServerConn&, const ServerRequest&, int) {
    wait_flag(release);
    return false;
  });
  Gateway fine(replay({{"/v3/kv/put", "put"}, {"/v3/kv/range", "range_found"}}));
  EtcdSettings s{{slow.url(), fine.url()}, 200, {}, "", ""};
  Fixture f(s);
  EtcdStatus put_st, range_st;
  bool put_done = false, range_done = false;
  f.etcd->put("/app/a", "x", 0, [&](const EtcdStatus& st, int64_t) {
    put_st = st;
    put_done = true;
  });
  REQUIRE(f.run([&] { return put_done; }));
  CHECK(put_st.kind == EtcdStatus::Kind::kIndeterminate);
  CHECK(put_st.message.find("no response within 200 ms") != std::string::npos);
  CHECK(fine.count("/v3/kv/put") == 0);
  // The next call starts on the next endpoint.
  CHECK(f.etcd->current_endpoint() == fine.url());

  Fixture g(EtcdSettings{{slow.url(), fine.url()}, 200, {}, "", ""});
  g.etcd->range("/app/a", "", [&](const EtcdStatus& st, int64_t, std::vector<EtcdKv>, bool) {
    range_st = st;
    range_done = true;
  });
  REQUIRE(g.run([&] { return range_done; }));
  CHECK(range_st.ok());
  release = true;
}

TEST_CASE("etcd_client: a write whose connection drops after sending is indeterminate") {
  Gateway drops([](ServerConn&, const ServerRequest&, int) { return false; });
  Gateway fine(replay({{"/v3/kv/put", "put"}, {"/v3/kv/range", "range_found"}}));
  Fixture f({drops.url(), fine.url()});
  EtcdStatus st = f.put("/app/a", "x");
  CHECK(st.kind == EtcdStatus::Kind::kIndeterminate);
  CHECK(fine.count("/v3/kv/put") == 0);
  Fixture g({drops.url(), fine.url()});
  st = g.range("/app/a").st;
  CHECK(st.ok());
}

TEST_CASE("etcd_client: 500 context deadline exceeded on a txn is indeterminate") {
  Gateway a(replay({{"/v3/kv/txn", "txn_deadline"}}));
  Gateway b(replay({{"/v3/kv/txn", "txn_cas_ok"}}));
  Fixture f({a.url(), b.url()});
  EtcdStatus st;
  bool done = false;
  f.etcd->txn(EtcdTxn{}, [&](const EtcdStatus& s, const EtcdTxnResult&) {
    st = s;
    done = true;
  });
  REQUIRE(f.run([&] { return done; }));
  CHECK(st.kind == EtcdStatus::Kind::kIndeterminate);
  CHECK(st.http_status == 500);
  CHECK(st.message.find("context deadline exceeded") != std::string::npos);
  CHECK(b.count("/v3/kv/txn") == 0);
}

TEST_CASE("etcd_client: authenticates lazily, sends the raw token, re-authenticates on 401") {
  Gateway gw([](ServerConn& c, const ServerRequest& r, int nth) {
    if (r.path == "/v3/auth/authenticate") {
      json b = body_of(r);
      return c.write(recorded(b["password"] == "alicepw" ? "auth_ok" : "auth_wrong"));
    }
    if (r.header("authorization") != "JpkVVznanDBcmSnD.32")
      return c.write(recorded("auth_no_token"));
    // The first call finds the token expired.
    return c.write(recorded(nth == 1 ? "auth_bad_token" : "range_found"));
  });
  Fixture f(EtcdSettings{{gw.url()}, 2000, {}, "alice", "alicepw"});
  EtcdStatus st;
  std::vector<EtcdKv> kvs;
  int done = 0;
  auto cb = [&](const EtcdStatus& s, int64_t, std::vector<EtcdKv> k, bool) {
    st = s;
    kvs = std::move(k);
    ++done;
  };
  f.etcd->range("/app/a", "", cb);
  REQUIRE(f.run([&] { return done == 1; }));
  CHECK(st.ok());
  REQUIRE(kvs.size() == 1);
  CHECK(gw.count("/v3/auth/authenticate") == 2);
  CHECK(gw.count("/v3/kv/range") == 2);
  auto seen = gw.seen();
  CHECK(seen[0].path == "/v3/auth/authenticate");
  CHECK(body_of(seen[0])["name"] == "alice");
  CHECK(seen[0].header("authorization").empty());
  CHECK(seen[1].header("authorization") == "JpkVVznanDBcmSnD.32");  // raw, no "Bearer"
  // The token is kept for later calls.
  f.etcd->range("/app/a", "", cb);
  REQUIRE(f.run([&] { return done == 2; }));
  CHECK(st.ok());
  CHECK(gw.count("/v3/auth/authenticate") == 2);

  // A wrong password: rejected, and neither the password nor a token shows in the message.
  Fixture wrong(EtcdSettings{{gw.url()}, 2000, {}, "alice", "s3cret-pw"});
  bool d = false;
  wrong.etcd->put("/app/a", "x", 0, [&](const EtcdStatus& s, int64_t) {
    st = s;
    d = true;
  });
  REQUIRE(wrong.run([&] { return d; }));
  CHECK(st.kind == EtcdStatus::Kind::kRejected);
  CHECK(st.message.find("authentication as alice failed") != std::string::npos);
  CHECK(st.message.find("s3cret-pw") == std::string::npos);
  CHECK(gw.count("/v3/kv/put") == 0);
}

TEST_CASE("etcd_client: a 401 that persists after re-authenticating is rejected, not looped") {
  Gateway gw([](ServerConn& c, const ServerRequest& r, int) {
    if (r.path == "/v3/auth/authenticate") return c.write(recorded("auth_ok"));
    return c.write(recorded("auth_bad_token"));
  });
  Fixture f(EtcdSettings{{gw.url()}, 2000, {}, "alice", "alicepw"});
  EtcdStatus st = f.put("/app/a", "x");
  CHECK(st.kind == EtcdStatus::Kind::kRejected);
  CHECK(st.grpc_code == 16);
  CHECK(gw.count("/v3/kv/put") == 2);
  CHECK(st.message.find("JpkVVznanDBcmSnD") == std::string::npos);
}

struct WatchLog {
  std::vector<std::pair<int64_t, std::vector<EtcdEvent>>> batches;
  std::vector<std::pair<bool, EtcdStatus>> states;
  std::vector<int64_t> progress;
  int64_t compacted = 0;
  EtcdWatchHandler handler() {
    EtcdWatchHandler h;
    h.on_events = [this](int64_t rev, std::vector<EtcdEvent> ev) {
      batches.emplace_back(rev, std::move(ev));
    };
    h.on_state = [this](bool up, const EtcdStatus& st) { states.emplace_back(up, st); };
    h.on_progress = [this](int64_t rev) { progress.push_back(rev); };
    h.on_compacted = [this](int64_t rev) { compacted = rev; };
    return h;
  }
};

// The head and messages of a recorded stream, without the terminating chunk.
std::string stream_without_end(const std::string& name) {
  std::string raw = recorded(name);
  if (raw.ends_with("0\r\n\r\n")) raw.resize(raw.size() - 5);
  return raw;
}

TEST_CASE(
    "etcd_client: watch events, DELETE with prev_kv, progress; EOF without the 0-chunk "
    "reconnects to the next endpoint from the last revision + 1") {
  std::atomic<bool> stop{false};
  // The first member dies after the recorded messages (sent in small pieces: messages span
  // reads); the second answers "created" and waits.
  Gateway first([&](ServerConn& c, const ServerRequest&, int) {
    std::string raw = recorded("watch_events");
    for (size_t i = 0; i < raw.size(); i += 7) c.write(raw.substr(i, 7));
    return false;
  });
  Gateway second([&](ServerConn& c, const ServerRequest&, int) {
    std::string raw = stream_without_end("watch_no_leader");
    c.write(raw.substr(0, raw.find("70\r\n")));  // head + "created" only
    wait_flag(stop);
    return false;
  });
  Fixture f({first.url(), second.url()});
  WatchLog log;
  auto w = f.etcd->watch("/app/", prefix_range_end("/app/"), 9, log.handler());
  REQUIRE(f.run([&] { return log.states.size() >= 3; }));
  stop = true;
  CHECK(log.states[0].first);
  CHECK_FALSE(log.states[1].first);
  CHECK(log.states[1].second.kind == EtcdStatus::Kind::kUnavailable);
  CHECK(log.states[1].second.message.find("terminating chunk") != std::string::npos);
  CHECK(log.states[2].first);
  CHECK(w->up());

  REQUIRE(log.batches.size() == 2);
  CHECK(log.batches[0].first == 10);
  REQUIRE(log.batches[0].second.size() == 2);
  const EtcdEvent& put = log.batches[0].second[0];
  CHECK(put.type == EtcdEvent::Type::kPut);
  CHECK(put.kv.key == "/app/w1");
  CHECK(put.kv.value == "one");
  CHECK(put.kv.mod_revision == 9);
  const EtcdEvent& del = log.batches[0].second[1];
  CHECK(del.type == EtcdEvent::Type::kDelete);
  CHECK(del.kv.key == "/app/w1");
  CHECK(del.kv.mod_revision == 10);
  REQUIRE(del.prev_kv);
  CHECK(del.prev_kv->value == "one");
  CHECK(log.batches[1].second[0].kv.key == "/app/w2");
  CHECK(log.batches[1].second[0].kv.mod_revision == 11);
  REQUIRE_FALSE(log.progress.empty());
  CHECK(log.progress[0] == 11);

  auto a = first.seen();
  REQUIRE(a.size() == 1);
  json create = body_of(a[0])["create_request"];
  CHECK(a[0].path == "/v3/watch");
  CHECK(a[0].header("grpc-metadata-hasleader") == "true");
  CHECK(a[0].header("content-length") == std::to_string(a[0].body.size()));
  CHECK(create["key"] == b64("/app/"));
  CHECK(create["range_end"] == b64("/app0"));
  CHECK(create["start_revision"] == "9");
  CHECK(create["prev_kv"] == true);
  auto b = second.seen();
  REQUIRE(b.size() == 1);
  CHECK(body_of(b[0])["create_request"]["start_revision"] == "12");
  CHECK(w->next_revision() == 12);
}

TEST_CASE("etcd_client: a watch stream error object without a newline, then reconnect") {
  std::atomic<int> served{0};
  Gateway gw([&](ServerConn& c, const ServerRequest&, int nth) {
    ++served;
    if (nth == 1) {
      c.write(recorded("watch_no_leader"));  // created, the error object, the 0-chunk
      return true;
    }
    c.write(stream_without_end("watch_events"));
    c.wait_closed();
    return false;
  });
  Fixture f({gw.url()});
  WatchLog log;
  auto w = f.etcd->watch("/app/", prefix_range_end("/app/"), 0, log.handler());
  REQUIRE(f.run([&] { return log.batches.size() == 2; }));
  REQUIRE(log.states.size() >= 3);
  CHECK(log.states[0].first);
  CHECK_FALSE(log.states[1].first);
  CHECK(log.states[1].second.grpc_code == 14);
  CHECK(log.states[1].second.http_status == 503);
  CHECK(log.states[1].second.message.find("etcdserver: no leader") != std::string::npos);
  CHECK(log.states[2].first);
  auto seen = gw.seen();
  REQUIRE(seen.size() == 2);
  // Without a start revision the first stream starts now; "created" said revision 1.
  CHECK(body_of(seen[0])["create_request"].count("start_revision") == 0);
  CHECK(body_of(seen[1])["create_request"]["start_revision"] == "2");
}

TEST_CASE("etcd_client: a watch sends the token and renews it on 401") {
  Gateway gw([](ServerConn& c, const ServerRequest& r, int nth) {
    if (r.path == "/v3/auth/authenticate") return c.write(recorded("auth_ok"));
    if (nth == 1) return c.write(recorded("auth_bad_token"));
    c.write(stream_without_end("watch_events"));
    c.wait_closed();
    return false;
  });
  Fixture f(EtcdSettings{{gw.url()}, 2000, {}, "alice", "alicepw"});
  WatchLog log;
  auto w = f.etcd->watch("/app/", prefix_range_end("/app/"), 9, log.handler());
  REQUIRE(f.run([&] { return log.batches.size() == 2; }));
  CHECK(gw.count("/v3/auth/authenticate") == 2);
  REQUIRE(log.states.size() == 1);  // the renewal is not an outage
  CHECK(log.states[0].first);
  for (const ServerRequest& r : gw.seen()) {
    if (r.path == "/v3/watch") CHECK(r.header("authorization") == "JpkVVznanDBcmSnD.32");
  }
}

TEST_CASE("etcd_client: a compacted start revision stops the watch and says so") {
  Gateway gw([&](ServerConn& c, const ServerRequest&, int) {
    c.write(recorded("watch_compacted"));  // the stream stays open after "canceled"
    c.wait_closed();
    return false;
  });
  Fixture f({gw.url()});
  WatchLog log;
  auto w = f.etcd->watch("/app/", prefix_range_end("/app/"), 2, log.handler());
  REQUIRE(f.run([&] { return log.compacted != 0; }));
  CHECK(log.compacted == 12);
  test::run_for(&f.loop, 400);
  CHECK(gw.accepted() == 1);  // no reconnect: the owner re-reads and watches anew
  CHECK(log.batches.empty());
}

TEST_CASE("etcd_client: a watch refused for permissions is reported down and retried") {
  Gateway gw([&](ServerConn& c, const ServerRequest&, int) {
    c.write(recorded("watch_denied"));
    c.wait_closed();
    return false;
  });
  Fixture f({gw.url()});
  WatchLog log;
  const uint64_t start = uv_now(&f.loop);
  auto w = f.etcd->watch("/other/", "", 0, log.handler());
  REQUIRE(f.run([&] { return gw.accepted() >= 4; }));
  // Reconnects back off: 100, 200, 400 ms.
  CHECK(uv_now(&f.loop) - start >= 650);
  REQUIRE_FALSE(log.states.empty());
  // "created" and "canceled" come in one message: never up, one down.
  CHECK_FALSE(log.states[0].first);
  CHECK(log.states[0].second.kind == EtcdStatus::Kind::kRejected);
  CHECK(log.states[0].second.message.find("permission denied") != std::string::npos);
  CHECK(log.states.size() == 1);
  w.reset();  // destroying the watch stops it
  const int accepted = gw.accepted();
  test::run_for(&f.loop, 500);
  CHECK(gw.accepted() == accepted);
}

TEST_CASE("etcd_client: a watch message without end is cut at 64 MiB") {
  Gateway gw([&](ServerConn& c, const ServerRequest&, int nth) {
    if (nth > 1) return c.wait_closed() && false;
    const std::string raw = recorded("watch_no_leader");
    c.write(raw.substr(0, raw.find("\r\n\r\n") + 4));  // the head, then no '\n' ever
    const std::string piece(1 << 20, 'x');
    for (int i = 0; i < 65 && c.write(ServerConn::chunk(piece)); ++i) {
    }
    return false;
  });
  Fixture f({gw.url()});
  WatchLog log;
  auto w = f.etcd->watch("/app/", "", 0, log.handler());
  REQUIRE(f.run([&] { return !log.states.empty(); }, 20000));
  CHECK_FALSE(log.states[0].first);
  CHECK(log.states[0].second.message.find("beyond 67108864 bytes") != std::string::npos);
}

TEST_CASE("etcd_client: close drops pending callbacks and watch handlers") {
  Gateway gw([&](ServerConn& c, const ServerRequest& r, int) {
    if (r.path == "/v3/watch") {
      c.write(stream_without_end("watch_events"));
      c.wait_closed();
      return false;
    }
    c.wait_closed();
    return false;
  });
  Fixture f({gw.url()});
  WatchLog log;
  auto w = f.etcd->watch("/app/", "", 0, log.handler());
  bool called = false;
  f.etcd->put("/app/a", "x", 0, [&](const EtcdStatus&, int64_t) { called = true; });
  REQUIRE(f.run([&] { return gw.count("/v3/kv/put") == 1 && !log.batches.empty(); }));
  const size_t batches = log.batches.size();
  f.etcd->close();
  test::run_for(&f.loop, 100);
  CHECK_FALSE(called);
  CHECK(log.batches.size() == batches);
  w.reset();  // after the client closed: still safe
}

// --- a real etcd member -------------------------------------------------------------------

uint16_t free_port() {
  FakeHttpServer s([](ServerConn&, int) {});
  return s.port();
}

// A throwaway single-member etcd on 127.0.0.1, stopped (and its data removed) on destruction.
struct EtcdMember {
  pid_t pid = -1;
  std::filesystem::path dir;
  std::string url;
  EtcdMember() {
    dir = test::fresh_dir("weir_etcd_member");
    const uint16_t client = free_port(), peer = free_port();
    url = "http://127.0.0.1:" + std::to_string(client);
    const std::string peer_url = "http://127.0.0.1:" + std::to_string(peer);
    std::vector<std::string> args = {"/usr/bin/etcd",
                                     "--name",
                                     "t1",
                                     "--data-dir",
                                     (dir / "data").string(),
                                     "--listen-client-urls",
                                     url,
                                     "--advertise-client-urls",
                                     url,
                                     "--listen-peer-urls",
                                     peer_url,
                                     "--initial-advertise-peer-urls",
                                     peer_url,
                                     "--initial-cluster",
                                     "t1=" + peer_url};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    const std::string log = (dir / "etcd.log").string();
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    if (posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ) != 0) pid = -1;
    posix_spawn_file_actions_destroy(&fa);
  }
  ~EtcdMember() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    std::filesystem::remove_all(dir);
  }
};

TEST_CASE("etcd_client: against a real etcd member [etcd]" *
          doctest::skip(!std::filesystem::exists("/usr/bin/etcd"))) {
  EtcdMember member;
  REQUIRE(member.pid > 0);
  Fixture f(EtcdSettings{{member.url}, 3000, {}, "", ""});
  // Ready when a range answers.
  bool ready = false;
  for (int i = 0; i < 100 && !(ready = f.range("/").st.ok()); ++i) test::run_for(&f.loop, 100);
  REQUIRE(ready);

  WatchLog log;
  auto w = f.etcd->watch("/weir/", prefix_range_end("/weir/"), 0, log.handler());
  REQUIRE(f.run([&] { return !log.states.empty(); }));
  REQUIRE(log.states[0].first);

  // Create-if-absent, then a CAS on the revision, then a stale CAS that fails.
  const std::string binary("v\0one", 5);
  EtcdCas cas{"/weir/state", binary, 0, 0, {EtcdOp::put("/weir/ev/1", "e1")}};
  Fixture::Cas created = f.cas(cas);
  REQUIRE(created.st.ok());
  CHECK(created.succeeded);
  cas = {"/weir/state", "two", created.revision, 0, {}};
  Fixture::Cas updated = f.cas(cas);
  REQUIRE(updated.st.ok());
  CHECK(updated.succeeded);
  Fixture::Cas stale = f.cas(cas);
  REQUIRE(stale.st.ok());
  CHECK_FALSE(stale.succeeded);
  REQUIRE(stale.current);
  CHECK(stale.current->value == "two");
  CHECK(stale.current->mod_revision == updated.revision);

  EtcdRangeOptions sorted;
  sorted.sort_by_mod_revision = true;
  Fixture::Range all = f.range("/weir/", prefix_range_end("/weir/"), sorted);
  CHECK(all.st.ok());
  REQUIRE(all.kvs.size() == 2);
  CHECK(all.kvs[0].key == "/weir/ev/1");
  CHECK(all.kvs[1].key == "/weir/state");

  // A lease-bound key, kept alive, then revoked: the watch sees the delete.
  Fixture::Lease lease = f.lease(true, 10);
  REQUIRE(lease.st.ok());
  CHECK(lease.ttl == 10);
  CHECK(f.put("/weir/member/a", "alive", lease.id).ok());
  Fixture::Lease kept = f.lease(false, lease.id);
  CHECK(kept.st.ok());
  CHECK(kept.ttl == 10);
  CHECK(f.revoke(lease.id).ok());
  Fixture::Lease gone = f.lease(false, lease.id);
  CHECK(gone.st.ok());
  CHECK(gone.ttl == 0);

  // Events: the txn's two puts, the CAS put, the member's put and its delete.
  std::vector<EtcdEvent> events;
  REQUIRE(f.run([&] {
    events.clear();
    for (auto& b : log.batches) events.insert(events.end(), b.second.begin(), b.second.end());
    return events.size() >= 5;
  }));
  CHECK(events[0].kv.key == "/weir/state");
  CHECK(events[0].kv.value == binary);
  CHECK(events[1].kv.key == "/weir/ev/1");
  REQUIRE(events[2].prev_kv);
  CHECK(events[2].prev_kv->value == binary);
  CHECK(events[3].kv.lease == lease.id);
  CHECK(events[4].type == EtcdEvent::Type::kDelete);
  CHECK(events[4].kv.key == "/weir/member/a");
  REQUIRE(events[4].prev_kv);
  CHECK(events[4].prev_kv->lease == lease.id);
  CHECK(w->next_revision() == events[4].kv.mod_revision + 1);
}

}  // namespace
}  // namespace weir::proxy
