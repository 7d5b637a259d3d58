"""HTTP/2 upstreams (protocol = "h2"): h2c by prior knowledge and h2 over upstream TLS, gRPC
style trailers passed through to HTTP/1.1 (chunked trailers) and HTTP/2 clients, grpc-status
counted as an error for the version, many streams multiplexed over few connections. The backend
is a small python3-h2 server in this process."""

import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

import h2.config  # noqa: E402
import h2.exceptions  # noqa: E402
import h2.settings  # noqa: E402
import h2.connection  # noqa: E402
import h2.events  # noqa: E402


class H2Backend:
    """An HTTP/2 server on 127.0.0.1:0 (h2c, or h2 over TLS when cert is given). Paths:
    /grpc/<code>: a gRPC-style response, grpc-status <code> in trailers;
    /only/<code>: a trailers-only gRPC response; /slow: answers after 0.3 s; /never: no answer; /stall: a head and 4 bytes, then
    nothing; /healthz: status
    self.health_status, empty body; /count/...: the request body's length; else echo."""

    def __init__(self, cleanups, cert=None, key=None, max_streams=50, goaway_after=None):
        self.ctx = None
        self.max_streams = max_streams
        self.goaway_after = goaway_after  # requests a connection serves before its GOAWAY
        self.ignored = 0  # requests past a GOAWAY, left unanswered
        self.health_status = 200
        if cert:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(cert, key)
            self.ctx.set_alpn_protocols(["h2"])
        self.lock = threading.Lock()
        self.connections = 0
        self.max_open_streams = 0
        self.requests = []  # (path, headers dict)
        self.trailers = []  # (path, body, request trailers dict)
        self.resets = []  # (path, error code) of streams the client reset
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()
        cleanups(self.close)

    def close(self):
        self.closing = True
        self.sock.close()

    def _accept(self):
        while not self.closing:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, sock):
        try:
            if self.ctx:
                sock = self.ctx.wrap_socket(sock, server_side=True)
            with self.lock:
                self.connections += 1
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
            conn.initiate_connection()
            conn.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS:
                                  self.max_streams})
            wlock = threading.Lock()
            sock.sendall(conn.data_to_send())
            open_streams = {"answered": 0, "last": 0}
            served = 0
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                with wlock:
                    events = conn.receive_data(data)
                for ev in events:
                    if isinstance(ev, h2.events.RequestReceived):
                        if self.goaway_after is not None and served >= self.goaway_after:
                            with self.lock:
                                self.ignored += 1
                            continue  # past our GOAWAY: the client treats it as refused
                        served += 1
                        open_streams["last"] = ev.stream_id
                        hdrs = {k.decode(): v.decode() for k, v in ev.headers}
                        open_streams[ev.stream_id] = [hdrs, b""]
                        with self.lock:
                            self.requests.append((hdrs[":path"], hdrs))
                            self.max_open_streams = max(self.max_open_streams,
                                                        len(open_streams) - 2)
                    elif isinstance(ev, h2.events.DataReceived):
                        if ev.stream_id not in open_streams:
                            continue
                        open_streams[ev.stream_id][1] += ev.data
                        with wlock:
                            conn.acknowledge_received_data(ev.flow_controlled_length,
                                                           ev.stream_id)
                    elif isinstance(ev, h2.events.TrailersReceived):
                        if ev.stream_id in open_streams:
                            hdrs, body = open_streams[ev.stream_id]
                            with self.lock:
                                self.trailers.append((hdrs[":path"], body, {
                                    k.decode(): v.decode() for k, v in ev.headers}))
                    elif isinstance(ev, h2.events.StreamEnded):
                        if ev.stream_id not in open_streams:
                            continue
                        hdrs, body = open_streams[ev.stream_id]
                        threading.Thread(target=self._respond,
                                         args=(sock, conn, wlock, ev.stream_id, hdrs, body,
                                               open_streams), daemon=True).start()
                    elif isinstance(ev, h2.events.StreamReset):
                        st = open_streams.pop(ev.stream_id, None)
                        if st:
                            with self.lock:
                                self.resets.append((st[0][":path"], ev.error_code))
                with wlock:
                    sock.sendall(conn.data_to_send())
        except (OSError, ssl.SSLError, h2.exceptions.ProtocolError):
            pass
        finally:
            sock.close()

    def _respond(self, sock, conn, wlock, sid, hdrs, body, open_streams):
        path = hdrs[":path"]
        if path == "/slow":
            time.sleep(0.3)
        if path == "/never":
            return
        if path == "/stall":  # a head and some body, then silence
            with wlock:
                conn.send_headers(sid, [(":status", "200")])
                conn.send_data(sid, b"part")
                sock.sendall(conn.data_to_send())
            return
        if path == "/big":
            self._send_big(sock, conn, wlock, sid)
            return
        with wlock:
            if path.startswith("/grpc/"):
                conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
                conn.send_data(sid, b"\x00\x00\x00\x00\x02hi")
                conn.send_headers(sid, [("grpc-status", path.split("/")[2]),
                                        ("grpc-message", "from-backend")], end_stream=True)
            elif path == "/healthz":
                conn.send_headers(sid, [(":status", str(self.health_status))], end_stream=True)
            elif path.startswith("/only/"):
                conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc"),
                                        ("grpc-status", path.split("/")[2])], end_stream=True)
            else:
                # /count/...: the body's length instead of the body (a DATA frame's limit).
                out = b"h2-ok " + path.encode() + b" " + (
                    str(len(body)).encode() if path.startswith("/count/") else body)
                conn.send_headers(sid, [(":status", "200"), ("content-length", str(len(out)))])
                conn.send_data(sid, out, end_stream=True)
            open_streams.pop(sid, None)
            open_streams["answered"] += 1
            if open_streams["answered"] == self.goaway_after:
                # h2 sends nothing after its GOAWAY, so it goes once the served ones are answered.
                conn.close_connection(last_stream_id=open_streams["last"])
            try:
                sock.sendall(conn.data_to_send())
            except OSError:
                pass


    BIG = bytes(range(256)) * (3 * 4096)  # 3 MiB, more than weir's stream window

    def _send_big(self, sock, conn, wlock, sid):
        """Sends BIG as flow control allows (weir must acknowledge as its client reads)."""
        with wlock:
            conn.send_headers(sid, [(":status", "200"), ("content-length", str(len(self.BIG)))])
        off = 0
        deadline = time.monotonic() + 60
        while off < len(self.BIG) and time.monotonic() < deadline:
            with wlock:
                n = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size,
                        len(self.BIG) - off)
                if n > 0:
                    conn.send_data(sid, self.BIG[off:off + n], end_stream=off + n == len(self.BIG))
                    off += n
                data = conn.data_to_send()
            if data:
                sock.sendall(data)
            if n <= 0:
                time.sleep(0.005)


