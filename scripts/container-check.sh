#!/usr/bin/env bash
# Builds docker/Dockerfile with podman and runs it the way the Dockerfile header and
# docker/compose.yaml say (facts about podman here: ../shared/containers.md):
#   1. podman and its settings for this sandbox; a debian:12-slim base image made with
#      debootstrap + podman import when there is none (no registry is reachable);
#   2. podman build --format docker (keeps HEALTHCHECK) --pull=never;
#   3. weir against two backend containers on a podman network with the shipped config
#      (docker/weir.toml): the 90/10 split, /healthz, the HEALTHCHECK, the non-root user, weirctl,
#      no anonymous volume, and runtime weights on the state volume surviving a new container;
#   4. the compose demo (weir, blue, green, Prometheus from Debian's prometheus package in an
#      image built FROM the local base; no Grafana, which Debian lacks): Prometheus scrapes weir,
#      and breaking green makes the guard revert it;
#   5. the fleet demo (docker/compose-fleet.yaml: three etcd members from docker/etcd/, built
#      FROM the same local base, weir-a and weir-b on docker/weir-fleet.toml, the backends,
#      Prometheus): both replicas' /api/v1/fleet list the two replicas and one leader, weirctl
#      fleet works in the image, a weight set on weir-a shows in weir-b's view with the same
#      ETag and is in etcd (etcdctl in a member), and Prometheus scrapes both replicas;
#   6. the Grafana dashboard's metric names against what weir exports (/metrics of the demo's
#      weir and of a fleet replica).
# Every container, network and volume it makes is removed at the end, also on failure. The
# images stay (a second run reuses their layers).
# Usage: scripts/container-check.sh            (as root; about 10 minutes cold on 2 cores, most of
#                                              it the image build; about 1 minute with podman's
#                                              layers of the images already there)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
run_id="weirck$$"
image="localhost/weir:check"
prom_image="localhost/weir-prometheus:check"
etcd_image="localhost/weir-etcd:check"
base="docker.io/library/debian:12-slim"
work=$(mktemp -d "/tmp/$run_id.XXXX")
py=/usr/bin/python3
service_pid=""
healthcheck_pid=""
compose=()
compose_fleet=()
projects=("$run_id" "${run_id}fleet")   # compose project names of the two demos

say() { printf 'container-check: %s\n' "$*"; }
list_of() {  # the ids of every podman container, network or volume
  case "$1" in
    container) podman ps -a -q ;;
    network) podman network ls -q ;;
    volume) podman volume ls -q ;;
  esac 2>/dev/null | sort
}
fail() {
  say "FAILED: $*" >&2
  exit 1
}

