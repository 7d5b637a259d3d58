"""Timeouts that turn into responses: 504 for a slow upstream, 408 for a slow request head."""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


class Timeouts(h.SharedProxyTestCase):
    proxy_settings = {"upstream_response_timeout_ms": 500, "request_header_timeout_ms": 500}

    def timed_get(self, target):
        start = time.monotonic()
        resp = self.client(self.edge).get(target)
        return resp, time.monotonic() - start

    def test_slow_upstream_is_504(self):
        resp, elapsed = self.timed_get("/delay/3000")
        self.assertEqual(resp.status, 504, resp)
        self.assertGreaterEqual(elapsed, 0.4)
        self.assertLess(elapsed, 2.0, "504 should come at upstream_response_timeout_ms")

    def test_upstream_within_timeout_is_200(self):
        resp, elapsed = self.timed_get("/delay/150")
        self.assertEqual(resp.status, 200, resp)
        self.assertGreaterEqual(elapsed, 0.15)

    def test_stalled_request_head_is_408(self):
        self.assertEqual(self.client(self.edge).get("/warmup").status, 200)
        before = self.origin.requests()
        c = self.client(self.edge)
        c.send(b"GET /stalled HTTP/1.1\r\nHost: test.local\r\nX-Partial: ye")
        start = time.monotonic()
        resp = self.response_within(c, 3.0, "a head stalled past request_header_timeout_ms=500")
        self.assertEqual(resp.status, 408, resp)
        self.assertLess(time.monotonic() - start, 2.0)
        self.assertClosesConnection(c, resp)
        self.assertEqual(self.origin.requests(), before)


if __name__ == "__main__":
    unittest.main()
