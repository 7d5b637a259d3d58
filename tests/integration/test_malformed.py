"""Malformed and smuggling-shaped requests over raw sockets. Each must be answered 400 (431/414
where noted) with Connection: close, the connection must close, and nothing may reach the
backend (its /__stats request count is read before and after)."""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

HOST = b"Host: test.local"
BAD = (400,)


def req(*lines, start=b"GET / HTTP/1.1", body=b""):
    return start + b"\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n" + body


def post(*lines, body=b"", version=b"HTTP/1.1"):
    return req(HOST, *lines, start=b"POST /sink " + version, body=body)


CASES = {
    "obs_fold_space": (req(HOST, b"X-A: a", b" folded"), BAD),
    "obs_fold_tab": (req(HOST, b"X-A: a", b"\tfolded"), BAD),
    "bare_cr_in_header_value": (req(HOST, b"X-A: a\rb"), BAD),
    "bare_lf_line_endings": (b"GET / HTTP/1.1\nHost: test.local\nX-A: a\n\n", BAD),
    "bare_lf_in_one_header_line": (b"GET / HTTP/1.1\r\nHost: test.local\nX-A: a\r\n\r\n", BAD),
    "empty_header_name": (req(HOST, b": x"), BAD),
    "space_before_colon_in_host": (req(b"Host : test.local"), BAD),
    "space_before_colon": (req(HOST, b"X-A : x"), BAD),
    "duplicate_host": (req(HOST, b"Host: other.local"), BAD),
    "missing_host_on_http11": (req(b"X-A: a"), BAD),
    "transfer_encoding_on_http10": (
        post(b"Transfer-Encoding: chunked", body=b"0\r\n\r\n", version=b"HTTP/1.0"), BAD),
    "transfer_encoding_and_content_length": (
        post(b"Transfer-Encoding: chunked", b"Content-Length: 5", body=b"0\r\n\r\n"), BAD),
    "two_different_content_lengths": (
        post(b"Content-Length: 5", b"Content-Length: 6", body=b"hello!"), BAD),
    "non_numeric_content_length": (post(b"Content-Length: abc", body=b"abc"), BAD),
    "negative_content_length": (post(b"Content-Length: -5", body=b"hello"), BAD),
    "transfer_encoding_gzip_only": (post(b"Transfer-Encoding: gzip", body=b"hello"), BAD),
    "transfer_encoding_chunked_then_gzip": (
        post(b"Transfer-Encoding: chunked, gzip", body=b"5\r\nhello\r\n0\r\n\r\n"), BAD),
    "invalid_chunk_size": (
        post(b"Transfer-Encoding: chunked", body=b"zz\r\nhello\r\n0\r\n\r\n"), BAD),
    "bare_cr_after_chunk_data": (
        post(b"Transfer-Encoding: chunked", body=b"5\r\nhello\r0\r\n\r\n"), BAD),
    "nul_in_header_value": (req(HOST, b"X-A: a\x00b"), BAD),
    "invalid_method_chars": (req(HOST, start=b"G@T / HTTP/1.1"), BAD),
    # 505 is the RFC's answer for a well-formed but unsupported major version.
    "version_http20": (req(HOST, start=b"GET / HTTP/2.0"), (400, 505)),
    "version_trailing_garbage": (req(HOST, start=b"GET / HTTP/1.1x"), BAD),
    "more_than_100_header_fields": (
        req(HOST, *[b"X-Field-%d: v" % i for i in range(101)]), (431,)),
    "header_block_70_kib": (req(HOST, *[b"X-Big-%d: " % i + b"v" * 7168 for i in range(10)]),
                            (431,)),
    "request_target_9_kib": (req(HOST, start=b"GET /" + b"a" * 9216 + b" HTTP/1.1"), (414,)),
}


class Rejects(h.SharedProxyTestCase):
    def check(self, raw, statuses):
        self.assertEqual(h.get(self.edge.addr, "/warmup").status, 200)
        before = self.origin.requests()
        c = self.client(self.edge, timeout=5)
        try:
            c.send(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # weir may answer and close before reading everything; the answer counts
        resp = self.response_within(c, 5.0, repr(raw[:120]))
        self.assertIn(resp.status, statuses, resp)
        self.assertClosesConnection(c, resp)
        time.sleep(0.05)  # a wrongly forwarded request would have been counted by now
        self.assertEqual(self.origin.requests(), before, "the request reached the backend")
        self.assertWeirAlive(self.edge)

    def test_malformed_request_after_a_good_one_on_the_same_connection(self):
        # The 400 must not depend on the connection being fresh (state of the previous
        # exchange once hid it: the connection just closed).
        c = self.client(self.edge, timeout=5)
        self.assertEqual(c.get("/first").status, 200)
        before = self.origin.requests()
        c.send(req(HOST, b" obs-fold"))
        resp = self.response_within(c, 5.0, "a malformed second request")
        self.assertEqual(resp.status, 400, resp)
        self.assertClosesConnection(c, resp)
        self.assertEqual(self.origin.requests(), before)

    def test_well_formed_control(self):
        # The same shapes, well formed, do reach the backend: the checks above can fail.
        before = self.origin.requests()
        c = self.client(self.edge)
        for raw in (req(HOST, b"X-A: a b"),
                    post(b"Transfer-Encoding: chunked", body=b"5\r\nhello\r\n0\r\n\r\n"),
                    post(b"Content-Length: 5", body=b"hello")):
            c.send(raw)
            self.assertEqual(c.read_response().status, 200)
        self.assertEqual(self.origin.requests() - before, 3)


h.add_cases(Rejects, CASES, "check")


if __name__ == "__main__":
    unittest.main()
