"""Clients that hang up in the middle of large responses (as every load generator does when
its time is up). weir must drop those exchanges without touching the freed connection: found
by bench/run.sh h1-1mib, where weir crashed with a heap-use-after-free when a write error in
the worker's flush retired an exchange whose backend was still sending."""

import os
import random
import selectors
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

CONNS = 48
SECONDS = 8.0
BODY = 16 * h.MIB  # far more than the socket buffers: the backend is still sending at hang-up


class ClientAbort(h.WeirTestCase):
    def test_hang_ups_mid_response_leave_weir_serving(self):
        origin = self.backend("origin")
        edge = self.proxy(origin, proxy={"workers": 2})
        request = (f"GET /bytes/{BODY} HTTP/1.1\r\nHost: test.local\r\n\r\n").encode()
        rng = random.Random(7)
        sel = selectors.DefaultSelector()
        budget = {}  # socket -> bytes still to read before hanging up

        def open_one():
            s = socket.create_connection(edge.addr, timeout=h.IO_TIMEOUT)
            s.sendall(request)
            s.setblocking(False)
            budget[s] = rng.randrange(0, 2 * h.MIB)
            sel.register(s, selectors.EVENT_READ)

        def hang_up(s):
            sel.unregister(s)
            del budget[s]
            s.close()  # unread data: the kernel answers weir's next bytes with a reset

        hang_ups = 0
        try:
            for _ in range(CONNS):
                open_one()
            deadline = time.monotonic() + SECONDS
            while time.monotonic() < deadline and edge.alive():
                for key, _ in sel.select(timeout=0.5):
                    s = key.fileobj
                    try:
                        data = s.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    budget[s] -= len(data)
                    if not data or budget[s] <= 0:
                        hang_up(s)
                        hang_ups += 1
                        open_one()
        finally:
            for s in list(budget):
                hang_up(s)
        self.assertWeirAlive(edge)
        self.assertGreater(hang_ups, 100, "too few hang-ups to mean anything")
        # Still serving, both small and large responses.
        with self.client(edge) as c:
            self.assertEqual(c.get("/").status, 200)
        run = h.curl("-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                     f"http://{edge.addr[0]}:{edge.addr[1]}/bytes/{4 * h.MIB}")
        self.assertEqual(run.stdout.decode(), f"200 {4 * h.MIB}")
        edge.assert_no_sanitizer_report()


if __name__ == "__main__":
    unittest.main()
