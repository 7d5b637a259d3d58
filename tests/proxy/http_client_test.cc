#include "proxy/http_client.h"

#include <doctest/doctest.h>

#include <algorithm>

#include "tests/proxy/fake_http_server.h"

namespace weir::proxy {
namespace {

using test::FakeHttpServer;
using test::run_until;
using test::ServerConn;
using test::ServerRequest;

// A loop of the test's own, with a client on it.
struct Fixture {
  uv_loop_t loop{};
  std::unique_ptr<HttpClient> client;
  explicit Fixture(ClientTls tls = {}) {
    uv_loop_init(&loop);
    client = std::make_unique<HttpClient>(&loop, std::move(tls));
  }
  ~Fixture() {
    client->close();
    client.reset();
    test::drain(&loop);
    uv_loop_close(&loop);
  }
};

struct Outcome {
  bool done = false;
  HttpError error;
  HttpResponse response;
  std::string streamed;
  int head_status = 0;
};

HttpClient::RequestId send(Fixture& f, HttpRequest req, Outcome* out) {
  HttpCallbacks cb;
  cb.on_done = [out](HttpError e, HttpResponse r) {
    out->done = true;
    out->error = std::move(e);
    out->response = std::move(r);
  };
  cb.on_head = [out](const HttpResponse& h) { out->head_status = h.status; };
  cb.on_data = [out](std::string_view d) { out->streamed.append(d); };
  return f.client->request(std::move(req), std::move(cb));
}

HttpRequest post(const std::string& url, std::string body = "") {
  HttpRequest r;
  r.method = "POST";
  r.url = url;
  r.body = std::move(body);
  r.timeout_ms = 3000;
  return r;
}

// Sends and runs the loop until the request ended.
Outcome exchange(Fixture& f, HttpRequest req) {
  Outcome out;
  send(f, std::move(req), &out);
  REQUIRE(run_until(&f.loop, [&] { return out.done; }));
  return out;
}

TEST_CASE("http_client: a Content-Length response; the request carries Host and Content-Length") {
  ServerRequest seen;
  FakeHttpServer server([&](ServerConn& c, int) {
    if (auto r = c.read_request()) {
      seen = *r;
      c.respond(200, "{\"ok\":true}", "Content-Type: application/json\r\nX-Two: a\r\n");
    }
  });
  Fixture f;
  Outcome out;
  HttpRequest req = post(server.url("/v3/kv/range?x=1"), "{\"key\":\"YQ==\"}");
  req.headers = {{"Grpc-Metadata-Hasleader", "true"}};
  send(f, std::move(req), &out);
  CHECK_FALSE(out.done);  // never from inside request()
  REQUIRE(run_until(&f.loop, [&] { return out.done; }));
  CHECK(out.error.ok());
  CHECK(out.response.status == 200);
  CHECK(out.response.body == "{\"ok\":true}");
  REQUIRE(out.response.header("x-two"));
  CHECK(*out.response.header("x-two") == "a");
  CHECK(seen.method == "POST");
  CHECK(seen.path == "/v3/kv/range?x=1");
  CHECK(seen.header("host") == "127.0.0.1:" + std::to_string(server.port()));
  CHECK(seen.header("content-length") == "14");
  CHECK(seen.header("grpc-metadata-hasleader") == "true");
  CHECK(seen.body == "{\"key\":\"YQ==\"}");
}

TEST_CASE("http_client: a chunked response is decoded whole") {
  FakeHttpServer server([&](ServerConn& c, int) {
    if (c.read_request()) {
      c.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
      c.write(ServerConn::chunk("hello"));
      c.write(ServerConn::chunk(" world") + "0\r\n\r\n");
    }
  });
  Fixture f;
  Outcome out = exchange(f, post(server.url()));
  CHECK(out.error.ok());
  CHECK(out.response.body == "hello world");
}

TEST_CASE("http_client: keep-alive connections are reused per origin") {
  FakeHttpServer server([&](ServerConn& c, int) {
    while (auto r = c.read_request()) c.respond(200, r->body);
  });
  Fixture f;
  for (int i = 0; i < 3; ++i) {
    Outcome out = exchange(f, post(server.url(), "n" + std::to_string(i)));
    CHECK(out.response.body == "n" + std::to_string(i));
  }
  CHECK(f.client->connections_opened() == 1);
  CHECK(f.client->idle_connections() == 1);
  CHECK(server.accepted() == 1);

  // Two at once need two connections; both are kept afterwards.
  Outcome a, b;
  send(f, post(server.url(), "a"), &a);
  send(f, post(server.url(), "b"), &b);
  REQUIRE(run_until(&f.loop, [&] { return a.done && b.done; }));
  CHECK(a.response.body == "a");
  CHECK(b.response.body == "b");
  CHECK(f.client->connections_opened() == 2);
  CHECK(f.client->idle_connections() == 2);
}

TEST_CASE("http_client: a connection the server closed after its response is not reused") {
  FakeHttpServer server([&](ServerConn& c, int) {
    if (c.read_request()) c.respond(200, "once");  // then closes, without Connection: close
  });
  Fixture f;
  for (int i = 0; i < 3; ++i) {
    Outcome out = exchange(f, post(server.url()));
    CHECK(out.error.ok());
    CHECK(out.response.body == "once");
    test::run_for(&f.loop, 20);  // the EOF of the idle connection arrives
  }
  CHECK(server.accepted() == 3);
}

TEST_CASE("http_client: a reused connection closed as the request goes out is retried once") {
  std::atomic<int> served{0};
  FakeHttpServer server([&](ServerConn& c, int index) {
    if (index == 0) {
      if (c.read_request()) c.respond(200, "first");
      // Reads the second request and drops the connection without answering.
      c.read_request();
      return;
    }
    if (c.read_request()) {
      ++served;
      c.respond(200, "fresh");
    }
  });
  Fixture f;
  Outcome one = exchange(f, post(server.url()));
  Outcome two = exchange(f, post(server.url()));
  CHECK(two.error.ok());
  CHECK(two.response.body == "fresh");
  CHECK(served == 1);
}

TEST_CASE("http_client: a request lost with its kept-alive connection stays indeterminate") {
  // The first connection answers once, reads the second request and dies with the server:
  // the retry on a fresh connection is refused, yet the server may have read the request.
  FakeHttpServer* self = nullptr;
  FakeHttpServer server([&](ServerConn& c, int) {
    if (c.read_request()) c.respond(200, "first");
    if (c.read_request()) self->stop_listening();
  });
  self = &server;
  Fixture f;
  Outcome one = exchange(f, post(server.url()));
  Outcome two = exchange(f, post(server.url()));
  CHECK(two.error.kind == HttpError::Kind::kConnect);
  CHECK(two.error.indeterminate);
}

TEST_CASE("http_client: at most 4 idle connections per origin; streams are never pooled") {
  std::atomic<int> waiting{0};
  FakeHttpServer server([&](ServerConn& c, int) {
    if (!c.read_request()) return;
    ++waiting;
    for (int i = 0; i < 400 && waiting < 6; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    c.respond(200, "x");
    while (c.read_request()) c.respond(200, "x");
  });
  Fixture f;
  Outcome out[6];
  for (auto& o : out) send(f, post(server.url()), &o);
  REQUIRE(run_until(&f.loop, [&] {
    return std::all_of(std::begin(out), std::end(out), [](const Outcome& o) { return o.done; });
  }));
  CHECK(f.client->idle_connections() == 4);

  FakeHttpServer streams([&](ServerConn& c, int) {
    while (c.read_request())
      c.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
  });
  Outcome st;
  HttpRequest req = post(streams.url());
  req.stream = true;
  send(f, std::move(req), &st);
  REQUIRE(run_until(&f.loop, [&] { return st.done; }));
  CHECK(st.error.ok());
  CHECK(f.client->idle_connections() == 4);
}

TEST_CASE("http_client: 1xx heads are skipped; a HEAD response has no body") {
  FakeHttpServer server([&](ServerConn& c, int) {
    while (auto r = c.read_request()) {
      if (r->method == "HEAD") {
        c.write("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n");
      } else {
        c.write("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok");
      }
    }
  });
  Fixture f;
  Outcome a, b;
  send(f, post(server.url()), &a);
  REQUIRE(run_until(&f.loop, [&] { return a.done; }));
  CHECK(a.error.ok());
  CHECK(a.response.status == 201);
  CHECK(a.response.body == "ok");
  HttpRequest head = post(server.url());
  head.method = "HEAD";
  send(f, std::move(head), &b);
  REQUIRE(run_until(&f.loop, [&] { return b.done; }));
  CHECK(b.error.ok());
  CHECK(b.response.status == 200);
  CHECK(b.response.body.empty());
  CHECK(f.client->connections_opened() == 1);
}

TEST_CASE("http_client: timeout after the request went out is indeterminate") {
  FakeHttpServer server([&](ServerConn& c, int) {
    if (c.read_request()) c.wait_closed();
  });
  Fixture f;
  Outcome out;
  HttpRequest req = post(server.url(), "x");
  req.timeout_ms = 150;
  const uint64_t start = uv_now(&f.loop);
  send(f, std::move(req), &out);
  REQUIRE(run_until(&f.loop, [&] { return out.done; }));
  CHECK(out.error.kind == HttpError::Kind::kTimeout);
  CHECK(out.error.indeterminate);
  CHECK(out.error.message.find(server.url()) != std::string::npos);
  CHECK(uv_now(&f.loop) - start >= 140);
  CHECK(f.client->idle_connections() == 0);
}

TEST_CASE("http_client: connect refused is a connect error, not indeterminate") {
  uint16_t port;
  {
    FakeHttpServer gone([](ServerConn&, int) {});
    port = gone.port();
  }
  Fixture f;
  Outcome out = exchange(f, post("http://127.0.0.1:" + std::to_string(port) + "/v3/kv/put"));
  CHECK(out.error.kind == HttpError::Kind::kConnect);
  CHECK_FALSE(out.error.indeterminate);
  CHECK(out.error.message.find("/v3/kv/put") != std::string::npos);
}

TEST_CASE("http_client: host names resolve without blocking and every address is tried") {
  FakeHttpServer server([&](ServerConn& c, int) {
    if (c.read_request()) c.respond(200, "by name");
  });
  Fixture f;
  Outcome out;
  // localhost may resolve to ::1 first, where nothing listens: the next address is tried.
  send(f, post("http://localhost:" + std::to_string(server.port()) + "/"), &out);
  CHECK_FALSE(out.done);
  REQUIRE(run_until(&f.loop, [&] { return out.done; }));
  CHECK(out.error.ok());
  CHECK(out.response.body == "by name");

  Outcome bad;
  send(f, post("http://no-such-host.invalid:1/"), &bad);
  REQUIRE(run_until(
      &f.loop, [&] { return bad.done; }, 10000));
  CHECK(bad.error.kind == HttpError::Kind::kConnect);
}

TEST_CASE("http_client: bad URLs and headers are errors delivered on the next loop turn") {
  Fixture f;
  for (const char* url : {"ftp://x/", "http://", "http://[::1/", "http://h:0/", "http://h:99999/",
                          "http://::1:80/", "http://u@h/"}) {
    Outcome out;
    send(f, post(url), &out);
    CHECK_FALSE(out.done);
    REQUIRE(run_until(&f.loop, [&] { return out.done; }));
    CHECK_MESSAGE(out.error.kind == HttpError::Kind::kInvalid, url);
    CHECK(out.error.message.find(url) != std::string::npos);
  }
  Outcome out;
  HttpRequest req = post("http://127.0.0.1:1/");
  req.headers = {{"X-Bad", "a\r\nInjected: yes"}};
  send(f, std::move(req), &out);
  REQUIRE(run_until(&f.loop, [&] { return out.done; }));
  CHECK(out.error.kind == HttpError::Kind::kInvalid);
}

TEST_CASE("http_client: IPv6 literals") {
  // A server on [::1] when the machine has IPv6 loopback; otherwise the URL still parses and
  // fails to connect (not as an invalid URL).
  Fixture f;
  Outcome out = exchange(f, post("http://[::1]:1/"));
  CHECK(out.error.kind == HttpError::Kind::kConnect);
}

TEST_CASE("http_client: a malformed response is a protocol error; an oversized body too") {
  FakeHttpServer server([&](ServerConn& c, int index) {
    if (!c.read_request()) return;
    if (index == 0) {
      c.write("HTTP/1.1 abc\r\n\r\n");
    } else {
      c.respond(200, std::string(2000, 'x'));
    }
  });
  Fixture f;
  Outcome out = exchange(f, post(server.url()));
  CHECK(out.error.kind == HttpError::Kind::kProtocol);
  Outcome big;
  HttpRequest req = post(server.url());
  req.max_body = 1000;
  send(f, std::move(req), &big);
  REQUIRE(run_until(&f.loop, [&] { return big.done; }));
  CHECK(big.error.kind == HttpError::Kind::kProtocol);
  CHECK(big.error.message.find("too large") != std::string::npos);
}

TEST_CASE("http_client: a streamed response delivers chunks as they come and ends cleanly") {
  std::atomic<bool> go{false};
  FakeHttpServer server([&](ServerConn& c, int) {
    if (!c.read_request()) return;
    c.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
            ServerConn::chunk("{\"a\":1}\n"));
    while (!go) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    c.write(ServerConn::chunk("{\"b\":2}\n") + "0\r\n\r\n");
  });
  Fixture f;
  Outcome out;
  HttpRequest req = post(server.url("/v3/watch"));
  req.stream = true;
  send(f, std::move(req), &out);
  REQUIRE(run_until(&f.loop, [&] { return out.streamed == "{\"a\":1}\n"; }));
  CHECK(out.head_status == 200);
  CHECK_FALSE(out.done);
  go = true;
  REQUIRE(run_until(&f.loop, [&] { return out.done; }));
  CHECK(out.error.ok());
  CHECK(out.streamed == "{\"a\":1}\n{\"b\":2}\n");
  CHECK(out.response.body.empty());
}

TEST_CASE("http_client: a stream cut before its terminating chunk is an error") {
  FakeHttpServer server([&](ServerConn& c, int) {
    if (!c.read_request()) return;
    c.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + ServerConn::chunk("{}\n"));
    // The member dies: the connection closes without 0\r\n\r\n.
  });
  Fixture f;
  Outcome out;
  HttpRequest req = post(server.url("/v3/watch"));
  req.stream = true;
  send(f, std::move(req), &out);
  REQUIRE(run_until(&f.loop, [&] { return out.done; }));
  CHECK(out.streamed == "{}\n");
  CHECK(out.error.kind == HttpError::Kind::kClosed);
  CHECK(out.error.message.find("terminating chunk") != std::string::npos);

