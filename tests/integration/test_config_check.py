"""weir --check: exit 0 for a good file; exit 1 with FILE:LINE:COL: KEY: message pointing at
the offending line for bad ones. weir --config refuses to start on a bad file."""

import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

GOOD = h.render_config(
    [h.service("shop", h.version("blue", 90, "127.0.0.1:9001"),
               h.version("green", 10, "127.0.0.1:9002", "127.0.0.1:9003"))],
    [h.route("shop", host="*.example.com", path_prefix="/api/")],
    proxy={"connect_timeout_ms": 2000, "max_request_body_bytes": 0})

# name → (line of GOOD to replace, replacement, text the KEY part must contain or None)
BAD = {
    "unknown_key": ("workers = 2", "workerz = 2", "workerz"),
    "wrong_type": ("workers = 2", 'workers = "two"', "workers"),
    "unknown_service_in_route": ('service = "shop"', 'service = "nope"', "service"),
    "unknown_listener_in_route": ('listener = "public"', 'listener = "nowhere"', "listener"),
    "stable_is_not_a_version": ('stable = "blue"', 'stable = "purple"', "stable"),
    "bad_address": ('address = "127.0.0.1:0"', 'address = "127.0.0.1:notaport"', "address"),
    "toml_syntax_error": ("[proxy]", "[proxy", None),
}


def mutate(text, old, new):
    """text with the line `old` replaced by `new`, and that line's 1-based number."""
    lines = text.split("\n")
    stripped = [line.strip() for line in lines]
    index = stripped.index(old)
    lines[index] = lines[index].replace(old, new)
    return "\n".join(lines), index + 1


