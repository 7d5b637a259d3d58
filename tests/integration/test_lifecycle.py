"""Graceful shutdown: SIGTERM/SIGINT stop accepting, let in-flight requests finish, exit 0."""

import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


class Shutdown(h.WeirTestCase):
    def start(self, drain_timeout_ms):
        self.origin = self.backend("origin")
        self.edge = self.proxy(self.origin, proxy={"drain_timeout_ms": drain_timeout_ms})

    def start_in_flight(self, target):
        """Sends target and returns the client once the backend holds the request."""
        c = self.client(self.edge)
        c.send(h.Client.build("GET", target))
        # The stats connection itself is one; weir's upstream connection makes two.
        self.assertTrue(h.wait_until(lambda: self.origin.stats()["active_connections"] >= 2,
                                     2.0), "request never reached the backend")
        time.sleep(0.1)
        return c

    def test_sigterm_finishes_in_flight_request_and_refuses_new_ones(self):
        self.start(drain_timeout_ms=5000)
        c = self.start_in_flight("/delay/1500")
        start = time.monotonic()
        self.edge.signal(signal.SIGTERM)
        self.assertTrue(h.wait_until(lambda: h.refused(self.edge.addr, 0.2), 1.0),
                        "weir still accepts connections 1 s after SIGTERM")
        resp = c.read_response()
        self.assertEqual((resp.status, resp.body), (200, b"origin\n"), resp)
        self.assertEqual(self.edge.wait_exit(6.0), 0, self.edge.tail())
        self.assertLess(time.monotonic() - start, 3.5,
                        "weir waited for drain_timeout_ms with nothing left in flight")

    def test_sigint_on_idle_proxy_exits_0_promptly(self):
        self.start(drain_timeout_ms=10000)
        self.assertEqual(h.get(self.edge.addr, "/").status, 200)
        self.edge.signal(signal.SIGINT)
        self.assertEqual(self.edge.wait_exit(3.0), 0, self.edge.tail())

    def test_idle_keepalive_connection_does_not_hold_shutdown(self):
        self.start(drain_timeout_ms=10000)
        c = self.client(self.edge)
        self.assertEqual(c.get("/").status, 200)
        self.edge.signal(signal.SIGTERM)
        self.assertTrue(c.closed_within(3.0), "idle client connection kept open")
        self.assertEqual(self.edge.wait_exit(3.0), 0, self.edge.tail())

    def test_drain_timeout_bounds_shutdown(self):
        self.start(drain_timeout_ms=500)
        self.start_in_flight("/delay/5000")
        start = time.monotonic()
        self.edge.signal(signal.SIGTERM)
        self.assertIsNotNone(self.edge.wait_exit(3.0), "weir outlived drain_timeout_ms")
        self.assertLess(time.monotonic() - start, 3.0)


if __name__ == "__main__":
    unittest.main()