  // A unary response short of its Content-Length is an error as well.
  FakeHttpServer shorter([&](ServerConn& c, int) {
    if (c.read_request()) c.write("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
  });
  Outcome cut = exchange(f, post(shorter.url()));
  CHECK(cut.error.kind == HttpError::Kind::kClosed);
  CHECK(cut.error.indeterminate);
}

TEST_CASE("http_client: a body delimited by the end of the connection is complete") {
  FakeHttpServer server([&](ServerConn& c, int) {
    if (c.read_request()) c.write("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil eof");
  });
  Fixture f;
  Outcome out = exchange(f, post(server.url()));
  CHECK(out.error.ok());
  CHECK(out.response.body == "until eof");
}

TEST_CASE("http_client: a stream's idle timeout") {
  FakeHttpServer server([&](ServerConn& c, int) {
    if (!c.read_request()) return;
    c.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + ServerConn::chunk("x"));
    c.wait_closed();
  });
  Fixture f;
  Outcome out;
  HttpRequest req = post(server.url());
  req.stream = true;
  req.timeout_ms = 100;  // covers the head only: the stream outlives it
  req.idle_timeout_ms = 300;
  send(f, std::move(req), &out);
  test::run_for(&f.loop, 200);
  CHECK_FALSE(out.done);
  REQUIRE(run_until(&f.loop, [&] { return out.done; }));
  CHECK(out.error.kind == HttpError::Kind::kTimeout);
  CHECK(out.error.message.find("no data") != std::string::npos);
}

TEST_CASE("http_client: cancel and close run no callback and close the connection") {
  std::atomic<int> closed{0};
  FakeHttpServer server([&](ServerConn& c, int) {
    if (c.read_request() && c.wait_closed()) ++closed;
  });
  Fixture f;
  Outcome a, b, c;
  HttpRequest stream = post(server.url());
  stream.stream = true;
  auto id = send(f, post(server.url()), &a);
  send(f, std::move(stream), &b);
  REQUIRE(run_until(&f.loop, [&] { return server.accepted() == 2; }));
  test::run_for(&f.loop, 30);
  f.client->cancel(id);
  f.client->cancel(id);  // twice is harmless
  REQUIRE(run_until(&f.loop, [&] { return closed == 1; }));
  CHECK_FALSE(a.done);
  CHECK(f.client->pending() == 1);
  f.client->close();
  f.client->close();
  REQUIRE(run_until(&f.loop, [&] { return closed == 2; }));
  CHECK_FALSE(b.done);
  CHECK(f.client->request(post(server.url()), {}) == 0);
  // Cancelling a request whose error is waiting for the next loop turn drops it too.
  Fixture g;
  auto bad = send(g, post("nope"), &c);
  g.client->cancel(bad);
  test::run_for(&g.loop, 20);
  CHECK_FALSE(c.done);
}

TEST_CASE("http_client: the client may be destroyed from inside a callback") {
  FakeHttpServer server([&](ServerConn& c, int) {
    if (!c.read_request()) return;
    c.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + ServerConn::chunk("a") +
            ServerConn::chunk("b"));
    c.wait_closed();
  });
  uv_loop_t loop;
  uv_loop_init(&loop);
  auto client = std::make_unique<HttpClient>(&loop, ClientTls{});
  int calls = 0;
  HttpRequest req = post(server.url());
  req.stream = true;
  HttpCallbacks cb;
  cb.on_data = [&](std::string_view) {
    ++calls;
    client.reset();
  };
  client->request(std::move(req), std::move(cb));
  run_until(&loop, [&] { return calls > 0; });
  test::run_for(&loop, 30);
  CHECK(calls == 1);
  test::drain(&loop);
  CHECK(uv_loop_close(&loop) == 0);
}