class Check(h.WeirTestCase):
    def run_weir(self, *args):
        return subprocess.run([h.WEIR_BIN, *args], capture_output=True, text=True, timeout=10,
                              stdin=subprocess.DEVNULL)

    def check_bad(self, old, new, key):
        text, line = mutate(GOOD, old, new)
        path = self.write("bad.toml", text)
        run = self.run_weir("--check", path)
        self.assertEqual(run.returncode, 1, run.stderr)
        located = re.findall(rf"^{re.escape(path)}:(\d+):(\d+): (.*)$", run.stderr, re.M)
        self.assertTrue(located, f"no {path}:LINE:COL: line in stderr:\n{run.stderr}")
        self.assertIn(str(line), [ln for ln, _, _ in located], run.stderr)
        for ln, col, rest in located:
            self.assertGreater(int(col), 0, run.stderr)
            if key is not None and ln == str(line):
                self.assertIn(key, rest.split(":")[0], run.stderr)

    def test_good_file_passes(self):
        run = self.run_weir("--check", self.write("good.toml", GOOD))
        self.assertEqual((run.returncode, run.stderr), (0, run.stderr))

    def test_missing_file_fails(self):
        path = os.path.join(self.tmpdir(), "absent.toml")
        run = self.run_weir("--check", path)
        self.assertEqual(run.returncode, 1, run.stderr)
        # The whole file is missing: no line and column, no ":0:0".
        self.assertIn(f"{path}: cannot read the file: No such file or directory", run.stderr)
        self.assertNotIn(":0:0", run.stderr)

    def assertLocated(self, stderr, path, line, key, text):
        """stderr has `path:line:COL: key: ...text...`."""
        self.assertRegex(stderr, rf"(?m)^{re.escape(path)}:{line}:\d+: {re.escape(key)}: .*"
                                 rf"{re.escape(text)}")

    def test_two_listeners_on_one_address_are_refused(self):
        text = h.render_config([h.service("shop", h.version("blue", 1, "127.0.0.1:9001"))],
                               [h.route("shop"), h.route("shop", listener="internal")],
                               listeners=("public", "internal"))
        text = text.replace('address = "127.0.0.1:0"', 'address = "127.0.0.1:18090"', 1)
        text, line = mutate(text, 'address = "127.0.0.1:0"', 'address = "0.0.0.0:18090"')
        path = self.write("dup.toml", text)
        for args in (["--check", path], ["--config", path]):
            run = self.run_weir(*args)
            self.assertEqual(run.returncode, 1, run.stderr)
            self.assertNotIn("weir: ready", run.stderr)
            self.assertLocated(run.stderr, path, line, "listener[1].address",
                               "overlaps listener 'public'")
        # Names count once resolved: localhost is 127.0.0.1 here.
        path = self.write("dup2.toml", text.replace("0.0.0.0:18090", "localhost:18090"))
        run = self.run_weir("--check", path)
        self.assertEqual(run.returncode, 1, run.stderr)
        self.assertLocated(run.stderr, path, line, "listener[1].address",
                           "overlaps listener 'public'")
        self.assertIn("once host names are resolved", run.stderr)

    def test_an_endpoint_that_does_not_resolve_fails_check_and_start(self):
        text, line = mutate(GOOD, 'endpoints = ["127.0.0.1:9001"]',
                            'endpoints = ["green.invalid:19002"]')
        path = self.write("dns.toml", text)
        for args in (["--check", path], ["--config", path]):
            run = self.run_weir(*args)
            self.assertEqual(run.returncode, 1, run.stderr)
            self.assertNotIn("weir: ready", run.stderr)
            self.assertLocated(run.stderr, path, line, "service[0].version[0].endpoints[0]",
                               "cannot resolve 'green.invalid'")
        # --no-resolve checks the rest and leaves names alone (configs of other networks).
        run = self.run_weir("--check", path, "--no-resolve")
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertIn("host names were not resolved (--no-resolve)", run.stderr)

    def test_an_access_log_that_cannot_be_written_fails_check(self):
        # Under a regular file: no folder to create it in (tests may run as root, so a
        # read-only folder would not do).
        blocker = self.write("not-a-folder", "")
        text = GOOD.replace("[proxy]", f'[proxy]\naccess_log = "{blocker}/logs/access.log"', 1)
        path = self.write("log.toml", text)
        run = self.run_weir("--check", path)
        self.assertEqual(run.returncode, 1, run.stderr)
        self.assertLocated(run.stderr, path, 2, "proxy.access_log",
                           f"cannot create {blocker}/logs/access.log: {blocker} is not a directory")

    def test_warnings_exit_0_and_fail_with_strict(self):
        text = h.render_config(
            [h.service("shop", h.version("blue", 90, "127.0.0.1:9001"),
                       h.version("green", 10, "127.0.0.1:9002"),
                       guard={"max_error_rate": 1}),
             h.service("unused", h.version("only", 1, "127.0.0.1:9003"))])
        path = self.write("warn.toml", text)
        lines = text.split("\n")
        rate_line = lines.index("  max_error_rate = 1") + 1
        unused_line = [i for i, ln in enumerate(lines) if ln == 'name = "unused"'][0]
        run = self.run_weir("--check", path)
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertRegex(run.stderr, rf"(?m)^{re.escape(path)}:{rate_line}:\d+: warning: "
                                     r"service\[0\]\.guard\.max_error_rate: .*can never be "
                                     r"exceeded")
        self.assertRegex(run.stderr, rf"(?m)^{re.escape(path)}:{unused_line}:\d+: warning: "
                                     r"service\[1\]: no route uses service 'unused'")
        self.assertIn("is valid, with 2 warnings", run.stderr)
        strict = self.run_weir("--check", path, "--strict")
        self.assertEqual(strict.returncode, 1, strict.stderr)
        self.assertIn("has 2 warnings (--strict)", strict.stderr)
        # A clean file passes --strict.
        self.assertEqual(self.run_weir("--check", self.write("good.toml", GOOD),
                                       "--strict").returncode, 0)

    def test_a_valid_config_prints_a_summary(self):
        run = self.run_weir("--check", self.write("good.toml", GOOD))
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertEqual(run.stdout.splitlines(), [
            "listener public on 127.0.0.1:0 (http1)",
            "route public *.example.com/api/ -> shop",
            "service shop: blue 90 (90%, stable, 1 endpoint) green 10 (10%, 2 endpoints)"])

    def test_bad_config_refuses_to_start(self):
        text, _ = mutate(GOOD, *BAD["unknown_service_in_route"][:2])
        try:
            run = self.run_weir("--config", self.write("bad.toml", text))
        except subprocess.TimeoutExpired:
            self.fail("weir kept running on a bad config")
        self.assertNotEqual(run.returncode, 0)
        self.assertNotIn("weir: ready", run.stderr)
        self.assertIn("nope", run.stderr)


h.add_cases(Check, BAD, "check_bad")


if __name__ == "__main__":
    unittest.main()
