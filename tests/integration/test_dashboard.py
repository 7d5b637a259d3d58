"""The admin dashboard (GET / and /ui on the admin listener) in headless Chromium: it asks for a
token, shows what the JSON API says (weights, request counts and rates, guard and rollout state,
endpoints, events), and its buttons change weir (rollback, promote) with If-Match and a reason;
refusals (403 with a read token, 412 after a concurrent change) are shown and change nothing.
A real revert shows per version (badge, 60 s window, marked figures), in the guard's verdicts
and in the aborted rollout; a reverted version's promote needs its name typed; the history
charts come from the server (complete right after a reload) with UTC and value axes.
Screenshots go to $WEIR_TEST_OUTPUT (default: test-output/ next to the weir binary)."""

import os
import re
import threading
import time
import unittest

from cdp import CHROMIUM, Chromium
from harness import (WEIR_BIN, WeirTestCase, admin_call, admin_settings, get, load, render_config,
                     route, service, start_weir, version, wait_until, ADMIN_TOKENS)

OUTPUT_DIR = os.environ.get("WEIR_TEST_OUTPUT") or os.path.join(
    os.path.dirname(os.path.abspath(WEIR_BIN)), "test-output")
SOURCE_PAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "proxy", "dashboard.html")

# What the page shows, read from its DOM as text (what an operator sees).
READ_PAGE = r"""(() => {
  const out = {};
  for (const sec of document.querySelectorAll('section.service')) {
    const fact = (k) => sec.querySelector(`.facts [data-field="${k}"]`).textContent;
    const s = {stable: fact('stable'), guard: fact('guard'), rollout: fact('rollout'),
               state_version: fact('state_version'), versions: {}};
    for (const tr of sec.querySelectorAll('table.versions tbody tr')) {
      const cell = (k) => tr.querySelector(`[data-field="${k}"]`);
      const v = {endpoints: {},
                 promote_disabled: tr.querySelector('button[data-action=promote]').disabled,
                 reverted: !!cell('reverted')};
      for (const k of ['configured_weight', 'effective_weight', 'share', 'requests_10s',
                       'requests_60s']) v[k] = cell(k).textContent;
      for (const w of ['10s', '60s'])
        for (const k of ['rate', 'error_rate', 'p99']) {
          v[`${k}_${w}`] = cell(`${k}_${w}`).querySelector('[data-value]').textContent;
          v[`${k}_${w}_over`] = cell(`${k}_${w}`).classList.contains('over');
        }
      for (const li of tr.querySelectorAll('li[data-endpoint]'))
        v.endpoints[li.dataset.endpoint] = {
          health: li.querySelector('.badge').textContent,
          attempts: li.querySelector('[data-field=attempts]').textContent};
      s.versions[tr.dataset.version] = v;
    }
    out[sec.dataset.service] = s;
  }
  return out;
})()"""

READ_EVENTS = r"""[...document.querySelectorAll('#events tbody tr')].map(
  (tr) => [...tr.cells].map((td) => td.textContent))"""

# Markup checks: column headers, row headers, named buttons, labelled inputs.
ACCESSIBILITY = r"""(() => {
  const bad = [];
  for (const th of document.querySelectorAll('thead th'))
    if (!['col', 'colgroup'].includes(th.getAttribute('scope')))
      bad.push('thead th without scope=col or colgroup');
  for (const tr of document.querySelectorAll('table.versions tbody tr'))
    if (!tr.querySelector('th[scope=row]')) bad.push('version row without a row header');
  for (const b of document.querySelectorAll('button'))
    if (!(b.getAttribute('aria-label') || b.textContent).trim()) bad.push('unnamed button');
  for (const i of document.querySelectorAll('input'))
    if (!i.labels.length) bad.push('input without a label: ' + i.id);
  if (document.querySelectorAll('[onclick], a[href="#"]').length) bad.push('click on a non-button');
  return bad;
})()"""

