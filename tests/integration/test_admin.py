"""The admin API end to end: auth, If-Match, validation (nothing changes on any error), runtime
weights reaching the workers under load, persistence across kill -9, reload."""

import json
import os
import re
import signal
import threading
import time
import unittest

from harness import (WeirTestCase, admin_call, admin_settings, curl, get, load, refused,
                     render_config, route, service, start_weir, version, wait_until, weirctl,
                     ADMIN_TOKENS)
from test_guard import FAST_GUARD, REVERT_LINE, PacedLoad


class AdminTestCase(WeirTestCase):
    def start(self, weights=(90, 10), **admin_overrides):
        self.blue = self.backend("blue")
        self.green = self.backend("green")
        self.config_path = os.path.join(self.tmpdir(), "weir.toml")
        self.admin = admin_settings(self.tmpdir(), **admin_overrides)
        return self.restart(weights)

    def config(self, weights=(90, 10), versions=("blue", "green"), listeners=("public",)):
        backends = {"blue": self.blue, "green": self.green}
        svc = service("shop", *[version(v, w, backends[v]) for v, w in zip(versions, weights)],
                      stable="blue")
        return render_config([svc], routes=[route("shop", listener=n) for n in listeners],
                             admin=self.admin, listeners=listeners)

    def restart(self, weights=(90, 10)):
        self.edge = start_weir(self.addCleanup, self.config(weights), path=self.config_path)
        self.assertIsNotNone(self.edge.admin, "weir did not announce its admin listener")
        return self.edge

    def shop(self):
        r = admin_call(self.edge, "GET", "/api/v1/services/shop", token="viewer")
        self.assertEqual(r.status, 200, r)
        return r.json(), r.header("etag")

    def weights(self):
        return {v["name"]: v["effective_weight"] for v in self.shop()[0]["versions"]}

    def put_weights(self, weights, if_match="*", token="ci", reason="test"):
        headers = [("If-Match", if_match)] if if_match is not None else []
        return admin_call(self.edge, "PUT", "/api/v1/services/shop/weights", token=token,
                          body={"weights": weights, "reason": reason}, headers=headers)

    def events(self, since=0):
        r = admin_call(self.edge, "GET", f"/api/v1/events?since={since}", token="viewer")
        self.assertEqual(r.status, 200, r)
        return r.json()["events"]

    def scrape(self, token=None):
        from prometheus_client.parser import text_string_to_metric_families
        r = admin_call(self.edge, "GET", "/metrics", token=token)
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.header("content-type").startswith("text/plain; version=0.0.4"))
        samples = {}
        for family in text_string_to_metric_families(r.body.decode()):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return samples

    def backends_seen(self, n=40):
        return {load_one.header("x-backend") for load_one in
                (self.client(self.edge).get("/") for _ in range(n))}


