#!/usr/bin/env bash
# ThreadSanitizer: builds weir with -fsanitize=thread (clang) in BUILD_DIR (default
# ./build-tsan), runs the integration tests that exercise weir's threads (admin API writes and
# reloads against busy workers, the guard, weight churn, HTTP/2 both ways, binary upgrade,
# draining, lifecycle), then a mixed stress run: wrk against weir while the admin API churns the
# weights and reloads. Any TSan report fails it: every instrumented process writes its reports
# to a log directory (TSAN_OPTIONS log_path), which must stay empty, whatever the tests saw.
# Usage: scripts/tsan.sh [BUILD_DIR] [STRESS_SECONDS]   (stress default 10 s)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${1:-"$here/build-tsan"}
stress_s=${2:-10}
py=/usr/bin/python3

CC=${CC:-clang} CXX=${CXX:-clang++} cmake -S "$here" -B "$build_dir" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWEIR_TSAN=ON ${WEIR_CMAKE_ARGS:-} >/dev/null
cmake --build "$build_dir" -j"$(nproc)" --target weir weirctl weir-backend

logs=$(mktemp -d /tmp/weir-tsan.XXXX)
trap 'rm -rf "$logs"' EXIT
# halt_on_error: the first report ends the process (its test fails too); log_path: reports go to
# files this script checks, so none can hide in a test's captured stderr.
TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1 history_size=4"
export TSAN_OPTIONS="$TSAN_OPTIONS log_path=$logs/tsan"

reports() {
  if compgen -G "$logs/tsan*" >/dev/null; then
    echo "tsan: ThreadSanitizer reports:" >&2
    for f in "$logs"/tsan*; do echo "== $f" >&2; cat "$f" >&2; done
    return 1
  fi
}

status=0
tests=(admin guard weight_churn h2 upstream_h2 upgrade draining lifecycle mirror)
regex="^integration\.test_($(IFS='|'; echo "${tests[*]}"))\$"
(cd "$build_dir" && ctest --output-on-failure -j"$(nproc)" \
  --timeout 600 -R "$regex") || status=1
reports || status=1

# Mixed stress: traffic on keep-alive and new connections while the control thread publishes a
# new snapshot every few milliseconds (weights through the API, reloads through SIGHUP).
WEIR_BIN="$build_dir/weir" WEIR_BACKEND_BIN="$build_dir/weir-backend" \
  PYTHONPATH="$here/tests/integration" PYTHONDONTWRITEBYTECODE=1 \
  timeout $((stress_s + 90)) $py - "$stress_s" <<'EOF' || status=1
import json, subprocess, sys, time, unittest
from harness import (WeirTestCase, admin_call, admin_settings, render_config, route, service,
                     version)

SECONDS = int(sys.argv[1])


class Stress(WeirTestCase):
    def test_traffic_over_both_protocols_with_weight_churn_and_reloads(self):
        blue, green = self.backend("blue"), self.backend("green")
        config = render_config(
            [service("shop", version("blue", 50, blue), version("green", 50, green),
                     guard={"window_s": 2, "min_requests": 1000000,
                            "max_error_rate": 0.5})],
            routes=[route("shop"), route("shop", listener="h2c")],
            listeners=("public", {"name": "h2c", "protocols": ["h2c"]}),
            admin=admin_settings(self.tmpdir()))
        edge = self.weir(config)
        host, port = edge.addr
        h2host, h2port = edge.listeners["h2c"]
        load = [subprocess.Popen(["wrk", "-t2", "-c16", f"-d{SECONDS}s", f"http://{host}:{port}/"],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
                subprocess.Popen(["h2load", "-c4", "-m8", "-D", str(SECONDS),
                                  f"http://{h2host}:{h2port}/"],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)]
        for p in load:
            self.addCleanup(lambda p=p: p.poll() is None and p.kill())
        etag = admin_call(edge, "GET", "/api/v1/services/shop").header("etag")
        changes = reloads = 0
        end = time.monotonic() + SECONDS
        while time.monotonic() < end:
            w = (changes * 37) % 101
            r = admin_call(edge, "PUT", "/api/v1/services/shop/weights",
                           body={"weights": {"blue": 100 - w, "green": max(w, 1)}},
                           headers=[("If-Match", etag)])
            self.assertEqual(r.status, 200, r.body[:200])
            etag = r.header("etag")
            changes += 1
            if changes % 25 == 0:
                edge.reload(config)
                reloads += 1
                etag = admin_call(edge, "GET", "/api/v1/services/shop").header("etag")
            admin_call(edge, "GET", "/metrics")
        outs = [p.communicate(timeout=60)[0] for p in load]
        self.assertWeirAlive(edge)
        print(f"stress: {changes} weight changes, {reloads} reloads in {SECONDS} s")
        for out in outs:
            print("  " + " | ".join(l.strip() for l in out.splitlines()
                                    if "requests" in l or "Requests/sec" in l)[:300])


unittest.main(argv=["stress", "-v"])
EOF
reports || status=1
[ "$status" -eq 0 ] && echo "tsan: no reports"
exit "$status"
