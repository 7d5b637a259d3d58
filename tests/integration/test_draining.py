"""Draining by reload: an endpoint removed from a version, or a version set to weight 0, gets
no new requests, its in-flight ones finish, its idle pooled connections close; replacing every
endpoint of a version one by one under load costs no failed request. Also under wrk: a version
set to weight 0 through the admin API and an endpoint removed by reload, while wrk runs, cost
no non-2xx response and no socket error."""

import os
import re
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


def config(*versions):
    return h.render_config([h.service("shop", *versions)])


class Draining(h.WeirTestCase):
    def run_load(self, weir, seconds):
        out = {}
        t = threading.Thread(target=lambda: out.setdefault(
            "result", h.load(weir.addr, threads=4, duration=seconds)), daemon=True)
        t.start()
        return t, out

    def test_rolling_endpoint_replacement_by_reload_under_load(self):
        a, b, c, d = (self.backend(n) for n in "abcd")
        weir = self.weir(config(h.version("v1", 100, a, b)))
        t, out = self.run_load(weir, 3.0)
        time.sleep(0.5)
        weir.reload(config(h.version("v1", 100, b, c)))
        time.sleep(0.3)
        a.kill()
        time.sleep(0.4)
        weir.reload(config(h.version("v1", 100, c, d)))
        time.sleep(0.3)
        b.kill()
        t.join(15)
        result = out["result"]
        self.assertLoadClean(result, min_total=200)
        self.assertGreater(result.backends["d"], 0)

    def test_weight_zero_drains_a_version_under_load(self):
        stable, canary = self.backend("stable"), self.backend("canary")
        weir = self.weir(config(h.version("stable", 50, stable), h.version("canary", 50, canary)))
        t, out = self.run_load(weir, 2.0)
        time.sleep(0.5)
        weir.reload(config(h.version("stable", 100, stable), h.version("canary", 0, canary)))
        time.sleep(0.3)
        before = canary.requests()
        # Pooled connections to the drained version are closed once idle.
        self.assertTrue(h.wait_until(lambda: canary.stats()["active_connections"] <= 1, 3.0),
                        canary.stats())
        t.join(15)
        self.assertLoadClean(out["result"], min_total=200)
        self.assertEqual(canary.requests(), before)

    def test_weight_zero_and_endpoint_removal_under_wrk(self):
        stable1, stable2 = self.backend("stable1"), self.backend("stable2")
        canary = self.backend("canary")

        def cfg(*stable_endpoints):
            return h.render_config(
                [h.service("shop", h.version("stable", 50, *stable_endpoints),
                           h.version("canary", 50, canary))],
                admin=h.admin_settings(self.tmpdir()))

        weir = self.weir(cfg(stable1, stable2))
        wrk = Wrk(weir.addr, seconds=6)
        self.addCleanup(wrk.stop)
        time.sleep(1.5)
        self.assertTrue(wrk.running(), wrk.output())
        r = h.admin_call(weir, "PUT", "/api/v1/services/shop/weights",
                         body={"weights": {"stable": 100, "canary": 0}, "reason": "drain"},
                         headers=[("If-Match", "*")])
        self.assertEqual(r.status, 200, r.body)
        time.sleep(0.5)  # requests already on their way to the canary arrive
        canary_after = canary.requests()
        time.sleep(1.0)
        weir.reload(cfg(stable1))
        time.sleep(0.5)
        stable2_after = stable2.requests()
        self.assertTrue(wrk.running(), "wrk ended before the changes were made: "
                        "they were not made under load")
        report = wrk.finish()
        self.assertGreater(report["requests"], 300, report["text"])
        self.assertEqual(report["non_2xx"], 0, report["text"])
        self.assertEqual(report["socket_errors"], {"connect": 0, "read": 0, "write": 0,
                                                   "timeout": 0}, report["text"])
        # Drained means no new requests: the weight-0 version and the removed endpoint got
        # nothing after their change, while the remaining endpoint took the rest.
        self.assertEqual(canary.requests(), canary_after)
        self.assertEqual(stable2.requests(), stable2_after)
        self.assertGreater(canary_after, 0)
        self.assertGreater(stable1.requests(), stable2_after)
        self.assertWeirAlive(weir)


class Wrk:
    """wrk (Debian's) against addr for `seconds`, in the background; finish() parses its
    report: requests, non-2xx/3xx responses and socket errors (wrk prints those lines only when
    they are not zero)."""

    def __init__(self, addr, seconds, connections=8, threads=2):
        host, port = addr
        self.seconds = seconds
        self.proc = subprocess.Popen(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s",
             f"http://{host}:{port}/"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True)
        self._text = None

    def running(self):
        return self.proc.poll() is None

    def output(self):
        return self._text or ""

    def stop(self):
        if self.running():
            self.proc.kill()
        self.proc.communicate(timeout=10)

    def finish(self):
        self._text, _ = self.proc.communicate(timeout=self.seconds + 30)
        text = self._text
        if self.proc.returncode != 0:
            raise AssertionError(f"wrk exited with {self.proc.returncode}:\n{text}")
        m = re.search(r"^\s*(\d+) requests in ", text, re.M)
        if not m:
            raise AssertionError("no request count in wrk's report:\n" + text)
        non_2xx = re.search(r"^\s*Non-2xx or 3xx responses: (\d+)", text, re.M)
        errors = re.search(r"^\s*Socket errors: connect (\d+), read (\d+), write (\d+), "
                           r"timeout (\d+)", text, re.M)
        kinds = ("connect", "read", "write", "timeout")
        return {"requests": int(m.group(1)),
                "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
                "socket_errors": dict(zip(kinds, (int(g) for g in errors.groups())))
                if errors else dict.fromkeys(kinds, 0),
                "text": text}


if __name__ == "__main__":
    unittest.main()
