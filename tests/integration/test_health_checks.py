"""Active health probes: an endpoint whose /healthz starts failing stops receiving traffic
within interval x unhealthy_threshold plus one snapshot, comes back when it passes again; an
unhealthy version's share goes to stable; with nothing healthy weir answers 503 and says why."""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

INTERVAL_MS = 100
UNHEALTHY = 2
CHECK = {"path": "/healthz", "interval_ms": INTERVAL_MS, "timeout_ms": 200,
         "unhealthy_threshold": UNHEALTHY, "healthy_threshold": 1}


def set_health(backend, status, weir=None, expect=None):
    """Makes backend's /healthz answer status; with weir, waits for the log line `expect` and
    for the snapshot it published to reach the workers."""
    resp = h.get((backend.host, backend.port), f"/__health/{status}")
    assert resp.status == 200, resp
    if weir:
        weir.wait_line(expect, timeout=5)
        time.sleep(0.05)


class HealthChecks(h.WeirTestCase):
    def test_failing_endpoint_stops_receiving_traffic_in_time_and_returns(self):
        good, bad = self.backend("good"), self.backend("bad")
        weir = self.weir(h.render_config([h.service(
            "shop", h.version("stable", 100, good, bad), health_check=CHECK)]))
        result = h.load(weir.addr, threads=2, requests=200)
        self.assertLoadClean(result, min_total=200)
        self.assertGreater(result.backends["bad"], 50)

        set_health(bad, 503)
        failed_at = time.monotonic()
        weir.wait_line(r"health: shop/stable endpoint 127\.0\.0\.1:\d+ is down "
                       r"\(2 consecutive failures, last: status 503\)", timeout=5)
        # Traffic stops within interval x threshold + one snapshot (and jitter of the first
        # probe's phase: one more interval).
        budget = (INTERVAL_MS * (UNHEALTHY + 1) + 150) / 1000.0
        last_change, last_count = time.monotonic(), bad.requests()
        with h.Client(weir.addr) as c:
            while time.monotonic() - failed_at < budget + 1.0:
                self.assertEqual(c.get("/").status, 200)
                n = bad.requests()
                if n != last_count:
                    last_change, last_count = time.monotonic(), n
        self.assertLessEqual(last_change - failed_at, budget,
                             "bad endpoint kept receiving traffic")
        result = h.load(weir.addr, threads=2, requests=200)
        self.assertLoadClean(result, min_total=200)
        self.assertEqual(dict(result.backends), {"good": 200})

        set_health(bad, 200, weir, r"health: shop/stable endpoint .* is up")
        result = h.load(weir.addr, threads=2, requests=200)
        self.assertGreater(result.backends["bad"], 50)

    def test_unhealthy_version_hands_its_share_to_stable_then_503(self):
        stable, canary = self.backend("stable"), self.backend("canary")
        weir = self.weir(h.render_config([h.service(
            "shop", h.version("stable", 50, stable), h.version("canary", 50, canary),
            health_check=CHECK)]))
        set_health(canary, 500, weir, r"health: shop/canary .* is down")
        result = h.load(weir.addr, threads=2, requests=200)
        self.assertLoadClean(result, min_total=200)
        self.assertEqual(dict(result.backends), {"stable": 200})
        set_health(stable, 500, weir, r"health: shop/stable .* is down")
        resp = h.get(weir.addr, "/")
        self.assertEqual(resp.status, 503)
        self.assertIn(b"no version of this service has a healthy endpoint", resp.body)

    def test_version_override_of_expected_status_and_path(self):
        stable, canary = self.backend("stable"), self.backend("canary")
        # The canary's check expects 418 from /status/418: it stays healthy; stable's /nosuch
        # path gives 200 from the default route, so both stay up.
        weir = self.weir(h.render_config([h.service(
            "shop", h.version("stable", 50, stable),
            h.version("canary", 50, canary,
                      health_check={"path": "/status/418", "expected_status": [418]}),
            health_check=CHECK)]))
        time.sleep(INTERVAL_MS * (UNHEALTHY + 2) / 1000.0)
        self.assertFalse(any("is down" in line for line in weir.output()), weir.tail())
        result = h.load(weir.addr, threads=2, requests=100)
        self.assertEqual(set(result.backends), {"stable", "canary"})


class WithAdmin(h.WeirTestCase):
    def test_admin_view_shows_endpoint_health_and_weight_changes_keep_it(self):
        good, sick = self.backend("good"), self.backend("sick")
        broken = self.backend("broken", status=500)  # probes pass, requests fail: ejected
        canary = self.backend("canary")
        weir = self.weir(h.render_config(
            [h.service("shop", h.version("stable", 100, good, sick, broken),
                       h.version("canary", 0, canary), health_check=CHECK,
                       outlier_detection={"consecutive_failures": 3, "ejection_ms": 60000})],
            admin=h.admin_settings(self.tmpdir())))
        set_health(sick, 503, weir, r"health: shop/stable endpoint .* is down")
        with h.Client(weir.addr) as c:
            for _ in range(30):
                c.get("/")
        weir.wait_line(r"outlier: shop/stable endpoint .* is ejected", timeout=5)

        def health():
            r = h.admin_call(weir, "GET", "/api/v1/services/shop", token="viewer")
            self.assertEqual(r.status, 200, r)
            return {ep["address"]: ep["health"] for v in r.json()["versions"]
                    for ep in v["endpoints"]}

        self.assertEqual(health(), {good.addr: "healthy", sick.addr: "unhealthy",
                                    broken.addr: "ejected", canary.addr: "healthy"})
        # A runtime weight change publishes a snapshot that still skips both.
        r = h.admin_call(weir, "PUT", "/api/v1/services/shop/weights", headers=[("If-Match", "*")],
                         body={"weights": {"stable": 50, "canary": 50}, "reason": "test"})
        self.assertEqual(r.status, 200, r)
        time.sleep(0.05)  # the snapshot reaches the workers
        result = h.load(weir.addr, threads=2, requests=200)
        self.assertLoadClean(result, min_total=200)
        self.assertEqual(set(result.backends), {"good", "canary"})
        self.assertEqual(health()[broken.addr], "ejected")


if __name__ == "__main__":
    unittest.main()
