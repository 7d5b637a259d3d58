"""Connection reuse: upstream pooling, recovery from pooled connections the backend closed, and
the downstream keep-alive timeout."""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


class UpstreamReuse(h.WeirTestCase):
    def test_sequential_requests_reuse_one_upstream_connection(self):
        origin = self.backend("origin")
        edge = self.proxy(origin, proxy={"workers": 1})
        before = origin.stats()
        c = self.client(edge)
        for i in range(200):
            resp = c.get(f"/n/{i}")
            self.assertEqual((resp.status, resp.body), (200, b"origin\n"), f"request {i}")
        after = origin.stats()
        self.assertEqual(after["requests"] - before["requests"], 200)
        opened = after["connections"] - before["connections"]
        self.assertTrue(1 <= opened <= 2, f"weir opened {opened} upstream connections "
                        "for 200 sequential requests")

    def test_pooled_connection_closed_by_backend_is_not_a_502(self):
        origin = self.backend("origin", keepalive_timeout_ms=200)
        edge = self.proxy(origin, proxy={"workers": 1})
        c = self.client(edge)
        statuses = []
        for i in range(4):
            statuses.append(c.get(f"/idle/{i}").status)
            time.sleep(0.5)  # the backend closes the pooled connection meanwhile
        statuses.append(h.get(edge.addr, "/fresh-client").status)
        self.assertEqual(statuses, [200] * 5)
        self.assertGreaterEqual(origin.stats()["connections"], 4,
                                "backend never closed idle connections: test proves nothing")

    def test_upstream_connection_close_is_not_reused(self):
        origin = self.backend("origin")
        edge = self.proxy(origin, proxy={"workers": 1})
        c = self.client(edge)
        statuses = []
        for i in range(10):
            resp = c.get(f"/x?close=1&i={i}")
            statuses.append(resp.status)
            self.assertNotIn("close", resp.connection_tokens(),
                             "upstream Connection: close leaked to the client")
        self.assertEqual(statuses, [200] * 10)


class DownstreamKeepAlive(h.WeirTestCase):
    def test_client_connection_stays_open_between_requests(self):
        edge = self.proxy(self.backend(), proxy={"keepalive_timeout_ms": 5000})
        c = self.client(edge)
        self.assertEqual(c.get("/a").status, 200)
        self.assertFalse(c.closed_within(0.3))
        self.assertEqual(c.get("/b").status, 200)

    def test_idle_client_connection_closed_after_keepalive_timeout(self):
        edge = self.proxy(self.backend(), proxy={"keepalive_timeout_ms": 300})
        c = self.client(edge)
        self.assertEqual(c.get("/a").status, 200)
        start = time.monotonic()
        self.assertTrue(c.closed_within(3.0), "idle connection not closed")
        self.assertLess(time.monotonic() - start, 2.0)


if __name__ == "__main__":
    unittest.main()