class AuthAndValidation(AdminTestCase):
    def test_errors_change_nothing(self):
        self.start()
        state, etag = self.shop()
        self.assertEqual(etag, '"1"')
        stale = '"999"'
        cases = [
            # (description, response, status)
            ("no token", self.put_weights({"blue": 1}, token=None), 401),
            ("bad token", self.put_weights({"blue": 1}, token="wrong"), 401),
            ("read token", self.put_weights({"blue": 1}, token="viewer"), 403),
            ("no If-Match", self.put_weights({"blue": 1}, if_match=None), 428),
            ("stale If-Match", self.put_weights({"blue": 1}, if_match=stale), 412),
            ("unknown version", self.put_weights({"purple": 1}), 400),
            ("all zero", self.put_weights({"blue": 0, "green": 0}), 400),
            ("negative", self.put_weights({"blue": -5}), 400),
            ("not an integer", self.put_weights({"blue": "50"}), 400),
            ("malformed JSON", admin_call(self.edge, "PUT", "/api/v1/services/shop/weights",
                                          body="{\"weights\": {", headers=[("If-Match", "*")]),
             400),
            ("unknown field", admin_call(self.edge, "PUT", "/api/v1/services/shop/weights",
                                         body={"wieghts": {"blue": 1}},
                                         headers=[("If-Match", "*")]), 400),
            ("too large", admin_call(self.edge, "PUT", "/api/v1/services/shop/weights",
                                     body=b"{" + b" " * (65 * 1024) + b"}",
                                     headers=[("If-Match", "*")]), 413),
            ("unknown service", admin_call(self.edge, "PUT", "/api/v1/services/nope/weights",
                                           body={"weights": {"blue": 1}},
                                           headers=[("If-Match", "*")]), 404),
            ("promote unknown", admin_call(self.edge, "POST", "/api/v1/services/shop/promote",
                                           body={"version": "purple"}), 400),
        ]
        for what, resp, status in cases:
            with self.subTest(what):
                self.assertEqual(resp.status, status, resp)
                body = resp.json()
                self.assertEqual(set(body), {"error", "detail"}, body)
                if status == 401:
                    self.assertTrue(resp.header("www-authenticate", "").startswith("Bearer"))
        self.assertEqual(self.shop(), (state, etag))
        self.assertEqual(self.events(), [])
        # The same through curl, as an operator would see it.
        r = curl("-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT", "-d", "{}",
                 f"http://{self.edge.admin[0]}:{self.edge.admin[1]}/api/v1/services/shop/weights")
        self.assertEqual(r.stdout, b"401")
        self.assertWeirAlive(self.edge)

    def test_open_healthz_and_closed_paths(self):
        self.start()
        self.assertEqual(admin_call(self.edge, "GET", "/healthz", token=None).status, 200)
        self.assertEqual(admin_call(self.edge, "GET", "/api/v1/services", token=None).status, 401)
        self.assertEqual(admin_call(self.edge, "GET", "/nope").status, 404)
        r = admin_call(self.edge, "DELETE", "/api/v1/services/shop")
        self.assertEqual(r.status, 405)
        self.assertEqual(r.header("allow"), "GET")
        listing = admin_call(self.edge, "GET", "/api/v1/services", token="viewer").json()
        self.assertEqual([s["name"] for s in listing["services"]], ["shop"])


class RuntimeWeights(AdminTestCase):
    def test_set_weights_moves_traffic_and_is_audited(self):
        self.start()
        _, etag = self.shop()
        r = self.put_weights({"blue": 0, "green": 100}, if_match=etag, reason="canary to 100%")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("etag"), '"2"')
        self.assertEqual({v["name"]: v["effective_weight"] for v in r.json()["versions"]},
                         {"blue": 0, "green": 100})
        self.assertEqual({v["name"]: v["configured_weight"] for v in r.json()["versions"]},
                         {"blue": 90, "green": 10})
        # The answer came after the snapshot was posted: the next requests see it.
        self.assertEqual(self.backends_seen(), {"green"})
        # A second controller holding the old ETag cannot overwrite it.
        self.assertEqual(self.put_weights({"blue": 100}, if_match=etag).status, 412)
        ev = self.events()
        self.assertEqual(len(ev), 1)
        self.assertEqual((ev[0]["actor"], ev[0]["action"], ev[0]["service"], ev[0]["reason"]),
                         ("ci", "set_weights", "shop", "canary to 100%"))
        self.assertEqual(ev[0]["before"]["weights"], {"blue": 90, "green": 10})
        self.assertEqual(ev[0]["after"]["weights"], {"blue": 0, "green": 100})
        self.assertEqual(self.events(since=ev[0]["seq"]), [])
        # The token itself never reaches the audit log.
        with open(os.path.join(self.admin["state_dir"], "audit.log")) as f:
            text = f.read()
        for _, token in ADMIN_TOKENS.values():
            self.assertNotIn(token, text)

    def test_promote_and_rollback(self):
        self.start()
        r = admin_call(self.edge, "POST", "/api/v1/services/shop/promote",
                       body={"version": "green", "reason": "green is good"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["stable"], "green")
        self.assertEqual(self.backends_seen(), {"green"})
        self.put_weights({"blue": 50, "green": 50})
        r = admin_call(self.edge, "POST", "/api/v1/services/shop/rollback")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.weights(), {"blue": 0, "green": 100})
        self.assertEqual(self.backends_seen(), {"green"})
        self.assertEqual([e["action"] for e in self.events()],
                         ["promote", "set_weights", "rollback"])

    def test_weight_changes_under_load_fail_nothing(self):
        self.start()
        result = {}
        t = threading.Thread(target=lambda: result.update(
            r=load(self.edge.addr, threads=4, duration=5)), daemon=True)
        t.start()
        # A checker sends one request on a fresh connection (so on any worker) between two
        # changes: it must land on the only version with a weight.
        lock = threading.Lock()
        expected = ["blue"]
        wrong = []
        checks = [0]
        stop = threading.Event()

        def checker():
            while not stop.is_set():
                with lock:
                    backend = get(self.edge.addr, "/").header("x-backend")
                    if backend != expected[0]:
                        wrong.append((expected[0], backend))
                    checks[0] += 1
                time.sleep(0.001)

        c = threading.Thread(target=checker, daemon=True)
        c.start()
        changes = 0
        deadline = time.monotonic() + 4.5
        while changes < 200 and time.monotonic() < deadline:
            only = ["green", "blue"][changes % 2]
            with lock:
                r = self.put_weights({"blue": 100 if only == "blue" else 0,
                                      "green": 100 if only == "green" else 0})
                self.assertEqual(r.status, 200, r)
                expected[0] = only
            changes += 1
        stop.set()
        c.join(10)
        t.join(30)
        self.assertGreaterEqual(changes, 50)
        self.assertEqual(wrong, [], f"requests after a change went to a version at weight 0 "
                                   f"({len(wrong)} of {checks[0]})")
        self.assertGreaterEqual(checks[0], 20)
        self.assertLoadClean(result["r"], min_total=500)
        self.assertEqual(set(result["r"].backends), {"blue", "green"})
        self.assertEqual(len(self.events()), changes)