struct Pki {
  std::filesystem::path dir;
  bool ok;
  Pki(const char* name, const char* san) : dir(test::fresh_dir(name)) {
    ok = test::make_test_pki(dir, san);
  }
  ~Pki() { std::filesystem::remove_all(dir); }
};

TEST_CASE("http_client: https with a CA file, host name checks, client certificates") {
  Pki pki("weir_http_client_pki", "IP:127.0.0.1,DNS:localhost");
  REQUIRE(pki.ok);
  test::CtxPtr plain_ctx = test::server_tls(pki.dir);
  FakeHttpServer server(
      [&](ServerConn& c, int) {
        while (auto r = c.read_request()) c.respond(200, "secret " + r->body);
      },
      plain_ctx.get());
  {
    Fixture f(ClientTls{(pki.dir / "ca.crt").string(), "", "", true});
    Outcome out = exchange(f, post(server.url(), "1"));
    CHECK(out.error.ok());
    CHECK(out.response.body == "secret 1");
    Outcome again =
        exchange(f, post("https://localhost:" + std::to_string(server.port()) + "/", "2"));
    CHECK(again.error.ok());
    CHECK(again.response.body == "secret 2");
  }
  {
    // Without the CA, the server's certificate is not trusted.
    Fixture f(ClientTls{});
    Outcome out = exchange(f, post(server.url()));
    CHECK(out.error.kind == HttpError::Kind::kTls);
    CHECK_FALSE(out.error.indeterminate);
    CHECK(out.error.message.find("certificate") != std::string::npos);
  }
  {
    // A CA file that does not exist is reported, and https requests fail with it.
    Fixture f(ClientTls{(pki.dir / "missing.crt").string(), "", "", true});
    std::string why;
    CHECK_FALSE(f.client->tls_ready(&why));
    CHECK(why.find("missing.crt") != std::string::npos);
    Outcome out = exchange(f, post(server.url()));
    CHECK(out.error.kind == HttpError::Kind::kInvalid);
  }

  Pki other("weir_http_client_pki_other", "DNS:elsewhere.test");
  REQUIRE(other.ok);
  test::CtxPtr wrong_name = test::server_tls(other.dir);
  FakeHttpServer misnamed([&](ServerConn& c, int) { c.read_request(); }, wrong_name.get());
  {
    Fixture f(ClientTls{(other.dir / "ca.crt").string(), "", "", true});
    Outcome out = exchange(f, post(misnamed.url()));
    CHECK(out.error.kind == HttpError::Kind::kTls);
  }

  test::CtxPtr mtls = test::server_tls(pki.dir, true);
  FakeHttpServer needs_cert(
      [&](ServerConn& c, int) {
        if (auto r = c.read_request()) c.respond(200, "mtls");
      },
      mtls.get());
  {
    Fixture f(ClientTls{(pki.dir / "ca.crt").string(), (pki.dir / "client.crt").string(),
                        (pki.dir / "client.key").string(), true});
    Outcome out = exchange(f, post(needs_cert.url()));
    CHECK_MESSAGE(out.error.ok(), out.error.message);
    CHECK(out.response.body == "mtls");
  }
  {
    Fixture f(ClientTls{(pki.dir / "ca.crt").string(), "", "", true});
    Outcome out = exchange(f, post(needs_cert.url()));
    CHECK_FALSE(out.error.ok());
  }
}

}  // namespace
}  // namespace weir::proxy