# Horizontal overflow: of the page, and of any scrolling table wrapper.
OVERFLOW = r"""(() => {
  const out = [];
  const doc = document.documentElement;
  if (doc.scrollWidth > window.innerWidth) out.push(`page ${doc.scrollWidth}px`);
  for (const e of document.querySelectorAll('.scroll'))
    if (e.scrollWidth > e.clientWidth + 1) out.push(`table ${e.scrollWidth}px in ${e.clientWidth}px`);
  return out;
})()"""

# The guard's and the rollout's parts of service shop: data-field -> text shown ("" when hidden),
# the last verdict per version, and the history charts.
READ_GUARD = r"""(() => {
  const sec = document.querySelector('section.service[data-service=shop]');
  const fields = (sel) => Object.fromEntries([...sec.querySelectorAll(`${sel} dd`)].map(
    (dd) => [dd.dataset.field, dd.closest('div').hidden ? '' : dd.textContent]));
  const verdicts = {};
  for (const tr of sec.querySelectorAll('table.verdicts tbody tr[data-version]'))
    verdicts[tr.dataset.version] = {
      verdict: tr.querySelector('[data-field=verdict] .badge').textContent,
      reverted: !!tr.querySelector('[data-field=verdict] .badge.reverted'),
      time: tr.querySelector('[data-field=time]').textContent,
      why: tr.querySelector('[data-field=why]').textContent};
  const charts = {};
  for (const fig of sec.querySelectorAll('figure[data-chart]')) {
    const svg = fig.querySelector('svg');
    charts[fig.dataset.chart] = {
      top: +svg.dataset.top,
      x: [...svg.querySelectorAll('text[data-axis=x]')].map((t) => t.textContent),
      y: [...svg.querySelectorAll('text[data-axis=y]')].map((t) => t.textContent),
      points: Object.fromEntries([...svg.querySelectorAll('path.line')].map(
        (p) => [p.dataset.version, +p.dataset.points]))};
  }
  return {guard: sec.querySelector('.facts [data-field=guard]').textContent,
          rollout_state: sec.querySelector('.facts [data-field=rollout]').textContent,
          rollout: fields('dl.rollout'), thresholds: fields('dl.thresholds'),
          guard_shown: !sec.querySelector('.guard-panel').hidden, verdicts, charts};
})()"""

DASH = "\u2013"
UTC_TIME = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$"


def utc(text):
    """An API time ("2026-12-07T15:32:14.123Z") as the page shows it."""
    return text[:19].replace("T", " ") + " UTC"


def number(text):
    """A figure as shown ("1,234", "12.50%", "0.08 ms", "3 sent", "configured 10") as a float;
    None for a dash."""
    text = text.strip().removeprefix("configured ")
    if text == DASH:
        return None
    m = re.match(r"^-?[\d,]*\.?\d+", text)
    if not m:
        raise AssertionError(f"not a figure: {text!r}")
    return float(m.group(0).replace(",", ""))


def close_to(shown, expected, rel, absolute):
    if expected is None or shown is None:
        return shown is None and expected is None
    return abs(shown - expected) <= max(abs(expected) * rel, absolute)


@unittest.skipUnless(os.access(CHROMIUM, os.X_OK),
                     f"{CHROMIUM} is not installed (Debian package chromium)")
