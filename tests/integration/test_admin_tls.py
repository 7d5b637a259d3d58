"""HTTPS and mTLS on the admin listener ([admin.tls]): curl and weirctl over TLS with bearer
tokens still required, client certificates required or optional, plain HTTP refused without an
answer, handshake timeout, broken certificates as config errors, certificates re-read on
reload. Certificates come from test CAs made with the openssl CLI."""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


class AdminTls(h.WeirTestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="weir-admintls-")
        cls.addClassCleanup(shutil.rmtree, cls.dir, True)
        cls.ca = h.make_ca(cls.dir, "admin-ca")
        cls.other_ca = h.make_ca(cls.dir, "other-ca")
        cls.server = h.make_cert(cls.dir, "admin.test", "admin.test", ca=cls.ca, ips=["127.0.0.1"])
        # Signed by the right CA but not for 127.0.0.1: the host name check must refuse it.
        cls.wrong_name = h.make_cert(cls.dir, "elsewhere.test", "elsewhere.test", ca=cls.ca)
        cls.alice = h.make_cert(cls.dir, "alice", "alice.client", ca=cls.ca)
        cls.mallory = h.make_cert(cls.dir, "mallory", "mallory.client", ca=cls.other_ca)
        cls.origin = h.Backend(cls.addClassCleanup, "origin")

    def config(self, tmp, **tls):
        tls = {"cert": self.server[0], "key": self.server[1], **tls}
        return h.render_config([h.service("svc", h.version("v1", 100, self.origin))],
                               admin=h.admin_settings(tmp, tls=tls))

    def start(self, **tls):
        tmp = self.tmpdir()
        return h.start_weir(self.addCleanup, self.config(tmp, **tls),
                            path=os.path.join(tmp, "weir.toml"))

    def curl(self, weir, path="/api/v1/services", token="ci", cert=None, ca=None,
             extra=("--http1.1",), write_out="%{http_code}"):
        port = weir.admin[1]
        args = [*extra, "--resolve", f"admin.test:{port}:127.0.0.1",
                "--cacert", (ca or self.ca)[0], "-o", "-", "-w", "\n" + write_out]
        if token:
            args += ["-H", f"Authorization: Bearer {h.ADMIN_TOKENS[token][1]}"]
        if cert:
            args += ["--cert", cert[0], "--key", cert[1]]
        run = h.curl(*args, f"https://admin.test:{port}{path}", timeout=30)
        body, _, code = run.stdout.decode().rpartition("\n")
        if run.returncode != 0:
            return body, None, run.stderr.decode()
        return body, code if write_out != "%{http_code}" else int(code), run.stderr.decode()

    def test_https_still_needs_a_token(self):
        weir = self.start()
        body, status, err = self.curl(weir)
        self.assertEqual(status, 200, err)
        self.assertIn('"svc"', body)
        self.assertEqual(self.curl(weir, token=None)[1], 401)
        self.assertEqual(self.curl(weir, "/healthz", token=None)[1], 200)  # open_healthz
        self.assertEqual(self.curl(weir, "/metrics", token=None)[1], 401)
        # TLS 1.2 and 1.3 only, and HTTP/1.1 even for a client that offers h2.
        self.assertEqual(self.curl(weir, extra=["--tlsv1.2", "--tls-max", "1.2"])[1], 200)
        self.assertEqual(self.curl(weir, extra=["--http2"], write_out="%{http_version}")[1], "1.1")
        tls11 = ["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]
        self.assertIsNone(h.tls_subject(weir.admin, extra=tls11))
        self.assertEqual(h.tls_subject(weir.admin, extra=["-tls1_2"]), "admin.test")
        # weir's certificate is checked: another CA's client trust store refuses it.
        _, status, err = self.curl(weir, ca=self.other_ca)
        self.assertIsNone(status)
        self.assertIn("certificate", err)

    def test_client_certificate_required(self):
        weir = self.start(client_ca=self.ca[0])
        _, status, err = self.curl(weir, cert=self.alice)
        self.assertEqual(status, 200, err)
        self.assertEqual(self.curl(weir, cert=self.alice, token=None)[1], 401)  # mTLS + token
        self.assertIsNone(self.curl(weir)[1])  # no certificate: the handshake fails
        self.assertIsNone(self.curl(weir, "/healthz", token=None)[1])
        self.assertIsNone(self.curl(weir, cert=self.mallory)[1])  # another CA's certificate

    def test_client_certificate_optional(self):
        weir = self.start(client_ca=self.ca[0], client_verify="optional")
        self.assertEqual(self.curl(weir)[1], 200)
        self.assertEqual(self.curl(weir, cert=self.alice)[1], 200)
        self.assertIsNone(self.curl(weir, cert=self.mallory)[1])  # sent, so it must verify

    def test_weirctl_over_https(self):
        weir = self.start(client_ca=self.ca[0])
        client = ["--cert", self.alice[0], "--key", self.alice[1]]
        run = h.weirctl(weir, "--cacert", self.ca[0], *client, "status", scheme="https")
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertRegex(run.stdout, r"(?m)^svc\s+v1\b")
        # The same through the environment.
        env = {"WEIR_CACERT": self.ca[0], "WEIR_CERT": self.alice[0], "WEIR_KEY": self.alice[1]}
        run = h.weirctl(weir, "--json", "status", scheme="https", env=env)
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertIn('"svc"', run.stdout)
        # The wrong CA: exit 3 like an unreachable weir, saying why.
        run = h.weirctl(weir, "--cacert", self.other_ca[0], *client, "status", scheme="https")
        self.assertEqual(run.returncode, 3, run.stderr)
        self.assertIn("certificate", run.stderr)
        self.assertIn("--cacert", run.stderr)
        self.assertEqual(run.stdout, "")
        # --insecure skips the server check (the client certificate is still needed).
        run = h.weirctl(weir, "--insecure", *client, "status", scheme="https",
                        env={"WEIR_CACERT": self.other_ca[0]})
        self.assertEqual(run.returncode, 0, run.stderr)
        # No client certificate: refused by weir, and weirctl says what it needs.
        run = h.weirctl(weir, "--cacert", self.ca[0], "status", scheme="https")
        self.assertEqual(run.returncode, 3, run.stderr)
        self.assertIn("--cert", run.stderr)
        # Plain HTTP against the HTTPS port.
        run = h.weirctl(weir, "status")
        self.assertEqual(run.returncode, 3, run.stderr)
        # A missing client key file is a usage error.
        run = h.weirctl(weir, "--cacert", self.ca[0], "--cert", self.alice[0], "--key",
                        os.path.join(self.dir, "absent.key"), "status", scheme="https")
        self.assertEqual(run.returncode, 2, run.stderr)

    def test_weirctl_checks_the_host_name(self):
        weir = self.start(cert=self.wrong_name[0], key=self.wrong_name[1])
        run = h.weirctl(weir, "--cacert", self.ca[0], "status", scheme="https")
        self.assertEqual(run.returncode, 3, run.stderr)
        self.assertIn("mismatch", run.stderr)
        run = h.weirctl(weir, "--cacert", self.ca[0], "--insecure", "status", scheme="https")
        self.assertEqual(run.returncode, 0, run.stderr)

    def test_plain_http_gets_no_answer(self):
        weir = self.start()
        with h.Client(weir.admin) as c:
            token = h.ADMIN_TOKENS["ci"][1]
            c.send(h.Client.build("GET", "/api/v1/services",
                                  [("Authorization", f"Bearer {token}")], host="admin"))
            received = b""
            deadline = time.monotonic() + 10
            c.sock.settimeout(10)
            while time.monotonic() < deadline:
                try:
                    data = c.sock.recv(65536)
                except (ConnectionResetError, OSError):
                    break
                if not data:
                    break
                received += data
        self.assertNotIn(b"HTTP/", received)
        self.assertNotIn(b"svc", received)
        # The listener still serves HTTPS.
        self.assertEqual(self.curl(weir)[1], 200)

    def test_handshake_timeout(self):
        weir = self.start(handshake_timeout_ms=300)
        with h.Client(weir.admin) as c:
            self.assertTrue(c.closed_within(10))  # sent nothing: closed after ~0.3 s

    def test_reload_rereads_certificates(self):
        tmp = self.tmpdir()
        path = os.path.join(tmp, "weir.toml")
        weir = h.start_weir(self.addCleanup, self.config(tmp), path=path)
        self.assertEqual(h.tls_subject(weir.admin), "admin.test")
        # A broken certificate keeps the running one.
        shutil.copy(self.server[1], os.path.join(tmp, "broken.crt"))
        start = len(weir.lines)
        with open(path, "w") as f:
            f.write(self.config(tmp, cert=os.path.join(tmp, "broken.crt")))
        weir.signal(signal.SIGHUP)
        weir.wait_line(r"^weir: reload failed", stream="stderr", start=start)
        weir.wait_line(r"admin\.tls\.cert", stream="stderr", start=start)
        self.assertEqual(h.tls_subject(weir.admin), "admin.test")
        # A good new certificate serves the next connections.
        weir.reload(self.config(tmp, cert=self.wrong_name[0], key=self.wrong_name[1]))
        self.assertEqual(h.tls_subject(weir.admin), "elsewhere.test")
        # And TLS can be turned off by a reload (the socket stays; new connections are plain).
        weir.reload(h.render_config([h.service("svc", h.version("v1", 100, self.origin))],
                                    admin=h.admin_settings(tmp)))
        self.assertEqual(h.admin_call(weir, "GET", "/api/v1/services").status, 200)


class AdminTlsConfig(h.WeirTestCase):
    """Broken [admin.tls] settings are config errors at FILE:LINE:COL (weir --check)."""

    def check(self, tls_lines):
        tmp = self.tmpdir()
        ca = h.make_ca(tmp, "ca")
        cert = h.make_cert(tmp, "admin.test", "admin.test", ca=ca)
        settings = h.admin_settings(tmp)
        text = h.render_config([h.service("svc", h.version("v1", 100, "127.0.0.1:9"))],
                               admin=settings)
        block = "\n[admin.tls]\n" + "\n".join(
            line.format(cert=cert[0], key=cert[1], ca=ca[0], tmp=tmp) for line in tls_lines)
        text = text.replace("\n\n[[listener]]", block + "\n\n[[listener]]", 1)
        path = os.path.join(tmp, "weir.toml")
        with open(path, "w") as f:
            f.write(text)
        run = subprocess.run([h.WEIR_BIN, "--check", path], capture_output=True, text=True,
                             timeout=10, stdin=subprocess.DEVNULL)
        lines = text.split("\n")
        return run, path, lines

    def line_of(self, lines, prefix):
        return next(i + 1 for i, line in enumerate(lines) if line.startswith(prefix))

    def test_good(self):
        run, _, _ = self.check(['cert = "{cert}"', 'key = "{key}"', 'client_ca = "{ca}"'])
        self.assertEqual(run.returncode, 0, run.stderr)

    def test_cert_that_is_a_key(self):
        run, path, lines = self.check(['cert = "{key}"', 'key = "{key}"'])
        self.assertEqual(run.returncode, 1, run.stderr)
        self.assertRegex(run.stderr, rf"(?m)^{re.escape(path)}:{self.line_of(lines, 'cert')}:8: "
                                     r"admin\.tls\.cert: .*not a PEM certificate")

    def test_missing_key_file(self):
        run, path, lines = self.check(['cert = "{cert}"', 'key = "{tmp}/absent.key"'])
        self.assertEqual(run.returncode, 1, run.stderr)
        self.assertRegex(run.stderr, rf"(?m)^{re.escape(path)}:{self.line_of(lines, 'key =')}:7: "
                                     r"admin\.tls\.key: cannot read")

    def test_unknown_key_and_bad_mode(self):
        run, path, lines = self.check(['cert = "{cert}"', 'key = "{key}"',
                                       'client_verify = "sometimes"', 'session_tickets = true'])
        self.assertEqual(run.returncode, 1, run.stderr)
        self.assertRegex(run.stderr, rf"(?m)^{re.escape(path)}:"
                                     rf"{self.line_of(lines, 'client_verify')}:\d+: "
                                     r"admin\.tls\.client_verify: ")
        self.assertRegex(run.stderr, r"admin\.tls\.session_tickets: unknown key")


if __name__ == "__main__":
    unittest.main()
