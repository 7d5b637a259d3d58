#!/usr/bin/python3
"""Fleet-mode bench: what sharing the runtime state through etcd costs and how fast it is.

1. Convergence: three replicas (weir-a, weir-b, weir-c) on a real 3-member etcd in front of the
   blue and green backends. --changes times, weir-a flips the weights between blue 100 / green 0
   and blue 0 / green 100 (PUT with If-Match: *), while keep-alive clients on weir-b and weir-c
   watch their traffic: a replica has converged when every one of its clients has had a response
   from the version that now has all the weight. Timed from the moment the PUT was sent.
2. Admin write latency: the same PUTs on weir-a (CAS through etcd), beside the same number on
   a weir without [fleet] (state.json written atomically in state_dir).
3. h1-64 CPU µs per request with and without [fleet]: bench/run.sh --targets weir,weir-fleet
   h1-64 (its load, rounds and CPU accounting, unchanged).

Processes and etcd members come from tests/integration/harness.py and etcd_cluster.py; all bind
127.0.0.1 and all are stopped on exit. The report is printed and written to OUT_DIR/fleet.md.

usage: bench/fleet.py [--changes 200] [--rounds 3] [--duration 5] [--build-dir DIR]
                      [--no-build] [--no-cpu] [--out-dir bench/results]
"""

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))


