"""Upstream TLS: weir as a TLS client to its backends ([service.tls] / [service.version.tls]).
Backends are Python ssl + http.server in this process (weir-backend speaks plain HTTP only);
certificates are made at test time with the openssl CLI."""

import http.server
import os
import re
import shutil
import socketserver
import ssl
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


class TlsBackend:
    """An HTTP/1.1 keep-alive server over TLS on 127.0.0.1:0, counting handshakes, resumed
    sessions and the SNI each client sent. client_ca: require a client certificate."""

    def __init__(self, cleanups, cert, key, client_ca=None):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        if client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(client_ca)
        self.lock = threading.Lock()
        self.server_names = []
        self.handshakes = 0
        self.resumed = 0
        self.client_subjects = []
        self.paths = []
        ctx.sni_callback = lambda sock, name, _ctx: self._note_sni(name)
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                self.request.settimeout(h.IO_TIMEOUT)
                self.request.do_handshake()  # raises on a failed handshake: no request then
                with backend.lock:
                    backend.handshakes += 1
                    backend.resumed += 1 if self.request.session_reused else 0
                    peer = self.request.getpeercert()
                    if peer:
                        backend.client_subjects.append(dict(x[0] for x in peer["subject"]))
                super().setup()

            def do_GET(self):
                with backend.lock:
                    backend.paths.append(self.path)
                body = b"tls-ok " + self.path.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

            def get_request(self):
                sock, addr = self.socket.accept()
                return ctx.wrap_socket(sock, server_side=True,
                                       do_handshake_on_connect=False), addr

            def handle_error(self, request, client_address):
                pass  # failed handshakes are the point of some tests

        self.server = Server(("127.0.0.1", 0), Handler)
        self.addr = "127.0.0.1:%d" % self.server.server_address[1]
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        cleanups(self.server.server_close)
        cleanups(self.server.shutdown)

    def _note_sni(self, name):
        with self.lock:
            self.server_names.append(name)

    def snapshot(self):
        with self.lock:
            return self.handshakes, self.resumed, list(self.server_names)


def tls_config(backend, tls, proxy=None, admin=None):
    return h.render_config([h.service("svc", h.version("v1", 100, backend.addr, tls=tls))],
                           proxy=proxy, admin=admin)


