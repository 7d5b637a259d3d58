"""Routes match the normalized path and Host (dot segments removed, slashes merged, unreserved
escapes decoded; Host lower-cased without a trailing dot), and that normal form is what the
backend gets: no spelling of a path reaches a backend by a route its canonical form does not
take. Over HTTP/1.1 (raw sockets and curl --path-as-is) and HTTP/2 (curl, h2c)."""

import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

# Spellings of /admin/x that a backend normalizing paths serves as /admin/x.
ADMIN_SPELLINGS = ["/admin/x", "/x/../admin/x", "/%61dmin/x", "//admin/x", "/./admin/x",
                   "/%2e%2e/admin/x", "/admin/./x", "/app/%2E%2E/admin/x", "///admin//x"]
INTERNAL_HOSTS = ["internal.example.com", "internal.example.com.", "internal.example.com.:80",
                  "INTERNAL.Example.COM", "Internal.Example.Com.:8080"]


class Normalization(h.WeirTestCase):
    @classmethod
    def setUpClass(cls):
        names = ["app", "locked", "internal"]
        backends = {n: h.Backend(cls.addClassCleanup, n) for n in names}
        services = [h.service(n, h.version("v", 100, b)) for n, b in backends.items()]
        routes = [h.route("app"), h.route("locked", path_prefix="/admin"),
                  h.route("internal", host="internal.example.com"),
                  h.route("app", listener="h2c"), h.route("locked", path_prefix="/admin",
                                                          listener="h2c")]
        listeners = ("public", {"name": "h2c", "protocols": ["h2c"]})
        cls.edge = h.start_weir(cls.addClassCleanup,
                                h.render_config(services, routes, listeners=listeners))

    def raw(self, target, host="shop.test"):
        resp = h.get(self.edge.addr, target, host=host)
        return resp.status, resp.header("x-backend")

    def curl(self, target, *extra, listener="public", host="shop.test"):
        addr = "%s:%d" % self.edge.listeners[listener]
        r = h.curl("--path-as-is", "-o", "/dev/null", "-w", "%{http_code} %header{x-backend}",
                   "-H", "Host: " + host, *extra, "http://" + addr + target)
        self.assertEqual(r.returncode, 0, r.stderr)
        status, _, backend = r.stdout.decode().partition(" ")
        return int(status), backend or None

    def seen(self, target, host="shop.test", listener="public", *extra):
        """The request as the backend's /headers echo saw it."""
        addr = "%s:%d" % self.edge.listeners[listener]
        r = h.curl("--path-as-is", "-H", "Host: " + host, *extra, "http://" + addr + target)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def test_every_spelling_of_admin_goes_to_the_admin_route(self):
        for target in ADMIN_SPELLINGS:
            with self.subTest(target=target):
                self.assertEqual(self.raw(target), (200, "locked"))
                self.assertEqual(self.curl(target), (200, "locked"))

    def test_every_spelling_of_admin_over_http2(self):
        for target in ADMIN_SPELLINGS:
            with self.subTest(target=target):
                self.assertEqual(self.curl(target, "--http2-prior-knowledge", listener="h2c"),
                                 (200, "locked"))

    def test_other_paths_stay_on_the_catch_all(self):
        for target in ["/", "/x/admin", "/admin/../x", "/%2e%2e", "/x%2F..%2Fadmin"]:
            with self.subTest(target=target):
                self.assertEqual(self.raw(target), (200, "app"))

    def test_host_spellings_match_the_host_route(self):
        for host in INTERNAL_HOSTS:
            with self.subTest(host=host):
                self.assertEqual(self.raw("/admin/x", host=host), (200, "internal"))
                self.assertEqual(self.curl("/admin/x", host=host), (200, "internal"))

    def test_the_backend_gets_the_normal_form(self):
        seen = self.seen("/x/..//%68eaders?q=/../%2e&r=%7B")
        self.assertEqual(seen["target"], "/headers?q=/../%2e&r=%7B")
        seen = self.seen("//headers", host="Internal.Example.COM.:8080")
        self.assertEqual(seen["target"], "/headers")
        hosts = [v for k, v in seen["headers"] if k.lower() == "host"]
        self.assertEqual(hosts, ["internal.example.com:8080"])
        forwarded = [v for k, v in seen["headers"] if k.lower() == "x-forwarded-host"]
        self.assertEqual(forwarded, ["internal.example.com:8080"])

    def test_the_backend_gets_the_normal_form_over_http2(self):
        seen = self.seen("/a/../headers", "shop.test", "h2c", "--http2-prior-knowledge")
        self.assertEqual(seen["target"], "/headers")

    def test_encoded_slash_stays_encoded_and_is_no_separator(self):
        self.assertEqual(self.raw("/admin%2Fx"), (200, "locked"))
        self.assertEqual(self.raw("/x%2F..%2Fadmin"), (200, "app"))
        # Not decoded, and not split: the backend's /headers route is not "/x%2F../headers".
        resp = h.get(self.edge.addr, "/headers%2fx", host="shop.test")
        self.assertEqual(resp.header("x-backend"), "app")
        self.assertNotEqual(resp.header("content-type"), "application/json")

    def test_refused_targets_and_hosts_never_reach_a_backend(self):
        for target, host in [("/a%00", "shop.test"), ("/a%zz", "shop.test"),
                             ("/<x>", "shop.test"), ("/", "a:b:c"), ("/", "]")]:
            with self.subTest(target=target, host=host):
                status, backend = self.raw(target, host=host)
                self.assertEqual((status, backend), (400, None))

    def test_refused_targets_over_http2(self):
        for target in ["/a%00", "/a%zz", "/a%4"]:
            with self.subTest(target=target):
                self.assertEqual(self.curl(target, "--http2-prior-knowledge", listener="h2c"),
                                 (400, None))


    def test_dot_segments_with_parameters_are_refused(self):
        # Tomcat and Jetty read "/..;/admin" as /admin: refused, over both protocols.
        for target in ["/..;/admin/x", "/x/..;/admin", "/%2e%2e;p=1/admin", "/.;/admin"]:
            with self.subTest(target=target):
                self.assertEqual(self.raw(target), (400, None))
                self.assertEqual(self.curl(target, "--http2-prior-knowledge", listener="h2c"),
                                 (400, None))

    def test_path_parameters_do_not_step_around_a_route(self):
        for target in ["/admin;jsessionid=1/x", "/admin..;/x", "/admin;x"]:
            with self.subTest(target=target):
                self.assertEqual(self.raw(target), (200, "locked"))
        self.assertEqual(self.raw("/x;v=1/admin"), (200, "app"))

if __name__ == "__main__":
    unittest.main()
