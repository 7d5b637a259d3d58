"""Release gates against a real weir: pause steps, approvals by another token (with the approve
scope), change windows, rollback to the previous release, dry-run guards, the Mann-Whitney
latency test and success_after. Every wait is bounded; backends and weir die with the test."""

import datetime
import json
import os
import re
import signal
import sys
import time
import unittest
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import test_fleet  # noqa: E402
from test_guard import PacedLoad  # noqa: E402

TOKENS = {**h.ADMIN_TOKENS,
          "lead": (["write", "approve"], "lead-secret-token"),
          "reviewer": ("approve", "reviewer-secret-token")}
GUARD = {"interval_ms": 500, "window_s": 2, "min_requests": 10, "max_error_rate": 0.05,
         "consecutive": 2}


class ReleaseCase(h.WeirTestCase):
    def start(self, rollout=None, guard=GUARD, blue_weight=100, green_weight=0, path=None):
        if not getattr(self, "blue", None):
            self.blue = self.backend("blue")
            self.green = self.backend("green")
        tmp = self.tmpdir()
        with open(os.path.join(tmp, "tokens.toml"), "w") as f:
            f.write(h.tokens_toml(TOKENS))
        admin = {"address": "127.0.0.1:0", "tokens_file": os.path.join(tmp, "tokens.toml"),
                 "state_dir": os.path.join(tmp, "state")}
        tables = {"guard": guard} if guard else {}
        if rollout:
            tables["rollout"] = rollout
        self.config_text = h.render_config([h.service(
            "shop", h.version("blue", blue_weight, self.blue),
            h.version("green", green_weight, self.green), **tables)], admin=admin)
        edge = h.start_weir(self.addCleanup, self.config_text,
                            path=path or os.path.join(tmp, "weir.toml"))
        return edge

    def call(self, edge, method, path, token="ci", body=None):
        raw = TOKENS[token][1]
        return h.admin_call(edge, method, path, token=raw, body=body)

    def view(self, edge):
        r = self.call(edge, "GET", "/api/v1/services/shop", "viewer")
        self.assertEqual(r.status, 200, r.body)
        return r.json()

    def wait_rollout(self, edge, pred, timeout=15, what="the rollout"):
        box = {}

        def ok():
            box["v"] = self.view(edge)
            return pred(box["v"]["rollout"])
        if not h.wait_until(ok, timeout):
            self.fail(f"{what} not reached in {timeout} s: {json.dumps(box['v']['rollout'])}")
        return box["v"]

    def events(self, edge):
        return self.call(edge, "GET", "/api/v1/events", "viewer").json()["events"]

    def green_weight(self, view):
        return next(v["effective_weight"] for v in view["versions"] if v["name"] == "green")


