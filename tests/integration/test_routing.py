"""Route matching (host, then longest path prefix, per listener), weighted version choice and
round-robin over a version's endpoints."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


class WeightedSplit(h.WeirTestCase):
    def test_90_10_split_over_5000_requests(self):
        blue, green = self.backend("blue"), self.backend("green")
        weir = self.weir(h.render_config([h.service(
            "shop", h.version("blue", 90, blue), h.version("green", 10, green))]))
        result = h.load(weir.addr, threads=8, requests=5000)
        self.assertLoadClean(result, min_total=5000)
        self.assertEqual(set(result.backends), {"blue", "green"})
        self.assertShare(result.backends, "blue", 0.90, 0.03)
        self.assertShare(result.backends, "green", 0.10, 0.03)

    def test_weight_zero_version_gets_nothing(self):
        blue, green = self.backend("blue"), self.backend("green")
        weir = self.weir(h.render_config([h.service(
            "shop", h.version("blue", 100, blue), h.version("green", 0, green))]))
        result = h.load(weir.addr, threads=2, requests=300)
        self.assertLoadClean(result, min_total=300)
        self.assertEqual(dict(result.backends), {"blue": 300})

    def test_round_robin_within_a_version(self):
        b1, b2 = self.backend("b1"), self.backend("b2")
        weir = self.proxy(b1, b2, proxy={"workers": 1})
        result = h.load(weir.addr, threads=1, requests=100)
        self.assertLoadClean(result, min_total=100)
        self.assertShare(result.backends, "b1", 0.5, 0.05)


class RouteMatching(h.WeirTestCase):
    """One backend per route, named after it, so x-backend tells which route matched."""

    @classmethod
    def setUpClass(cls):
        names = ["exact", "wild", "any", "api", "apiv2", "other", "strict"]
        backends = {n: h.Backend(cls.addClassCleanup, n) for n in names}
        services = [h.service(n, h.version("v", 100, b)) for n, b in backends.items()]
        routes = [
            h.route("exact", host="a.example.com"),
            h.route("wild", host="*.example.com"),
            h.route("any", host="*"),
            h.route("api", host="*", path_prefix="/api/"),
            h.route("apiv2", host="*", path_prefix="/api/v2/"),
            h.route("other", host="*", listener="other"),
            h.route("strict", host="only.example.org", path_prefix="/only/", listener="strict"),
        ]
        cls.edge = h.start_weir(cls.addClassCleanup, h.render_config(
            services, routes, listeners=("public", "other", "strict")))

    def run_route(self, host, target, listener="public"):
        resp = h.get(self.edge.listeners[listener], target, host=host)
        return resp.status, resp.header("x-backend")

    def test_exact_host(self):
        self.assertEqual(self.run_route("a.example.com", "/x"), (200, "exact"))

    def test_exact_host_ignores_case_and_port(self):
        self.assertEqual(self.run_route("A.Example.COM:8080", "/x"), (200, "exact"))

    def test_wildcard_host(self):
        self.assertEqual(self.run_route("b.example.com", "/x"), (200, "wild"))
        self.assertEqual(self.run_route("deep.b.example.com", "/x"), (200, "wild"))

    def test_wildcard_does_not_match_bare_domain(self):
        self.assertEqual(self.run_route("example.com", "/x"), (200, "any"))

    def test_catch_all_host(self):
        self.assertEqual(self.run_route("unknown.test", "/x"), (200, "any"))

    def test_longest_path_prefix_wins(self):
        self.assertEqual(self.run_route("unknown.test", "/api/x"), (200, "api"))
        self.assertEqual(self.run_route("unknown.test", "/api/v2/x"), (200, "apiv2"))
        self.assertEqual(self.run_route("unknown.test", "/api/v3/x"), (200, "api"))
        self.assertEqual(self.run_route("unknown.test", "/apx"), (200, "any"))

    def test_routes_belong_to_their_listener(self):
        self.assertEqual(self.run_route("a.example.com", "/api/x", "other"), (200, "other"))

    def test_no_matching_host_is_404(self):
        status, backend = self.run_route("a.example.com", "/only/x", "strict")
        self.assertEqual((status, backend), (404, None))

    def test_no_matching_path_is_404(self):
        status, backend = self.run_route("only.example.org", "/elsewhere", "strict")
        self.assertEqual((status, backend), (404, None))
        self.assertEqual(self.run_route("only.example.org", "/only/x", "strict"),
                         (200, "strict"))


if __name__ == "__main__":
    unittest.main()