class Persistence(AdminTestCase):
    def test_kill_9_after_acknowledged_change(self):
        self.start()
        r = self.put_weights({"blue": 0, "green": 100})
        self.assertEqual(r.status, 200)
        os.kill(self.edge.pid, signal.SIGKILL)
        self.edge.wait_exit(5)
        self.restart()
        self.assertEqual(self.weights(), {"blue": 0, "green": 100})
        self.assertEqual(self.shop()[1], '"2"')
        self.assertEqual(self.backends_seen(), {"green"})
        self.assertEqual([e["action"] for e in self.events()], ["set_weights"])
        # Sequence numbers continue across the restart.
        self.put_weights({"blue": 10, "green": 90})
        self.assertEqual([e["seq"] for e in self.events()], [1, 2])

    def test_changed_version_set_resets_overrides_at_start(self):
        self.start()
        self.put_weights({"blue": 0, "green": 100})
        self.edge.signal(signal.SIGTERM)
        self.assertEqual(self.edge.wait_exit(10), 0)
        with open(self.config_path, "w") as f:
            f.write(self.config(weights=(100,), versions=("blue",)))
        self.edge = start_weir(self.addCleanup, self.config(weights=(100,), versions=("blue",)),
                               path=self.config_path)
        self.assertEqual(self.weights(), {"blue": 100})
        self.assertEqual(self.events()[-1]["action"], "reset_overrides")