class Gates(ReleaseCase):
    def test_pause_then_approvals_by_another_token_then_promotion(self):
        edge = self.start({"version": "green", "steps": [10, "pause", 50, 100], "step_s": 1,
                           "max_step_s": 30, "approvals": 1})
        with PacedLoad(edge.addr, rate=100):
            r = self.call(edge, "POST", "/api/v1/services/shop/rollout/start", "lead",
                          {"reason": "release 42"})
            self.assertEqual(r.status, 200, r.body)
            v = self.wait_rollout(edge, lambda ro: ro["state"] == "waiting", what="the pause")
            ro = v["rollout"]
            self.assertEqual(ro["step"], 1)
            self.assertTrue(ro["pause_step"])
            self.assertEqual(self.green_weight(v), 10, "a pause keeps the previous weight")
            self.assertTrue(any(w.startswith("a resume") for w in ro["waiting_for"]), ro)
            self.assertTrue(any("approval from a token other than \"lead\"" in w
                                for w in ro["waiting_for"]), ro)
            # Shown in metrics and explain too.
            metrics = self.call(edge, "GET", "/metrics", "viewer").body.decode()
            self.assertIn('weir_rollout_state{service="shop",state="waiting"} 1', metrics)
            self.assertIn('weir_rollout_waiting_gates{service="shop"} 2', metrics)
            explain = self.call(edge, "GET", "/api/v1/services/shop/explain", "viewer").json()
            self.assertEqual(explain["rollout"]["waiting_for"], ro["waiting_for"])

            # Refusals: a write token without the scope, a read token, the starter itself.
            for token, why in (("ci", "needs a token with the \"approve\" scope"),
                               ("viewer", "needs a token with the \"approve\" scope"),
                               ("lead", "separation of duties")):
                r = self.call(edge, "POST", "/api/v1/services/shop/rollout/approve", token,
                              {"reason": "mine"})
                self.assertEqual(r.status, 403, f"{token}: {r.body}")
                self.assertIn(why, r.json()["detail"])
            # The starter's resume lifts the pause but not the approval.
            r = self.call(edge, "POST", "/api/v1/services/shop/rollout/resume", "lead")
            self.assertEqual(r.status, 200, r.body)
            ro = self.view(edge)["rollout"]
            self.assertEqual(ro["state"], "waiting")
            self.assertEqual(len(ro["waiting_for"]), 1, ro)

            r = self.call(edge, "POST", "/api/v1/services/shop/rollout/approve", "reviewer",
                          {"reason": "reviewed the pause"})
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual(self.green_weight(r.json()), 50)
            # At the promotion gate: weirctl approves, with a reason.
            self.wait_rollout(edge, lambda ro: ro["state"] == "waiting" and ro["step"] == 2,
                              what="the promotion gate")
            out = h.weirctl(edge, "rollout", "shop", "approve", token=None,
                            env={"WEIR_TOKEN": TOKENS["reviewer"][1]})
            self.assertEqual(out.returncode, 2, "approve needs --reason")
            out = h.weirctl(edge, "rollout", "shop", "approve", "--reason", "ship it",
                            token=None, env={"WEIR_TOKEN": TOKENS["reviewer"][1]})
            self.assertEqual(out.returncode, 0, out.stderr)
            v = self.view(edge)
            self.assertEqual(v["stable"], "green")
            self.assertEqual(v["rollout"]["state"], "promoted")
        evs = self.events(edge)
        approvals = [e for e in evs if e["action"] == "rollout_approve"]
        self.assertEqual(len(approvals), 2, [e["action"] for e in evs])
        for e in approvals:
            self.assertEqual(e["actor"], "reviewer")
            self.assertEqual(e["detail"]["requester"], "lead")
            self.assertEqual(e["detail"]["approver"], "reviewer")
        self.assertEqual(approvals[1]["reason"], "ship it")
        self.assertEqual(v["history"][-1]["version"], "green")
        self.assertEqual(v["history"][-1]["previous"], "blue")

    def test_a_waiting_pause_survives_a_restart(self):
        tmp = self.tmpdir()
        path = os.path.join(tmp, "weir.toml")
        plan = {"version": "green", "steps": [10, "pause", 100], "step_s": 1, "max_step_s": 30}
        edge = self.start(plan, path=path)
        self.assertEqual(self.call(edge, "POST", "/api/v1/services/shop/rollout/start").status,
                         200)
        with PacedLoad(edge.addr, rate=100):
            self.wait_rollout(edge, lambda ro: ro["state"] == "waiting", what="the pause")
        edge.signal(signal.SIGTERM)
        edge.wait_exit(15)
        edge = h.start_weir(self.addCleanup, self.config_text, path=path)
        v = self.view(edge)
        self.assertEqual(v["rollout"]["state"], "waiting")
        self.assertEqual(v["rollout"]["step"], 1)
        self.assertEqual(self.green_weight(v), 10)
        out = h.weirctl(edge, "rollout", "shop", "resume")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.wait_rollout(edge, lambda ro: ro["state"] == "promoted", what="the promotion")

    def test_a_closed_change_window_holds_the_start_until_it_opens(self):
        # A window on the day after tomorrow (UTC): closed now.
        day = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=2))
        closed = day.strftime("%a") + " 00:00-00:01 UTC"
        plan = {"version": "green", "steps": [10, 100], "step_s": 1, "max_step_s": 30,
                "windows": [closed]}
        edge = self.start(plan)
        self.assertEqual(self.call(edge, "POST", "/api/v1/services/shop/rollout/start").status,
                         200)
        v = self.view(edge)
        self.assertEqual(v["rollout"]["state"], "waiting")
        self.assertIn(f"a change window ({closed}; next opens", v["rollout"]["waiting_for"][0])
        time.sleep(2.0)
        self.assertEqual(self.green_weight(self.view(edge)), 0, "no traffic outside the window")
        # The audit record of the start says what held it.
        start = next(e for e in self.events(edge) if e["action"] == "rollout_start")
        self.assertEqual(start["detail"]["waiting_for"], v["rollout"]["waiting_for"])
        # The window opens (a reload to an all-day window): the held start goes through.
        edge.reload(self.config_text.replace(json.dumps(closed), json.dumps("daily 00:00-24:00")))
        self.wait_rollout(edge, lambda ro: ro["state"] == "running" and ro["weight"] == 10,
                          what="the first step")
        # An abort is never held (a window included).
        r = self.call(edge, "POST", "/api/v1/services/shop/rollout/abort", "ci",
                      {"reason": "test"})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(self.green_weight(r.json()), 0)

    def test_unknown_zone_is_a_config_error_with_its_place(self):
        cfg = h.render_config([h.service(
            "shop", h.version("blue", 100, "127.0.0.1:1"), h.version("green", 0, "127.0.0.1:2"),
            rollout={"version": "green", "steps": [100], "windows": ["daily 09:00-17:00 Mars/Base"]})])
        path = self.write("bad.toml", cfg)
        out = h.subprocess.run([h.WEIR_BIN, "--check", path], capture_output=True, text=True,
                               timeout=30)
        self.assertNotEqual(out.returncode, 0)
        self.assertRegex(out.stderr, r"bad\.toml:\d+:\d+: service\[0\]\.rollout\.windows\[0\]: "
                                     r"unknown time zone 'Mars/Base'")


