"""Draining by reload: an endpoint removed from a version, or a version set to weight 0, gets
no new requests, its in-flight ones finish, its idle pooled connections close; replacing every
endpoint of a version one by one under load costs no failed request."""

import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


def config(*versions):
    return h.render_config([h.service("shop", *versions)])


class Draining(h.WeirTestCase):
    def run_load(self, weir, seconds):
        out = {}
        t = threading.Thread(target=lambda: out.setdefault(
            "result", h.load(weir.addr, threads=4, duration=seconds)), daemon=True)
        t.start()
        return t, out

    def test_rolling_endpoint_replacement_by_reload_under_load(self):
        a, b, c, d = (self.backend(n) for n in "abcd")
        weir = self.weir(config(h.version("v1", 100, a, b)))
        t, out = self.run_load(weir, 3.0)
        time.sleep(0.5)
        weir.reload(config(h.version("v1", 100, b, c)))
        time.sleep(0.3)
        a.kill()
        time.sleep(0.4)
        weir.reload(config(h.version("v1", 100, c, d)))
        time.sleep(0.3)
        b.kill()
        t.join(15)
        result = out["result"]
        self.assertLoadClean(result, min_total=200)
        self.assertGreater(result.backends["d"], 0)

    def test_weight_zero_drains_a_version_under_load(self):
        stable, canary = self.backend("stable"), self.backend("canary")
        weir = self.weir(config(h.version("stable", 50, stable), h.version("canary", 50, canary)))
        t, out = self.run_load(weir, 2.0)
        time.sleep(0.5)
        weir.reload(config(h.version("stable", 100, stable), h.version("canary", 0, canary)))
        time.sleep(0.3)
        before = canary.requests()
        # Pooled connections to the drained version are closed once idle.
        self.assertTrue(h.wait_until(lambda: canary.stats()["active_connections"] <= 1, 3.0),
                        canary.stats())
        t.join(15)
        self.assertLoadClean(out["result"], min_total=200)
        self.assertEqual(canary.requests(), before)


if __name__ == "__main__":
    unittest.main()
