"""bench/run.sh --smoke: the bench suite runs end to end against the binaries under test (weir,
nginx, haproxy, wrk, h2load, the idle-connection helper, the admin API weight flips, gnuplot)
and writes its Markdown report and PNG chart, so the bench cannot rot unnoticed. The figures
themselves are not judged here (a loaded CI box gives noise), only that every row is real."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BACKEND_BIN, REPO, WEIR_BIN  # noqa: E402

RUN_SH = os.path.join(REPO, "bench", "run.sh")
FLEET_PY = os.path.join(REPO, "bench", "fleet.py")
TOOLS = ("wrk", "h2load", "nginx", "haproxy", "gnuplot", "openssl", "curl")


def missing_tools():
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin"
    return [t for t in TOOLS if shutil.which(t, path=path) is None]


def table_rows(markdown, section):
    """{first cell: [cells]} of the table under '## section'."""
    m = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", markdown, re.M | re.S)
    if not m:
        raise AssertionError(f"no section '{section}' in the report:\n{markdown}")
    rows = {}
    for line in m.group(1).splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


@unittest.skipIf(missing_tools(), f"bench tools missing: {missing_tools()} (scripts/setup.sh)")
class BenchSmoke(unittest.TestCase):
    def run_bench(self, *args, timeout=180):
        build_dir = os.path.dirname(WEIR_BIN)
        if os.path.dirname(BACKEND_BIN) != build_dir:
            self.skipTest("weir and weir-backend are in different build directories")
        return subprocess.run([RUN_SH, "--build-dir", build_dir, *args], capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def test_smoke_run_writes_report_and_chart(self):
        out_dir = tempfile.mkdtemp(prefix="weir-bench-smoke.")
        self.addCleanup(shutil.rmtree, out_dir, True)
        run = self.run_bench("--smoke", "--out-dir", out_dir)
        self.assertEqual(run.returncode, 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}")

        with open(os.path.join(out_dir, "latest.md")) as f:
            report = f.read()
        self.assertEqual(report, run.stdout, "the report printed is the report written")
        header = ["req/s", "p50 (ms)", "p99 (ms)", "p99.9 (ms)", "CPU µs/req", "RSS (MiB)",
                  "upstream conns", "errors"]
        for section in ("h1-64", "tls-h2"):
            rows = table_rows(report, section)
            self.assertEqual(rows["target"], header)
            for proxy in ("weir", "nginx", "haproxy"):
                cells = rows[proxy]
                self.assertGreater(float(cells[0]), 0, f"{section} {proxy}: {cells}")
                p50, p99, p999 = (float(c) for c in cells[1:4])
                self.assertTrue(0 < p50 <= p99 <= p999, f"{section} {proxy}: {cells}")
                self.assertGreater(float(cells[4]), 0, f"{section} {proxy} CPU: {cells}")
                self.assertGreater(float(cells[5]), 1, f"{section} {proxy} RSS: {cells}")
                self.assertEqual(cells[7], "0", f"{section} {proxy} errors: {cells}")

        idle = table_rows(report, "idle-10k")
        for proxy in ("weir", "nginx", "haproxy"):
            before, held = float(idle[proxy][0]), float(idle[proxy][1])
            self.assertGreater(before, 1, idle[proxy])
            self.assertGreater(held, 1, idle[proxy])

        flip = table_rows(report, "weight-flip")["weir"]
        self.assertGreater(float(flip[0]), 0, flip)
        self.assertEqual(flip[7], "0", f"requests failed during weight flips: {flip}")
        self.assertGreater(int(flip[9]), 0, f"no weight change went through: {flip}")
        self.assertEqual(flip[10], "0", f"weight changes refused: {flip}")
        # The weights spent about half the run at green 90, half at green 10.
        self.assertTrue(15 < float(flip[8].rstrip("%")) < 85, flip)

        direct = table_rows(report, "direct")["direct (blue backend)"]
        self.assertGreater(float(direct[0]), 0, direct)

        # The floor: the bare relay serves plain TCP only, and the table says each proxy's ratio.
        relay = table_rows(report, "h1-64")["relay (L4 floor)"]
        self.assertGreater(float(relay[0]), 0, relay)
        self.assertGreater(float(relay[4]), 0, f"relay CPU: {relay}")
        self.assertEqual(relay[7], "0", f"relay errors: {relay}")
        self.assertNotIn("relay (L4 floor)", table_rows(report, "tls-h2"))
        self.assertRegex(report, r"CPU per request / the relay's: weir [0-9.]+x, nginx [0-9.]+x")

        with open(os.path.join(out_dir, "latest.png"), "rb") as f:
            png = f.read()
        self.assertTrue(png.startswith(b"\x89PNG\r\n\x1a\n"), "latest.png is not a PNG")
        self.assertGreater(len(png), 10000, "the chart is suspiciously small")
        with open(os.path.join(out_dir, "latest-rps.dat")) as f:
            data = f.read().split("\n")
        self.assertEqual(data[0], "scenario weir nginx haproxy relay direct")
        self.assertTrue(data[1].startswith("h1-64 "), data)

    @unittest.skipIf(not os.access("/usr/bin/etcd", os.X_OK), "no etcd (scripts/setup.sh)")
    def test_fleet_bench_reports_convergence_writes_and_cpu(self):
        # bench/fleet.py end to end, briefly: 3 replicas on a real etcd, and run.sh's h1-64 for
        # the weir and weir-fleet targets.
        out_dir = tempfile.mkdtemp(prefix="weir-bench-fleet-smoke.")
        self.addCleanup(shutil.rmtree, out_dir, True)
        run = subprocess.run([FLEET_PY, "--changes", "10", "--rounds", "1", "--duration", "1",
                              "--build-dir", os.path.dirname(WEIR_BIN), "--no-build",
                              "--out-dir", out_dir], capture_output=True, text=True,
                             timeout=240, stdin=subprocess.DEVNULL)
        self.assertEqual(run.returncode, 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}")
        with open(os.path.join(out_dir, "fleet.md")) as f:
            report = f.read()
        self.assertEqual(report, run.stdout)
        converge = table_rows(report, "Convergence (ms)")
        for name in ("weir-b", "weir-c", "both (the later of the two)"):
            self.assertEqual(converge[name][0], "10", converge)
            median, p99 = float(converge[name][1]), float(converge[name][3])
            self.assertTrue(0 < median <= p99 < 5000, converge[name])
        writes = table_rows(report, "Admin write latency (ms): PUT /api/v1/services/shop/weights")
        for name in ("fleet (CAS through etcd)", "without [fleet] (state.json)"):
            self.assertEqual(writes[name][0], "10", writes)
            self.assertGreater(float(writes[name][1]), 0, writes)
        cpu = table_rows(report, "h1-64 with and without [fleet] (bench/run.sh, medians of 1 x "
                                 "1 s rounds)")
        for target in ("weir", "weir-fleet"):
            self.assertGreater(float(cpu[target][4]), 0, f"{target} CPU: {cpu[target]}")
            self.assertEqual(cpu[target][7], "0", f"{target} errors: {cpu[target]}")

    def test_bad_arguments_are_refused_before_anything_starts(self):
        run = self.run_bench("--smoke", "h1-65", timeout=30)
        self.assertEqual(run.returncode, 1)
        self.assertIn("unknown scenario 'h1-65'", run.stderr)
        run = self.run_bench("--rounds", "0", timeout=30)
        self.assertEqual(run.returncode, 2)
        self.assertIn("--rounds wants a positive integer", run.stderr)
        run = self.run_bench("--targets", "weir,envoy", timeout=30)
        self.assertEqual(run.returncode, 1)
        self.assertIn("unknown target 'envoy'", run.stderr)
        run = self.run_bench("--help", timeout=30)
        self.assertEqual(run.returncode, 2)
        self.assertIn("scenarios: idle-10k h1-64 h1-1024", run.stderr)


if __name__ == "__main__":
    unittest.main()
