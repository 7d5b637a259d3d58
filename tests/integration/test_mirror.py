"""Request mirroring ([service.mirror]): a copy of `percent`% of a service's requests goes to the
mirror version, marked x-weir-mirror: 1, with the primary's rewritten head and the body (up to
max_body_bytes); its response is thrown away and counted apart, and it never delays, changes or
fails what the client gets."""

import http.server
import json
import os
import re
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


class Recorder:
    """An in-process HTTP/1.1 backend (its own threads) that keeps every request it gets:
    (method, path, [(name, value)...], body). Answers 200 "ok" at once, keep-alive."""

    def __init__(self, cleanups):
        self.requests = []
        self.cond = threading.Condition()
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one(self):
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                with recorder.cond:
                    recorder.requests.append(
                        (self.command, self.path, list(self.headers.items()), body))
                    recorder.cond.notify_all()
                self.send_response(200)
                self.send_header("x-backend", "recorder")
                self.send_header("content-length", "2")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(b"ok")

            do_GET = do_POST = do_PUT = do_HEAD = handle_one

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.addr = "%s:%d" % self.server.server_address
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        cleanups(self.stop, thread)

    def stop(self, thread):
        self.server.shutdown()
        self.server.server_close()
        thread.join(10)

    def wait_for(self, n, timeout=10.0):
        """The first n requests, or a shorter list when they did not all come in time."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.requests) < n and time.monotonic() < deadline:
                self.cond.wait(max(0.0, deadline - time.monotonic()))
            return list(self.requests)


def header_values(fields, name):
    return [v for k, v in fields if k.lower() == name]


class Mirror(h.WeirTestCase):
    def start(self, primary, target, mirror, proxy=None, listeners=("public",)):
        """weir with service "shop": blue (weight 100) on primary, green (weight 0) on target,
        mirror settings `mirror` (version defaults to green), and an admin listener."""
        cfg = h.render_config(
            [h.service("shop", h.version("blue", 100, primary), h.version("green", 0, target),
                       mirror={"version": "green", **mirror})],
            proxy=proxy, listeners=listeners, admin=h.admin_settings(self.tmpdir()))
        return self.weir(cfg)

    def view(self, weir):
        r = h.admin_call(weir, "GET", "/api/v1/services/shop", token="viewer")
        self.assertEqual(r.status, 200, r.body)
        return {v["name"]: v for v in r.json()["versions"]}

    def mirror_view(self, weir):
        return self.view(weir)["green"]["mirror"]

    def wait_mirror(self, weir, predicate, what, timeout=10.0):
        m = h.wait_until(lambda: (lambda v: v if predicate(v) else None)(self.mirror_view(weir)),
                         timeout, interval=0.05)
        self.assertTrue(m, f"{what}: {self.mirror_view(weir)}")
        return m

    def test_exact_share_is_copied_and_the_client_never_sees_it(self):
        blue, green = self.backend("blue"), self.backend("green")
        weir = self.start(blue, green, {"percent": 25})
        time.sleep(0.3)  # the control thread's first statistics fold is only a baseline
        r = h.get(weir.addr, "/")
        self.assertEqual((r.status, r.header("x-backend"), r.header("x-weir-version")),
                         (200, "blue", "blue"))
        result = h.load(weir.addr, threads=4, requests=199)
        self.assertLoadClean(result, min_total=199)
        self.assertEqual(dict(result.backends), {"blue": 199})
        # Each of the 2 workers copies exactly every 4th of its requests: 50 of 200, less at
        # most one per worker for its unfinished run of four.
        m = self.wait_mirror(weir, lambda m: m["sent"] >= 48 and m["in_flight"] == 0,
                             "mirror copies did not all finish")
        copied = green.requests()
        self.assertTrue(48 <= copied <= 50, f"green got {copied} copies of 200 at 25%")
        self.assertEqual(m["sent"], copied)
        self.assertEqual(m["percent"], 25)
        self.assertEqual(m["responses"]["2xx"], copied)
        self.assertEqual(sum(m["failures"].values()) + m["skipped_body"] + m["dropped"] +
                         m["no_endpoint"] + m["cancelled"], 0, m)
        self.assertEqual(blue.requests(), 200)
        # The copies are not green's live traffic: its stats windows (what the guard reads) and
        # the version's request counters stay empty; blue is no mirror target.
        self.assertTrue(h.wait_until(
            lambda: (self.view(weir)["blue"]["stats"]["10s"] or {}).get("requests", 0) >= 200,
            5.0), self.view(weir)["blue"])
        versions = self.view(weir)
        self.assertIsNone(versions["blue"]["mirror"])
        self.assertEqual((versions["green"]["stats"]["10s"] or {}).get("requests", 0), 0)
        metrics = h.admin_call(weir, "GET", "/metrics", token="viewer").body.decode()
        labels = 'service="shop",version="green"'
        self.assertIn(f'weir_mirror_requests_total{{{labels},result="2xx"}} {copied}\n', metrics)
        self.assertIn(f'weir_mirror_in_flight{{{labels}}} 0\n', metrics)
        self.assertIsNone(re.search(r'weir_requests_total\{service="shop",version="green",'
                                    r'code_class="[^"]*"\} [1-9]', metrics), metrics)

    def test_copy_has_the_primary_head_and_the_whole_body(self):
        blue = self.backend("blue")
        rec = Recorder(self.addCleanup)
        weir = self.start(blue, rec.addr, {}, listeners=(
            {"name": "public", "protocols": ["http1", "h2c"]},))
        c = self.client(weir)
        # A client cannot mark its own request as a copy: weir drops x-weir-mirror from it.
        resp = c.request("GET", "/headers?q=1", [("X-Custom", "abc"), ("x-weir-mirror", "1")],
                         host="shop.test")
        self.assertEqual(resp.status, 200)
        primary = dict((k.lower(), v) for k, v in resp.json()["headers"])
        self.assertNotIn("x-weir-mirror", primary)
        got = rec.wait_for(1)
        self.assertEqual(len(got), 1)
        method, path, fields, body = got[0]
        self.assertEqual((method, path, body), ("GET", "/headers?q=1", b""))
        self.assertEqual(header_values(fields, "x-weir-mirror"), ["1"])
        self.assertEqual(header_values(fields, "host"), ["shop.test"])
        self.assertEqual(header_values(fields, "x-custom"), ["abc"])
        self.assertEqual(header_values(fields, "content-length"), [])
        # Same request id and forwarding headers as the primary got.
        for name in ("x-request-id", "x-forwarded-for", "x-forwarded-host", "via"):
            self.assertEqual(header_values(fields, name), [primary[name]], name)

        # Bodies arrive whole, from Content-Length and from chunked requests (sent on as a
        # Content-Length body), while the primary gets its own.
        payload = h.BlockPayload(40000)
        for chunked in (False, True):
            c.send(h.upload_head("/sink", payload, chunked))
            h.send_body(c, payload, chunked, piece=7000)
            resp = c.read_response()
            self.assertEqual(resp.status, 200)
            self.assertEqual(resp.json()["bytes"], 40000)
            got = rec.wait_for(2 + chunked)
            method, path, fields, body = got[-1]
            self.assertEqual((method, path, len(body)), ("POST", "/sink", 40000))
            self.assertEqual(body, b"".join(payload.chunks()))
            self.assertEqual(header_values(fields, "content-length"), ["40000"])
            self.assertEqual(header_values(fields, "transfer-encoding"), [])

        # An HTTP/2 stream goes through the same exchange, and is copied the same way.
        host, port = weir.addr
        out = h.curl("--http2-prior-knowledge", "-H", "x-h2: yes", "--data-binary", "hello-h2",
                     f"http://{host}:{port}/sink")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(json.loads(out.stdout)["bytes"], 8)
        got = rec.wait_for(4)
        self.assertEqual(len(got), 4)
        method, path, fields, body = got[-1]
        self.assertEqual((method, path, body), ("POST", "/sink", b"hello-h2"))
        self.assertEqual(header_values(fields, "x-h2"), ["yes"])
        self.assertEqual(header_values(fields, "x-weir-mirror"), ["1"])
        m = self.wait_mirror(weir, lambda m: m["in_flight"] == 0 and m["sent"] == 4,
                             "4 copies answered")
        self.assertEqual(m["responses"]["2xx"], 4)

    def test_bodies_over_the_cap_and_unfinished_requests_are_not_copied(self):
        blue = self.backend("blue")
        rec = Recorder(self.addCleanup)
        weir = self.start(blue, rec.addr, {"max_body_bytes": 1000})
        c = self.client(weir)
        cases = [(1001, False), (1500, True), (1000, False), (900, True)]
        for size, chunked in cases:
            payload = h.AlphabetPayload(size)
            c.send(h.upload_head("/sink", payload, chunked))
            h.send_body(c, payload, chunked, piece=400)
            resp = c.read_response()
            self.assertEqual((resp.status, resp.json()["bytes"]), (200, size))
        got = rec.wait_for(2)
        self.assertEqual([(m, len(b)) for m, _, _, b in got], [("POST", 1000), ("POST", 900)])
        # A request whose body never arrives in full is not copied either.
        with h.Client(weir.addr) as quitter:
            quitter.send(b"POST /sink HTTP/1.1\r\nHost: test.local\r\nContent-Length: 500\r\n\r\n"
                         + b"x" * 10)
            time.sleep(0.2)
        m = self.wait_mirror(weir, lambda m: m["cancelled"] == 1, "the unfinished copy counted")
        self.assertEqual((m["sent"], m["skipped_body"], m["responses"]["2xx"]), (2, 2, 2))
        time.sleep(0.3)
        self.assertEqual(len(rec.requests), 2)

    def test_a_slow_mirror_never_delays_clients_and_copies_are_capped(self):
        blue, green = self.backend("blue"), self.backend("green", delay_ms=6000)
        weir = self.start(blue, green, {"max_in_flight": 3},
                          proxy={"upstream_response_timeout_ms": 2500})
        c = self.client(weir)  # one connection, so one worker and its cap of 3
        slowest = 0.0
        for _ in range(20):
            t0 = time.monotonic()
            resp = c.get("/")
            slowest = max(slowest, time.monotonic() - t0)
            self.assertEqual((resp.status, resp.header("x-backend")), (200, "blue"))
        self.assertLess(slowest, 2.0, "a client waited for the slow mirror")
        m = self.mirror_view(weir)
        self.assertEqual(m["sent"] + m["dropped"], 20, m)
        self.assertGreaterEqual(m["sent"], 3, m)
        self.assertGreaterEqual(m["dropped"], 10, m)
        # The proxy's upstream response timeout cuts the copies too.
        m = self.wait_mirror(weir, lambda m: m["in_flight"] == 0, "copies timed out")
        self.assertEqual(m["failures"]["timeout"], m["sent"], m)
        self.assertEqual(m["responses"]["2xx"], 0, m)

    def test_a_dead_mirror_fails_nothing_for_clients(self):
        blue = self.backend("blue")
        weir = self.start(blue, f"127.0.0.1:{h.dead_port()}", {"percent": 50})
        result = h.load(weir.addr, threads=2, requests=40)
        self.assertLoadClean(result, min_total=40)
        self.assertEqual(dict(result.backends), {"blue": 40})
        m = self.wait_mirror(weir, lambda m: m["in_flight"] == 0 and m["sent"] >= 19,
                             "copies to the dead mirror failed")
        self.assertEqual(m["failures"]["connect"], m["sent"])
        self.assertLessEqual(m["sent"], 20)

    def test_only_healthy_mirror_endpoints_get_copies(self):
        blue, green = self.backend("blue"), self.backend("green")
        self.assertEqual(h.get((green.host, green.port), "/__health/503").status, 200)
        check = {"path": "/healthz", "interval_ms": 100, "timeout_ms": 500,
                 "unhealthy_threshold": 1, "healthy_threshold": 1}
        cfg = h.render_config(
            [h.service("shop", h.version("blue", 100, blue), h.version("green", 0, green),
                       mirror={"version": "green"}, health_check=check)],
            admin=h.admin_settings(self.tmpdir()))
        weir = self.weir(cfg)
        weir.wait_line(r"health: shop/green endpoint 127\.0\.0\.1:\d+ is down", timeout=5)
        time.sleep(0.1)
        c = self.client(weir)
        self.assertEqual([c.get("/").status for _ in range(10)], [200] * 10)
        m = self.wait_mirror(weir, lambda m: m["no_endpoint"] == 10, "copies with no endpoint")
        self.assertEqual(m["sent"], 0)
        self.assertEqual(green.requests(), 0)

    def test_copies_reuse_pooled_connections(self):
        # Although green takes no live traffic (weight 0), its connections stay pooled.
        blue, green = self.backend("blue"), self.backend("green")
        weir = self.start(blue, green, {})
        c = self.client(weir)  # one connection: one worker, one pool
        for i in range(8):
            self.assertEqual(c.get("/").status, 200)
            self.wait_mirror(weir, lambda m: m["sent"] == i + 1 and m["in_flight"] == 0,
                             f"copy {i + 1} answered")
        # One connection for the 8 copies, one for reading these stats.
        self.assertLessEqual(green.stats()["connections"], 2, green.stats())
        self.assertEqual(green.requests(), 8)

    def test_shutdown_cuts_copies_under_way(self):
        blue, green = self.backend("blue"), self.backend("green", delay_ms=30000)
        weir = self.start(blue, green, {}, proxy={"upstream_response_timeout_ms": 60000})
        with h.Client(weir.addr) as c:
            self.assertEqual([c.get("/").status for _ in range(3)], [200] * 3)
        self.wait_mirror(weir, lambda m: m["in_flight"] == 3, "3 copies under way")
        t0 = time.monotonic()
        weir.signal(signal.SIGTERM)
        # The clients are gone, so weir exits at once: a copy never holds up a shutdown.
        self.assertEqual(weir.wait_exit(10), 0, weir.tail())
        self.assertLess(time.monotonic() - t0, 5.0)
        weir.assert_no_sanitizer_report()


if __name__ == "__main__":
    unittest.main()
