"""Version choice end to end: override header and cookie, sticky users across weight changes
(SIGHUP reload), the x-weir-version response header, exact weighted splits, assign_cookie and
the 503 when no version can serve."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


def canary_config(stable, canary, canary_weight, proxy=None, **options):
    return h.render_config([h.service(
        "shop", h.version("stable", 100 - canary_weight, stable),
        h.version("canary", canary_weight, canary), **options)], proxy=proxy)


class Overrides(h.WeirTestCase):
    @classmethod
    def setUpClass(cls):
        cls.stable = h.Backend(cls.addClassCleanup, "stable")
        cls.canary = h.Backend(cls.addClassCleanup, "canary")
        cls.edge = h.start_weir(cls.addClassCleanup, canary_config(
            cls.stable, cls.canary, 1, override_header="x-weir-version",
            override_cookie="weir_version"))

    def test_override_header_reaches_the_named_version(self):
        with h.Client(self.edge.addr) as c:
            for _ in range(50):
                resp = c.get("/", headers=[("X-Weir-Version", "canary")])
                self.assertEqual((resp.status, resp.header("x-backend")), (200, "canary"))
                self.assertEqual(resp.header("x-weir-version"), "canary")

    def test_override_cookie_reaches_the_named_version(self):
        with h.Client(self.edge.addr) as c:
            for _ in range(20):
                resp = c.get("/", headers=[("Cookie", "a=b; weir_version=canary")])
                self.assertEqual(resp.header("x-backend"), "canary")

    def test_unknown_override_falls_back_to_weights(self):
        with h.Client(self.edge.addr) as c:
            seen = {c.get("/", headers=[("X-Weir-Version", "nosuch")]).header("x-backend")
                    for _ in range(20)}
        self.assertIn("stable", seen)

    def test_version_header_names_the_version_that_served(self):
        result = h.load(self.edge.addr, threads=2, requests=200)
        self.assertLoadClean(result, min_total=200)
        with h.Client(self.edge.addr) as c:
            for _ in range(20):
                resp = c.get("/")
                self.assertEqual(resp.header("x-weir-version"), resp.header("x-backend"))


class StrictOverride(h.WeirTestCase):
    def test_strict_override_of_unknown_version_is_503_with_a_reason(self):
        stable, canary = self.backend("stable"), self.backend("canary")
        weir = self.weir(canary_config(stable, canary, 10, override_header="x-weir-version",
                                       override_strict=True, proxy={"version_header": ""}))
        resp = h.get(weir.addr, "/", headers=[("x-weir-version", "nosuch")])
        self.assertEqual(resp.status, 503)
        self.assertIn(b"override names no version", resp.body)
        resp = h.get(weir.addr, "/", headers=[("x-weir-version", "canary")])
        self.assertEqual(resp.header("x-backend"), "canary")
        self.assertIsNone(resp.header("x-weir-version"), "version_header = \"\" disables it")


class OverHttp2(h.WeirTestCase):
    def test_h2_requests_take_the_same_choice_and_carry_the_reason(self):
        stable, canary = self.backend("stable"), self.backend("canary")
        weir = self.weir(h.render_config(
            [h.service("shop", h.version("stable", 100, stable), h.version("canary", 0, canary),
                       override_cookie="weir_version", override_strict=True)],
            listeners=[{"name": "public", "protocols": ["http1", "h2c"]}]))
        url = f"http://127.0.0.1:{weir.addr[1]}/"
        run = h.curl("--http2-prior-knowledge", "-i", "-b", "weir_version=canary", url)
        self.assertRegex(run.stdout, rb"(?m)^HTTP/2 200")
        self.assertRegex(run.stdout, rb"(?im)^x-backend: canary")
        self.assertRegex(run.stdout, rb"(?im)^x-weir-version: canary")
        run = h.curl("--http2-prior-knowledge", "-i", "-b", "weir_version=nosuch", url)
        self.assertRegex(run.stdout, rb"(?m)^HTTP/2 503")
        self.assertIn(b"override names no version", run.stdout)


class Sticky(h.WeirTestCase):
    def test_sticky_user_stays_on_one_version_across_requests_and_a_weight_increase(self):
        stable, canary = self.backend("stable"), self.backend("canary")
        sticky = {"header": "x-user-id"}
        weir = self.weir(canary_config(stable, canary, 5, sticky=sticky))
        users = [f"user-{i}" for i in range(200)]
        first = {}
        with h.Client(weir.addr) as c:
            for u in users:
                first[u] = c.get("/", headers=[("x-user-id", u)]).header("x-backend")
            # One user, 1,000 requests, over two workers' connections: always the same version.
            for i in range(1000):
                if i % 100 == 0:
                    c.close()
                    c = h.Client(weir.addr)
                got = c.get("/", headers=[("x-user-id", users[0])]).header("x-backend")
                self.assertEqual(got, first[users[0]], f"request {i}")
            c.close()
        on_canary = [u for u in users if first[u] == "canary"]
        self.assertLess(len(on_canary), 30)
        weir.reload(canary_config(stable, canary, 20, sticky=sticky))
        after = {}
        with h.Client(weir.addr) as c:
            for u in users:
                after[u] = c.get("/", headers=[("x-user-id", u)]).header("x-backend")
        moved_back = [u for u in on_canary if after[u] != "canary"]
        self.assertEqual(moved_back, [], "a canary user went back to stable as weight grew")
        self.assertGreater(sum(v == "canary" for v in after.values()), len(on_canary))

    def test_assign_cookie_keeps_an_anonymous_client_put(self):
        stable, canary = self.backend("stable"), self.backend("canary")
        weir = self.weir(canary_config(stable, canary, 50, assign_cookie="weir_bucket"))
        with h.Client(weir.addr) as c:
            resp = c.get("/")
            cookie = resp.header("set-cookie")
            self.assertRegex(cookie or "", r"^weir_bucket=\d+; Path=/")
            pair = cookie.split(";")[0]
            for _ in range(100):
                again = c.get("/", headers=[("Cookie", pair)])
                self.assertEqual(again.header("x-backend"), resp.header("x-backend"))
                self.assertIsNone(again.header("set-cookie"))


class Exactness(h.WeirTestCase):
    def test_one_percent_canary_gets_exactly_one_in_each_hundred_per_worker(self):
        stable, canary = self.backend("stable"), self.backend("canary")
        weir = self.weir(canary_config(stable, canary, 1, proxy={"workers": 1}))
        with h.Client(weir.addr) as c:
            for window in range(5):
                names = [c.get("/").header("x-backend") for _ in range(100)]
                self.assertEqual(names.count("canary"), 1, f"window {window}")


if __name__ == "__main__":
    unittest.main()