def percentile(values, p):
    """Nearest-rank percentile of values (p in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(1, min(len(ordered), int(p / 100.0 * len(ordered) + 0.999999)))
    return ordered[k - 1]


def summary_row(name, values_ms):
    return (f"| {name} | {len(values_ms)} | {percentile(values_ms, 50):.2f} | "
            f"{percentile(values_ms, 90):.2f} | {percentile(values_ms, 99):.2f} | "
            f"{max(values_ms):.2f} |")


class Probe(threading.Thread):
    """A keep-alive client on one replica, GET / in a loop. arm(version, t0) makes it record
    the first time a response came from version."""

    def __init__(self, h, addr):
        super().__init__(daemon=True)
        self.h, self.addr = h, addr
        self.lock = threading.Lock()
        self.want = None
        self.seen_at = None
        self.stop = threading.Event()
        self.requests = 0
        self.failures = 0

    def arm(self, version):
        with self.lock:
            self.want, self.seen_at = version, None

    def seen(self):
        with self.lock:
            return self.seen_at

    def run(self):
        client = self.h.Client(self.addr, timeout=5)
        while not self.stop.is_set():
            try:
                resp = client.get("/")
            except (OSError, AssertionError):
                self.failures += 1
                client.close()
                client = self.h.Client(self.addr, timeout=5)
                continue
            now = time.monotonic()
            self.requests += 1
            if resp.status != 200:
                self.failures += 1
            with self.lock:
                if self.want == resp.header("x-backend") and self.seen_at is None:
                    self.seen_at = now
        client.close()


def put_weights(h, weir, blue, green):
    """One PUT on weir; returns (status, seconds)."""
    t0 = time.monotonic()
    r = h.admin_call(weir, "PUT", "/api/v1/services/shop/weights",
                     body={"weights": {"blue": blue, "green": green}, "reason": "bench"},
                     headers=[("If-Match", "*")])
    return r.status, time.monotonic() - t0


def shop_config(h, folder, blue, green, fleet=None):
    os.makedirs(folder, exist_ok=True)
    svc = h.service("shop", h.version("blue", 100, blue), h.version("green", 0, green),
                    stable="blue")
    return h.render_config([svc], admin=h.admin_settings(folder), fleet=fleet)


def measure_fleet(h, changes, tmp, cleanups):
    from etcd_cluster import EtcdCluster
    cluster = EtcdCluster()
    cleanups(cluster.close)
    cluster.start()
    blue = h.Backend(cleanups, "blue")
    green = h.Backend(cleanups, "green")
    fleet = {"store": "etcd", "endpoints": cluster.endpoints, "prefix": "/weir/bench-fleet/",
             "timeout_ms": 2000}
    replicas = []
    for name in ("weir-a", "weir-b", "weir-c"):
        folder = os.path.join(tmp, name)
        text = shop_config(h, folder, blue, green, {**fleet, "replica": name})
        replicas.append(h.start_weir(cleanups, text, path=os.path.join(folder, "weir.toml")))
    a, others = replicas[0], replicas[1:]
    probes = {r: [Probe(h, r.addr) for _ in range(2)] for r in others}
    for ps in probes.values():
        for p in ps:
            p.start()
    converge = {r: [] for r in others}
    writes, timeouts = [], 0
    try:
        for i in range(changes):
            to_green = i % 2 == 0
            version = "green" if to_green else "blue"
            for ps in probes.values():
                for p in ps:
                    p.arm(version)
            t0 = time.monotonic()
            status, took = put_weights(h, a, 0 if to_green else 100, 100 if to_green else 0)
            if status != 200:
                raise SystemExit(f"bench: PUT on weir-a answered {status}")
            writes.append(took * 1000)
            ok = h.wait_until(lambda: all(p.seen() for ps in probes.values() for p in ps), 5,
                              0.001)
            if not ok:
                timeouts += 1
                continue
            for r, ps in probes.items():
                converge[r].append((max(p.seen() for p in ps) - t0) * 1000)
            time.sleep(random.uniform(0.02, 0.05))
    finally:
        for ps in probes.values():
            for p in ps:
                p.stop.set()
        for ps in probes.values():
            for p in ps:
                p.join(10)
    failures = sum(p.failures for ps in probes.values() for p in ps)
    requests = sum(p.requests for ps in probes.values() for p in ps)
    names = {r: n for r, n in zip(others, ("weir-b", "weir-c"))}
    both = [max(x) for x in zip(*converge.values())]
    return {names[r]: v for r, v in converge.items()}, both, writes, timeouts, failures, requests


def measure_solo(h, changes, tmp, cleanups):
    blue = h.Backend(cleanups, "solo-blue")
    green = h.Backend(cleanups, "solo-green")
    folder = os.path.join(tmp, "solo")
    weir = h.start_weir(cleanups, shop_config(h, folder, blue, green),
                        path=os.path.join(folder, "weir.toml"))
    writes = []
    for i in range(changes):
        status, took = put_weights(h, weir, 0 if i % 2 == 0 else 100, 100 if i % 2 == 0 else 0)
        if status != 200:
            raise SystemExit(f"bench: PUT on the weir without [fleet] answered {status}")
        writes.append(took * 1000)
    return writes


def cpu_rows(args, build_dir):
    """h1-64 rows of bench/run.sh for weir and weir-fleet: {target: [cells]}."""
    out_dir = os.path.join(args.out_dir, "fleet-cpu")
    argv = [os.path.join(HERE, "run.sh"), "--targets", "weir,weir-fleet", "--rounds",
            str(args.rounds), "--duration", str(args.duration), "--out-dir", out_dir]
    if build_dir:
        argv += ["--build-dir", build_dir]
    if args.no_build:
        argv.append("--no-build")
    run = subprocess.run(argv + ["h1-64"], capture_output=True, text=True,
                         timeout=args.rounds * 2 * (args.duration + 30) + 600,
                         stdin=subprocess.DEVNULL)
    sys.stderr.write(run.stderr)
    if run.returncode != 0:
        raise SystemExit(f"bench: run.sh failed ({run.returncode})")
    rows = {}
    for line in run.stdout.splitlines():
        m = re.match(r"^\| (weir|weir-fleet) \|(.*)\|$", line)
        if m:
            rows[m.group(1)] = [c.strip() for c in m.group(2).split("|")]
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--build-dir", default=None,
                        help="weir as built there (default: run.sh builds ./build-rel)")
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--no-cpu", action="store_true", help="skip the h1-64 CPU comparison")
    parser.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    args = parser.parse_args()
    if args.changes < 2:
        parser.error("--changes: at least 2")

    report = ["# weir fleet mode: convergence, admin writes, data-path cost "
              f"({time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())})", ""]
    cpu = None
    if not args.no_cpu:
        cpu = cpu_rows(args, args.build_dir)  # builds ./build-rel first unless told otherwise
    build_dir = args.build_dir or os.path.join(REPO, "build-rel")
    os.environ.setdefault("WEIR_BIN", os.path.join(build_dir, "weir"))
    os.environ.setdefault("WEIR_BACKEND_BIN", os.path.join(build_dir, "weir-backend"))
    import harness as h  # reads WEIR_BIN and WEIR_BACKEND_BIN when imported

    tmp = tempfile.mkdtemp(prefix="weir-bench-fleet.")
    stack = []

    def cleanups(fn, *a):
        stack.append((fn, a))

    try:
        per_replica, both, fleet_writes, timeouts, failures, requests = measure_fleet(
            h, args.changes, tmp, cleanups)
        solo_writes = measure_solo(h, args.changes, tmp, cleanups)
    finally:
        for fn, a in reversed(stack):
            try:
                fn(*a)
            except Exception as e:  # every process is stopped even when one cleanup fails
                print(f"bench: cleanup: {e!r}", file=sys.stderr)
        shutil.rmtree(tmp, True)

    report += [
        f"{os.cpu_count()} cores; etcd 3.4 (3 members), weir replicas and backends on 127.0.0.1. "
        f"{args.changes} weight flips on weir-a (blue 100/0 <-> 0/100); convergence is timed "
        "from sending the PUT to the first response from the new version on every keep-alive "
        f"client (2 per replica) of weir-b and weir-c. Changes not converged within 5 s: "
        f"{timeouts}. Probe requests: {requests}, failed: {failures}.", "",
        "## Convergence (ms)", "",
        "| replica | changes | median | p90 | p99 | max |", "|---|---:|---:|---:|---:|---:|"]
    for name, values in sorted(per_replica.items()):
        report.append(summary_row(name, values))
    report.append(summary_row("both (the later of the two)", both))
    report += ["", "## Admin write latency (ms): PUT /api/v1/services/shop/weights", "",
               "| weir | writes | median | p90 | p99 | max |", "|---|---:|---:|---:|---:|---:|",
               summary_row("fleet (CAS through etcd)", fleet_writes),
               summary_row("without [fleet] (state.json)", solo_writes)]
    if cpu is not None:
        report += ["", "## h1-64 with and without [fleet] (bench/run.sh, medians of "
                   f"{args.rounds} x {args.duration} s rounds)", "",
                   "| target | req/s | p50 (ms) | p99 (ms) | p99.9 (ms) | CPU µs/req | RSS (MiB) "
                   "| upstream conns | errors |",
                   "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for t in ("weir", "weir-fleet"):
            report.append(f"| {t} | " + " | ".join(cpu.get(t, ["-"] * 8)) + " |")
    text = "\n".join(report) + "\n"
    print(text, end="")
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "fleet.md"), "w") as f:
        f.write(text)
    if failures:
        raise SystemExit(f"bench: {failures} probe requests failed during the weight flips")


if __name__ == "__main__":
    main()