HEALTH_INTERVAL_MS = 100
HEALTH_UNHEALTHY = 2
HEALTH_CHECK = {"path": "/healthz", "interval_ms": HEALTH_INTERVAL_MS, "timeout_ms": 500,
                "unhealthy_threshold": HEALTH_UNHEALTHY, "healthy_threshold": 1}


def h2_config(backend, version_options=None, admin=None, protocols=("http1",), proxy=None):
    options = {"protocol": "h2", **(version_options or {})}
    return h.render_config([h.service("svc", h.version("v1", 100, backend.addr, **options))],
                           listeners=[{"name": "public", "protocols": list(protocols)}],
                           admin=admin, proxy=proxy)


class UpstreamH2(h.WeirTestCase):
    def test_http1_client_to_h2c_backend_with_body(self):
        b = H2Backend(self.addCleanup)
        weir = h.start_weir(self.addCleanup, h2_config(b))
        with h.Client(weir.addr) as c:
            for i in range(5):
                r = c.request("POST", f"/echo/{i}", [("Content-Length", "5")], b"hello")
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.body, f"h2-ok /echo/{i} hello".encode())
            r = c.get("/plain")
            self.assertEqual(r.status, 200, r)
        self.assertEqual(b.connections, 1)
        hdrs = b.requests[0][1]
        self.assertEqual(hdrs[":authority"], "test.local")
        self.assertEqual(hdrs[":scheme"], "http")
        self.assertIn("x-forwarded-for", hdrs)

    def test_trailers_reach_http1_and_h2_clients_and_grpc_status_counts(self):
        b = H2Backend(self.addCleanup)
        tmp = self.tmpdir()
        weir = h.start_weir(self.addCleanup, h2_config(b, admin=h.admin_settings(tmp),
                                                       protocols=("http1", "h2c")))
        with h.Client(weir.addr) as c:
            r = c.get("/grpc/0", headers=[("TE", "trailers")])
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.trailer("grpc-status"), "0")
            self.assertEqual(r.trailer("grpc-message"), "from-backend")
        self.assertEqual(b.requests[-1][1].get("te"), "trailers")
        # An HTTP/2 client (nghttp) sees the trailers as a trailing HEADERS frame.
        run = subprocess.run(["nghttp", "-v", "-H", "te: trailers",
                              "http://%s:%d/grpc/13" % weir.addr],
                             capture_output=True, text=True, timeout=30)
        self.assertRegex(run.stdout, r"grpc-status: 13")
        self.assertRegex(run.stdout, r"grpc-message: from-backend")
        # grpc-status 13 (trailers) and 14 (trailers-only) are errors of the version.
        for path in ("/grpc/13", "/only/14", "/grpc/0"):
            self.assertEqual(h.get(weir.addr, path).status, 200)

        def counted():
            view = h.admin_call(weir, "GET", "/api/v1/services/svc").json()
            ep = view["versions"][0]["endpoints"][0]
            return ep["responses"]["5xx"] == 3 and ep["responses"]["2xx"] == 2 and ep
        self.assertTrue(h.wait_until(counted, 10),
                        h.admin_call(weir, "GET", "/api/v1/services/svc").json())

    def test_request_trailers_go_upstream(self):
        b = H2Backend(self.addCleanup)
        weir = h.start_weir(self.addCleanup, h2_config(b, protocols=("http1", "h2c")))
        # HTTP/1.1 chunked trailers become a trailing HEADERS frame (names lower-cased).
        with h.Client(weir.addr) as c:
            r = c.request("POST", "/up/1", [("Transfer-Encoding", "chunked"),
                                             ("Trailer", "X-Checksum")],
                          b"5\r\nhello\r\n0\r\nX-Checksum: abc123\r\n\r\n")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body, b"h2-ok /up/1 hello")
            # Without trailers the body's last DATA frame still ends the stream.
            r = c.request("POST", "/up/2", [("Content-Length", "3")], b"abc")
            self.assertEqual(r.body, b"h2-ok /up/2 abc")
        # An HTTP/2 client's trailing HEADERS after DATA.
        d = self.tmpdir()
        data = os.path.join(d, "body")
        with open(data, "wb") as f:
            f.write(b"x" * 70000)  # more than one DATA frame and the initial window
        run = subprocess.run(["nghttp", "-d", data, "--trailer", "grpc-timeout: 5S",
                              "--trailer", "x-sum: 7", "http://%s:%d/count/3" % weir.addr],
                             capture_output=True, timeout=30)
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertEqual(run.stdout, b"h2-ok /count/3 70000")
        with b.lock:
            got = {p: (len(body), t) for p, body, t in b.trailers}
        self.assertEqual(got, {"/up/1": (5, {"x-checksum": "abc123"}),
                               "/count/3": (70000, {"grpc-timeout": "5S", "x-sum": "7"})})

    def test_response_timeout_is_per_stream(self):
        b = H2Backend(self.addCleanup)
        timeout_ms = 1000
        weir = h.start_weir(self.addCleanup, h2_config(
            b, proxy={"upstream_response_timeout_ms": timeout_ms, "workers": 1}))
        self.assertEqual(h.get(weir.addr, "/warm").status, 200)  # the one connection is up
        results = {}

        def one(path):
            started = time.monotonic()
            r = h.get(weir.addr, path)
            results[path] = (r.status, time.monotonic() - started, time.monotonic())

        never = threading.Thread(target=one, args=("/never",))
        never.start()
        self.assertTrue(h.wait_until(lambda: any(p == "/never" for p, _ in b.requests), 10))
        one("/now")
        never.join(30)
        self.assertFalse(never.is_alive())
        status, elapsed, _ = results["/never"]
        self.assertEqual(status, 504)
        self.assertGreaterEqual(elapsed, timeout_ms / 1000.0 * 0.9)
        self.assertLess(elapsed, 15)
        # The answered stream did not wait for (or fail with) the silent one.
        self.assertEqual(results["/now"][0], 200)
        self.assertLess(results["/now"][2], results["/never"][2])
        # The silent stream was cancelled; the connection lives on.
        self.assertTrue(h.wait_until(lambda: b.resets, 10))
        self.assertEqual(b.resets, [("/never", 8)])  # CANCEL
        self.assertEqual(h.get(weir.addr, "/after").status, 200)
        self.assertEqual(b.connections, 1)

    def test_body_idle_timeout_is_per_stream(self):
        b = H2Backend(self.addCleanup)
        weir = h.start_weir(self.addCleanup, h2_config(
            b, proxy={"body_timeout_ms": 1000, "workers": 1}))
        started = time.monotonic()
        with h.Client(weir.addr) as c:
            c.send(h.Client.build("GET", "/stall"))
            with self.assertRaises(OSError):  # the response is cut after its head
                c.read_response()
        self.assertGreaterEqual(time.monotonic() - started, 0.9)
        self.assertTrue(h.wait_until(lambda: b.resets, 10))
        self.assertEqual(b.resets, [("/stall", 8)])  # CANCEL, on a connection that lives on
        self.assertEqual(h.get(weir.addr, "/after").status, 200)
        self.assertEqual(b.connections, 1)

    def test_concurrent_requests_multiplex_over_few_connections(self):
        b = H2Backend(self.addCleanup)
        weir = h.start_weir(self.addCleanup, h2_config(b))
        results = []

        def one(i):
            results.append(h.get(weir.addr, "/slow").status)
        threads = [threading.Thread(target=one, args=(i,)) for i in range(30)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(results, [200] * 30)
        # Two workers: at most one connection each; streams overlapped on them.
        self.assertLessEqual(b.connections, 2)
        self.assertGreater(b.max_open_streams, 1)

    def test_a_full_connection_makes_another(self):
        b = H2Backend(self.addCleanup, max_streams=2)
        weir = h.start_weir(self.addCleanup, h2_config(b).replace("workers = 2", "workers = 1"))
        self.assertEqual(h.get(weir.addr, "/warm").status, 200)  # SETTINGS seen: 2 streams
        results = []
        threads = [threading.Thread(target=lambda: results.append(h.get(weir.addr, "/slow").status))
                   for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(results, [200] * 8)
        self.assertGreaterEqual(b.connections, 4)  # 8 concurrent streams, 2 per connection
        self.assertLessEqual(b.max_open_streams, 2)

    def test_streams_refused_by_goaway_go_again(self):
        # The backend rotates connections every 3 requests (GOAWAY); streams past it are
        # refused unprocessed, and weir sends them again, POST bodies included.
        b = H2Backend(self.addCleanup, goaway_after=3)
        weir = h.start_weir(self.addCleanup, h2_config(b))
        results = []

        def one(i):
            with h.Client(weir.addr) as c:
                for k in range(3):
                    body = f"{i}-{k}".encode()
                    r = c.request("POST", "/echo", [("Content-Length", str(len(body)))], body)
                    results.append((r.status, r.body == b"h2-ok /echo " + body))
        threads = [threading.Thread(target=one, args=(i,)) for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(results, [(200, True)] * 30)
        self.assertGreaterEqual(b.connections, 10)
        self.assertGreater(b.ignored, 0)  # some streams were refused, and went again

    def test_large_response_flows_through_the_windows(self):
        b = H2Backend(self.addCleanup)
        weir = h.start_weir(self.addCleanup, h2_config(b))
        with h.Client(weir.addr) as c:
            r = c.get("/big")
            self.assertEqual(r.status, 200)
            self.assertEqual(len(r.body), len(H2Backend.BIG))
            self.assertTrue(r.body == H2Backend.BIG)
            self.assertEqual(c.get("/after").status, 200)

    def test_h2_over_tls_by_alpn(self):
        d = tempfile.mkdtemp(prefix="weir-uh2-")
        self.addCleanup(shutil.rmtree, d, True)
        cert, key = h.make_cert(d, "grpc.test", "grpc.test")
        b = H2Backend(self.addCleanup, cert, key)
        weir = h.start_weir(self.addCleanup, h2_config(
            b, {"tls": {"ca_file": cert, "sni": "grpc.test"}}))
        r = h.get(weir.addr, "/grpc/0")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.trailer("grpc-status"), "0")
        self.assertEqual(b.requests[-1][1][":scheme"], "https")

    def test_health_checks_probe_h2_versions_over_http2(self):
        stable, canary = H2Backend(self.addCleanup), H2Backend(self.addCleanup)
        weir = h.start_weir(self.addCleanup, h.render_config([h.service(
            "svc", h.version("stable", 50, stable.addr, protocol="h2"),
            h.version("canary", 50, canary.addr, protocol="h2"), health_check=HEALTH_CHECK)]))

        def served(n):
            with h.Client(weir.addr) as c:
                for i in range(n):
                    self.assertEqual(c.get(f"/n/{i}").status, 200)

        def count(b):
            with b.lock:
                return sum(1 for p, _ in b.requests if p != "/healthz")

        # The probes are HTTP/2 GETs (the backend speaks nothing else).
        self.assertTrue(h.wait_until(lambda: any(p == "/healthz" for p, _ in canary.requests), 10))
        probe = next(hd for p, hd in canary.requests if p == "/healthz")
        self.assertEqual(probe[":method"], "GET")
        self.assertEqual(probe[":scheme"], "http")
        self.assertEqual(probe[":authority"], canary.addr)
        self.assertEqual(probe["user-agent"], "weir-health-check")
        served(40)
        self.assertGreater(count(canary), 0)

        canary.health_status = 503
        failed_at = time.monotonic()
        weir.wait_line(r"health: svc/canary endpoint 127\.0\.0\.1:\d+ is down "
                       r"\(2 consecutive failures, last: status 503\)", timeout=10)
        # Within interval x threshold + one more interval (the probe phase) + a snapshot; the
        # margin is generous for a loaded box.
        budget = (HEALTH_INTERVAL_MS * (HEALTH_UNHEALTHY + 1) + 150) / 1000.0 + 1.0
        self.assertLessEqual(time.monotonic() - failed_at, budget)
        time.sleep(0.1)  # the snapshot reaches the workers
        before = count(canary)
        served(40)
        self.assertEqual(count(canary), before, "an unhealthy h2 version kept its traffic")

        canary.health_status = 200
        weir.wait_line(r"health: svc/canary endpoint .* is up", timeout=10)
        time.sleep(0.1)
        served(40)
        self.assertGreater(count(canary), before)

    def test_health_check_over_tls_by_alpn(self):
        d = tempfile.mkdtemp(prefix="weir-uh2-")
        self.addCleanup(shutil.rmtree, d, True)
        cert, key = h.make_cert(d, "grpc.test", "grpc.test")
        b = H2Backend(self.addCleanup, cert, key)
        b.health_status = 503
        weir = h.start_weir(self.addCleanup, h2_config(
            b, {"tls": {"ca_file": cert, "sni": "grpc.test"}, "health_check": HEALTH_CHECK}))
        weir.wait_line(r"health: svc/v1 endpoint .* is down .*last: status 503", timeout=10)
        probe = next(hd for p, hd in b.requests if p == "/healthz")
        self.assertEqual(probe[":scheme"], "https")
        b.health_status = 200
        weir.wait_line(r"health: svc/v1 endpoint .* is up", timeout=10)
        self.assertEqual(h.get(weir.addr, "/x").status, 200)

    def test_backend_gone_is_a_502(self):
        b = H2Backend(self.addCleanup)
        weir = h.start_weir(self.addCleanup, h2_config(b))
        self.assertEqual(h.get(weir.addr, "/x").status, 200)
        b.close()
        dead = h.render_config([h.service("svc", h.version("v1", 100, f"127.0.0.1:{h.dead_port()}",
                                                           protocol="h2"))])
        weir.reload(dead)
        self.assertEqual(h.get(weir.addr, "/x").status, 502)


if __name__ == "__main__":
    unittest.main()
