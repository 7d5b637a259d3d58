"""100 MiB bodies through weir in both directions, verified byte by byte as they stream, while
weir's peak RSS stays far below the body size (it must stream, not buffer)."""

import os
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

SIZE = 100 * h.MIB
RSS_LIMIT_MIB = 80


class Streaming(h.WeirTestCase):
    direct_sink = None  # /sink's answer for BlockPayload(SIZE) sent straight to a backend

    def setUp(self):
        self.origin = self.backend("origin")
        self.edge = self.proxy(self.origin)

    def assertStreamed(self):
        self.assertWeirAlive(self.edge)
        rss = self.edge.peak_rss_mib()
        self.assertLess(rss, RSS_LIMIT_MIB, f"weir peak RSS {rss:.1f} MiB for a "
                        f"{SIZE // h.MIB} MiB body: it buffers bodies")

    def upload(self, addr, payload, chunked):
        with h.Client(addr, timeout=30) as c:
            c.send(h.upload_head("/sink", payload, chunked))
            h.send_body(c, payload, chunked)
            resp = c.read_response()
        self.assertEqual(resp.status, 200, resp)
        return resp.json()

    def expected_sink(self):
        if Streaming.direct_sink is None:
            addr = (self.origin.host, self.origin.port)
            Streaming.direct_sink = self.upload(addr, h.BlockPayload(SIZE), chunked=False)
        return Streaming.direct_sink

    def check_upload(self, chunked):
        got = self.upload(self.edge.addr, h.BlockPayload(SIZE), chunked)
        self.assertEqual(got["bytes"], SIZE)
        self.assertEqual(got, self.expected_sink())
        self.assertStreamed()

    def check_download(self, target, chunked):
        check = h.StreamCheck(h.AlphabetPayload(SIZE))
        resp = self.client(self.edge, timeout=30).get(target, sink=check)
        self.assertEqual(resp.status, 200, resp)
        check.assert_complete(self)
        self.assertEqual(resp.chunked, chunked, resp)
        if not chunked:
            self.assertEqual(resp.header("content-length"), str(SIZE))
        self.assertStreamed()

    def test_backend_sink_hash_is_fnv1a64(self):
        # Pins the reference the 100 MiB uploads are compared with to a known algorithm.
        payload = h.BlockPayload(300_000)
        got = self.upload((self.origin.host, self.origin.port), payload, chunked=False)
        self.assertEqual(got, {"bytes": payload.size,
                               "fnv1a64": h.fnv1a64(payload.expected(0, payload.size))})

    def test_upload_content_length(self):
        self.check_upload(chunked=False)

    def test_upload_chunked(self):
        self.check_upload(chunked=True)

    def test_download_content_length(self):
        self.check_download(f"/bytes/{SIZE}", chunked=False)

    def test_download_chunked(self):
        self.check_download(f"/chunked/{SIZE}", chunked=True)

    def test_echo_both_ways_at_once(self):
        payload = h.BlockPayload(SIZE)
        check = h.StreamCheck(payload)
        c = self.client(self.edge, timeout=30)
        errors = []

        def send():
            try:
                c.send(h.upload_head("/echo", payload, chunked=False))
                h.send_body(c, payload, chunked=False)
            except OSError as e:
                errors.append(e)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        resp = c.read_response(sink=check)
        sender.join(30)
        self.assertEqual(errors, [])
        self.assertEqual(resp.status, 200, resp)
        check.assert_complete(self)
        self.assertStreamed()


if __name__ == "__main__":
    unittest.main()