class Reload(AdminTestCase):
    def write_config(self, text):
        with open(self.config_path, "w") as f:
            f.write(text)

    def test_broken_reload_keeps_running_config(self):
        self.start()
        self.put_weights({"blue": 0, "green": 100})
        self.write_config(self.config().replace('weight = 90', 'weight = "ninety"'))
        r = admin_call(self.edge, "POST", "/api/v1/reload")
        self.assertEqual(r.status, 422, r)
        body = r.json()
        self.assertEqual(body["error"], "reload_failed")
        self.assertRegex(body["detail"], r"weir\.toml:\d+:\d+: service\[0\]\.version\[0\]\.weight")
        self.assertEqual(self.weights(), {"blue": 0, "green": 100})
        self.assertEqual(self.backends_seen(), {"green"})
        # SIGHUP takes the same path.
        self.edge.signal(signal.SIGHUP)
        self.edge.wait_line(r"reload failed", timeout=5)
        self.assertEqual(self.events()[-1]["action"], "reload_failed")
        self.assertWeirAlive(self.edge)

    def test_reload_keeps_weights_unless_versions_change(self):
        self.start()
        self.put_weights({"blue": 0, "green": 100})
        _, etag = self.shop()
        self.write_config(self.config(weights=(80, 20)))
        r = admin_call(self.edge, "POST", "/api/v1/reload")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["reset_services"], [])
        state, new_etag = self.shop()
        self.assertEqual(self.weights(), {"blue": 0, "green": 100})
        self.assertEqual({v["name"]: v["configured_weight"] for v in state["versions"]},
                         {"blue": 80, "green": 20})
        self.assertNotEqual(new_etag, etag, "a changed service definition changes its ETag")
        # A new version set drops the overrides (and says so).
        self.write_config(self.config(weights=(100,), versions=("blue",)))
        r = admin_call(self.edge, "POST", "/api/v1/reload")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["reset_services"], ["shop"])
        self.assertEqual(self.weights(), {"blue": 100})
        self.assertEqual(self.backends_seen(), {"blue"})
        self.assertEqual(self.events()[-1]["detail"]["reset_services"], ["shop"])


    def test_reloads_under_load_fail_nothing(self):
        self.start()
        result = {}
        t = threading.Thread(target=lambda: result.update(
            r=load(self.edge.addr, threads=4, duration=4)), daemon=True)
        t.start()
        for i in range(20):
            self.write_config(self.config(weights=(90 - i, 10 + i)))
            r = admin_call(self.edge, "POST", "/api/v1/reload")
            self.assertEqual(r.status, 200, r)
            time.sleep(0.1)
        t.join(30)
        self.assertLoadClean(result["r"], min_total=200)
        self.assertEqual(self.weights(), {"blue": 71, "green": 29})

    def test_reload_adds_and_removes_listeners(self):
        self.start()
        self.write_config(self.config(listeners=("public", "extra")))
        mark = len(self.edge.lines)
        r = admin_call(self.edge, "POST", "/api/v1/reload")
        self.assertEqual(r.status, 200, r)
        _, m = self.edge.wait_line(r"^weir: listener extra listening on ([\d.]+):(\d+)$",
                                   start=mark)
        extra = (m.group(1), int(m.group(2)))
        self.assertEqual(get(extra, "/").status, 200)
        # A connection on the listener that goes away finishes its request, then closes.
        with self.client(extra) as c:
            self.assertEqual(c.get("/").status, 200)
            self.write_config(self.config(listeners=("public",)))
            self.assertEqual(admin_call(self.edge, "POST", "/api/v1/reload").status, 200)
            self.edge.wait_line(r"^weir: listener extra closed$", start=mark)
            self.assertTrue(c.closed_within(5), "idle connection of a removed listener")
        self.assertTrue(wait_until(lambda: refused(extra), 5), "removed listener still accepts")
        self.assertEqual(get(self.edge.addr, "/").status, 200)
        # A listener that cannot bind fails the reload and changes nothing.
        busy = self.edge.addr
        text = self.config(listeners=("public", "clash")).replace(
            'name = "clash"\naddress = "127.0.0.1:0"',
            f'name = "clash"\naddress = "{busy[0]}:{self.admin_port()}"')
        self.write_config(text)
        r = admin_call(self.edge, "POST", "/api/v1/reload")
        self.assertEqual(r.status, 422, r)
        self.assertIn("listener clash: bind", r.json()["detail"])
        self.assertEqual(get(self.edge.addr, "/").status, 200)

    def admin_port(self):
        return self.edge.admin[1]


class EndpointStats(AdminTestCase):
    def test_endpoint_counts_match_requests_sent(self):
        self.start()
        time.sleep(0.3)  # the control thread's first statistics fold is only a baseline
        with self.client(self.edge) as c:
            statuses = [c.get("/").status for _ in range(60)] + [c.get("/status/503").status]
        time.sleep(0.3)  # folded every 100 ms
        self.assertEqual(statuses.count(200), 60)
        r = admin_call(self.edge, "GET", "/api/v1/services/shop", token="viewer")
        self.assertEqual(r.status, 200, r)
        endpoints = [ep for v in r.json()["versions"] for ep in v["endpoints"]]
        self.assertEqual(sum(ep["attempts"] for ep in endpoints), 61)
        self.assertEqual(sum(ep["responses"]["2xx"] for ep in endpoints), 60)
        self.assertEqual(sum(ep["responses"]["5xx"] for ep in endpoints), 1)
        self.assertEqual(sum(sum(ep["failures"].values()) for ep in endpoints), 0)
        # Per-version windows count the same requests.
        stats = [v["stats"]["10s"] for v in r.json()["versions"] if v["stats"]["10s"]]
        self.assertEqual(sum(s["requests"] for s in stats), 61, r.json())


