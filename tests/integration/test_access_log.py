"""The access log: one JSON line per request (routed, or refused before routing), buffered per
worker, reopened on SIGUSR1."""

import json
import os
import signal
import time
import unittest

from harness import (Client, WeirTestCase, get, render_config, route, service,
                     single_service_config, version, wait_until)
from test_h2 import RawH2, h2


class AccessLog(WeirTestCase):
    def read_lines(self, path):
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [json.loads(line) for line in f]

    def test_lines_and_reopen(self):
        origin = self.backend("origin")
        path = os.path.join(self.tmpdir(), "access.log")
        edge = self.weir(single_service_config(origin, proxy={"access_log": path}))
        for i in range(10):
            r = get(edge.addr, f'/x/{i}?q="quoted"', headers=[("X-Request-Id", f"id-{i}")])
            self.assertEqual(r.status, 200)
        lines = wait_until(lambda: len(self.read_lines(path)) >= 10 and self.read_lines(path), 5)
        self.assertEqual(len(lines), 10, lines)
        by_id = {line["request_id"]: line for line in lines}
        line = by_id["id-3"]
        self.assertEqual((line["method"], line["path"], line["status"], line["client"]),
                         ("GET", '/x/3?q="quoted"', 200, "127.0.0.1"))
        self.assertEqual((line["service"], line["version"], line["upstream"]),
                         ("svc", "v1", origin.addr))
        self.assertEqual(line["host"], "test.local")
        self.assertGreater(line["bytes"], 0)
        self.assertRegex(line["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertIn("duration_ms", line)

        # logrotate: move the file, SIGUSR1, and new lines go to a new file at the same path.
        os.rename(path, path + ".1")
        edge.signal(signal.SIGUSR1)
        self.assertTrue(wait_until(lambda: os.path.exists(path), 5), "no new file after SIGUSR1")
        self.assertEqual(get(edge.addr, "/after").status, 200)
        self.assertTrue(wait_until(lambda: len(self.read_lines(path)) == 1, 5))
        self.assertEqual(self.read_lines(path)[0]["path"], "/after")
        self.assertEqual(len(self.read_lines(path + ".1")), 10)

    def test_lines_are_flushed_at_shutdown(self):
        origin = self.backend("origin")
        path = os.path.join(self.tmpdir(), "access.log")
        edge = self.weir(single_service_config(origin, proxy={"access_log": path}))
        self.assertEqual(get(edge.addr, "/").status, 200)
        edge.signal(signal.SIGTERM)
        self.assertEqual(edge.wait_exit(10), 0)
        self.assertEqual(len(self.read_lines(path)), 1)

    def test_requests_refused_before_routing_are_logged(self):
        origin = self.backend("origin")
        path = os.path.join(self.tmpdir(), "access.log")
        proxy = {"access_log": path, "max_request_line": 256, "max_header_bytes": 2048,
                 "max_request_body_bytes": 1000, "request_header_timeout_ms": 600}
        edge = self.weir(render_config(
            [service("svc", version("v1", 100, origin))], routes=[route("svc")], proxy=proxy,
            listeners=[{"name": "public", "protocols": ["http1", "h2c"]}]))

        def refused(raw, status):
            with Client(edge.addr) as c:
                c.send(raw)
                self.assertEqual(c.read_response().status, status, raw[:60])

        refused(b"GET /malformed HTTP/1.1\r\nHost: a\r\nno colon here\r\n\r\n", 400)
        refused(b"GET /" + b"x" * 400 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414)
        refused(b"GET /big-head HTTP/1.1\r\nHost: a\r\nX-Pad: " + b"p" * 3000 + b"\r\n\r\n",
                431)
        refused(b"POST /upload HTTP/1.1\r\nHost: a\r\nX-Request-Id: up-1\r\n"
                b"Content-Length: 5000\r\n\r\n", 413)
        with Client(edge.addr) as c:
            c.send(b"GET /slow HTTP/1.1\r\nHost: a\r\n")  # the head never ends
            self.assertEqual(self.response_within(c, 10, "a head that never ends").status, 408)
        # h2c: weir does not tunnel, so a CONNECT stream is refused with 400 before routing.
        raw = RawH2(edge.addr)
        self.addCleanup(raw.close)
        sid = raw.request([(":method", "CONNECT"), (":authority", "h2.local:443")])
        self.assertEqual(raw.outcome(sid), 400)
        # Routed, then refused: a chunked body that grows past the limit. The exchange's line
        # says 413 (what the client got), not 0.
        refused(b"POST /chunky HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"7d0\r\n" + b"c" * 2000 + b"\r\n0\r\n\r\n", 413)
        self.assertEqual(get(edge.addr, "/fine").status, 200)  # routed, for contrast

        lines = wait_until(lambda: len(self.read_lines(path)) >= 8 and self.read_lines(path), 5)
        self.assertTrue(lines, self.read_lines(path))
        by_status = {}
        for line in lines:
            by_status.setdefault(line["status"], []).append(line)
        self.assertEqual(sorted(by_status), [200, 400, 408, 413, 414, 431], lines)
        h2_400, h1_400 = sorted(by_status[400], key=lambda line: line["path"])
        self.assertEqual((h2_400["method"], h2_400["path"], h2_400["host"]),
                         ("CONNECT", "", "h2.local:443"))
        for line, expect in ((h1_400, ("GET", "/malformed")),
                             (by_status[431][0], ("GET", "/big-head")),
                             (by_status[408][0], ("GET", "/slow"))):
            self.assertEqual((line["method"], line["path"]), expect, line)
            self.assertEqual((line["service"], line["version"], line["upstream"]), ("", "", ""))
            self.assertEqual((line["client"], line["bytes"]), ("127.0.0.1", 0))
        (long_target,) = by_status[414]
        self.assertEqual(long_target["method"], "GET")
        self.assertTrue(long_target["path"].startswith("/xxxx"), long_target)
        self.assertGreaterEqual(by_status[408][0]["duration_ms"], 500)  # the header timeout
        chunky, h1 = sorted(by_status[413], key=lambda line: line["path"])
        self.assertEqual((chunky["method"], chunky["path"], chunky["service"]),
                         ("POST", "/chunky", "svc"))
        self.assertEqual((h1["method"], h1["path"], h1["host"], h1["request_id"]),
                         ("POST", "/upload", "a", "up-1"))
        self.assertEqual(by_status[200][0]["service"], "svc")


if __name__ == "__main__":
    unittest.main()
