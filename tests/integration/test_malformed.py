"""Malformed and smuggling-shaped requests over raw sockets. Each must be answered 400 (431/414
where noted) with Connection: close, the connection must close, and nothing may reach the
backend (its /__stats request count is read before and after). Heads, chunked trailers, Host
values and request targets."""

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
    # Trailers follow the head's rules: a bare LF does not end them (what follows would be read
    # as the next request), and obs-fold is refused, not unfolded.
    "bare_lf_ends_the_trailers": (
        post(b"Transfer-Encoding: chunked",
             body=b"5\r\nhello\r\n0\r\n\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"), BAD),
    "bare_lf_after_a_trailer_field": (
        post(b"Transfer-Encoding: chunked", body=b"5\r\nhello\r\n0\r\nX-T: 1\r\n\n"), BAD),
    "obs_fold_in_trailers": (
        post(b"Transfer-Encoding: chunked",
             body=b"5\r\nhello\r\n0\r\nX-T: a\r\n folded\r\n\r\n"), BAD),
    "space_before_colon_in_trailers": (
        post(b"Transfer-Encoding: chunked", body=b"5\r\nhello\r\n0\r\nX-T : a\r\n\r\n"), BAD),
    "bare_cr_in_trailers": (
        post(b"Transfer-Encoding: chunked", body=b"5\r\nhello\r\n0\r\nX-T: a\rb\r\n\r\n"), BAD),
    # RFC 9112 3.2: Host is required on HTTP/1.1 also with an absolute-form target.
    "absolute_form_without_host": (req(start=b"GET http://test.local/ HTTP/1.1"), BAD),
    # Host must be uri-host [":" port].
    "host_with_two_colons": (req(b"Host: a:b:c"), BAD),
    "host_close_bracket": (req(b"Host: ]"), BAD),
    "host_port_not_a_number": (req(b"Host: a:http"), BAD),
    "host_port_too_big": (req(b"Host: a:65536"), BAD),
    "host_empty_name_with_port": (req(b"Host: :80"), BAD),
    "host_bad_ipv6": (req(b"Host: [zz::1]"), BAD),
    "absolute_form_bad_authority": (req(HOST, start=b"GET http://a:b:c/ HTTP/1.1"), BAD),
    # Targets: invalid percent-encoding, %00, characters a client must encode.
    "target_bad_escape": (req(HOST, start=b"GET /a%zz HTTP/1.1"), BAD),
    "target_truncated_escape": (req(HOST, start=b"GET /a%4 HTTP/1.1"), BAD),
    "target_encoded_nul": (req(HOST, start=b"GET /a%00.html HTTP/1.1"), BAD),
    "target_less_than": (req(HOST, start=b"GET /<script> HTTP/1.1"), BAD),
    "target_double_quote": (req(HOST, start=b'GET /a"b HTTP/1.1'), BAD),
    "target_brace": (req(HOST, start=b"GET /{x} HTTP/1.1"), BAD),
    "target_backslash": (req(HOST, start=b"GET /a\\..\\admin HTTP/1.1"), BAD),
    "query_bad_escape": (req(HOST, start=b"GET /a?q=%zz HTTP/1.1"), BAD),
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

    def test_bare_cr_is_refused_at_once(self):
        # The head is not complete, and no more bytes come: the 400 must not wait for the
        # header timeout (10 s).
        for raw in (b"GET / HTTP/1.1\r\nHost: test.local\rX", b"GET /a\rb",
                    b"GET / HTTP/1.1\r\nHost: test.local\r\nX-A: a\r\r"):
            c = self.client(self.edge, timeout=5)
            c.send(raw)
            started = time.monotonic()
            resp = self.response_within(c, 2.0, repr(raw))
            self.assertEqual(resp.status, 400, resp)
            self.assertLess(time.monotonic() - started, 2.0)
            self.assertClosesConnection(c, resp)

    def test_bare_cr_split_from_the_next_byte(self):
        c = self.client(self.edge, timeout=5)
        c.send(b"GET / HTTP/1.1\r\nHost: test.local\r")
        time.sleep(0.2)
        c.send(b"X")
        resp = self.response_within(c, 2.0, "bare CR, then X")
        self.assertEqual(resp.status, 400, resp)
        self.assertClosesConnection(c, resp)

    def test_well_formed_control(self):
        # The same shapes, well formed, do reach the backend: the checks above can fail.
        before = self.origin.requests()
        c = self.client(self.edge)
        good = (req(HOST, b"X-A: a b"),
                post(b"Transfer-Encoding: chunked", body=b"5\r\nhello\r\n0\r\n\r\n"),
                post(b"Transfer-Encoding: chunked",
                     body=b"5\r\nhello\r\n0\r\nX-T: a\r\nX-U: b\r\n\r\n"),
                post(b"Content-Length: 5", body=b"hello"),
                req(b"Host: test.local.:80"),
                req(HOST, start=b"GET http://test.local/a%2Fb?q=%7B%7D HTTP/1.1"),
                req(HOST, start=b"GET /a/../b//c/%7e?x={y}|[z] HTTP/1.1"))
        for raw in good:
            c.send(raw)
            self.assertEqual(c.read_response().status, 200, raw)
        self.assertEqual(self.origin.requests() - before, len(good))


h.add_cases(Rejects, CASES, "check")


if __name__ == "__main__":
    unittest.main()
