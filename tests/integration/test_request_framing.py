"""HTTP/1.1 request framing against a backend that records the raw bytes of every connection:
requests RFC 9110/9112 allow pass (extension methods, a repeated identical Content-Length,
whitespace after "chunked"), and a chunked body that turns bad after its head was forwarded
reaches the backend cut, on a connection that is then closed; whatever followed the bad bytes
never reaches it."""

import os
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


class RawBackend:
    """An in-process backend (own threads). Keeps every connection's bytes and whether it was
    closed by weir; answers each complete request (Content-Length or chunked) 200 "ok"."""

    def __init__(self, cleanups):
        self.conns = []  # [{"data": bytearray, "closed": bool}]
        self.cond = threading.Condition()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.addr = "%s:%d" % self.sock.getsockname()
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()
        cleanups(self.stop)

    def stop(self):
        self.stopping = True
        self.sock.close()

    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        rec = {"data": bytearray(), "closed": False}
        with self.cond:
            self.conns.append(rec)
        used = 0
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    data = b""
                with self.cond:
                    if not data:
                        rec["closed"] = True
                        self.cond.notify_all()
                        return
                    rec["data"] += data
                    self.cond.notify_all()
                    buf = bytes(rec["data"])
                while True:
                    end = self.request_end(buf, used)
                    if end is None:
                        break
                    used = end
                    conn.sendall(b"HTTP/1.1 200 OK\r\nx-backend: raw\r\ncontent-length: 2\r\n\r\nok")

    @staticmethod
    def request_end(buf, start):
        """Where the request starting at buf[start] ends, or None while incomplete."""
        head_end = buf.find(b"\r\n\r\n", start)
        if head_end < 0:
            return None
        head = buf[start:head_end].decode("latin-1").lower()
        pos = head_end + 4
        if "transfer-encoding: chunked" in head:
            while True:
                line_end = buf.find(b"\r\n", pos)
                if line_end < 0:
                    return None
                size = int(buf[pos:line_end].split(b";")[0], 16)
                pos = line_end + 2
                if size == 0:
                    trailers_end = buf.find(b"\r\n\r\n", pos - 2)
                    return None if trailers_end < 0 else trailers_end + 4
                pos += size + 2
                if pos > len(buf):
                    return None
        for line in head.split("\r\n"):
            if line.startswith("content-length:"):
                pos += int(line.split(":", 1)[1])
        return pos if pos <= len(buf) else None

    def wait(self, predicate, timeout=5.0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate(self.conns):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
            return True

    def all_bytes(self):
        with self.cond:
            return b"".join(bytes(c["data"]) for c in self.conns)


class Framing(h.WeirTestCase):
    def setUp(self):
        self.backend = RawBackend(self.addCleanup)
        self.edge = self.weir(h.single_service_config(self.backend.addr))

    def exchange(self, raw):
        c = self.client(self.edge, timeout=5)
        c.send(raw)
        return c, c.read_response()

    def test_extension_methods_are_forwarded(self):
        # RFC 9110 9: any token is a method; weir need not know it to forward it.
        for method in (b"PURGE", b"FOOBAR", b"X-CUSTOM_1", b"MKCALENDAR"):
            with self.subTest(method=method):
                c, resp = self.exchange(method + b" /m HTTP/1.1\r\nHost: a\r\n\r\n")
                self.assertEqual(resp.status, 200, resp)
                self.assertEqual(resp.header("x-backend"), "raw")
                self.assertIn(method + b" /m HTTP/1.1\r\n", self.backend.all_bytes())
        # With a body too, and keep-alive goes on.
        c, resp = self.exchange(b"FOOBAR /b HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(c.get("/after").status, 200)

    def test_repeated_identical_content_length_is_one_length(self):
        for lengths in ([b"Content-Length: 5", b"Content-Length: 5"], [b"Content-Length: 5, 5"],
                        [b"Content-Length: 5", b"content-length: 005"]):
            with self.subTest(lengths=lengths):
                c, resp = self.exchange(b"POST /cl HTTP/1.1\r\nHost: a\r\n" +
                                        b"".join(x + b"\r\n" for x in lengths) + b"\r\nhello")
                self.assertEqual(resp.status, 200, resp)
                self.assertEqual(c.get("/next").status, 200)
        forwarded = self.backend.all_bytes()
        self.assertEqual(forwarded.lower().count(b"content-length: 5\r\n"), 3)
        self.assertEqual(forwarded.count(b"\r\n\r\nhello"), 3)

    def test_chunked_with_trailing_whitespace(self):
        for te in (b"chunked ", b"chunked\t", b"Chunked  "):
            with self.subTest(te=te):
                c, resp = self.exchange(b"POST /te HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: " +
                                        te + b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
                self.assertEqual(resp.status, 200, resp)
                self.assertEqual(c.get("/next").status, 200)

    def test_trailers_pass_when_well_formed(self):
        c, resp = self.exchange(b"POST /t HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                                b"5\r\nhello\r\n0\r\nX-Sum: 1\r\nX-Other: two words\r\n\r\n")
        self.assertEqual(resp.status, 200, resp)
        self.assertIn(b"0\r\nX-Sum: 1\r\nX-Other: two words\r\n\r\n", self.backend.all_bytes())
        self.assertEqual(c.get("/next").status, 200)

    def test_bad_chunk_framing_after_the_head_was_forwarded(self):
        # The head and a first chunk go upstream as they arrive; only then comes bad framing,
        # and behind it a second request. The backend sees a cut body, then its connection
        # closed, and never the second request; the client gets 400 and a close.
        for bad in (b"zz\r\n", b"5\r\nhello\r0\r\n\r\n", b"3\r\nabcXY", b"0\r\n\n",
                    b"0\r\nX: a\r\n folded\r\n\r\n"):
            with self.subTest(bad=bad):
                before = len(self.backend.conns)
                c = self.client(self.edge, timeout=5)
                c.send(b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"5\r\nfirst\r\n")
                self.assertTrue(self.backend.wait(
                    lambda conns: any(b"5\r\nfirst\r\n" in c["data"] for c in conns[before:])),
                    "the head and first chunk did not reach the backend")
                c.send(bad + b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
                resp = self.response_within(c, 5.0, repr(bad))
                self.assertEqual(resp.status, 400, resp)
                self.assertClosesConnection(c, resp)
                rec = next(x for x in self.backend.conns[before:] if b"first" in x["data"])
                self.assertTrue(self.backend.wait(lambda conns: rec["closed"]),
                                "weir kept the backend connection open")
                # Cut: the head, maybe chunks weir had framed already, never the last chunk.
                self.assertTrue(rec["data"].startswith(b"POST /upload HTTP/1.1\r\n"))
                self.assertIsNone(RawBackend.request_end(bytes(rec["data"]), 0),
                                  bytes(rec["data"]))
                time.sleep(0.1)
                self.assertNotIn(b"/smuggled", self.backend.all_bytes())
        self.assertWeirAlive(self.edge)


if __name__ == "__main__":
    unittest.main()