class Dashboard(WeirTestCase):
    def setUp(self):
        self.blue = self.backend("blue")
        self.green = self.backend("green")
        svc = service("shop", version("blue", 90, self.blue), version("green", 10, self.green),
                      stable="blue",
                      guard={"interval_ms": 500, "window_s": 10, "min_requests": 50,
                             "max_error_rate": 0.5},
                      rollout={"version": "green", "steps": [10, 50, 100], "step_s": 60})
        config = render_config([svc], routes=[route("shop")],
                               admin=admin_settings(self.tmpdir()))
        self.edge = start_weir(self.addCleanup, config)
        host, port = self.edge.admin
        self.origin = f"http://{host}:{port}"

    # -- API side

    def api_shop(self):
        r = admin_call(self.edge, "GET", "/api/v1/services/shop", token="viewer")
        self.assertEqual(r.status, 200, r)
        return r.json()

    def api_events(self):
        r = admin_call(self.edge, "GET", "/api/v1/events", token="viewer")
        self.assertEqual(r.status, 200, r)
        return r.json()["events"]

    def weights(self, shop=None):
        return {v["name"]: v["effective_weight"] for v in (shop or self.api_shop())["versions"]}

    # -- page side

    def mismatches(self, page, api, live):
        """Where the page differs from the API's view of service shop. live: also require
        traffic in every version's 10 s window, so that rates, error rates and p99 are
        compared while they are not simply empty on both sides."""
        out = []
        shown = page.get("shop")
        if shown is None:
            return ["service shop is not shown"]

        def check(what, ok, got, want):
            if not ok:
                out.append(f"{what}: page shows {got!r}, API says {want!r}")

        for key, want in (("stable", api["stable"]), ("guard", api["guard"]["state"]),
                          ("rollout", api["rollout"]["state"]),
                          ("state_version", str(api["state_version"]))):
            check(key, shown[key] == want, shown[key], want)
        for v in api["versions"]:
            row = shown["versions"].get(v["name"])
            if row is None:
                out.append(f"version {v['name']} is not shown")
                continue
            name = v["name"]
            w10, w60 = v["stats"]["10s"], v["stats"]["60s"]
            exact = {"configured_weight": v["configured_weight"],
                     "effective_weight": v["effective_weight"],
                     "requests_10s": w10["requests"], "requests_60s": w60["requests"]}
            for key, want in exact.items():
                got = number(row[key])
                check(f"{name} {key}", got == want, row[key], want)
            check(f"{name} share", close_to(number(row["share"]), v["share"] * 100, 0, 0.051),
                  row["share"], v["share"])
            check(f"{name} reverted", row["reverted"] == v["reverted"], row["reverted"],
                  v["reverted"])
            if live and w10["requests"] == 0:
                out.append(f"{name}: no requests in the 10 s window to compare")
            for w, secs, win in (("10s", 10, w10), ("60s", 60, w60)):
                answered = win["requests"] > 0
                rate = row[f"rate_{w}"]
                check(f"{name} rate {w}", close_to(number(rate), win["requests"] / secs, 0, 0.051),
                      rate, win["requests"] / secs)
                err = row[f"error_rate_{w}"]
                check(f"{name} error rate {w}",
                      close_to(number(err), win["error_rate"] * 100 if answered else None, 0,
                               0.0051), err, win["error_rate"])
                p99 = row[f"p99_{w}"]
                check(f"{name} p99 {w}", close_to(number(p99), win["p99_ms"] if answered else None,
                                                  0.006, 0.0006), p99, win["p99_ms"])
            check(f"{name} promote disabled", row["promote_disabled"] == (name == api["stable"]),
                  row["promote_disabled"], name == api["stable"])
            for ep in v["endpoints"]:
                got = row["endpoints"].get(ep["address"])
                want = (ep["health"], ep["attempts"])
                got_pair = got and (got["health"], number(got["attempts"]))
                check(f"{name} endpoint {ep['address']}", got_pair == want, got, want)
        return out

    def assert_page_matches_api(self, browser, timeout=15, live=False):
        """The page refreshes every second: wait (bounded) until what it shows matches the API."""
        first, last = [], []

        def matches():
            last[:] = self.mismatches(browser.evaluate(READ_PAGE), self.api_shop(), live)
            first[:] = first or last
            return not last

        wait_until(matches, timeout, interval=0.25)
        self.assertEqual(last, [], "the dashboard disagrees with GET /api/v1/services/shop; "
                         f"first difference seen: {first}")

    def load_while(self, wait):
        """Keeps load going (rounds of 1 s, at most 20) while wait() runs; returns its value."""
        stop = threading.Event()
        background = threading.Thread(
            target=lambda: [load(self.edge.addr, threads=2, duration=1) for _ in range(20)
                            if not stop.is_set()], daemon=True)
        background.start()
        try:
            return wait()
        finally:
            stop.set()
            background.join(30)

    def confirm(self, browser, opener, reason):
        """Clicks opener, waits for the confirmation dialog, gives a reason and confirms."""
        browser.click(opener)
        browser.wait_for("document.getElementById('confirm').open", what="confirmation dialog")
        self.assertEqual(browser.evaluate("document.activeElement.id"), "confirm-reason")
        browser.type_text(reason)
        browser.click("#confirm-ok")
        browser.wait_for("!document.getElementById('confirm').open", what="dialog closed")

    def alert_text(self, browser):
        return browser.wait_for("!document.getElementById('alert').hidden && "
                                "document.getElementById('alert-text').textContent",
                                what="an error shown on the page")

    # -- tests

    def test_page_is_served_without_a_token(self):
        with open(SOURCE_PAGE, "rb") as f:
            source = f.read()
        for path in ("/", "/ui"):
            with self.subTest(path):
                r = admin_call(self.edge, "GET", path, token=None)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.body, source)  # embedded byte for byte
                self.assertEqual(r.header("content-type"), "text/html; charset=utf-8")
                self.assertEqual(r.header("cache-control"), "no-store")
                self.assertEqual(r.header("x-frame-options"), "DENY")
                self.assertEqual(r.header("x-content-type-options"), "nosniff")
                csp = r.header("content-security-policy", "")
                self.assertIn("default-src 'none'", csp)
                self.assertIn("connect-src 'self'", csp)
                self.assertIn("frame-ancestors 'none'", csp)
                self.assertRegex(csp, r"script-src 'sha256-[A-Za-z0-9+/]{43}='")
                self.assertNotIn("unsafe", csp)
        r = admin_call(self.edge, "HEAD", "/ui", token=None)
        self.assertEqual((r.status, r.body, int(r.header("content-length"))),
                         (200, b"", len(source)))
        r = admin_call(self.edge, "POST", "/ui", token=None, body={})
        self.assertEqual((r.status, r.header("allow")), (405, "GET, HEAD"))
        # Everything else stays behind the token.
        self.assertEqual(admin_call(self.edge, "GET", "/ui/x", token=None).status, 401)
        self.assertEqual(admin_call(self.edge, "GET", "/api/v1/services", token=None).status, 401)

    def test_dashboard_in_chromium(self):
        started = time.monotonic()
        # Requests answered before the control thread's first statistics tick (100 ms after
        # start) are not in the windows; the window appears in the API with that tick.
        self.assertTrue(wait_until(lambda: self.api_shop()["versions"][0]["stats"]["10s"], 10))
        result = load(self.edge.addr, threads=2, requests=1500)
        self.assertLoadClean(result, 1500)
        browser = Chromium(self.addCleanup)

        # Without a token the page asks for one (the API answered 401), then shows the figures.
        browser.navigate(self.origin + "/ui")
        browser.wait_for("!document.getElementById('token-panel').hidden", what="token prompt")
        self.assertEqual(browser.evaluate("document.querySelectorAll('section.service').length"),
                         0)
        browser.click("#token-input")
        browser.type_text(ADMIN_TOKENS["viewer"][1])
        browser.press_enter()
        browser.wait_for("!!document.querySelector('section.service[data-service=shop]')",
                         what="service shop shown")
        self.assertTrue(browser.evaluate("document.getElementById('token-panel').hidden"))
        self.assertEqual(browser.evaluate("getComputedStyle(document.querySelector("
                                          "'table.versions')).borderCollapse"), "collapse",
                         "the inline style did not apply (CSP hash?)")
        self.assertEqual(browser.evaluate(ACCESSIBILITY), [])
        self.assertTrue(wait_until(lambda: self.api_shop()["guard"]["state"] == "pass", 10),
                        "1350 blue / 150 green answered requests: the guard should pass")
        self.assert_page_matches_api(browser, live=True)

        # The page follows new traffic by itself: more load raises blue's rate (the 10 s
        # window's requests / 10), and its chart draws them.
        rate = ("+document.querySelector('section[data-service=shop] tr[data-version=blue] "
                "[data-field=rate_10s] [data-value]').dataset.value")
        before = browser.evaluate(rate)
        self.load_while(lambda: browser.wait_for(f"{rate} >= {before} + 50", timeout=20,
                                                 what=f"blue's rate up by 50 req/s from {before}"))
        self.assert_page_matches_api(browser, live=True)
        # The charts are fetched again every 5 s step: they gain a point.
        browser.wait_for("+document.querySelector('section[data-service=shop] [data-chart=rate] "
                         "path.line[data-version=blue]').dataset.points >= 2", timeout=15,
                         what="a line of two points or more in the rate chart")

        # Refreshing keeps keyboard focus where it was.
        browser.evaluate("document.querySelector('section[data-service=shop] "
                         "button[data-action=rollback]').focus()")
        time.sleep(2.5)  # two refreshes or more
        self.assertEqual(browser.evaluate("document.activeElement.dataset.action"), "rollback")

        # A read token cannot roll back: the 403 is shown and nothing changes.
        before = self.api_shop()
        self.confirm(browser, "section[data-service=shop] button[data-action=rollback]",
                     "dashboard test with a read token")
        text = self.alert_text(browser)
        self.assertIn("403", text)
        self.assertIn("read scope", text)
        self.assertEqual(self.weights(), self.weights(before))
        self.assertEqual(self.api_events(), [])

        # A write token from the URL fragment: kept in sessionStorage, removed from the URL.
        browser.navigate("about:blank")  # else only the fragment changes: no new page load
        browser.navigate(self.origin + "/ui#token=" + ADMIN_TOKENS["ci"][1])
        browser.wait_for("!!document.querySelector('section.service[data-service=shop]')")
        self.assertEqual(browser.evaluate("location.hash"), "")
        self.assertEqual(browser.evaluate("sessionStorage.getItem('weir.token')"),
                         ADMIN_TOKENS["ci"][1])

        # A change made by someone else while the dialog is open: weir answers 412 (If-Match
        # carries the state version the page showed) and the page says so.
        browser.click("section[data-service=shop] tr[data-version=green] "
                      "button[data-action=promote]")
        browser.wait_for("document.getElementById('confirm').open")
        r = admin_call(self.edge, "PUT", "/api/v1/services/shop/weights",
                       body={"weights": {"blue": 80, "green": 20}, "reason": "someone else"},
                       headers=[("If-Match", "*")])
        self.assertEqual(r.status, 200, r)
        browser.type_text("promote from the dashboard")
        browser.click("#confirm-ok")
        self.assertIn("412", self.alert_text(browser))
        shop = self.api_shop()
        self.assertEqual((shop["stable"], self.weights(shop)), ("blue", {"blue": 80, "green": 20}))

        # Rollback: every version but stable to 0, audited with the reason given.
        self.assert_page_matches_api(browser)
        self.confirm(browser, "section[data-service=shop] button[data-action=rollback]",
                     "rollback from the dashboard")
        self.assertTrue(wait_until(lambda: self.weights() == {"blue": 100, "green": 0}, 10),
                        self.api_shop())
        events = self.api_events()
        self.assertEqual([(e["action"], e["actor"], e["reason"]) for e in events[-1:]],
                         [("rollback", "ci", "rollback from the dashboard")])
        browser.wait_for("!document.getElementById('notice').hidden", what="success notice")
        self.assert_page_matches_api(browser)
        browser.wait_for(f"{READ_EVENTS}.length === {len(events)}", what="events listed")
        newest = browser.evaluate(READ_EVENTS)[0]
        self.assertEqual(newest[0], str(events[-1]["seq"]))
        self.assertEqual(newest[2:5], ["ci", "rollback", "shop"])
        self.assertEqual(newest[5], "blue 80 \u2192 100, green 20 \u2192 0")
        self.assertEqual(newest[6], "rollback from the dashboard")

        # Promote green: it becomes stable with all the traffic.
        self.confirm(browser, "section[data-service=shop] tr[data-version=green] "
                     "button[data-action=promote]", "green is good")
        self.assertTrue(wait_until(lambda: self.api_shop()["stable"] == "green", 10))
        self.assertEqual(self.weights(), {"blue": 0, "green": 100})
        self.assertEqual(self.api_events()[-1]["action"], "promote")
        self.assert_page_matches_api(browser)

        os.makedirs(OUTPUT_DIR, exist_ok=True)
        wide = browser.screenshot(os.path.join(OUTPUT_DIR, "dashboard.png"))
        browser.resize(400, 900)
        browser.wait_for("window.innerWidth === 400")
        self.assertEqual(browser.evaluate(OVERFLOW), [], "horizontal overflow at 400 px")
        narrow = browser.screenshot(os.path.join(OUTPUT_DIR, "dashboard-narrow.png"))
        print(f"\nscreenshots: {wide} {narrow}")

        # Nothing but the admin origin was fetched, and the page logged no error.
        urls = {p["request"]["url"] for m, p in browser.events if m == "Network.requestWillBeSent"}
        foreign = {u for u in urls if not u.startswith(self.origin + "/") and
                   not u.startswith("data:")}
        self.assertEqual(foreign, set())
        self.assertEqual(browser.errors(), [])
        self.assertWeirAlive(self.edge)
        print(f"dashboard test took {time.monotonic() - started:.1f}s")

    def api_history(self):
        r = admin_call(self.edge, "GET", "/api/v1/services/shop/history?seconds=300&step_s=5",
                       token="viewer")
        self.assertEqual(r.status, 200, r)
        return r.json()

    def api_explain(self):
        r = admin_call(self.edge, "GET", "/api/v1/services/shop/explain", token="viewer")
        self.assertEqual(r.status, 200, r)
        return r.json()

    def open_page(self, browser):
        browser.navigate("about:blank")
        browser.navigate(self.origin + "/ui#token=" + ADMIN_TOKENS["ci"][1])
        browser.wait_for("!!document.querySelector('section[data-service=shop] "
                         "[data-chart=rate] path.line[data-version=blue]')",
                         what="service shop and its history shown")

    def test_guard_rollout_history_and_revert_in_chromium(self):
        self.assertTrue(wait_until(lambda: self.api_shop()["versions"][0]["stats"]["10s"], 10))
        self.assertLoadClean(load(self.edge.addr, threads=2, requests=1500), 1500)
        r = admin_call(self.edge, "POST", "/api/v1/services/shop/rollout/start",
                       body={"reason": "dashboard test"})
        self.assertEqual(r.status, 200, r)
        self.assertTrue(wait_until(lambda: self.api_shop()["guard"]["state"] == "pass", 10))
        browser = Chromium(self.addCleanup)
        self.open_page(browser)

        # UTC times, as the events show them.
        self.assertRegex(browser.evaluate("document.getElementById('status').textContent"),
                         r"^Updated \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC; ")

        # The rollout step: index and percent of the plan, time in the step, what it waits for
        # and when it would advance, as the API says.
        def rollout_mismatch():
            ro = self.api_shop()["rollout"]
            shown = browser.evaluate(READ_GUARD)
            want = {"rollout_step": f"{ro['step'] + 1} of {ro['step_of']} ({ro['weight']}%)",
                    "rollout_waiting": "; ".join(ro.get("waiting_for", [])),
                    "rollout_advances": utc(ro["advances_at"]) if "advances_at" in ro else "",
                    "rollout_version": "green (steps 10, 50, 100%, 60 s each)"}
            got = {k: shown["rollout"][k] for k in want}
            if shown["rollout_state"] != ro["state"]:
                return f"state {shown['rollout_state']} vs {ro['state']}"
            if got != want or not re.match(r"^\d+ s$", shown["rollout"]["rollout_in_step"]):
                return f"page {shown['rollout']} vs API {ro}"
            return None

        problems = []
        self.assertTrue(wait_until(lambda: problems.append(rollout_mismatch()) or
                                   problems[-1] is None, 15, interval=0.3), problems[-1])

        # The guard's thresholds (unset ones say so) and the last verdict, from explain.
        shown = browser.evaluate(READ_GUARD)
        self.assertTrue(shown["guard_shown"])
        self.assertEqual(
            {k: shown["thresholds"][k] for k in ("window_s", "min_requests", "max_error_rate",
                                                 "max_p99_ms", "confidence", "consecutive")},
            {"window_s": "10 s", "min_requests": "50", "max_error_rate": "50.00%",
             "max_p99_ms": "not set", "confidence": "95.00%", "consecutive": "3"})
        browser.wait_for("!!document.querySelector('section[data-service=shop] "
                         "table.verdicts tr[data-version=green]')", what="green's verdict")
        green = browser.evaluate(READ_GUARD)["verdicts"]["green"]
        decisions = [d for d in self.api_explain()["decisions"] if d["version"] == "green"]
        self.assertIn((green["time"], green["verdict"], green["why"]),
                      [(utc(d["time"]), d["verdict"], "; ".join(d["reasons"])) for d in decisions])
        self.assertRegex(green["time"], UTC_TIME)

        # History from the server: a page loaded now draws what weir counted before it (no
        # browser storage), on axes of UTC minutes and values.
        self.assertEqual(browser.evaluate("localStorage.length + sessionStorage.length"), 1)
        # weir has run for a few seconds: wait for three 5 s points of traffic.
        self.assertTrue(wait_until(lambda: sum(n is not None for n in
                                               self.api_history()["versions"][0]["requests"])
                                   >= 3, 20), self.api_history())
        history = self.api_history()
        self.open_page(browser)
        charts = browser.evaluate(READ_GUARD)["charts"]
        counted = {v["name"]: sum(x is not None for x in v["requests"])
                   for v in history["versions"]}
        for name in ("blue", "green"):
            self.assertGreaterEqual(charts["rate"]["points"][name], counted[name], charts)
        self.assertEqual(set(charts), {"rate", "error_rate", "p99"})
        first_ms = history["end_ms"] - (history["points"] - 1) * history["step_s"] * 1000
        for label in charts["rate"]["x"]:
            self.assertRegex(label, r"^\d\d:\d\d$")
        self.assertGreaterEqual(len(charts["rate"]["x"]), 4, charts["rate"])  # 5 min: 4-5 ticks
        start = time.strftime("%H:%M", time.gmtime(first_ms / 1000))
        end = time.strftime("%H:%M", time.gmtime(history["end_ms"] / 1000 + 10))
        self.assertTrue(all(start <= x <= end or start > end for x in charts["rate"]["x"]),
                        (start, end, charts["rate"]["x"]))
        peak = max(n / history["step_s"] for v in history["versions"] for n in v["requests"]
                   if n is not None)
        self.assertGreaterEqual(charts["rate"]["top"], peak)
        self.assertEqual(number(charts["rate"]["y"][-1]), charts["rate"]["top"])
        self.assertEqual(charts["error_rate"]["y"][0], "0.00%")

        # green breaks: the guard reverts it and aborts the rollout. The page shows the revert
        # per version, the failing verdict, and the 60 s window keeps the failure in sight.
        self.assertEqual(get((self.green.host, self.green.port), "/__status/500").status, 200)
        self.assertTrue(self.load_while(
            lambda: wait_until(lambda: self.api_shop()["versions"][1]["reverted"], 20)),
            self.api_shop())
        self.assertEqual(self.api_shop()["guard"]["state"], "reverted")
        self.assert_page_matches_api(browser)
        row = browser.evaluate(READ_PAGE)["shop"]["versions"]["green"]
        self.assertTrue(row["reverted"])
        self.assertGreater(number(row["error_rate_60s"]), 50, row)
        self.assertTrue(row["error_rate_60s_over"], "above max_error_rate: marked")
        self.assertFalse(browser.evaluate(READ_PAGE)["shop"]["versions"]["blue"]
                         ["error_rate_60s_over"])
        browser.wait_for("(() => { const b = document.querySelector('section[data-service=shop] "
                         "table.verdicts tr[data-version=green] .badge.reverted'); "
                         "return !!b; })()", what="green's reverting verdict")
        shown = browser.evaluate(READ_GUARD)
        self.assertEqual(shown["verdicts"]["green"]["verdict"], "fail")
        self.assertIn("error rate", shown["verdicts"]["green"]["why"])
        self.assertEqual(shown["guard"], "reverted")
        browser.wait_for("document.querySelector('section[data-service=shop] .facts "
                         "[data-field=rollout]').textContent === 'aborted'", what="aborted")
        self.assertIn("guard reverted green", browser.evaluate(READ_GUARD)["rollout"]
                      ["rollout_reason"])

        # Promoting the reverted version needs its name typed after a warning with the
        # guard's evidence; cancelling changes nothing.
        revert = [e for e in self.api_events() if e["action"] == "revert"][-1]
        browser.wait_for(f"{READ_EVENTS}.some((r) => r[3] === 'revert')", what="revert listed")
        promote = "section[data-service=shop] tr[data-version=green] button[data-action=promote]"
        browser.click(promote)
        browser.wait_for("document.getElementById('confirm').open", what="confirmation dialog")
        warning = browser.evaluate("document.getElementById('confirm-warning').hidden ? '' : "
                                   "document.getElementById('confirm-warning').textContent")
        self.assertIn(f"The guard reverted green at {utc(revert['time'])}: {revert['reason']}",
                      warning)
        self.assertTrue(browser.evaluate("document.getElementById('confirm-ok').disabled"))
        browser.type_text("it is fixed")
        browser.click("#confirm-ok")  # disabled: nothing happens
        self.assertTrue(browser.evaluate("document.getElementById('confirm').open"))
        browser.click("#confirm-cancel")
        browser.wait_for("!document.getElementById('confirm').open", what="dialog closed")
        events_before = len(self.api_events())
        self.assertEqual(self.api_shop()["stable"], "blue")

        browser.click(promote)
        browser.wait_for("document.getElementById('confirm').open")
        browser.type_text("green is fixed")
        browser.click("#confirm-name")
        browser.type_text("gree")
        self.assertTrue(browser.evaluate("document.getElementById('confirm-ok').disabled"))
        browser.type_text("n")
        self.assertFalse(browser.evaluate("document.getElementById('confirm-ok').disabled"))
        browser.click("#confirm-ok")
        browser.wait_for("!document.getElementById('confirm').open", what="dialog closed")
        self.assertTrue(wait_until(lambda: self.api_shop()["stable"] == "green", 10))
        events = self.api_events()
        self.assertEqual(len(events), events_before + 1)
        self.assertEqual((events[-1]["action"], events[-1]["actor"], events[-1]["reason"]),
                         ("promote", "ci", "green is fixed"))
        # A version that is not reverted is promoted without the name check (its button is on
        # again once the page has the answer to the last change).
        blue_promote = ("section[data-service=shop] tr[data-version=blue] "
                        "button[data-action=promote]")
        browser.wait_for("!document.getElementById('notice').hidden && !document.querySelector("
                         f"{blue_promote!r}).disabled", what="the promote done, blue's button on")
        browser.click(blue_promote)
        browser.wait_for("document.getElementById('confirm').open")
        self.assertTrue(browser.evaluate("document.getElementById('confirm-warning').hidden && "
                                         "document.getElementById('confirm-name-row').hidden && "
                                         "!document.getElementById('confirm-ok').disabled"))
        browser.click("#confirm-cancel")
        browser.wait_for(f"{READ_EVENTS}.length >= {len(events)}", what="events listed")
        newest = browser.evaluate(READ_EVENTS)[0]
        self.assertEqual(newest[1], events[-1]["time"].replace("T", " ").replace("Z", ""))

        os.makedirs(OUTPUT_DIR, exist_ok=True)
        print("\nscreenshot: " +
              browser.screenshot(os.path.join(OUTPUT_DIR, "dashboard-revert.png")))
        urls = {p["request"]["url"] for m, p in browser.events if m == "Network.requestWillBeSent"}
        self.assertEqual({u for u in urls if not u.startswith(self.origin + "/")}, set())
        self.assertEqual(browser.errors(), [])
        self.assertWeirAlive(self.edge)


if __name__ == "__main__":
    unittest.main()
