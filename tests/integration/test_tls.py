"""TLS termination: certificates chosen by SNI, TLS 1.2/1.3 only, ALPN, session resumption,
handshake timeout, certificate errors at load and on reload. Certificates are made at test time
with the openssl CLI; clients are curl and openssl s_client."""

import json
import os
import re
import signal
import socket
import subprocess
import shutil
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


def tls_config(backend, certs, tls_settings=None, protocols=None):
    listener = {"name": "public", "tls": certs}
    if tls_settings:
        listener["tls_settings"] = tls_settings
    if protocols:
        listener["protocols"] = protocols
    return h.render_config([h.service("svc", h.version("v1", 100, backend))],
                           listeners=[listener])


class Termination(h.WeirTestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="weir-tls-")
        cls.addClassCleanup(shutil.rmtree, cls.dir, True)
        cls.a = h.make_cert(cls.dir, "a.example.com", "a.example.com", "www.a.example.com")
        cls.b = h.make_cert(cls.dir, "b.example.com", "b.example.com", "*.b.test")
        cls.origin = h.Backend(cls.addClassCleanup, "origin")
        cls.edge = h.start_weir(cls.addClassCleanup, tls_config(cls.origin, [cls.a, cls.b]))

    def url(self, host, path="/"):
        port = self.edge.addr[1]
        return [f"--resolve", f"{host}:{port}:127.0.0.1", f"https://{host}:{port}{path}"]

    def test_https_request_reaches_backend_with_forwarded_proto(self):
        run = h.curl("-k", "--http1.1", *self.url("a.example.com", "/headers"))
        self.assertEqual(run.returncode, 0, run.stderr)
        seen = json.loads(run.stdout)
        self.assertIn(["X-Forwarded-Proto", "https"], seen["headers"])

    def test_sni_exact_wildcard_and_default(self):
        addr = self.edge.addr
        self.assertEqual(h.tls_subject(addr, "a.example.com"), "a.example.com")
        self.assertEqual(h.tls_subject(addr, "WWW.A.example.com"), "a.example.com")
        self.assertEqual(h.tls_subject(addr, "b.example.com"), "b.example.com")
        self.assertEqual(h.tls_subject(addr, "x.b.test"), "b.example.com")
        # A wildcard covers one label only; unknown names and no SNI get the first cert.
        self.assertEqual(h.tls_subject(addr, "y.x.b.test"), "a.example.com")
        self.assertEqual(h.tls_subject(addr, "unknown.example"), "a.example.com")
        self.assertEqual(h.tls_subject(addr, None, ["-noservername"]), "a.example.com")

    def test_old_protocol_versions_refused(self):
        self.assertIsNone(h.tls_subject(self.edge.addr, "a.example.com", ["-tls1_1"]))
        self.assertEqual(h.tls_subject(self.edge.addr, "a.example.com", ["-tls1_2"]),
                         "a.example.com")
        # The server still works after failed handshakes.
        run = h.curl("-k", *self.url("a.example.com"))
        self.assertEqual(run.returncode, 0, run.stderr)

    def test_alpn_picks_h2_or_http11(self):
        for flag, want in (("--http2", "2"), ("--http1.1", "1.1")):
            run = h.curl("-k", flag, "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                         *self.url("b.example.com"))
            self.assertEqual(run.stdout.decode(), f"{want} 200", run.stderr)

    def test_session_resumption_across_connections(self):
        sess = os.path.join(self.dir, "sess.pem")
        addr = f"{self.edge.addr[0]}:{self.edge.addr[1]}"
        base = ["openssl", "s_client", "-ign_eof", "-connect", addr, "-servername", "a.example.com"]
        # The ticket arrives after the handshake in TLS 1.3: send a request so it is read.
        req = "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        first = subprocess.run(base + ["-sess_out", sess], input=req, capture_output=True,
                               text=True, timeout=15)
        self.assertIn("New,", first.stdout)
        reused = 0
        for _ in range(4):  # two workers: resumption must work whichever one answers
            again = subprocess.run(base + ["-sess_in", sess], input=req, capture_output=True,
                                   text=True, timeout=15)
            reused += "Reused," in again.stdout
        self.assertEqual(reused, 4)

    def test_large_download_and_upload(self):
        payload = os.urandom(3 * h.MIB)
        path = os.path.join(self.dir, "up.bin")
        with open(path, "wb") as f:
            f.write(payload)
        run = h.curl("-k", "--http1.1", "--data-binary", "@" + path, *self.url("a.example.com",
                                                                              "/echo"))
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertEqual(run.stdout, payload)
        run = h.curl("-k", "--http1.1", *self.url("a.example.com", "/bytes/20000000"))
        self.assertEqual(len(run.stdout), 20000000)