class Rollback(ReleaseCase):
    def test_rollback_to_the_previous_release(self):
        edge = self.start(guard=None)
        out = h.weirctl(edge, "rollback", "shop", "--to-previous")
        self.assertEqual(out.returncode, 1)
        self.assertIn("no previous release", out.stderr + out.stdout)
        r = self.call(edge, "POST", "/api/v1/services/shop/promote", "ci",
                      {"version": "green", "reason": "release 2"})
        self.assertEqual(r.status, 200, r.body)
        with PacedLoad(edge.addr, rate=100) as load:
            time.sleep(0.5)
            out = h.weirctl(edge, "rollback", "shop", "--to-previous", "--reason", "bad release")
            self.assertEqual(out.returncode, 0, out.stderr)
            at = time.monotonic()
            time.sleep(1.0)
        after = Counter(b for t, s, b in load.samples if t > at + 0.2)
        self.assertEqual(set(after), {"blue"}, after)
        v = self.view(edge)
        self.assertEqual(v["stable"], "blue")
        self.assertEqual(v["history"], [])
        ev = self.events(edge)[-1]
        self.assertEqual(ev["action"], "rollback_to_previous")
        self.assertEqual((ev["detail"]["from"], ev["detail"]["to"]), ("green", "blue"))
        self.assertEqual(ev["reason"], "bad release")
        r = self.call(edge, "POST", "/api/v1/services/shop/rollback", "ci", {"to": "previous"})
        self.assertEqual(r.status, 409)
        self.assertEqual(r.json()["error"], "no_previous_release")
        with open(os.path.join(self.tmpdir(), "state", "state.json")) as f:
            self.assertIn("history", json.load(f)["services"]["shop"])


