"""Client certificates on a TLS listener (mTLS): client_ca, client_verify require/optional, and
the verified subject passed upstream in client_subject_header (a client's own copy removed).
Certificates come from a test CA made with the openssl CLI; clients are curl."""

import json
import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


class Mtls(h.WeirTestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="weir-mtls-")
        cls.addClassCleanup(shutil.rmtree, cls.dir, True)
        cls.ca = h.make_ca(cls.dir, "test-ca")
        cls.other_ca = h.make_ca(cls.dir, "other-ca")
        cls.server = h.make_cert(cls.dir, "edge.test", "edge.test")
        cls.alice = h.make_cert(cls.dir, "alice", "alice.client", ca=cls.ca)
        cls.mallory = h.make_cert(cls.dir, "mallory", "mallory.client", ca=cls.other_ca)
        cls.origin = h.Backend(cls.addClassCleanup, "origin")

    def edge(self, verify):
        settings = {"client_ca": self.ca[0], "client_verify": verify,
                    "client_subject_header": "x-client-subject"}
        listener = {"name": "public", "tls": [self.server], "tls_settings": settings}
        return h.start_weir(self.addCleanup, h.render_config(
            [h.service("svc", h.version("v1", 100, self.origin))], listeners=[listener]))

    def call(self, weir, cert=None, headers=()):
        port = weir.addr[1]
        args = ["-k", "--http1.1", "--resolve", f"edge.test:{port}:127.0.0.1"]
        if cert:
            args += ["--cert", cert[0], "--key", cert[1]]
        for name, value in headers:
            args += ["-H", f"{name}: {value}"]
        return h.curl(*args, f"https://edge.test:{port}/headers", timeout=30)

    @staticmethod
    def subject(run):
        seen = json.loads(run.stdout)
        return [v for k, v in seen["headers"] if k.lower() == "x-client-subject"]

    def test_require(self):
        weir = self.edge("require")
        run = self.call(weir, self.alice, headers=[("X-Client-Subject", "CN=forged")])
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertEqual(self.subject(run), ["CN=alice"])
        self.assertNotEqual(self.call(weir).returncode, 0)  # no certificate: handshake fails
        self.assertNotEqual(self.call(weir, self.mallory).returncode, 0)  # another CA's

    def test_optional(self):
        weir = self.edge("optional")
        run = self.call(weir, headers=[("X-Client-Subject", "CN=forged")])
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertEqual(self.subject(run), [])  # the client's claim is removed
        self.assertEqual(self.subject(self.call(weir, self.alice)), ["CN=alice"])
        self.assertNotEqual(self.call(weir, self.mallory).returncode, 0)

    def test_config_errors(self):
        path = os.path.join(self.tmpdir(), "bad.toml")
        cases = [({"client_verify": "require"}, r"tls\.client_verify: needs client_ca"),
                 ({"client_ca": os.path.join(self.dir, "nope.pem")},
                  r"tls\.client_ca: cannot read .*nope\.pem")]
        for settings, pattern in cases:
            listener = {"name": "public", "tls": [self.server], "tls_settings": settings}
            with open(path, "w") as f:
                f.write(h.render_config([h.service("svc", h.version("v1", 100, self.origin))],
                                        listeners=[listener]))
            run = h.subprocess.run([h.WEIR_BIN, "--config", path], capture_output=True,
                                   text=True, timeout=30, stdin=h.subprocess.DEVNULL)
            self.assertNotEqual(run.returncode, 0)
            self.assertRegex(run.stderr, r"bad\.toml:\d+:\d+: listener\[0\]\." + pattern)


if __name__ == "__main__":
    unittest.main()
