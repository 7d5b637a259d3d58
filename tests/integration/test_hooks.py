"""Hooks against real receivers (small HTTP servers this test runs): the release walkthrough
pre-rollout smoke test → steps → confirm-promotion gate → promotion, with Slack-style events;
and a failing pre-rollout smoke test that aborts the rollout."""

import http.server
import json
import os
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


class Receiver:
    """Answers POSTs on each path with the status in `answers[path]` (default 200) and keeps
    (path, headers, JSON body)."""

    def __init__(self, case, answers=None):
        self.answers = dict(answers or {})
        self.got = []
        self.lock = threading.Lock()
        rx = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with rx.lock:
                    rx.got.append((self.path, dict(self.headers), json.loads(body or b"null")))
                    status = rx.answers.get(self.path, 200)
                out = b'{"ok":true}'
                self.send_response(status)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        case.addCleanup(self.server.server_close)
        case.addCleanup(self.server.shutdown)

    def calls(self, path):
        with self.lock:
            return [g for g in self.got if g[0] == path]


class Hooks(h.WeirTestCase):
    def start(self, rx, smoke_status=200):
        rx.answers["/smoke"] = smoke_status
        blue, green = self.backend("blue"), self.backend("green")
        tmp = self.tmpdir()
        token = self.write("hook-token", "t0ken\n")
        text = h.render_config(
            [h.service("shop", h.version("blue", 100, blue), h.version("green", 0, green),
                       override_header="x-weir-version",
                       rollout={"version": "green", "steps": [50, 100], "step_s": 1})],
            admin=h.admin_settings(tmp))
        hook = ('\n[[service.hook]]\nname = "{name}"\ntype = "{type}"\nurl = "{url}"\n'
                'interval_ms = 200\nretries = 0\n{extra}\n')
        text += hook.format(name="smoke", type="pre-rollout", url=rx.url + "/smoke",
                            extra="threshold = 2")
        text += hook.format(name="approve", type="confirm-promotion", url=rx.url + "/approve",
                            extra="")
        text += hook.format(name="chat", type="event", url=rx.url + "/slack",
                            extra='format = "slack"\nheaders = { Authorization = '
                                  f'{{ from_file = "{token}", prefix = "Bearer " }} }}')
        return self.weir(text)

    def rollout(self, weir):
        return h.admin_call(weir, "GET", "/api/v1/services/shop").json()["rollout"]

    def test_smoke_test_steps_confirm_promotion_then_promote(self):
        rx = Receiver(self, {"/approve": 403})
        weir = self.start(rx)
        r = h.admin_call(weir, "POST", "/api/v1/services/shop/rollout/start", body={})
        self.assertEqual(r.status, 200, r.body)
        # The smoke test ran against the canary through the override header.
        self.assertTrue(h.wait_until(lambda: rx.calls("/smoke"), 10))
        smoke = rx.calls("/smoke")[0][2]
        self.assertEqual(smoke["type"], "pre-rollout")
        self.assertEqual(smoke["override"], {"header": "x-weir-version", "value": "green"})
        # At 50 % the promotion waits for the confirm-promotion hook.
        def waiting_on_approve():
            ro = self.rollout(weir)
            return ro.get("state") == "waiting" and any(
                "confirm-promotion hook approve" in w for w in ro.get("waiting_for", []))
        self.assertTrue(h.wait_until(waiting_on_approve, 15), json.dumps(self.rollout(weir)))
        self.assertGreaterEqual(len(rx.calls("/approve")), 1)
        rx.answers["/approve"] = 200
        self.assertTrue(h.wait_until(lambda: self.rollout(weir).get("state") == "promoted", 15),
                        json.dumps(self.rollout(weir)))
        # Slack-style events with the token from the file; hook calls are audited.
        self.assertTrue(h.wait_until(lambda: any(
            "rollout_promote" in c[2]["text"] for c in rx.calls("/slack")), 10))
        slack = rx.calls("/slack")
        self.assertEqual(slack[0][1].get("Authorization"), "Bearer t0ken")
        self.assertTrue(all(c[2]["text"].startswith("weir: shop: ") for c in slack))
        events = h.admin_call(weir, "GET", "/api/v1/events").json()["events"]
        calls = [e for e in events if e["action"] == "hook_call"]
        self.assertTrue(any(e["actor"] == "hook:smoke" for e in calls))
        self.assertNotIn("t0ken", json.dumps(events))
        ex = h.admin_call(weir, "GET", "/api/v1/services/shop/explain").json()
        self.assertTrue(any(c["hook"] == "approve" and c["status"] == 200 for c in ex["hooks"]))
        self.assertNotIn("t0ken", json.dumps(ex))

    def test_failing_smoke_test_aborts_before_any_traffic(self):
        rx = Receiver(self)
        weir = self.start(rx, smoke_status=500)
        r = h.admin_call(weir, "POST", "/api/v1/services/shop/rollout/start", body={})
        self.assertEqual(r.status, 200, r.body)
        self.assertTrue(h.wait_until(lambda: self.rollout(weir).get("state") == "aborted", 15),
                        json.dumps(self.rollout(weir)))
        self.assertEqual(len(rx.calls("/smoke")), 2)  # threshold = 2
        svc = h.admin_call(weir, "GET", "/api/v1/services/shop").json()
        green = [v for v in svc["versions"] if v["name"] == "green"][0]
        self.assertEqual(green["effective_weight"], 0)


if __name__ == "__main__":
    unittest.main()
