"""Issue #5: 1,000 weight changes during a wrk run cost zero non-2xx, and every response's
x-weir-version names a version that had weight > 0 at some moment while that request was in
flight (between its send and its receipt), judged against the timeline of acknowledged changes."""

import json
import os
import re
import signal
import subprocess
import time
import unittest
from bisect import bisect_left
from collections import Counter

from harness import (ADMIN_TOKENS, BackgroundClient, Client, WeirTestCase, admin_settings,
                     render_config, route, service, version)

CHANGES = 1000
# Alternating all-or-nothing states make a stale version choice visible (runs of three, so a
# request can fall wholly inside one); mixes keep both versions busy.
BLUE, GREEN = {"blue": 100, "green": 0}, {"blue": 0, "green": 100}
PATTERNS = [BLUE, BLUE, BLUE, GREEN, GREEN, GREEN, {"blue": 30, "green": 70}, GREEN, GREEN,
            GREEN, BLUE, BLUE, BLUE, {"blue": 80, "green": 20}]


class VersionRecorder(BackgroundClient):
    """GETs on one keep-alive connection, recording (send time, receive time, x-weir-version,
    status) until stopped (at most max_time seconds)."""

    def __init__(self, addr, max_time=60.0):
        self.addr, self.max_time = addr, max_time
        self.samples, self.errors = [], []
        super().__init__()

    def _run(self):
        deadline = time.monotonic() + self.max_time
        client = None
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                if client is None:
                    client = Client(self.addr, timeout=5)
                sent = time.monotonic()
                resp = client.get("/")
                self.samples.append((sent, time.monotonic(), resp.header("x-weir-version"),
                                     resp.status))
                if "close" in resp.connection_tokens():
                    client.close()
                    client = None
            except (OSError, AssertionError) as e:
                self.errors.append(repr(e))
                if client:
                    client.close()
                client = None
        if client:
            client.close()


class WeightChurn(WeirTestCase):
    def test_thousand_weight_changes_under_wrk(self):
        blue, green = self.backend("blue"), self.backend("green")
        admin = admin_settings(self.tmpdir())
        edge = self.weir(render_config(
            [service("shop", version("blue", 50, blue), version("green", 50, green))],
            routes=[route("shop")], admin=admin))
        url = f"http://{edge.addr[0]}:{edge.addr[1]}/"
        wrk = subprocess.Popen(["wrk", "-t", "2", "-c", "16", "-d", "60s", url],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               stdin=subprocess.DEVNULL)
        self.addCleanup(lambda: wrk.poll() is None and wrk.kill())

        # timeline[i] = (sent, acknowledged, weights after change i); change 0 is the config.
        timeline = [(float("-inf"), float("-inf"), {"blue": 50, "green": 50})]
        auth = ("Authorization", f"Bearer {ADMIN_TOKENS['ci'][1]}")
        with VersionRecorder(edge.addr) as recorder, Client(edge.admin) as ctl:
            time.sleep(0.5)  # wrk and the recorder are running
            etag = ctl.request("GET", "/api/v1/services/shop", [auth], host="admin").header("etag")
            started = time.monotonic()
            for i in range(CHANGES):
                weights = PATTERNS[i % len(PATTERNS)]
                body = json.dumps({"weights": weights, "reason": f"churn {i}"}).encode()
                sent = time.monotonic()
                resp = ctl.request("PUT", "/api/v1/services/shop/weights",
                                   [auth, ("If-Match", etag), ("Content-Type", "application/json"),
                                    ("Content-Length", str(len(body)))], body, host="admin")
                acked = time.monotonic()
                self.assertEqual(resp.status, 200, f"change {i}: {resp!r} {resp.body[:200]!r}")
                etag = resp.header("etag")
                timeline.append((sent, acked, weights))
            churn_s = time.monotonic() - started
            time.sleep(0.3)
        wrk.send_signal(signal.SIGINT)  # wrk stops and prints its summary
        out, err = wrk.communicate(timeout=30)

        # wrk: every response 2xx, no socket errors.
        self.assertRegex(out, r"\d+ requests in", out + err)
        wrk_requests = int(re.search(r"(\d+) requests in", out).group(1))
        self.assertNotIn("Non-2xx", out, out)
        self.assertNotIn("Socket errors", out, out)
        self.assertGreater(wrk_requests, 1000, out)

        # The recorder: each version it saw had weight > 0 in a state that could have been the
        # current one while its request was in flight. State i may be current from its PUT's
        # send until the next PUT's acknowledgement.
        self.assertEqual(recorder.errors, [])
        self.assertGreater(len(recorder.samples), 200)
        ends = [t[1] for t in timeline[1:]] + [float("inf")]  # state i ends by ack of i+1
        starts = [t[0] for t in timeline]
        bad, decisive = [], 0
        for sent, received, ver, status in recorder.samples:
            if status != 200:
                bad.append((sent, received, ver, status))
                continue
            # States overlapping [sent, received]: start <= received and end >= sent.
            first = bisect_left(ends, sent)
            possible = [timeline[i][2] for i in range(first, len(timeline))
                        if starts[i] <= received]
            if not any(w.get(ver, 0) > 0 for w in possible):
                bad.append((sent, received, ver, [w for w in possible]))
            # A response that could only have come from one version tests the claim.
            if any(all(w.get(v, 0) == 0 for w in possible) for v in ("blue", "green")):
                decisive += 1
        seen = Counter(s[2] for s in recorder.samples)
        print(f"\nweight churn: {CHANGES} changes in {churn_s:.1f} s "
              f"({CHANGES / churn_s:.0f}/s); wrk {wrk_requests} requests, all 2xx; "
              f"recorder {len(recorder.samples)} responses {dict(seen)}, {decisive} of them "
              f"in flight only while one version had weight")
        self.assertEqual(bad[:5], [], f"{len(bad)} responses from a version with no weight")
        self.assertEqual(set(seen), {"blue", "green"})
        self.assertGreater(decisive, 50, "too few responses pinned to one version to judge")


if __name__ == "__main__":
    unittest.main()
