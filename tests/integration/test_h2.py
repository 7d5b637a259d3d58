"""HTTP/2 downstream: h2 over TLS (ALPN) and h2c by prior knowledge, forwarded to HTTP/1.1
backends; flow control; malformed requests never reach a backend; abusive frame sequences
(rapid reset, CONTINUATION flood, PING flood, HPACK bomb) close the abusive connection while
other clients keep being served. Clients: curl, nghttp, h2load, and python3-h2/hyperframe
(Debian packages) for what well-behaved clients cannot send."""

import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import h2.config
import h2.connection
import h2.events
from hyperframe.frame import ContinuationFrame, HeadersFrame, PingFrame

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


class RawH2:
    """An h2c client connection that sends whatever it is told (no outbound validation)."""

    def __init__(self, addr, timeout=5):
        self.sock = socket.create_connection(addr, timeout=timeout)
        cfg = h2.config.H2Configuration(client_side=True, validate_outbound_headers=False,
                                        normalize_outbound_headers=False,
                                        validate_inbound_headers=False)
        self.conn = h2.connection.H2Connection(cfg)
        self.conn.initiate_connection()
        self.flush()

    def close(self):
        self.sock.close()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def send_raw(self, data):
        self.sock.sendall(data)

    def request(self, headers, body=None, end_stream=True):
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, headers, end_stream=end_stream and body is None)
        if body is not None:
            self.conn.send_data(sid, body, end_stream=end_stream)
        self.flush()
        return sid

    def events(self, timeout=5):
        """Reads until the connection closes or timeout; returns (events, closed)."""
        out = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return out, False
            except ConnectionResetError:
                return out, True
            if not data:
                return out, True
            try:
                out += self.conn.receive_data(data)
            except Exception as e:  # noqa: BLE001 - the peer may have given up mid-frame
                out.append(e)
                return out, True
            self.flush()
        return out, False

    def outcome(self, sid, timeout=5):
        """'reset', 'goaway', a status int, or None, for stream sid."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events, closed = self.events(0.5)
            for e in events:
                if isinstance(e, h2.events.ResponseReceived) and e.stream_id == sid:
                    return int(dict(e.headers)[b":status"])
                if isinstance(e, h2.events.StreamReset) and e.stream_id == sid:
                    return "reset"
                if isinstance(e, h2.events.ConnectionTerminated):
                    return "goaway"
            if closed:
                return "closed"
        return None


def base_headers(path="/", authority="test.local", method="GET"):
    return [(":method", method), (":scheme", "http"), (":authority", authority),
            (":path", path)]


class H2(h.WeirTestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="weir-h2-")
        cls.addClassCleanup(shutil.rmtree, cls.dir, True)
        cls.cert = h.make_cert(cls.dir, "a.example.com", "a.example.com")
        cls.origin = h.Backend(cls.addClassCleanup, "origin")
        listeners = [{"name": "tls", "tls": [cls.cert]},
                     {"name": "plain", "protocols": ["http1", "h2c"]}]
        svc = h.service("svc", h.version("v1", 100, cls.origin))
        cls.edge = h.start_weir(cls.addClassCleanup, h.render_config(
            [svc], [h.route("svc", listener="tls"), h.route("svc", listener="plain")],
            listeners=listeners))
        cls.tls = cls.edge.listeners["tls"]
        cls.plain = cls.edge.listeners["plain"]

    def tls_url(self, path="/"):
        return f"https://127.0.0.1:{self.tls[1]}{path}"

    def plain_url(self, path="/"):
        return f"http://127.0.0.1:{self.plain[1]}{path}"

    def assertServing(self):
        run = h.curl("--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}",
                     self.plain_url())
        self.assertEqual(run.stdout, b"200", run.stderr)
        self.assertWeirAlive(self.edge)

    # --- well-behaved clients

    def test_h2_over_tls_h2c_and_http1_on_the_same_plain_listener(self):
        for argv, want in ((["-k", "--http2", self.tls_url()], "2 200"),
                           (["--http2-prior-knowledge", self.plain_url()], "2 200"),
                           ([self.plain_url()], "1.1 200")):
            run = h.curl("-o", "/dev/null", "-w", "%{http_version} %{http_code}", *argv)
            self.assertEqual(run.stdout.decode(), want, (argv, run.stderr))

    def test_request_is_reframed_for_http1_backend(self):
        run = h.curl("-k", "--http2", "-H", "Cookie: a=1", "-H", "Cookie: b=2",
                     self.tls_url("/headers?q=1"))
        seen = json.loads(run.stdout)
        names = [k.lower() for k, _ in seen["headers"]]
        self.assertEqual(seen["target"], "/headers?q=1")
        self.assertEqual(seen["version"], "1.1")
        self.assertIn(["Host", f"127.0.0.1:{self.tls[1]}"], seen["headers"])
        self.assertEqual(names.count("host"), 1)
        self.assertIn(["cookie", "a=1; b=2"], seen["headers"])
        self.assertIn(["X-Forwarded-Proto", "https"], seen["headers"])
        self.assertNotIn("te", names)

    def test_large_upload_and_download_stream_intact(self):
        payload = os.urandom(8 * h.MIB)
        path = os.path.join(self.dir, "up.bin")
        with open(path, "wb") as f:
            f.write(payload)
        for url in (self.tls_url("/echo"), self.plain_url("/echo")):
            flag = "--http2" if url.startswith("https") else "--http2-prior-knowledge"
            run = h.curl("-k", flag, "--data-binary", "@" + path, url)
            self.assertEqual(run.returncode, 0, run.stderr)
            self.assertTrue(run.stdout == payload, f"echo through {url} differs")
            # Chunked upstream (no content-length from the client).
            run = h.curl("-k", flag, "-H", "Transfer-Encoding:", "-H", "Content-Length:",
                         "--data-binary", "@" + path, url)
            self.assertTrue(run.stdout == payload, f"unsized echo through {url} differs")

    def test_slow_reader_with_small_window(self):
        # A 64 KiB stream window (-w 16): weir must follow flow control over a large body.
        run = subprocess.run(["nghttp", "-n", "-s", "-w", "16", "-W", "16",
                              self.plain_url("/bytes/20000000")], capture_output=True,
                             timeout=60, text=True)
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertRegex(run.stdout, r"200\s+19M")

    def test_h2load_many_streams(self):
        for url in (self.tls_url(), self.plain_url()):
            run = subprocess.run(["h2load", "-n", "2000", "-c", "4", "-m", "10", url],
                                 capture_output=True, text=True, timeout=60)
            self.assertIn("2000 succeeded, 0 failed, 0 errored", run.stdout, run.stdout)
            self.assertIn("status codes: 2000 2xx", run.stdout)

    def test_trailers_and_head(self):
        run = h.curl("--http2-prior-knowledge", "-I", self.plain_url("/bytes/100"))
        self.assertIn(b"content-length: 100", run.stdout.lower())
        run = h.curl("--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}",
                     self.plain_url("/status/404"))
        self.assertEqual(run.stdout, b"404")

    # --- malformed requests

    def test_malformed_requests_never_reach_backend(self):
        cases = {
            "uppercase_name": base_headers() + [("X-Upper", "1")],
            "connection_header": base_headers() + [("connection", "keep-alive")],
            "te_not_trailers": base_headers() + [("te", "gzip")],
            "missing_path": [(":method", "GET"), (":scheme", "http"),
                             (":authority", "test.local")],
            "unknown_pseudo": base_headers() + [(":foo", "bar")],
            "pseudo_after_regular": [(":method", "GET"), ("x-a", "1"), (":scheme", "http"),
                                     (":authority", "a"), (":path", "/")],
            "newline_in_value": base_headers() + [("x-a", "a\r\nx-b: b")],
            "no_host": [(":method", "GET"), (":scheme", "http"), (":path", "/")],
        }
        before = self.origin.requests()
        for name, headers in cases.items():
            with self.subTest(name):
                c = RawH2(self.plain)
                try:
                    sid = c.request(headers)
                    result = c.outcome(sid)
                finally:
                    c.close()
                self.assertIn(result, ("reset", "goaway", "closed", 400), name)
        self.assertEqual(self.origin.requests(), before)
        self.assertServing()

    def test_content_length_mismatch_is_reset(self):
        c = RawH2(self.plain)
        try:
            sid = c.request(base_headers("/echo", method="POST") + [("content-length", "10")],
                            body=b"x" * 20)
            self.assertIn(c.outcome(sid), ("reset", "goaway", "closed"))
        finally:
            c.close()
        self.assertServing()

    # --- abuse

    def assertAbuseEndsConnection(self, c, data):
        """Sends data on c (weir may close while it is being written); then c must end with a
        GOAWAY or a close, and another client must still be served."""
        try:
            c.send_raw(data)
        except OSError:
            pass
        events, closed = c.events(10)
        c.close()
        self.assertTrue(closed or any(isinstance(e, h2.events.ConnectionTerminated)
                                      for e in events), events[-3:])
        self.assertServing()

    def test_rapid_reset_closes_connection(self):
        c = RawH2(self.plain)
        for _ in range(1500):
            sid = c.conn.get_next_available_stream_id()
            c.conn.send_headers(sid, base_headers("/delay/1000"))
            c.conn.reset_stream(sid)
        self.assertAbuseEndsConnection(c, c.conn.data_to_send())

    def test_continuation_flood_closes_connection(self):
        c = RawH2(self.plain)
        first = HeadersFrame(1)
        first.data = c.conn.encoder.encode(base_headers())
        first.flags = set()  # no END_HEADERS: CONTINUATION frames follow
        # Empty fragments cost the server the most per byte received.
        flood = b"".join(ContinuationFrame(1).serialize() for _ in range(200))
        self.assertAbuseEndsConnection(c, first.serialize() + flood)

    def test_ping_flood_closes_connection(self):
        c = RawH2(self.plain)
        self.assertAbuseEndsConnection(c, b"".join(
            PingFrame(0, opaque_data=b"12345678").serialize() for _ in range(2000)))

    def test_hpack_bomb_closes_connection(self):
        c = RawH2(self.plain)
        # One 4 KiB header in the dynamic table, then a block that references it many times:
        # a few bytes on the wire, megabytes decoded.
        big = ("x-big", "v" * 4000)
        sid = c.request(base_headers() + [big])
        c.outcome(sid, timeout=2)
        frame = HeadersFrame(c.conn.get_next_available_stream_id())
        frame.flags = {"END_HEADERS", "END_STREAM"}
        frame.data = c.conn.encoder.encode(base_headers() + [big] * 2000)
        self.assertAbuseEndsConnection(c, frame.serialize())

    def test_oversized_header_list_refused(self):
        before = self.origin.requests()
        c = RawH2(self.plain)
        try:
            sid = c.request(base_headers() + [(f"x-h{i}", "v" * 1000) for i in range(70)])
            self.assertIn(c.outcome(sid), ("reset", 431))
        finally:
            c.close()
        self.assertEqual(self.origin.requests(), before)
        self.assertServing()


class Refusals(h.WeirTestCase):
    """weir's own answers to refused streams reach HTTP/2 clients whole: HEADERS, the body and
    END_STREAM, with RST_STREAM(NO_ERROR) only after them when the upload had not ended."""

    def setUp(self):
        self.origin = self.backend("origin")
        svc = h.service("svc", h.version("v1", 100, self.origin))
        self.edge = h.start_weir(self.addCleanup, h.render_config(
            [svc], [h.route("svc", listener="plain")],
            listeners=[{"name": "plain", "protocols": ["http1", "h2c"]}],
            proxy={"max_request_body_bytes": 1024}))

    def whole_response(self, c, sid, timeout=5):
        """(status, body, ended, reset) for stream sid, reading until it ends or is reset."""
        status, body, ended, reset = None, b"", False, False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (ended or reset):
            events, closed = c.events(0.5)
            for e in events:
                if getattr(e, "stream_id", None) != sid:
                    continue
                if isinstance(e, h2.events.ResponseReceived):
                    status = int(dict(e.headers)[b":status"])
                elif isinstance(e, h2.events.DataReceived):
                    body += e.data
                    c.conn.acknowledge_received_data(e.flow_controlled_length, sid)
                elif isinstance(e, h2.events.StreamEnded):
                    ended = True
                elif isinstance(e, h2.events.StreamReset):
                    reset = True
            c.flush()
            if closed:
                break
        return status, body, ended, reset

    def test_400_for_connect(self):
        c = RawH2(self.edge.addr)
        try:
            sid = c.request([(":method", "CONNECT"), (":authority", "test.local:443")])
            status, body, ended, reset = self.whole_response(c, sid)
        finally:
            c.close()
        self.assertEqual((status, ended, reset), (400, True, False), body)
        self.assertIn(b"400", body)
        self.assertEqual(self.origin.requests(), 0)

    def test_413_reaches_the_client_before_the_upload_is_stopped(self):
        c = RawH2(self.edge.addr)
        try:
            sid = c.request(base_headers("/sink", method="POST") + [("content-length", "100000")],
                            body=b"x" * 1000, end_stream=False)
            status, body, ended, _ = self.whole_response(c, sid)
        finally:
            c.close()
        self.assertEqual((status, ended), (413, True), body)
        self.assertIn(b"413", body)
        self.assertEqual(self.origin.requests(), 0)


class MixedCaseUpstream(h.WeirTestCase):
    """HTTP/1.1 header names are case-insensitive, HTTP/2's are lower case: weir lowers a
    backend's mixed-case response header names and keeps their values as they are."""

    def test_response_header_names_are_lowered(self):
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                self.send_response(200)
                self.send_header("X-Mixed-Case", "Keep This Value")
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "5")
                self.end_headers()
                self.wfile.write(b"hello")

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        origin = "%s:%d" % server.server_address
        edge = self.weir(h.render_config([h.service("svc", h.version("v1", 100, origin))],
                                         listeners=[{"name": "public", "protocols": ["h2c"]}]))
        run = subprocess.run(["nghttp", "-v", f"http://127.0.0.1:{edge.addr[1]}/"],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertIn("x-mixed-case: Keep This Value", run.stdout)
        self.assertIn("content-type: text/plain", run.stdout)
        self.assertIn("content-length: 5", run.stdout)
        self.assertNotRegex(run.stdout, r"recv \(stream_id=\d+\) [^:\s]*[A-Z]")
        self.assertIn("hello", run.stdout)


class Drain(h.WeirTestCase):
    def test_sigterm_sends_goaway_and_finishes_streams(self):
        origin = self.backend("origin")
        listeners = [{"name": "public", "protocols": ["h2c"]}]
        edge = self.weir(h.render_config([h.service("svc", h.version("v1", 100, origin))],
                                         listeners=listeners))
        # nghttp, because python-h2 drops every frame after a GOAWAY.
        client = subprocess.Popen(["nghttp", "-v", f"http://127.0.0.1:{edge.addr[1]}/delay/700"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(client.kill)
        time.sleep(0.3)
        edge.signal(signal.SIGTERM)
        out, err = client.communicate(timeout=15)
        self.assertEqual(client.returncode, 0, err)
        self.assertRegex(out, r"recv GOAWAY frame <[^>]*>\s*\(last_stream_id=13, "
                              r"error_code=NO_ERROR")
        self.assertIn(":status: 200", out)
        self.assertRegex(out, r"recv DATA frame <[^>]*flags=0x01")
        self.assertEqual(edge.wait_exit(10), 0)


if __name__ == "__main__":
    unittest.main()
