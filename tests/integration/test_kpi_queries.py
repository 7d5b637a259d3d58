"""KPI checks the proxy cannot see: [[service.guard.query]] against a real Prometheus (the
Debian binary) scraping a small exporter this test runs. A canary whose exported
business_checkout_failures rises is reverted; a query without data holds and reverts nothing."""

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from test_hooks import Receiver  # noqa: E402

PROMETHEUS = "/usr/bin/prometheus"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Exporter:
    """/metrics with business_checkout_failures per version; values set by the test."""

    def __init__(self, case):
        self.values = {"blue": 0, "green": 0}
        exporter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                lines = ["# TYPE business_checkout_failures gauge"]
                lines += [f'business_checkout_failures{{version="{v}"}} {n}'
                          for v, n in exporter.values.items()]
                body = ("\n".join(lines) + "\n").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        case.addCleanup(self.server.server_close)
        case.addCleanup(self.server.shutdown)


@unittest.skipUnless(os.access(PROMETHEUS, os.X_OK), "prometheus is not installed")
class KpiQueries(h.WeirTestCase):
    def start_prometheus(self, exporter):
        port = free_port()
        tmp = self.tmpdir()
        cfg = self.write("prometheus.yml", (
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: shop\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{exporter.port}']\n"))
        proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={tmp}/tsdb",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        self.addCleanup(proc.wait, 10)
        self.addCleanup(proc.kill)
        url = f"http://127.0.0.1:{port}"

        def has_sample():
            try:
                q = url + "/api/v1/query?query=business_checkout_failures"
                with urllib.request.urlopen(q, timeout=2) as r:
                    return len(json.load(r)["data"]["result"]) == 2
            except OSError:
                return False
        self.assertTrue(h.wait_until(has_sample, 30), "prometheus never scraped the exporter")
        return url

    def start_weir(self, prom, query, on_no_data="hold", chat=None):
        blue, green = self.backend("blue"), self.backend("green")
        tmp = self.tmpdir()
        text = h.render_config(
            [h.service("shop", h.version("blue", 90, blue), h.version("green", 10, green),
                       guard={"interval_ms": 500, "window_s": 2, "min_requests": 1000000,
                              "consecutive": 2})],
            admin=h.admin_settings(tmp))
        text += ("\n[[service.guard.query]]\nname = \"checkout\"\n"
                 f"url = \"{prom}\"\nquery = '{query}'\nmax = 5\ntimeout_ms = 1000\n"
                 f"on_no_data = \"{on_no_data}\"\n")
        if chat:
            text += ("\n[[service.hook]]\nname = \"chat\"\ntype = \"event\"\n"
                     f"url = \"{chat.url}/slack\"\nformat = \"slack\"\n")
        return self.weir(text)

    def explain(self, weir):
        resp = h.admin_call(weir, "GET", "/api/v1/services/shop/explain")
        self.assertEqual(resp.status, 200)
        return resp.json()

    def test_rising_business_failures_revert_the_canary(self):
        exporter = Exporter(self)
        prom = self.start_prometheus(exporter)
        chat = Receiver(self)
        weir = self.start_weir(prom, 'max(business_checkout_failures{version="{{version}}"})',
                               chat=chat)
        # Healthy: the query passes, nothing is reverted.
        def passing():
            return any(q["verdict"] == "pass" for q in self.explain(weir)["queries"])
        self.assertTrue(h.wait_until(passing, 15), json.dumps(self.explain(weir)))
        exporter.values["green"] = 12
        weir.wait_line(r"guard: service shop version green reverted", timeout=20, stream="stderr")
        ex = self.explain(weir)
        q = ex["queries"][0]
        self.assertEqual(q["query"], 'max(business_checkout_failures{version="green"})')
        self.assertEqual(q["value"], 12)
        self.assertEqual(q["verdict"], "fail")
        self.assertIn('"status":"success"', q["answer"])
        reverted = [d for d in ex["decisions"] if d["reverted"]]
        self.assertTrue(reverted)
        self.assertIn("query checkout: value 12 above max 5", reverted[0]["reasons"])
        events = h.admin_call(weir, "GET", "/api/v1/events").json()
        reverts = [e for e in events["events"] if e["action"] == "revert"]
        self.assertEqual(len(reverts), 1)
        self.assertIn("query checkout", reverts[0]["reason"])
        # The Slack-style event of the revert, with the query's verdict.
        self.assertTrue(h.wait_until(lambda: any(
            c[2]["text"].startswith("weir: shop: revert by guard") and "query checkout" in
            c[2]["text"] for c in chat.calls("/slack")), 10), chat.got)
        self.assertWeirAlive(weir)

    def test_a_query_without_data_holds(self):
        exporter = Exporter(self)
        prom = self.start_prometheus(exporter)
        weir = self.start_weir(prom, 'max(no_such_metric{version="{{version}}"})')
        def held():
            qs = self.explain(weir)["queries"]
            return qs and qs[0]["reason"] == "no data (on_no_data = hold)"
        self.assertTrue(h.wait_until(held, 15), json.dumps(self.explain(weir)))
        time.sleep(2)  # several evaluations: still no revert
        self.assertNotIn("reverted", "\n".join(weir.output("stderr")))
        ex = self.explain(weir)
        self.assertEqual(ex["queries"][0]["verdict"], "hold")
        self.assertEqual(ex["decisions"][-1]["verdict"], "hold")
        metrics = h.admin_call(weir, "GET", "/metrics").body.decode()
        self.assertIn('weir_kpi_queries_total{service="shop",query="checkout"}', metrics)
        self.assertIn('weir_kpi_query_errors_total{service="shop",query="checkout"} 0', metrics)


if __name__ == "__main__":
    unittest.main()