class UpstreamTls(h.WeirTestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="weir-utls-")
        cls.addClassCleanup(shutil.rmtree, cls.dir, True)
        cls.cert, cls.key = h.make_cert(cls.dir, "backend.test", "backend.test")
        cls.other_cert, _ = h.make_cert(cls.dir, "other.test", "other.test")
        cls.client_cert, cls.client_key = h.make_cert(cls.dir, "weir-client", "weir-client")

    def backend(self, **kw):
        return TlsBackend(self.addCleanup, self.cert, self.key, **kw)

    def service_view(self, weir):
        r = h.admin_call(weir, "GET", "/api/v1/services/svc")
        self.assertEqual(r.status, 200, r)
        return r.json()

    def endpoint_failures(self, weir):
        view = self.service_view(weir)
        return [ep["failures"] for v in view["versions"] for ep in v["endpoints"]]

    def test_verified_with_ca_file_sends_sni_and_reuses_connections(self):
        b = self.backend()
        weir = h.start_weir(self.addCleanup,
                            tls_config(b, {"ca_file": self.cert, "sni": "backend.test"}))
        with h.Client(weir.addr) as c:
            for i in range(20):
                r = c.get(f"/item/{i}")
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.body, f"tls-ok /item/{i}".encode())
        handshakes, _, names = b.snapshot()
        # One client connection lives on one worker: its requests share one pooled upstream
        # connection.
        self.assertEqual(handshakes, 1, names)
        self.assertEqual(names, ["backend.test"])

    def test_wrong_ca_is_a_counted_connect_failure(self):
        b = self.backend()
        tmp = self.tmpdir()
        weir = h.start_weir(self.addCleanup,
                            tls_config(b, {"ca_file": self.other_cert, "sni": "backend.test"},
                                       admin=h.admin_settings(tmp)))
        r = h.get(weir.addr, "/")
        self.assertEqual(r.status, 502, r)
        weir.wait_line(r"upstream 127\.0\.0\.1:\d+: TLS handshake failed: .*certificate verify "
                       r"failed", stream="stderr")
        failures = self.endpoint_failures(weir)
        self.assertGreaterEqual(sum(f["connect"] for f in failures), 1, failures)
        m = h.admin_call(weir, "GET", "/metrics")
        self.assertRegex(m.body.decode(), r"weir_upstream_tls_handshake_failures_total [1-9]")

    def test_mirror_to_a_tls_version(self):
        """Shadow copies to a version behind TLS go over TLS (verified, pooled)."""
        origin = h.Backend(self.addCleanup, "origin")
        shadow = self.backend()
        svc = h.service("svc", h.version("v1", 100, origin),
                        h.version("v2", 0, shadow.addr,
                                  tls={"ca_file": self.cert, "sni": "backend.test"}),
                        mirror={"version": "v2", "percent": 100})
        weir = h.start_weir(self.addCleanup, h.render_config(
            [svc], proxy={"workers": 1}, admin=h.admin_settings(self.tmpdir())))

        def copies_answered(n):
            mirror = self.service_view(weir)["versions"][1]["mirror"]
            return mirror["sent"] == n and mirror["in_flight"] == 0 and mirror

        with h.Client(weir.addr) as c:
            for i in range(10):
                r = c.get(f"/copy/{i}")
                self.assertEqual((r.status, r.header("x-weir-version")), (200, "v1"), r)
                # One copy at a time, so each can find the previous one's pooled connection.
                self.assertTrue(h.wait_until(lambda: copies_answered(i + 1), 10),
                                self.service_view(weir))
        self.assertEqual(sorted(shadow.paths), sorted(f"/copy/{i}" for i in range(10)))
        self.assertEqual(copies_answered(10)["responses"]["2xx"], 10)
        handshakes, _, names = shadow.snapshot()
        self.assertLessEqual(handshakes, 2, names)  # pooled, not one handshake per copy
        self.assertEqual(set(names), {"backend.test"})

    def test_name_mismatch_fails_and_verify_false_accepts(self):
        b = self.backend()
        weir = h.start_weir(self.addCleanup,
                            tls_config(b, {"ca_file": self.cert, "sni": "wrong.test"}))
        self.assertEqual(h.get(weir.addr, "/").status, 502)
        weir.wait_line(r"TLS handshake failed", stream="stderr")
        self.assertIn("wrong.test", b.snapshot()[2])
        # No name given: the endpoint is an IP literal, checked against the certificate's IPs.
        weir.reload(tls_config(b, {"ca_file": self.cert}))
        self.assertEqual(h.get(weir.addr, "/").status, 502)
        weir.reload(tls_config(b, {"verify": False}))
        self.assertEqual(h.get(weir.addr, "/").status, 200)

    def test_sessions_resume_on_new_connections(self):
        b = self.backend()
        weir = h.start_weir(self.addCleanup,
                            tls_config(b, {"ca_file": self.cert, "sni": "backend.test"},
                                       proxy={"workers": 1, "upstream_max_idle": 0}))
        for i in range(6):
            self.assertEqual(h.get(weir.addr, f"/{i}").status, 200)
        handshakes, resumed, _ = b.snapshot()
        self.assertEqual(handshakes, 6)
        self.assertGreaterEqual(resumed, 4, (handshakes, resumed))

    def test_client_certificate(self):
        b = self.backend(client_ca=self.client_cert)
        settings = {"ca_file": self.cert, "sni": "backend.test"}
        weir = h.start_weir(self.addCleanup, tls_config(b, settings))
        self.assertEqual(h.get(weir.addr, "/").status, 502)
        weir.reload(tls_config(b, {**settings, "cert": self.client_cert, "key": self.client_key}))
        self.assertEqual(h.get(weir.addr, "/").status, 200)
        self.assertEqual(b.client_subjects[-1].get("commonName"), "weir-client")

    def test_service_default_and_version_override(self):
        tls_b = self.backend()
        plain = h.Backend(self.addCleanup, "plain")
        config = h.render_config([h.service(
            "svc",
            h.version("v1", 50, tls_b.addr),
            h.version("v2", 50, plain.addr, tls={"enabled": False}),
            tls={"ca_file": self.cert, "sni": "backend.test"})])
        weir = h.start_weir(self.addCleanup, config)
        seen = set()
        for i in range(20):
            r = h.get(weir.addr, "/", headers=[("x-weir-version", "v1" if i % 2 else "v2")])
            self.assertEqual(r.status, 200, r)
            seen.add(r.header("x-weir-version"))
        self.assertEqual(seen, {"v1", "v2"})
        self.assertGreaterEqual(plain.requests(), 1)

    def test_health_checks_speak_tls(self):
        good, bad = self.backend(), self.backend()
        check = {"path": "/healthz", "interval_ms": 100, "timeout_ms": 2000,
                 "unhealthy_threshold": 1, "healthy_threshold": 1}
        config = h.render_config([h.service(
            "svc",
            h.version("v1", 50, good.addr, tls={"ca_file": self.cert, "sni": "backend.test"}),
            h.version("v2", 50, bad.addr, tls={"ca_file": self.other_cert,
                                               "sni": "backend.test"}),
            health_check=check)], admin=h.admin_settings(self.tmpdir()))
        weir = h.start_weir(self.addCleanup, config)
        weir.wait_line(r"health: svc/v2 endpoint \S+ is down \(.*TLS handshake: certificate "
                       r"verify failed", stream="stderr")
        self.assertTrue(h.wait_until(lambda: good.paths.count("/healthz") >= 3, 10), good.paths)
        view = self.service_view(weir)
        health = {v["name"]: v["endpoints"][0]["health"] for v in view["versions"]}
        self.assertEqual(health, {"v1": "healthy", "v2": "unhealthy"})
        # Every request now goes to the healthy TLS version.
        for _ in range(5):
            self.assertEqual(h.get(weir.addr, "/").status, 200)

    def test_broken_ca_file_is_a_config_error_and_keeps_the_running_config(self):
        b = self.backend()
        good = tls_config(b, {"ca_file": self.cert, "sni": "backend.test"})
        weir = h.start_weir(self.addCleanup, good)
        missing = os.path.join(self.tmpdir(), "missing.pem")
        bad = tls_config(b, {"ca_file": missing, "sni": "backend.test"})
        start = len(weir.lines)
        with open(weir.config_path, "w") as f:
            f.write(bad)
        weir.signal(h.signal.SIGHUP)
        weir.wait_line(r"weir\.toml:\d+:\d+: service\[0\]\.version\[0\]\.tls\.ca_file: "
                       r"cannot read .*missing\.pem", stream="stderr", start=start)
        self.assertEqual(h.get(weir.addr, "/").status, 200)
        # At start the same error stops weir.
        path = os.path.join(self.tmpdir(), "bad.toml")
        with open(path, "w") as f:
            f.write(bad)
        run = h.subprocess.run([h.WEIR_BIN, "--config", path], capture_output=True, text=True,
                               timeout=30, stdin=h.subprocess.DEVNULL)
        self.assertNotEqual(run.returncode, 0)
        self.assertRegex(run.stderr, r"bad\.toml:\d+:\d+: service\[0\]\.version\[0\]\.tls\.ca_file")

    def test_config_errors(self):
        cases = [
            ({"cert": self.client_cert}, r"tls\.key: a client certificate needs both"),
            ({"sni": "not a host"}, r"tls\.sni: 'not a host' is not a host name"),
            ({"verfy": False}, r"tls\.verfy: unknown key 'verfy'; did you mean 'verify'"),
        ]
        for tls, pattern in cases:
            path = os.path.join(self.tmpdir(), "c.toml")
            with open(path, "w") as f:
                f.write(h.render_config([h.service("svc", h.version("v1", 100, "127.0.0.1:1",
                                                                     tls=tls))]))
            run = h.subprocess.run([h.WEIR_BIN, "--check", path], capture_output=True,
                                   text=True, timeout=30, stdin=h.subprocess.DEVNULL)
            self.assertEqual(run.returncode, 1, run)
            self.assertRegex(run.stdout + run.stderr, r"c\.toml:\d+:\d+: service\[0\]\.version"
                                                      r"\[0\]\." + pattern)


if __name__ == "__main__":
    unittest.main()
