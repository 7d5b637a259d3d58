"""Passive outlier ejection: an endpoint answering 5xx is ejected after consecutive_failures
and gets no traffic while ejected; max_ejection_percent keeps the last endpoint in service."""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

OUTLIER = {"consecutive_failures": 3, "ejection_ms": 10000, "max_ejection_percent": 50}


class Outlier(h.WeirTestCase):
    def test_failing_endpoint_is_ejected_and_gets_no_more_traffic(self):
        good, bad = self.backend("good"), self.backend("bad", status=500)
        weir = self.weir(h.render_config([h.service(
            "shop", h.version("stable", 100, good, bad), outlier_detection=OUTLIER)]))
        with h.Client(weir.addr) as c:
            for _ in range(40):
                c.get("/")
        weir.wait_line(r"outlier: shop/stable endpoint .* is ejected \(\d+ consecutive failures; "
                       r"ejected for 10000 ms \(ejection 1\)\)", timeout=5)
        time.sleep(0.05)  # the snapshot reaches the workers
        before = bad.requests()
        result = h.load(weir.addr, threads=2, requests=300)
        self.assertLoadClean(result, min_total=300)
        self.assertEqual(dict(result.backends), {"good": 300})
        self.assertEqual(bad.requests(), before)

    def test_cap_keeps_a_lone_endpoint_in_service(self):
        bad = self.backend("bad", status=500)
        weir = self.weir(h.render_config([h.service(
            "shop", h.version("stable", 100, bad), outlier_detection=OUTLIER)]))
        with h.Client(weir.addr) as c:
            for _ in range(20):
                self.assertEqual(c.get("/").status, 500)
            time.sleep(0.3)
            self.assertEqual(c.get("/").status, 500)
        self.assertFalse(any("ejected" in line for line in weir.output()), weir.tail())


if __name__ == "__main__":
    unittest.main()