class Metrics(AdminTestCase):
    def test_metrics_parse_and_match_requests_sent(self):
        self.start(open_metrics=True)
        with self.client(self.edge) as c:
            for _ in range(50):
                self.assertEqual(c.get("/").status, 200)
        # A fresh connection: weir answers a malformed request on a used keep-alive connection
        # by closing it (the data path's business, not this test's).
        self.assertEqual(get(self.edge.addr, "/", host="bad host").status, 400)
        m = self.scrape()
        self.assertEqual(m[("weir_responses_total", (("code_class", "2xx"),))], 50)
        self.assertEqual(m[("weir_responses_total", (("code_class", "4xx"),))], 1)
        per_version = {v: m[("weir_requests_total", (("code_class", "2xx"), ("service", "shop"),
                                                     ("version", v)))] for v in ("blue", "green")}
        self.assertEqual(sum(per_version.values()), 50, per_version)
        self.assertEqual(per_version, {"blue": self.blue.requests(),
                                       "green": self.green.requests()})
        durations = sum(m[("weir_request_duration_seconds_count", (("service", "shop"),
                                                                   ("version", v)))]
                        for v in ("blue", "green"))
        self.assertEqual(durations, 50)
        self.assertEqual(m[("weir_local_replies_total", (("reason", "bad_request"),))], 1)
        self.assertEqual(m[("weir_build_info", (("version", "0.1.0"),))], 1)
        self.assertEqual(m[("weir_connections_accepted_total", ())], 2)
        for v, port in (("blue", self.blue.port), ("green", self.green.port)):
            ep = (("endpoint", f"127.0.0.1:{port}"), ("service", "shop"), ("version", v))
            self.assertEqual(m[("weir_endpoint_healthy", ep)], 1)
            ejected = tuple(sorted(ep + (("reason", "ejected"),)))
            self.assertEqual(m[("weir_endpoint_unhealthy", ejected)], 0)
        self.assertFalse([k for k in m if k[0] == "weir_guard_state"], "no guard configured")
        active = ("weir_connections_active", (("listener", "public"),))
        self.assertTrue(wait_until(lambda: self.scrape()[active] == 0, 10), self.scrape()[active])
        clients = [self.client(self.edge) for _ in range(3)]
        for c in clients:
            self.assertEqual(c.get("/").status, 200)
        self.assertEqual(self.scrape()[active], 3)
        for c in clients:
            c.close()
        self.assertTrue(wait_until(lambda: self.scrape()[active] == 0, 10), self.scrape()[active])
        weight = ("weir_version_weight", (("service", "shop"), ("version", "green")))
        self.assertEqual(m[weight], 10)
        self.put_weights({"green": 70})
        self.assertEqual(self.scrape()[weight], 70)
        self.write_broken_config()
        self.assertEqual(admin_call(self.edge, "POST", "/api/v1/reload").status, 422)
        m = self.scrape()
        self.assertEqual(m[("weir_config_reloads_total", (("result", "error"),))], 1)
        self.assertEqual(m[("weir_config_reloads_total", (("result", "ok"),))], 0)

    def test_metrics_need_a_token_unless_open(self):
        self.start()
        self.assertEqual(admin_call(self.edge, "GET", "/metrics", token=None).status, 401)
        self.assertIn(("weir_responses_total", (("code_class", "2xx"),)), self.scrape("viewer"))

    def write_broken_config(self):
        with open(self.config_path, "w") as f:
            f.write(self.config() + "\n[[route]]\nlistener = 5\n")


