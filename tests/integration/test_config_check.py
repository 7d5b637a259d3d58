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
        run = self.run_weir("--check", os.path.join(self.tmpdir(), "absent.toml"))
        self.assertEqual(run.returncode, 1, run.stderr)
        self.assertIn("absent.toml", run.stderr)

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