class Analysis(ReleaseCase):
    def test_dry_run_records_a_would_be_revert_and_moves_nothing(self):
        edge = self.start(guard={**GUARD, "dry_run": True}, blue_weight=80, green_weight=20)
        with PacedLoad(edge.addr, rate=150) as load:
            time.sleep(1.0)
            self.assertEqual(h.get((self.green.host, self.green.port), "/__status/500").status,
                             200)
            edge.wait_line(r"guard: service shop version green would be reverted \(dry run",
                           timeout=10, stream="stderr")
            at = time.monotonic()
            time.sleep(1.5)
        after = Counter(b for t, s, b in load.samples if t > at)
        self.assertIn("green", after, "a dry run moves no traffic")
        self.assertFalse(any("reverted to weight 0" in line for line in edge.output("stderr")))
        evs = [e for e in self.events(edge) if e["action"] == "guard_dry_run_revert"]
        self.assertGreaterEqual(len(evs), 1)
        self.assertEqual(evs[0]["detail"]["version"], "green")
        metrics = self.call(edge, "GET", "/metrics", "viewer").body.decode()
        self.assertRegex(metrics,
                         r'weir_guard_dry_run_reverts_total\{service="shop",version="green"\} [1-9]')
        explain = self.call(edge, "GET", "/api/v1/services/shop/explain", "viewer").json()
        self.assertTrue(any(d.get("dry_run", {}).get("would_revert")
                            for d in explain["decisions"]))

    def test_mann_whitney_fails_materially_slower_not_slightly_slower(self):
        guard = {"interval_ms": 500, "window_s": 2, "min_requests": 20, "consecutive": 2,
                 "min_latency_increase_ms": 5}
        edge = self.start(guard=guard, blue_weight=50, green_weight=50)
        with PacedLoad(edge.addr, rate=150):
            # 1 ms slower: significant, but under the 5 ms floor.
            h.get((self.green.host, self.green.port), "/__delay/1")
            time.sleep(3.5)
            self.assertFalse(any("reverted" in line for line in edge.output("stderr")),
                             edge.tail())
            h.get((self.green.host, self.green.port), "/__delay/40")
            idx, _ = edge.wait_line(r"guard: service shop version green reverted", timeout=10,
                                    stream="stderr")
        line = edge.output("stderr")[idx]
        self.assertIn("Mann-Whitney U", line)
        self.assertRegex(line, r"p [\d.e-]+ < 0\.02")
        explain = self.call(edge, "GET", "/api/v1/services/shop/explain", "viewer").json()
        tests = [d["latency_test"] for d in explain["decisions"] if "latency_test" in d]
        self.assertTrue(tests)
        self.assertEqual(tests[-1]["test"], "mann-whitney-u")

    def test_success_after_finishes_a_step_early(self):
        guard = {**GUARD, "min_requests": 20}
        plan = {"version": "green", "steps": [20, 100], "step_s": 600, "max_step_s": 1200,
                "success_after": 60}
        edge = self.start(plan, guard=guard)
        with PacedLoad(edge.addr, rate=200):
            self.assertEqual(
                self.call(edge, "POST", "/api/v1/services/shop/rollout/start").status, 200)
            idx, _ = edge.wait_line(r"rollout: service shop promoted green to stable",
                                    timeout=20, stream="stderr")
        self.assertIn("passed early (success_after 60", edge.output("stderr")[idx])


class FleetGates(test_fleet.FleetCase):
    """A fleet shares the wait and the approvals: an approval on any replica moves the rollout
    the leader drives."""

    def config(self, name, listen=None):
        text = super().config(name, listen)
        with open(os.path.join(self.folder(name), "tokens.toml"), "w") as f:
            f.write(h.tokens_toml(TOKENS))
        return text

    def test_an_approval_on_a_follower_moves_the_fleets_rollout(self):
        rollout = {"version": "green", "steps": [10, "pause", 100], "step_s": 1,
                   "max_step_s": 60, "approvals": 1}
        replicas = self.start_fleet(weights=(100, 0), rollout=rollout)
        lead = self.leader(replicas)
        followers = [r for r in replicas if r.fleet_name != lead]
        r = h.admin_call(followers[0], "POST", "/api/v1/services/shop/rollout/start",
                         body={"reason": "fleet release"})
        self.assertEqual(r.status, 200, r)

        def all_waiting():
            return all(self.view(x)[0]["rollout"]["state"] == "waiting" and
                       self.view(x)[0]["rollout"].get("step") == 1 for x in replicas)
        self.assertTrue(h.wait_until(all_waiting, 20),
                        [self.view(x)[0]["rollout"] for x in replicas])
        r = h.admin_call(followers[1], "POST", "/api/v1/services/shop/rollout/approve",
                         token=TOKENS["ci"][1], body={"reason": "mine"})
        self.assertEqual(r.status, 403, r)
        r = h.admin_call(followers[1], "POST", "/api/v1/services/shop/rollout/approve",
                         token=TOKENS["reviewer"][1], body={"reason": "fleet ok"})
        self.assertEqual(r.status, 200, r)
        self.assertTrue(h.wait_until(
            lambda: all(self.view(x)[0]["stable"] == "green" for x in replicas), 20),
            [self.view(x)[0]["rollout"] for x in replicas])
        events = self.events(replicas[0])
        approve = [e for e in events if e["action"] == "rollout_approve"]
        self.assertEqual(len(approve), 1)
        self.assertEqual(approve[0]["replica"], followers[1].fleet_name)
        self.assertEqual(approve[0]["detail"]["requester"], "ci")
        self.assertEqual(approve[0]["detail"]["approver"], "reviewer")


if __name__ == "__main__":
    unittest.main()
