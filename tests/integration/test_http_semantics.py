"""HTTP/1.1 message semantics end to end: bodiless responses, HTTP/1.0 clients, pipelining,
Expect: 100-continue, trailers, Connection: close and request body limits."""

import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

ALPHABET = h.AlphabetPayload(1 << 20)


def pattern(n):
    return ALPHABET.expected(0, n)


class Semantics(h.SharedProxyTestCase):
    def assertNextRequestWorks(self, c):
        resp = c.get("/bytes/7")
        self.assertEqual((resp.status, resp.body), (200, b"abcdefg"), resp)

    def test_head_has_no_body(self):
        c = self.client(self.edge)
        resp = c.request("HEAD", "/bytes/1000")
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.header("content-length"), "1000")
        self.assertNextRequestWorks(c)

    def test_204_and_304_have_no_body(self):
        c = self.client(self.edge)
        for status in (204, 304):
            resp = c.get(f"/status/{status}")
            self.assertEqual((resp.status, resp.body), (status, b""), resp)
            self.assertNextRequestWorks(c)

    def test_http10_client_gets_response_then_close(self):
        c = self.client(self.edge)
        resp = c.get("/bytes/100", version="HTTP/1.0")
        self.assertEqual((resp.status, resp.body), (200, pattern(100)), resp)
        self.assertFalse(resp.chunked)
        self.assertTrue(c.closed_within(2.0), "HTTP/1.0 connection left open")

    def test_http10_keep_alive(self):
        c = self.client(self.edge)
        for _ in range(2):
            resp = c.get("/bytes/100", [("Connection", "keep-alive")], version="HTTP/1.0")
            self.assertEqual((resp.status, resp.body), (200, pattern(100)), resp)
            self.assertIn("keep-alive", resp.connection_tokens())
        self.assertFalse(c.closed_within(0.3))

    def test_http10_client_never_gets_chunked(self):
        c = self.client(self.edge)
        resp = c.get("/chunked/100000", version="HTTP/1.0")
        self.assertEqual(resp.status, 200, resp)
        self.assertFalse(resp.chunked, "chunked sent to an HTTP/1.0 client")
        self.assertEqual(resp.body, ALPHABET.expected(0, 100000))

    def test_pipelined_requests_answered_in_order(self):
        c = self.client(self.edge)
        c.send(b"".join(h.Client.build("GET", t) for t in ("/delay/300", "/status/202",
                                                            "/bytes/7")))
        got = [c.read_response() for _ in range(3)]
        self.assertEqual([(r.status, r.header("x-backend")) for r in got],
                         [(200, "origin"), (202, "origin"), (200, "origin")])
        self.assertEqual(got[2].body, b"abcdefg")

    def test_expect_100_continue_with_curl(self):
        size = 2 * h.MIB
        path = os.path.join(self.tmpdir(), "upload.bin")
        with open(path, "wb") as f:
            f.write(h.BlockPayload(size).expected(0, size))
        host, port = self.edge.addr
        run = h.curl("-T", path, "-H", "Expect: 100-continue", "-w", "\n%{http_code} %{time_total}",
                     f"http://{host}:{port}/sink", timeout=20)
        self.assertEqual(run.returncode, 0, run.stderr)
        body, _, tail = run.stdout.decode().rpartition("\n")
        code, seconds = tail.split()
        self.assertEqual(code, "200", run.stdout)
        self.assertEqual(json.loads(body)["bytes"], size)
        self.assertLess(float(seconds), 0.8, "curl waited for 100 Continue that never came")

    def test_trailers_reach_http11_client(self):
        resp = self.client(self.edge).get("/chunked/100000", [("TE", "trailers")])
        self.assertEqual(resp.status, 200, resp)
        self.assertTrue(resp.chunked)
        self.assertEqual(resp.body, ALPHABET.expected(0, 100000))
        self.assertEqual(resp.trailer("x-trailer"), "done", resp.trailers)

    def test_client_connection_close(self):
        c = self.client(self.edge)
        resp = c.get("/bytes/10", [("Connection", "close")])
        self.assertEqual((resp.status, resp.body), (200, pattern(10)), resp)
        self.assertClosesConnection(c, resp)


class BodyLimit(h.SharedProxyTestCase):
    LIMIT = 1000
    proxy_settings = {"max_request_body_bytes": LIMIT}

    def post_sink(self, body, chunked):
        headers = [("Transfer-Encoding", "chunked")] if chunked else []
        data = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if chunked else body
        c = self.client(self.edge)
        try:
            c.send(h.Client.build("POST", "/sink", headers, data))
        except (BrokenPipeError, ConnectionResetError):
            pass
        return c.read_response()

    def test_content_length_at_limit_is_accepted(self):
        resp = self.post_sink(b"x" * self.LIMIT, chunked=False)
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.json()["bytes"], self.LIMIT)

    def test_content_length_over_limit_is_413_before_the_backend(self):
        before = self.origin.requests()
        resp = self.post_sink(b"x" * (self.LIMIT + 1), chunked=False)
        self.assertEqual(resp.status, 413, resp)
        self.assertEqual(self.origin.requests(), before)

    def test_chunked_over_limit_is_413(self):
        resp = self.post_sink(b"x" * (2 * self.LIMIT), chunked=True)
        self.assertEqual(resp.status, 413, resp)


if __name__ == "__main__":
    unittest.main()