cleanup() {
  local rc=$?
  set +e
  if [ -n "$healthcheck_pid" ]; then
    kill "$healthcheck_pid" 2>/dev/null
    wait "$healthcheck_pid" 2>/dev/null
  fi
  if [ ${#compose[@]} -gt 0 ]; then
    [ "$rc" -eq 0 ] || "${compose[@]}" logs --no-color --tail=40 >&2 2>/dev/null
    "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1
  fi
  if [ ${#compose_fleet[@]} -gt 0 ]; then
    [ "$rc" -eq 0 ] || "${compose_fleet[@]}" logs --no-color --tail=30 >&2 2>/dev/null
    "${compose_fleet[@]}" down -v --remove-orphans >/dev/null 2>&1
  fi
  [ -n "$service_pid" ] && kill "$service_pid" 2>/dev/null && wait "$service_pid" 2>/dev/null
  if [ "$rc" -ne 0 ]; then
    for c in $(podman ps -a -q --filter "label=weir-check=$run_id" 2>/dev/null); do
      say "logs of $(podman inspect -f '{{.Name}}' "$c"):" >&2
      podman logs --tail=30 "$c" >&2 2>&1
    done
  fi
  podman ps -a -q --filter "label=weir-check=$run_id" | xargs -r podman rm -f -v -t 2 >/dev/null 2>&1
  local project
  for project in "${projects[@]}"; do
    podman ps -a -q --filter "label=com.docker.compose.project=$project" |
      xargs -r podman rm -f -v -t 2 >/dev/null 2>&1
  done
  podman network ls -q --filter "label=weir-check=$run_id" |
    xargs -r podman network rm >/dev/null 2>&1
  podman volume ls -q --filter "label=weir-check=$run_id" |
    xargs -r podman volume rm >/dev/null 2>&1
  for project in "${projects[@]}"; do
    podman network ls -q --filter "label=com.docker.compose.project=$project" |
      xargs -r podman network rm >/dev/null 2>&1
    podman volume ls -q --filter "label=com.docker.compose.project=$project" |
      xargs -r podman volume rm >/dev/null 2>&1
  done
  # Nothing this run made may outlive it (anonymous volumes included).
  local kind left
  for kind in container network volume; do
    [ -f "$work/$kind.before" ] || continue
    left=$(comm -13 "$work/$kind.before" <(list_of "$kind"))
    if [ -n "$left" ]; then
      say "left behind: ${kind}s $left" >&2
      [ "$rc" -ne 0 ] || rc=1
    fi
  done
  rm -rf "$work"
  if [ "$rc" -eq 0 ]; then say "passed"; else say "failed (exit $rc)" >&2; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" -eq 0 ] || fail "run as root (rootful podman: bridge networks and container IPs)"

# ---- 1. podman, its settings, the base image ----------------------------------------------
packages=(podman buildah runc crun netavark aardvark-dns containernetworking-plugins slirp4netns
  fuse-overlayfs uidmap catatonit iptables debootstrap docker-compose curl wrk)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# crun cannot run here (cgroups in hybrid mode), root has no CAP_SYS_RESOURCE (hard nofile limit
# 20000), and there is no systemd journal.
conf=/etc/containers/containers.conf
marker="# written by weir's scripts/container-check.sh"
if [ ! -f "$conf" ] || grep -qF "$marker" "$conf"; then
  mkdir -p /etc/containers
  cat >"$conf" <<EOF
$marker (see ../shared/containers.md)
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
else
  for setting in 'runtime = "runc"' 'cgroup_manager = "cgroupfs"' 'nofile=20000:20000'; do
    grep -qF "$setting" "$conf" ||
      fail "$conf lacks $setting (containers.md); not editing a file weir did not write"
  done
fi

if ! podman image exists "$base"; then
  say "making $base with debootstrap (no registry here)"
  rootfs="$work/rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian \
    >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log" >&2; fail "debootstrap"; }
  rm -rf "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/* \
    "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
  printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
  chmod 755 "$rootfs/usr/sbin/policy-rc.d"
  tar --numeric-owner -C "$rootfs" -c . |
    podman import --change 'CMD ["bash"]' - "$base" >/dev/null 2>&1
  rm -rf "$rootfs"
fi
podman tag "$base" debian:12-slim

for kind in container network volume; do list_of "$kind" >"$work/$kind.before"; done

# ---- 2. the image ----------------------------------------------------------------------------
say "building $image"
start=$SECONDS
podman build --format docker --pull=never -f "$here/docker/Dockerfile" -t "$image" "$here" \
  >"$work/build.log" 2>&1 || { tail -40 "$work/build.log" >&2; fail "podman build"; }
say "built in $((SECONDS - start)) s, $(podman image inspect -f '{{.Size}}' "$image") bytes"
[ "$(podman image inspect -f '{{.Config.Healthcheck.Test}}' "$image")" != "[]" ] ||
  fail "the image has no HEALTHCHECK (built in OCI format?)"
[ "$(podman image inspect -f '{{len .Config.Volumes}}' "$image")" = 1 ] ||
  fail "the image declares other volumes: $(podman image inspect -f '{{.Config.Volumes}}' "$image")"

ip_of() { podman inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$1"; }
wait_http() {  # URL, seconds
  local i
  for ((i = 0; i < $2 * 5; i++)); do
    curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}
write_token=weir-demo-write-token
read_token=$(cat "$here/docker/prometheus-token")

# ---- 3. one weir, two backends, the shipped config -----------------------------------------
label=(--label "weir-check=$run_id")
net="$run_id-net"
vol="$run_id-state"
podman network create "${label[@]}" "$net" >/dev/null
podman volume create "${label[@]}" "$vol" >/dev/null
# podman 4.3 says on stderr that it cannot schedule the health check without systemd (the
# check is run by hand below): that goes to a log, shown only on failure.
podman_log="$work/podman-run.log"
for b in blue:9001 green:9002; do
  podman run -d "${label[@]}" --name "$run_id-${b%%:*}" --network "$net" \
    --network-alias "${b%%:*}" --entrypoint weir-backend "$image" \
    --name "${b%%:*}" --host 0.0.0.0 --port "${b##*:}" >/dev/null 2>>"$podman_log" ||
    fail "podman run ${b%%:*}: $(tail -3 "$podman_log")"
done
run_weir() {
  podman run -d "${label[@]}" --name "$run_id-weir" --network "$net" \
    -v "$here/docker/weir.toml:/etc/weir/weir.toml:ro" \
    -v "$here/docker/tokens.toml:/etc/weir/tokens.toml:ro" \
    -v "$vol:/var/lib/weir" "$image" >/dev/null 2>>"$podman_log" ||
    fail "podman run weir: $(tail -3 "$podman_log")"
  weir_ip=$(ip_of "$run_id-weir")
  wait_http "http://$weir_ip:9901/healthz" 20 || fail "weir's /healthz did not answer within 20 s"
}
run_weir
say "weir runs at $weir_ip"

[ "$(podman exec "$run_id-weir" id -u)" = 10001 ] || fail "weir does not run as uid 10001"
[ "$(podman top "$run_id-weir" huser | tail -n +2 | sort -u)" = 10001 ] ||
  fail "a process of the weir container runs as another user: $(podman top "$run_id-weir" huser)"
podman healthcheck run "$run_id-weir" >/dev/null || fail "the HEALTHCHECK fails"
body=$(curl -fsS --max-time 3 "http://$weir_ip:9901/healthz") || fail "/healthz"
[ "$(printf %s "$body" | tr -d ' \n')" = '{"status":"ok"}' ] || fail "/healthz answered $body"
podman exec -e WEIR_TOKEN="$read_token" "$run_id-weir" weirctl status shop >"$work/status" ||
  fail "weirctl status in the image"
grep -q green "$work/status" || fail "weirctl status shows no green: $(cat "$work/status")"
anon=$(podman inspect -f '{{range .Mounts}}{{if eq .Type "volume"}}{{.Name}} {{end}}{{end}}' \
  "$run_id-weir")
[ "$anon" = "$vol " ] || fail "volumes besides the state volume: $anon"

# The 90/10 split: 1,000 requests on 4 keep-alive connections (each worker splits exactly).
$py - "$weir_ip" <<'EOF' || fail "the 90/10 split"
import collections, http.client, sys
counts = collections.Counter()
for _ in range(4):
    c = http.client.HTTPConnection(sys.argv[1], 8080, timeout=5)
    for _ in range(250):
        c.request("GET", "/")
        r = c.getresponse()
        r.read()
        assert r.status == 200, r.status
        counts[r.getheader("x-backend")] += 1
    c.close()
print("container-check: split", dict(counts))
assert set(counts) == {"blue", "green"} and 880 <= counts["blue"] <= 920, counts
EOF

# Runtime weights live on the state volume: a new container with the same volume keeps them.
etag=$(curl -fsS -D - -o /dev/null -H "Authorization: Bearer $read_token" \
  "http://$weir_ip:9901/api/v1/services/shop" | tr -d '\r' | sed -n 's/^[Ee][Tt]ag: //p')
curl -fsS -o /dev/null -X PUT -H "Authorization: Bearer $write_token" -H "If-Match: $etag" \
  -d '{"weights": {"blue": 70, "green": 30}, "reason": "container-check"}' \
  "http://$weir_ip:9901/api/v1/services/shop/weights" || fail "PUT weights"
podman rm -f -v -t 10 "$run_id-weir" >/dev/null 2>>"$podman_log"
run_weir
weights=$(curl -fsS -H "Authorization: Bearer $read_token" \
  "http://$weir_ip:9901/api/v1/services/shop" | $py -c '
import json, sys
versions = json.load(sys.stdin)["versions"]
print(" ".join("%s=%s" % (v["name"], v["effective_weight"]) for v in versions))')
[ "$weights" = "blue=70 green=30" ] || fail "after a new container on the same volume: $weights"
say "state volume kept $weights across containers"
podman ps -a -q --filter "label=weir-check=$run_id" |
  xargs -r podman rm -f -v -t 5 >/dev/null 2>>"$podman_log"

# ---- 4. the compose demo ---------------------------------------------------------------------
say "building $prom_image (Debian's prometheus on the local base)"
cat >"$work/Dockerfile.prometheus" <<'EOF'
FROM debian:12-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/prometheus/metrics2 && chown -R nobody:nogroup /var/lib/prometheus
USER nobody
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus", "--storage.tsdb.path=/var/lib/prometheus/metrics2"]
EOF
podman build --format docker --pull=never -f "$work/Dockerfile.prometheus" -t "$prom_image" \
  "$work" >"$work/prom-build.log" 2>&1 ||
  { tail -30 "$work/prom-build.log" >&2; fail "prometheus image"; }

# A compose file as shipped, with the local images, no fixed host ports (ephemeral ones on
# 127.0.0.1) and without grafana.
local_compose() {  # SRC DST
  $py - "$1" "$2" "$image" "$prom_image" "$etcd_image" <<'EOF'
import sys, yaml
src, dst, image, prom, etcd = sys.argv[1:]
with open(src) as f:
    c = yaml.safe_load(f)
for key in [k for k in c if k.startswith("x-")]:
    c.pop(key)  # anchors, merged into the services already
services = c["services"]
services.pop("grafana")
for name, s in services.items():
    if name == "prometheus":
        s["image"] = prom
    else:
        built = s.pop("build", {})
        s["image"] = etcd if str(built.get("context", "")).rstrip("/").endswith("etcd") else image
    s["ports"] = ["127.0.0.1::" + str(p).rsplit(":", 1)[-1] for p in s.get("ports", [])]
with open(dst, "w") as f:
    yaml.safe_dump(c, f)
EOF
}
local_compose "$here/docker/compose.yaml" "$work/compose.yaml"
sock="$work/podman.sock"
podman system service --time=0 "unix://$sock" >"$work/service.log" 2>&1 &
service_pid=$!
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || fail "podman system service did not start"
compose=(env DOCKER_HOST="unix://$sock" docker-compose -p "$run_id"
  --project-directory "$here/docker" -f "$work/compose.yaml")
# podman 4.3 runs health checks only through systemd timers, and there is none: run them here,
# so that depends_on's service_healthy conditions can pass.
(
  while sleep 2; do
    for project in "${projects[@]}"; do
      for c in $(podman ps -q --filter "label=com.docker.compose.project=$project"); do
        podman healthcheck run "$c" >/dev/null 2>&1 || true
      done
    done
  done
) &
healthcheck_pid=$!
say "compose up"
"${compose[@]}" up -d >"$work/compose.log" 2>&1 ||
  { tail -30 "$work/compose.log" >&2; fail "docker-compose up"; }
weir_port=$("${compose[@]}" port weir 8080 | sed 's/.*://')
admin_port=$("${compose[@]}" port weir 9901 | sed 's/.*://')
prom_port=$("${compose[@]}" port prometheus 9090 | sed 's/.*://')
admin="http://127.0.0.1:$admin_port"
wait_http "$admin/healthz" 30 || fail "compose: weir's /healthz"
wait_http "http://127.0.0.1:$weir_port/" 10 || fail "compose: weir's data port"

# Waits up to 60 s until Prometheus on 127.0.0.1:PORT answers QUERY with the value WANT; sets
# prom_value to its last answer.
prom_wait() {  # PORT QUERY WANT
  local i
  prom_value=""
  for ((i = 0; i < 60; i++)); do
    prom_value=$(curl -fsS --max-time 2 "http://127.0.0.1:$1/api/v1/query" \
      --data-urlencode "query=$2" 2>/dev/null | $py -c '
import json, sys
r = json.load(sys.stdin)["data"]["result"]
print(r[0]["value"][1] if r else "")' 2>/dev/null || true)
    [ "$prom_value" = "$3" ] && return 0
    sleep 1
  done
  return 1
}

# Prometheus scrapes weir with the read token.
prom_wait "$prom_port" 'up{job="weir"}' 1 ||
  fail "Prometheus does not scrape weir (up{job=\"weir\"} = '$prom_value')"
say "Prometheus scrapes weir"

# Break green; the guard (error rate above 5% over 30 s, 3 verdicts) reverts it.
"${compose[@]}" exec -T green curl -fsS -o /dev/null http://127.0.0.1:9002/__status/500 ||
  fail "could not break green"
wrk -t1 -c4 -d40s "http://127.0.0.1:$weir_port/" >"$work/wrk.log" 2>&1 &
wrk_pid=$!
reverted=""
for _ in $(seq 40); do
  reverted=$(curl -fsS --max-time 2 -H "Authorization: Bearer $read_token" \
    "$admin/api/v1/services/shop" | $py -c '
import json, sys
s = json.load(sys.stdin)
green = [v for v in s["versions"] if v["name"] == "green"][0]
print(green["effective_weight"] == 0 and s["guard"]["state"] == "reverted")' || true)
  [ "$reverted" = True ] && break
  sleep 1
done
kill "$wrk_pid" 2>/dev/null || true
wait "$wrk_pid" 2>/dev/null || true
[ "$reverted" = True ] || fail "the guard did not revert green within 40 s"
say "the guard reverted green"

curl -fsS -H "Authorization: Bearer $read_token" "$admin/metrics" >"$work/metrics" ||
  fail "/metrics"
"${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || fail "docker-compose down"
compose=()

# ---- 5. the fleet demo -----------------------------------------------------------------------
say "building $etcd_image (Debian's etcd-server on the local base)"
podman build --format docker --pull=never -t "$etcd_image" "$here/docker/etcd" \
  >"$work/etcd-build.log" 2>&1 || { tail -30 "$work/etcd-build.log" >&2; fail "etcd image"; }
local_compose "$here/docker/compose-fleet.yaml" "$work/compose-fleet.yaml"
compose_fleet=(env DOCKER_HOST="unix://$sock" docker-compose -p "${run_id}fleet"
  --project-directory "$here/docker" -f "$work/compose-fleet.yaml")
say "compose up (fleet)"
start=$SECONDS
"${compose_fleet[@]}" up -d >"$work/compose-fleet.log" 2>&1 ||
  { tail -30 "$work/compose-fleet.log" >&2; fail "docker-compose up (fleet)"; }
admin_a="http://127.0.0.1:$("${compose_fleet[@]}" port weir-a 9901 | sed 's/.*://')"
admin_b="http://127.0.0.1:$("${compose_fleet[@]}" port weir-b 9901 | sed 's/.*://')"
prom_port=$("${compose_fleet[@]}" port prometheus 9090 | sed 's/.*://')
wait_http "$admin_a/healthz" 30 || fail "fleet: weir-a's /healthz"
wait_http "$admin_b/healthz" 30 || fail "fleet: weir-b's /healthz"

# Each replica lists both replicas (named after their host names), one leader, the store up.
fleet_view() {  # ADMIN → "NAME,NAME LEADER UP"
  curl -fsS --max-time 2 -H "Authorization: Bearer $read_token" "$1/api/v1/fleet" | $py -c '
import json, sys
f = json.load(sys.stdin)
print(",".join(sorted(r["name"] for r in f["replicas"])), f["leader"], f["store"]["up"])'
}
settled() {  # VIEW
  case "$1" in
    "weir-a:9901,weir-b:9901 weir-a:9901 True" | "weir-a:9901,weir-b:9901 weir-b:9901 True") ;;
    *) return 1 ;;
  esac
}
view_a="" view_b=""
for _ in $(seq 60); do
  view_a=$(fleet_view "$admin_a" 2>/dev/null || true)
  view_b=$(fleet_view "$admin_b" 2>/dev/null || true)
  settled "$view_a" && [ "$view_a" = "$view_b" ] && break
  sleep 0.5
done
settled "$view_a" || fail "fleet: weir-a's /api/v1/fleet says '$view_a' (want both replicas" \
  "weir-a:9901 and weir-b:9901, a leader, the store up)"
[ "$view_a" = "$view_b" ] || fail "fleet: weir-a sees '$view_a', weir-b '$view_b'"
say "fleet up in $((SECONDS - start)) s: replicas and leader $view_a"
"${compose_fleet[@]}" exec -T -e WEIR_TOKEN="$read_token" weir-b weirctl fleet \
  >"$work/weirctl-fleet" 2>&1 || fail "weirctl fleet in weir-b: $(cat "$work/weirctl-fleet")"
grep -q 'weir-a:9901' "$work/weirctl-fleet" || fail "weirctl fleet: $(cat "$work/weirctl-fleet")"

# A weight set on weir-a (a CAS in etcd) is weir-b's view within 2 s, with the same ETag.
etag_of() {
  curl -fsS -D - -o /dev/null -H "Authorization: Bearer $read_token" \
    "$1/api/v1/services/shop" | tr -d '\r' | sed -n 's/^[Ee][Tt]ag: //p'
}
weights_of() {
  curl -fsS -H "Authorization: Bearer $read_token" "$1/api/v1/services/shop" | $py -c '
import json, sys
versions = json.load(sys.stdin)["versions"]
print(" ".join("%s=%s" % (v["name"], v["effective_weight"]) for v in versions))'
}
curl -fsS -o /dev/null -X PUT -H "Authorization: Bearer $write_token" \
  -H "If-Match: $(etag_of "$admin_a")" \
  -d '{"weights": {"blue": 40, "green": 60}, "reason": "container-check fleet"}' \
  "$admin_a/api/v1/services/shop/weights" || fail "fleet: PUT weights on weir-a"
seen=""
for _ in $(seq 20); do
  seen=$(weights_of "$admin_b" 2>/dev/null || true)
  [ "$seen" = "blue=40 green=60" ] && break
  sleep 0.1
done
[ "$seen" = "blue=40 green=60" ] || fail "fleet: weir-b shows '$seen' 2 s after weir-a's change"
etag_a=$(etag_of "$admin_a")
[ "$etag_a" = "$(etag_of "$admin_b")" ] ||
  fail "fleet: the replicas' ETags differ: $etag_a against $(etag_of "$admin_b")"
say "fleet: weir-a's change is weir-b's view: $seen, ETag $etag_a"
"${compose_fleet[@]}" exec -T etcd1 etcdctl get --print-value-only \
  /weir/compose-demo/services/shop >"$work/etcd-shop" 2>&1 ||
  fail "etcdctl get: $(cat "$work/etcd-shop")"
$py - "$work/etcd-shop" <<'EOF' || fail "fleet: the service's key in etcd: $(cat "$work/etcd-shop")"
import json, sys
with open(sys.argv[1]) as f:
    v = json.load(f)
assert v["replica"] == "weir-a:9901", v
print("container-check: etcd holds services/shop, written by", v["replica"])
EOF

# Prometheus scrapes both replicas (each says its store is up).
prom_wait "$prom_port" 'count(weir_fleet_store_up == 1)' 2 ||
  fail "Prometheus does not scrape both fleet replicas (count = '$prom_value')"
say "Prometheus scrapes both replicas"
curl -fsS -H "Authorization: Bearer $read_token" "$admin_b/metrics" >"$work/metrics-fleet" ||
  fail "fleet: /metrics"

# ---- 6. the dashboard ------------------------------------------------------------------------
# Grafana is not in Debian: check that every metric the dashboard queries is one weir exports
# (its fleet panels' metrics exist in fleet mode only).
dashboard="$here/docker/grafana/dashboards/weir.json"
$py - "$dashboard" "$work/metrics" "$work/metrics-fleet" <<'EOF' || fail "the Grafana dashboard"
import json, re, sys
dash = json.load(open(sys.argv[1]))
exported = set()
for path in sys.argv[2:]:
    with open(path) as f:
        exported |= set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{| )", f.read(), re.M))
wanted = set()
for panel in dash["panels"]:
    for target in panel.get("targets", []):
        wanted |= set(re.findall(r"\b(weir_[a-z0-9_]+)", target["expr"]))
missing = sorted(wanted - exported)
assert wanted and not missing, f"the dashboard queries metrics weir does not export: {missing}"
print(f"container-check: the dashboard's {len(wanted)} metrics are exported")
EOF