class Handshake(h.WeirTestCase):
    def setUp(self):
        self.a = h.make_cert(self.tmpdir(), "a.example.com", "a.example.com")
        self.origin = self.backend("origin")

    def test_handshake_timeout_closes_silent_client(self):
        edge = self.weir(tls_config(self.origin, [self.a], {"handshake_timeout_ms": 300}))
        with socket.create_connection(edge.addr, timeout=5) as s:
            start = time.monotonic()
            self.assertEqual(s.recv(100), b"")  # closed without a byte from the client
            self.assertLess(time.monotonic() - start, 3.0)

    def test_garbage_instead_of_client_hello_is_refused(self):
        edge = self.weir(tls_config(self.origin, [self.a]))
        with socket.create_connection(edge.addr, timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while True:
                piece = s.recv(4096)
                if not piece:
                    break
                data += piece
            self.assertNotIn(b"HTTP/1.1", data)  # at most a TLS alert
        run = h.curl("-k", f"https://127.0.0.1:{edge.addr[1]}/")
        self.assertEqual(run.returncode, 0, run.stderr)


class CertificateErrors(h.WeirTestCase):
    def run_weir(self, *args):
        return subprocess.run([h.WEIR_BIN, *args], capture_output=True, text=True, timeout=10,
                              stdin=subprocess.DEVNULL)

    def test_broken_certificate_is_a_located_config_error(self):
        cert, key = h.make_cert(self.tmpdir(), "a.example.com", "a.example.com")
        bad = self.write("bad.crt", "not a certificate\n")
        _, other_key = h.make_cert(self.tmpdir(), "other", "other")
        cases = {
            "cert": ([(bad, key)], "listener[0].tls.certificate[0].cert", "not a PEM"),
            "missing": ([(cert + ".nope", key)], "listener[0].tls.certificate[0].cert",
                        "cannot read"),
            "mismatch": ([(cert, other_key)], "listener[0].tls.certificate[0].key",
                         "does not match"),
        }
        for name, (certs, key_path, why) in cases.items():
            with self.subTest(name):
                path = self.write("w.toml", tls_config("127.0.0.1:9", certs))
                run = self.run_weir("--check", path)
                self.assertEqual(run.returncode, 1, run.stderr)
                self.assertRegex(run.stderr,
                                 rf"(?m)^{re.escape(path)}:\d+:\d+: {re.escape(key_path)}: ")
                self.assertIn(why, run.stderr)

    def test_reload_rereads_certificates_and_keeps_old_ones_when_broken(self):
        d = self.tmpdir()
        cert, key = h.make_cert(d, "first.example", "first.example")
        origin = self.backend("origin")
        edge = self.weir(tls_config(origin, [(cert, key)]))
        self.assertEqual(h.tls_subject(edge.addr, "first.example"), "first.example")
        # Broken file: the reload fails and the running certificate stays.
        with open(cert, "w") as f:
            f.write("garbage\n")
        mark = len(edge.output())
        edge.signal(signal.SIGHUP)
        edge.wait_line(r"reload failed", start=mark)
        edge.wait_line(r"tls\.certificate\[0\]\.cert: .*not a PEM", start=mark)
        self.assertEqual(h.tls_subject(edge.addr, "first.example"), "first.example")
        # A good new certificate in the same place is picked up by the next reload.
        h.make_cert(d, "second.example", "second.example")
        os.replace(os.path.join(d, "second.example.crt"), cert)
        os.replace(os.path.join(d, "second.example.key"), key)
        mark = len(edge.output())
        edge.signal(signal.SIGHUP)
        edge.wait_line(r"weir: reloaded", start=mark)
        self.assertTrue(h.wait_until(
            lambda: h.tls_subject(edge.addr, "first.example") == "second.example", 5))
        self.assertWeirAlive(edge)


if __name__ == "__main__":
    unittest.main()
