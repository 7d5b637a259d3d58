"""Metrics, logs and traces an on-call engineer can use: latency quantiles from /metrics that
agree with the admin view, promtool-clean exposition with TLS, HTTP/2 and process figures, a
stamped (or JSON) error log with rate-limited upstream failures, access log flags and timings,
and W3C traceparent propagation."""

import json
import math
import os
import re
import subprocess
import time
import unittest

from harness import (Client, WeirTestCase, admin_call, admin_settings, dead_port, get,
                     render_config, route, service, version, wait_until)

PROMTOOL = "/usr/bin/promtool"
LOG_TEXT_RE = (r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (debug|info|warn|error) "
               r"(main|worker=\d+) weir: (.*)$")


def parse_exposition(text):
    """{(name, frozenset(labels)): value} for every sample line."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$", line)
        assert m, line
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples


def buckets(samples, name, **labels):
    """Sorted [(le, cumulative count)] of histogram `name` for the series with these labels."""
    want = set(labels.items())
    out = []
    for (n, ls), v in samples.items():
        if n != name + "_bucket" or not want <= set(ls):
            continue
        le = dict(ls)["le"]
        out.append((math.inf if le == "+Inf" else float(le), v))
    return sorted(out)


def histogram_quantile(q, bks):
    """PromQL's histogram_quantile over cumulative buckets: linear within the bucket that holds
    the rank, the first bucket starting at 0; returns (estimate, lower, upper)."""
    total = bks[-1][1]
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in bks:
        if count >= rank:
            if le == math.inf:
                return prev_le, prev_le, prev_le
            est = prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
            return est, prev_le, le
        prev_le, prev_count = le, count
    raise AssertionError("rank beyond the buckets")


class LatencyAgreement(WeirTestCase):
    def test_promql_quantiles_match_the_admin_view(self):
        origin = self.backend("origin")
        tmp = self.tmpdir()
        edge = self.weir(render_config([service("shop", version("blue", 100, origin))],
                                       proxy={"workers": 1}, admin=admin_settings(tmp)))
        time.sleep(1.2)  # past the first stats fold, so the window holds all of the traffic
        with Client(edge.addr) as c:
            for i in range(400):
                self.assertEqual(c.get(f"/p/{i}").status, 200)

        def view():
            r = admin_call(edge, "GET", "/api/v1/services/shop")
            self.assertEqual(r.status, 200, r)
            stats = r.json()["versions"][0]["stats"]["10s"]
            return stats if stats and stats["requests"] >= 400 else None
        stats = wait_until(view, 5)
        self.assertTrue(stats, "the 10 s window never showed the 400 requests")
        r = admin_call(edge, "GET", "/metrics")
        self.assertEqual(r.status, 200)
        samples = parse_exposition(r.body.decode())
        bks = buckets(samples, "weir_request_duration_seconds", service="shop", version="blue")
        self.assertEqual(bks[0][0], 0.00005)  # sub-millisecond resolution from 50 µs
        self.assertEqual(bks[-1][1], 400)
        for q, key in ((0.5, "p50_ms"), (0.99, "p99_ms")):
            est, lower, upper = histogram_quantile(q, bks)
            admin_s = stats[key] / 1000.0
            # Same traffic, same buckets: the guard's figure lies in the bucket PromQL used
            # (bounds within the log-linear histogram's 1.6%).
            self.assertTrue(lower * 0.98 <= admin_s <= upper * 1.02,
                            f"q={q}: PromQL {est:.6f}s in ({lower}, {upper}], admin {admin_s}s")
        # A fast backend: both say well under a millisecond at the median.
        self.assertLess(histogram_quantile(0.5, bks)[0], 0.001)
        head = buckets(samples, "weir_response_head_duration_seconds", service="shop",
                       version="blue")
        self.assertEqual(head[-1][1], 400)
        self.assertLessEqual(histogram_quantile(0.5, head)[0],
                             histogram_quantile(0.5, bks)[0] * 1.02)


class Exposition(WeirTestCase):
    def test_promtool_clean_with_tls_h2_bytes_and_process_metrics(self):
        if not os.access(PROMTOOL, os.X_OK):
            self.fail(f"{PROMTOOL} missing: apt-get install prometheus")
        from harness import make_cert
        tmp = self.tmpdir()
        cert, key = make_cert(tmp, "edge", "localhost")
        origin = self.backend("origin")
        listeners = ("public", {"name": "secure", "protocols": ["http1", "h2"],
                                "tls": [(cert, key)]})
        edge = self.weir(render_config(
            [service("shop", version("blue", 100, origin))],
            routes=[route("shop"), route("shop", listener="secure")], listeners=listeners,
            proxy={"workers": 1}, admin=admin_settings(tmp)))
        host, port = edge.listeners["secure"]
        url = f"https://localhost:{port}/x"
        resolve = f"localhost:{port}:{host}"
        ok = subprocess.run(["curl", "-sS", "-k", "--http2", "--resolve", resolve, "-o",
                             os.devnull, "-d", "hello", url, url], capture_output=True,
                            timeout=30)
        self.assertEqual(ok.returncode, 0, ok.stderr)
        with Client((host, port)) as plain:  # plain HTTP at a TLS port: a protocol failure
            plain.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            plain.closed_within(5)
        self.assertEqual(get(edge.addr, "/y").status, 200)
        wait_until(lambda: b'reason="protocol"} 1' in admin_call(edge, "GET", "/metrics").body,
                   5)
        text = admin_call(edge, "GET", "/metrics").body.decode()
        check = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                               text=True, timeout=30)
        self.assertEqual((check.returncode, check.stdout + check.stderr), (0, ""), text)
        s = parse_exposition(text)
        self.assertEqual(s[("weir_tls_handshakes_total", frozenset())], 1)
        self.assertEqual(s[("weir_tls_handshake_failures_total",
                            frozenset({("reason", "protocol")}))], 1)
        self.assertEqual(s[("weir_http2_connections_total", frozenset())], 1)
        self.assertEqual(s[("weir_http2_streams_total", frozenset())], 2)
        self.assertIn(("weir_http2_abuse_closes_total", frozenset()), s)
        sv = frozenset({("service", "shop"), ("version", "blue")})
        self.assertEqual(s[("weir_request_body_bytes_total", sv)], 10)  # "hello" twice
        self.assertGreater(s[("weir_response_body_bytes_total", sv)], 0)
        self.assertIn(("weir_upstream_retries_total", frozenset()), s)
        self.assertGreaterEqual(
            s[("weir_upstream_connections_total", frozenset({("reuse", "new")}))], 1)
        now = time.time()
        start = s[("process_start_time_seconds", frozenset())]
        self.assertTrue(now - 120 < start <= now + 1, start)
        self.assertGreater(s[("process_resident_memory_bytes", frozenset())], 1 << 20)
        self.assertGreater(s[("process_open_fds", frozenset())], 3)
        self.assertGreater(s[("process_max_fds", frozenset())], 0)
        self.assertIn(("process_cpu_seconds_total", frozenset()), s)
        loaded = s[("weir_config_last_reload_success_timestamp_seconds", frozenset())]
        self.assertTrue(now - 120 < loaded <= now + 1, loaded)
        edge.reload(render_config(
            [service("shop", version("blue", 100, origin))],
            routes=[route("shop"), route("shop", listener="secure")], listeners=listeners,
            proxy={"workers": 1}, admin=admin_settings(tmp)))
        s = parse_exposition(admin_call(edge, "GET", "/metrics").body.decode())
        self.assertGreater(s[("weir_config_last_reload_success_timestamp_seconds", frozenset())],
                           loaded)


class Http2Abuse(WeirTestCase):
    def test_a_connection_closed_for_abuse_counts_once(self):
        from test_h2 import HeadersFrame, RawH2, base_headers
        origin = self.backend("origin")
        tmp = self.tmpdir()
        edge = self.weir(render_config(
            [service("shop", version("blue", 100, origin))],
            listeners=({"name": "public", "protocols": ["http1", "h2c"]},),
            proxy={"workers": 1}, admin=admin_settings(tmp)))
        raw = RawH2(edge.addr)
        self.addCleanup(raw.close)
        # An HPACK bomb: a callback refuses it (a receive error), then weir's GOAWAY goes out.
        # Both are the one abusive connection.
        big = ("x-big", "v" * 4000)
        sid = raw.request(base_headers() + [big])
        raw.outcome(sid, timeout=2)
        frame = HeadersFrame(raw.conn.get_next_available_stream_id())
        frame.flags = {"END_HEADERS", "END_STREAM"}
        frame.data = raw.conn.encoder.encode(base_headers() + [big] * 2000)
        raw.send_raw(frame.serialize())
        _, closed = raw.events(timeout=5)
        self.assertTrue(closed)

        def abuse():
            s = parse_exposition(admin_call(edge, "GET", "/metrics").body.decode())
            return s[("weir_http2_abuse_closes_total", frozenset())]
        wait_until(lambda: abuse() >= 1, 5)
        time.sleep(0.3)
        self.assertEqual(abuse(), 1)


class ErrorLog(WeirTestCase):
    def upstream_lines(self, edge):
        return [line for s, line in edge.raw_lines
                if s == "stderr" and "connect failed, answered 502" in line]

    def test_connect_failures_that_become_502_are_logged_rate_limited(self):
        dead = f"127.0.0.1:{dead_port()}"
        edge = self.weir(render_config([service("shop", version("blue", 100, dead))],
                                       proxy={"workers": 1}))
        for _ in range(10):
            self.assertEqual(get(edge.addr, "/").status, 502)
        lines = wait_until(lambda: self.upstream_lines(edge), 5)
        time.sleep(0.2)
        lines = self.upstream_lines(edge)
        self.assertEqual(len(lines), 1, edge.tail())
        m = re.match(LOG_TEXT_RE, lines[0])
        self.assertTrue(m, lines[0])
        self.assertEqual(m.group(1, 2), ("warn", "worker=0"))
        self.assertEqual(m.group(3), f"upstream {dead} (service shop version blue): connect "
                                     "failed, answered 502")
        time.sleep(1.1)
        self.assertEqual(get(edge.addr, "/").status, 502)
        wait_until(lambda: len(self.upstream_lines(edge)) == 2, 5)
        self.assertTrue(self.upstream_lines(edge)[1].endswith(
            "answered 502 (and 9 more in the last second)"), edge.tail())

    def test_json_error_log(self):
        dead = f"127.0.0.1:{dead_port()}"
        edge = self.weir(render_config([service("shop", version("blue", 100, dead))],
                                       proxy={"workers": 1}, log={"format": "json"}))
        self.assertEqual(get(edge.addr, "/").status, 502)
        wait_until(lambda: self.upstream_lines(edge), 5)
        entry = json.loads(self.upstream_lines(edge)[0])
        self.assertEqual((entry["level"], entry["worker"]), ("warn", 0))
        self.assertRegex(entry["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual(entry["msg"], f"upstream {dead} (service shop version blue): connect "
                                       "failed, answered 502")


    def test_reload_switches_the_format(self):
        config = lambda log, dead: render_config(
            [service("shop", version("blue", 100, f"127.0.0.1:{dead}"))],
            proxy={"workers": 1}, log=log)
        edge = self.weir(config(None, dead_port()))
        edge.reload(config({"format": "json"}, dead_port()))
        self.assertEqual(get(edge.addr, "/").status, 502)
        wait_until(lambda: self.upstream_lines(edge), 5)
        self.assertEqual(json.loads(self.upstream_lines(edge)[0])["level"], "warn")


class AccessLogFields(WeirTestCase):
    def read(self, path, n):
        def lines():
            if not os.path.exists(path):
                return None
            with open(path) as f:
                got = [line for line in f]
            return got if len(got) >= n else None
        got = wait_until(lines, 5)
        self.assertTrue(got, f"fewer than {n} access log lines")
        return got

    def test_flags_upstream_status_and_timings(self):
        origin = self.backend("origin")
        dead = f"127.0.0.1:{dead_port()}"
        path = os.path.join(self.tmpdir(), "access.log")
        edge = self.weir(render_config(
            [service("live", version("blue", 100, origin)),
             service("gone", version("blue", 100, dead))],
            routes=[route("live", host="live.test"), route("gone", host="gone.test")],
            proxy={"workers": 1, "access_log": path}))
        with Client(edge.addr) as c:
            self.assertEqual(c.get("/status/502", host="live.test",
                                   headers=[("User-Agent", "probe/1")]).status, 502)
            self.assertEqual(c.request("POST", "/ok", [("Content-Length", "5")], b"abcde",
                                       host="live.test").status, 200)
        self.assertEqual(get(edge.addr, "/", host="gone.test").status, 502)
        self.assertEqual(get(edge.addr, "/", host="nowhere.test", headers=[
            ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]).status,
            404)
        lines = [json.loads(line) for line in self.read(path, 4)]
        by_host = {}
        for line in lines:
            by_host.setdefault(line["host"], []).append(line)
        backend_502, post = by_host["live.test"]
        self.assertEqual((backend_502["status"], backend_502["upstream_status"],
                          backend_502["flags"]), (502, 502, "-"))
        self.assertEqual(backend_502["user_agent"], "probe/1")
        self.assertEqual((backend_502["protocol"], backend_502["listener"],
                          backend_502["route"]), ("HTTP/1.1", "public", "route[0]"))
        self.assertIsInstance(backend_502["duration_ms"], float)
        self.assertGreaterEqual(backend_502["upstream_response_ms"], 0)
        self.assertGreaterEqual(backend_502["upstream_connect_ms"], 0)  # a new connection
        self.assertIsNone(post["upstream_connect_ms"])  # the pooled one again
        self.assertEqual((post["request_bytes"], post["retries"]), (5, 0))
        weirs = by_host["gone.test"][0]
        self.assertEqual((weirs["status"], weirs["upstream_status"]), (502, None))
        # A refused connect goes once more (the request was never sent), then weir answers.
        self.assertEqual((weirs["flags"], weirs["retries"]), ("UF,URX,LR", 1))
        self.assertEqual(weirs["local_reason"], "upstream connect failed")
        self.assertEqual(weirs["route"], "route[1]")
        no_route = by_host["nowhere.test"][0]
        self.assertEqual((no_route["status"], no_route["flags"], no_route["route"]),
                         (404, "NR,LR", ""))
        self.assertEqual(no_route["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736")
        self.assertRegex(weirs["trace_id"], r"^[0-9a-f]{32}$")  # generated, forwarded

    def test_framing_refusal_names_its_check(self):
        origin = self.backend("origin")
        path = os.path.join(self.tmpdir(), "access.log")
        edge = self.weir(render_config([service("live", version("blue", 100, origin))],
                                       proxy={"workers": 1, "access_log": path}))
        with Client(edge.addr) as c:
            c.send(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
            self.assertEqual(c.read_response().status, 400)
        line = json.loads(self.read(path, 1)[0])
        self.assertEqual((line["status"], line["flags"]), (400, "LR"))
        self.assertTrue(line["local_reason"], line)

    def test_client_gone_before_the_response_ended(self):
        origin = self.backend("origin")
        path = os.path.join(self.tmpdir(), "access.log")
        edge = self.weir(render_config([service("live", version("blue", 100, origin))],
                                       proxy={"workers": 1, "access_log": path}))
        size = 16 << 20  # far more than the socket buffers hold
        c = Client(edge.addr)
        c.send(Client.build("GET", f"/bytes/{size}"))
        self.assertTrue(c.read_some(1))
        c.close()  # unread data: weir's next write meets a reset
        line = json.loads(self.read(path, 1)[0])
        self.assertEqual((line["status"], line["upstream_status"], line["flags"]),
                         (200, 200, "DC"))
        self.assertLess(line["bytes"], size)

    def test_configured_fields_as_text(self):
        origin = self.backend("origin")
        path = os.path.join(self.tmpdir(), "access.log")
        edge = self.weir(render_config(
            [service("live", version("blue", 100, origin))],
            proxy={"workers": 1, "access_log": path},
            log={"access_format": "text", "access_fields": ["status", "flags", "service"]}))
        self.assertEqual(get(edge.addr, "/").status, 200)
        self.assertEqual(self.read(path, 1), ["status=200 flags=- service=live\n"])


class TraceContext(WeirTestCase):
    TP_RE = r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$"

    def setUp(self):
        self.origin = self.backend("origin")
        self.path = os.path.join(self.tmpdir(), "access.log")
        self.edge = self.weir(render_config(
            [service("live", version("blue", 100, self.origin))],
            listeners=({"name": "public", "protocols": ["http1", "h2c"]},),
            proxy={"workers": 1, "access_log": self.path}))

    def seen(self, headers=()):
        with Client(self.edge.addr) as c:
            resp = c.request("GET", "/headers", list(headers))
        self.assertEqual(resp.status, 200)
        got = {}
        for k, v in resp.json()["headers"]:
            got.setdefault(k.lower(), []).append(v)
        return got

    def test_generated_when_absent_and_logged(self):
        got = self.seen([("tracestate", "orphan=1")])
        (tp,) = got["traceparent"]
        m = re.match(self.TP_RE, tp)
        self.assertTrue(m, tp)
        self.assertNotIn("tracestate", got)  # a tracestate without a traceparent is dropped
        other = re.match(self.TP_RE, self.seen()["traceparent"][0])
        self.assertNotEqual(m.group(1), other.group(1))  # a new trace per request
        def logged():
            if not os.path.exists(self.path):
                return None
            with open(self.path) as f:
                ids = [json.loads(line)["trace_id"] for line in f]
            return ids if len(ids) >= 2 else None
        self.assertEqual(wait_until(logged, 5), [m.group(1), other.group(1)])

    def test_kept_trace_new_span_and_tracestate_untouched(self):
        incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        got = self.seen([("traceparent", incoming), ("tracestate", "congo=t61rcWkgMzE, rojo=00")])
        m = re.match(self.TP_RE, got["traceparent"][0])
        self.assertTrue(m, got)
        self.assertEqual(m.group(1), "4bf92f3577b34da6a3ce929d0e0e4736")
        self.assertNotEqual(m.group(2), "00f067aa0ba902b7")  # weir's own span
        self.assertEqual(m.group(3), "01")
        self.assertEqual(got["tracestate"], ["congo=t61rcWkgMzE, rojo=00"])

    def test_invalid_traceparent_is_replaced(self):
        for bad in ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                    "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "junk"):
            got = self.seen([("traceparent", bad), ("tracestate", "congo=1")])
            m = re.match(self.TP_RE, got["traceparent"][0])
            self.assertTrue(m, got)
            self.assertNotEqual(m.group(1), "4bf92f3577b34da6a3ce929d0e0e4736")
            self.assertEqual(m.group(3), "00")
            self.assertNotIn("tracestate", got)

    def test_through_curl_over_http2(self):
        run = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-H",
                              "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
                              f"http://{self.edge.addr[0]}:{self.edge.addr[1]}/headers"],
                             capture_output=True, timeout=30)
        self.assertEqual(run.returncode, 0, run.stderr)
        headers = {k.lower(): v for k, v in json.loads(run.stdout)["headers"]}
        self.assertRegex(headers["traceparent"],
                         r"^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-00$")


if __name__ == "__main__":
    unittest.main()