class WeirCtl(AdminTestCase):
    def test_every_command(self):
        self.start()
        r = weirctl(self.edge, "status", token="viewer")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"(?m)^SERVICE +STABLE +STATE")
        self.assertRegex(r.stdout, r"(?m)^shop +blue +1 +off +- +blue +90 +90 +90\.0% +(-|0\.0) +- +- ")
        r = weirctl(self.edge, "set-weights", "shop", "blue=20", "green=80", "--reason", "ramp")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.weights(), {"blue": 20, "green": 80})
        r = weirctl(self.edge, "--json", "status", "shop")
        self.assertEqual(json.loads(r.stdout)["state_version"], 2)
        r = weirctl(self.edge, "promote", "shop", "green")
        self.assertEqual((r.returncode, self.shop()[0]["stable"]), (0, "green"), r.stderr)
        r = weirctl(self.edge, "rollback", "shop", "--reason", "bad")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = weirctl(self.edge, "--json", "events", "--since", "1")
        self.assertEqual([e["action"] for e in json.loads(r.stdout)["events"]],
                         ["promote", "rollback"])
        r = weirctl(self.edge, "events")
        self.assertRegex(r.stdout, r"(?m)^1 +\S+ +ci +set_weights +shop .* ramp$")
        r = weirctl(self.edge, "reload")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("reloaded", r.stdout)
        self.assertIn("weir_requests_total", weirctl(self.edge, "metrics").stdout)
        r = weirctl(self.edge, "explain", "shop", token="viewer")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"^TIME +VERSION +VERDICT")
        self.assertEqual(json.loads(weirctl(self.edge, "--json", "explain", "shop").stdout)
                         ["service"], "shop")
        r = weirctl(self.edge, "rollout", "shop", "start")
        self.assertEqual(r.returncode, 1)  # no [service.rollout] in this config
        self.assertIn("rollout_refused", r.stderr)

    def test_failures_exit_non_zero_with_a_message(self):
        self.start()
        r = weirctl(self.edge, "set-weights", "shop", "green=100", token="viewer")
        self.assertEqual(r.returncode, 1)
        self.assertIn("403 forbidden", r.stderr)
        r = weirctl(self.edge, "set-weights", "shop", "purple=1")
        self.assertEqual(r.returncode, 1)
        self.assertIn("no version \"purple\"", r.stderr)
        r = weirctl(self.edge, "status", token=None)
        self.assertEqual(r.returncode, 1)
        self.assertIn("401 unauthorized", r.stderr)
        self.assertEqual(weirctl(self.edge, "set-weights", "shop", "green").returncode, 2)
        self.assertEqual(weirctl(self.edge, "frobnicate").returncode, 2)
        with open(self.config_path, "a") as f:
            f.write("\n[[route]]\nlistener = 5\n")
        r = weirctl(self.edge, "reload")
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r"weir\.toml:\d+:\d+: route\[1\]\.listener")
        self.edge.kill()
        r = weirctl(self.edge, "status")
        self.assertEqual(r.returncode, 3)
        self.assertIn("cannot connect", r.stderr)


class WeirCtlOddAnswers(unittest.TestCase):
    """weirctl against a fake admin listener: a malformed status line or a JSON answer of an
    unexpected shape is a clear error (exit 3), never an abort (an escaped exception)."""

    def serve(self, answer):
        import socket
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        listener.settimeout(10)
        self.addCleanup(listener.close)

        def loop():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                conn.sendall(answer)

        t = threading.Thread(target=loop, daemon=True)
        t.start()
        self.addCleanup(t.join, 10)

        class Fake:
            admin = listener.getsockname()
        return Fake()

    def test_a_status_line_without_three_digits_is_refused(self):
        for status in (b"2x0", b"-20", b"20 "):
            with self.subTest(status=status):
                fake = self.serve(b"HTTP/1.1 " + status + b" OK\r\nContent-Length: 2\r\n"
                                  b"Connection: close\r\n\r\n{}")
                r = weirctl(fake, "health")
                self.assertEqual(r.returncode, 3, r.stderr)
                self.assertIn("malformed status line", r.stderr)

    def test_json_of_an_unexpected_shape_is_an_error_not_an_abort(self):
        body = b'{"replicas": 5, "leader": [], "store": "x"}'
        fake = self.serve(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          b"Content-Length: " + str(len(body)).encode() +
                          b"\r\nConnection: close\r\n\r\n" + body)
        r = weirctl(fake, "fleet")
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("weirctl: unexpected answer from the admin API: ", r.stderr)


