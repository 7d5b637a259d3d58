"""Request headers as the backend receives them (its /headers echoes them as JSON)."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


class Forwarded(h.SharedProxyTestCase):
    def seen(self, headers=(), host="shop.example.com", method="GET", target="/headers"):
        with h.Client(self.edge.addr) as c:
            resp = c.request(method, target, headers, host=host)
        self.assertEqual(resp.status, 200, resp)
        return resp.json()

    @staticmethod
    def values(seen, name):
        return [v for k, v in seen["headers"] if k.lower() == name]

    def test_x_forwarded_for_added(self):
        self.assertEqual(self.values(self.seen(), "x-forwarded-for"), ["127.0.0.1"])

    def test_x_forwarded_for_appended_to_incoming(self):
        got = self.values(self.seen([("X-Forwarded-For", "203.0.113.7")]), "x-forwarded-for")
        self.assertEqual(", ".join(got), "203.0.113.7, 127.0.0.1")

    def test_x_forwarded_proto_and_host(self):
        seen = self.seen(host="shop.example.com:8080")
        self.assertEqual(self.values(seen, "x-forwarded-proto"), ["http"])
        self.assertEqual(self.values(seen, "x-forwarded-host"), ["shop.example.com:8080"])

    def test_via(self):
        via = self.values(self.seen([("Via", "1.0 upstream-cache")]), "via")
        self.assertIn("1.0 upstream-cache", ", ".join(via))
        self.assertIn("1.1 weir", ", ".join(via))

    def test_request_id_generated_when_absent(self):
        ids = [self.values(self.seen(), "x-request-id") for _ in range(2)]
        for one in ids:
            self.assertEqual(len(one), 1, ids)
            self.assertGreaterEqual(len(one[0]), 8, ids)
        self.assertNotEqual(ids[0], ids[1])

    def test_request_id_kept_when_present(self):
        seen = self.seen([("X-Request-Id", "client-id-42")])
        self.assertEqual(self.values(seen, "x-request-id"), ["client-id-42"])

    def test_hop_by_hop_headers_removed(self):
        seen = self.seen([("Connection", "keep-alive, x-secret"),
                          ("Keep-Alive", "timeout=5, max=1000"),
                          ("Proxy-Connection", "keep-alive"),
                          ("TE", "deflate"),
                          ("Upgrade", "foo/1"),
                          ("X-Secret", "do-not-forward"),
                          ("X-Kept", "yes")])
        names = {k.lower() for k, _ in seen["headers"]}
        self.assertNotIn("x-secret", names)
        self.assertNotIn("proxy-connection", names)
        self.assertNotIn("upgrade", names)
        # weir may set its own Connection/Keep-Alive/TE upstream, but never relay the client's.
        self.assertNotIn("x-secret", " ".join(self.values(seen, "connection")).lower())
        self.assertNotIn("max=1000", " ".join(self.values(seen, "keep-alive")))
        self.assertNotIn("deflate", " ".join(self.values(seen, "te")))
        self.assertEqual(self.values(seen, "x-kept"), ["yes"])

    def test_host_forwarded_in_normal_form(self):
        # Routes matched the normal form (lower case, no trailing dot, port kept): so does the
        # backend's Host.
        seen = self.seen(host="Shop.Example.COM.:8080")
        self.assertEqual(self.values(seen, "host"), ["shop.example.com:8080"])

    def test_method_target_and_repeated_headers_preserved(self):
        seen = self.seen([("X-Multi", "1"), ("X-Multi", "2"), ("X-Odd", "a  b\t c")],
                         method="DELETE", target="/headers?a=1&b=%20x")
        self.assertEqual((seen["method"], seen["target"]), ("DELETE", "/headers?a=1&b=%20x"))
        self.assertEqual(", ".join(self.values(seen, "x-multi")), "1, 2")
        self.assertEqual(self.values(seen, "x-odd"), ["a  b\t c"])


if __name__ == "__main__":
    unittest.main()
