"""Endpoints that die or were never there: idempotent requests move to a live endpoint; when
none is left the client gets a short 502."""

import os
import signal
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


class Failover(h.WeirTestCase):
    def test_endpoint_killed_under_load_loses_no_request(self):
        b1, b2 = self.backend("b1"), self.backend("b2")
        edge = self.proxy(b1, b2)
        killer = threading.Timer(1.5, b2.signal, args=(signal.SIGKILL,))
        killer.start()
        self.addCleanup(killer.cancel)
        result = h.load(edge.addr, threads=4, duration=3.0)
        killer.join(5)
        self.assertIsNotNone(b2.wait_exit(2), "b2 was not killed")
        self.assertLoadClean(result, min_total=200)
        self.assertGreater(result.backends["b2"], 0, "b2 never served: kill came too early")
        before = b1.requests()
        self.assertEqual(h.load(edge.addr, threads=2, requests=50).statuses, {200: 50})
        self.assertEqual(b1.requests() - before, 50, "after the kill b1 serves everything")

    def test_endpoint_with_nothing_listening_is_skipped(self):
        live = self.backend("live")
        edge = self.proxy(f"127.0.0.1:{h.dead_port()}", live)
        result = h.load(edge.addr, threads=2, requests=100)
        self.assertLoadClean(result, min_total=100)
        self.assertEqual(dict(result.backends), {"live": 100})

    def test_all_endpoints_down_is_a_short_502(self):
        edge = self.proxy(f"127.0.0.1:{h.dead_port()}", f"127.0.0.1:{h.dead_port()}")
        c = self.client(edge)
        for i in range(3):
            resp = c.get(f"/down/{i}")
            self.assertEqual(resp.status, 502, resp)
            self.assertIsNotNone(resp.header("content-length"),
                                 "502 body must be length-delimited")
            self.assertLess(len(resp.body), 1024)
            if "close" in resp.connection_tokens():
                break
        self.assertWeirAlive(edge)


if __name__ == "__main__":
    unittest.main()