class GuardSwitch(AdminTestCase):
    """POST /services/{name}/guard: a disabled guard leaves a breaking canary alone (across a
    restart), and turning it back on reverts it."""

    def config(self, weights=(50, 50), versions=("blue", "green"), listeners=("public",)):
        backends = {"blue": self.blue, "green": self.green}
        svc = service("shop", *[version(v, w, backends[v]) for v, w in zip(versions, weights)],
                      stable="blue", guard=FAST_GUARD)
        return render_config([svc], routes=[route("shop", listener=n) for n in listeners],
                             admin=self.admin, listeners=listeners)

    def test_disabled_guard_does_not_revert_until_enabled(self):
        self.start(weights=(50, 50))
        r = weirctl(self.edge, "guard", "shop", "off", "--reason", "known noisy canary", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["guard"],
                         {"state": "disabled", "reason": "known noisy canary"})
        self.assertEqual(weirctl(self.edge, "guard", "shop", "maybe").returncode, 2)
        self.assertEqual(get((self.green.host, self.green.port), "/__status/500").status, 200)

        # Four times what the guard needs to revert (2 s window, 2 breaches 500 ms apart).
        with PacedLoad(self.edge.addr, rate=100) as paced:
            time.sleep(4.0)
        self.assertFalse(any(re.search(REVERT_LINE, l) for l in self.edge.output("stderr")),
                         self.edge.tail())
        self.assertEqual(self.weights(), {"blue": 50, "green": 50})
        self.assertIn(500, {s for _, s, _ in paced.samples}, "the canary kept failing")
        state = lambda st: ("weir_guard_state", (("service", "shop"), ("state", st),
                                                 ("version", "green")))
        reverts = ("weir_reverts_total", (("service", "shop"), ("version", "green")))
        m = self.scrape("viewer")
        self.assertEqual([st for st in ("pass", "hold", "fail", "reverted", "disabled")
                          if m[state(st)] == 1], ["disabled"])
        self.assertEqual(m[reverts], 0)

        # The switch is runtime state: a restart keeps it off.
        self.edge.signal(signal.SIGTERM)
        self.assertEqual(self.edge.wait_exit(15), 0)
        self.restart(weights=(50, 50))
        shop, etag = self.shop()
        self.assertEqual(shop["guard"]["state"], "disabled")
        with PacedLoad(self.edge.addr, rate=100):
            time.sleep(3.0)
            self.assertFalse(any(re.search(REVERT_LINE, l) for l in self.edge.output("stderr")))
            r = admin_call(self.edge, "POST", "/api/v1/services/shop/guard",
                           body={"enabled": True, "reason": "watch it again"},
                           headers=[("If-Match", etag)])
            self.assertEqual(r.status, 200, r)
            self.assertNotEqual(r.json()["guard"]["state"], "disabled")
            self.edge.wait_line(REVERT_LINE, timeout=15, stream="stderr")
        self.assertEqual(self.weights(), {"blue": 50, "green": 0})
        self.assertEqual(self.shop()[0]["guard"]["state"], "reverted")
        m = self.scrape("viewer")
        self.assertEqual([st for st in ("pass", "hold", "fail", "reverted", "disabled")
                          if m[state(st)] == 1], ["reverted"])
        self.assertEqual(m[reverts], 1)
        actions = [(e["action"], e["actor"], e["reason"]) for e in self.events()
                   if e["action"].startswith("guard_")]
        self.assertEqual(actions, [("guard_disable", "ci", "known noisy canary"),
                                   ("guard_enable", "ci", "watch it again")])

    def test_malformed_switch_changes_nothing(self):
        self.start(weights=(50, 50))
        shop, etag = self.shop()
        for body in ("{", "[]", {}, {"enabled": "off"}, {"enabled": False, "extra": 1}):
            r = admin_call(self.edge, "POST", "/api/v1/services/shop/guard", body=body)
            self.assertEqual(r.status, 400, (body, r))
            self.assertIn("detail", r.json())
        r = admin_call(self.edge, "POST", "/api/v1/services/shop/guard", body={"enabled": False},
                       headers=[("If-Match", '"999"')])
        self.assertEqual(r.status, 412)
        self.assertEqual(admin_call(self.edge, "POST", "/api/v1/services/shop/guard",
                                    token="viewer", body={"enabled": False}).status, 403)
        after, etag_after = self.shop()
        self.assertEqual((after["guard"]["state"], etag_after), (shop["guard"]["state"], etag))
        self.assertEqual([e for e in self.events() if e["action"].startswith("guard_")], [])


if __name__ == "__main__":
    unittest.main()
