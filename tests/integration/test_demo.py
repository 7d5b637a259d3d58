"""weir --demo: embedded blue/green backends behind a 90/10 split, with the admin API, a guard
and the override header, so the README's canary walkthrough runs with no config file."""

import os
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


class Demo(h.WeirTestCase):
    def setUp(self):
        self.demo = h.Weir(self.addCleanup, ["--demo", "--demo-port", "0",
                                             "--demo-admin-port", "0"])
        _, m = self.demo.wait_line(r"admin token \(write scope\): (\S+)$", stream="stderr")
        self.token = m.group(1)

    def service(self):
        resp = h.admin_call(self.demo, "GET", "/api/v1/services/demo", token=self.token)
        self.assertEqual(resp.status, 200, resp)
        return resp.json()

    def weights(self):
        return {v["name"]: v["effective_weight"] for v in self.service()["versions"]}

    def test_serves_blue_and_green_90_10(self):
        result = h.load(self.demo.addr, threads=4, requests=1000)
        self.assertLoadClean(result, min_total=1000)
        self.assertEqual(set(result.backends), {"blue", "green"})
        self.assertShare(result.backends, "green", 0.10, 0.04)

    def test_token_is_fresh_and_required(self):
        self.assertRegex(self.token, r"^demo-[0-9a-f]{32}$")
        self.assertEqual(h.admin_call(self.demo, "GET", "/api/v1/services", token=None).status,
                         401)
        self.assertEqual(h.admin_call(self.demo, "GET", "/api/v1/services",
                                      token="demo-" + "0" * 32).status, 401)

    def test_walkthrough_ramp_break_revert_explain(self):
        """The README's five-minute canary story, step by step."""
        etag = h.admin_call(self.demo, "GET", "/api/v1/services/demo",
                            token=self.token).header("etag")
        resp = h.admin_call(self.demo, "PUT", "/api/v1/services/demo/weights", token=self.token,
                            body={"weights": {"blue": 75, "green": 25}, "reason": "ramp"},
                            headers=[("If-Match", etag)])
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(self.weights(), {"blue": 75, "green": 25})
        # Break green through weir itself: the override header reaches the green backend.
        resp = h.get(self.demo.addr, "/__status/500", headers=[("x-weir-version", "green")])
        self.assertEqual(resp.header("x-weir-version"), "green")
        # Traffic in one-second slices until the guard (10 s window, 3 breaches) reverts.
        reverted = h.wait_until(
            lambda: h.load(self.demo.addr, threads=4, duration=1.0).total > 0
            and self.weights()["green"] == 0, 40.0, interval=0)
        self.assertTrue(reverted, f"guard did not revert green: {self.service()}")
        self.assertEqual(self.service()["guard"]["state"], "reverted")
        events = h.admin_call(self.demo, "GET", "/api/v1/events", token=self.token).json()
        actions = [(e["actor"], e["action"]) for e in events["events"]]
        self.assertIn(("demo", "set_weights"), actions)
        self.assertIn(("guard", "revert"), actions)
        explain = h.admin_call(self.demo, "GET", "/api/v1/services/demo/explain",
                               token=self.token)
        self.assertEqual(explain.status, 200)
        self.assertIn("max_error_rate", explain.body.decode())
        last = explain.json()["decisions"][-1]
        self.assertTrue(last["reverted"], last)
        # Wall time, close to now (the guard itself runs on the monotonic clock).
        stamp = time.mktime(time.strptime(last["time"][:19], "%Y-%m-%dT%H:%M:%S"))
        self.assertLess(abs(stamp - time.mktime(time.gmtime())), 120, last["time"])
        # After the revert, every request goes to blue.
        after = h.load(self.demo.addr, threads=2, requests=200)
        self.assertLoadClean(after, min_total=200)
        self.assertEqual(set(after.backends), {"blue"})

    def test_prints_a_pasteable_export_line_and_says_metrics_are_open(self):
        err = self.demo.output("stderr")
        # The admin port is 0 here, so the line names PORT; the rest pastes as it is.
        self.assertIn(f"export WEIR_ADMIN=http://127.0.0.1:PORT WEIR_TOKEN={self.token}", err)
        self.assertTrue(any("/metrics on the admin port is open without a token" in line
                            for line in err), err)
        resp = h.admin_call(self.demo, "GET", "/metrics", token=None)
        self.assertEqual(resp.status, 200)

    def test_a_refused_reload_writes_no_audit_record(self):
        run = h.weirctl(self.demo, "reload", token=None, env={"WEIR_TOKEN": self.token})
        self.assertNotEqual(run.returncode, 0, run.stdout)
        self.assertIn("embedded configuration cannot be reloaded", run.stdout + run.stderr)
        events = h.admin_call(self.demo, "GET", "/api/v1/events", token=self.token).json()
        self.assertEqual([e["action"] for e in events["events"]], [])

    def test_a_second_demo_on_the_same_port_is_refused(self):
        run = subprocess.run([h.WEIR_BIN, "--demo", "--demo-port", str(self.demo.addr[1]),
                              "--demo-admin-port", "0"], capture_output=True, text=True,
                             timeout=15, stdin=subprocess.DEVNULL)
        self.assertEqual(run.returncode, 1, run.stderr)
        self.assertIn(f"port {self.demo.addr[1]} is in use by weir pid {self.demo.popen.pid}",
                      run.stderr)
        self.assertEqual(h.get(self.demo.addr, "/").status, 200)

    def test_backend_help_lists_its_control_paths(self):
        run = subprocess.run([h.BACKEND_BIN, "--help"], capture_output=True, text=True,
                             timeout=10, stdin=subprocess.DEVNULL)
        self.assertEqual(run.returncode, 0)
        for path in ("/__status/NNN", "/__delay/MS", "/__health/NNN", "/__stats", "/healthz"):
            self.assertIn(path, run.stdout)

    def test_sigterm_exits_0(self):
        self.assertEqual(h.get(self.demo.addr, "/").status, 200)
        self.demo.signal(signal.SIGTERM)
        self.assertEqual(self.demo.wait_exit(5.0), 0, self.demo.tail())


if __name__ == "__main__":
    unittest.main()
