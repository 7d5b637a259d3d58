#!/usr/bin/env bash
# Per-request cost of weir's HTTP/1.1 keep-alive path against the floor (bench/relay.cc), on one
# pinned worker: CPU µs per request of weir and of the relay side by side (interleaved rounds,
# medians), then for weir alone: allocations per request (bench/malloc_count.cc preloaded),
# syscalls per request (strace -c) and the top of a perf profile. Everything binds 127.0.0.1 and
# every child is stopped on exit.
#
# usage: bench/profile.sh [--build-dir build-rel] [--rounds 5] [--duration 5] [--conns 64]
#                         [--services 1] [--no-perf] [--no-strace] [--config FILE]
#                         [--baseline WEIR_BINARY]
#   --baseline B  another weir build (e.g. before a change) measured in the same rounds
#   --services N  N services with 2 versions and an exact-host route each (traffic to the first)
#   --config FILE weir's config instead of the generated one ($BLUE and $GREEN are replaced by
#                 the backends' addresses; the first listener must be plain HTTP)
set -euo pipefail
shopt -s inherit_errexit

here=$(cd "$(dirname "$0")/.." && pwd)
build_dir=$here/build-rel
rounds=5
duration=5
conns=64
services=1
do_perf=1
do_strace=1
config_in=
baseline=
die() { echo "profile: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case $1 in
    --no-perf) do_perf=0; shift; continue ;;
    --no-strace) do_strace=0; shift; continue ;;
    -h | --help) sed -n '/^# usage:/,/^[^#]/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
  esac
  [ $# -ge 2 ] || die "$1 needs a value"
  case $1 in
    --build-dir) build_dir=$2 ;;
    --rounds) rounds=$2 ;;
    --duration) duration=$2 ;;
    --conns) conns=$2 ;;
    --services) services=$2 ;;
    --config) config_in=$2 ;;
    --baseline) baseline=$2 ;;
    *) die "unknown option $1" ;;
  esac
  shift 2
done
for n in "$rounds" "$duration" "$conns" "$services"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || die "counts must be positive integers (got '$n')"
done
for tool in wrk taskset curl; do command -v "$tool" >/dev/null || die "missing $tool"; done
[ "$(nproc)" -ge 2 ] || die "needs at least 2 CPUs (weir pinned on CPU 0, the rest elsewhere)"
for bin in weir weir-backend weir-relay libweir-malloc-count.so; do
  [ -e "$build_dir/$bin" ] || die "no $build_dir/$bin (cmake --build $build_dir)"
done

tmp=$(mktemp -d /tmp/weir-profile.XXXXXX)
# shellcheck source=bench/cleanup.sh
. "$(dirname "$0")/cleanup.sh"
rest=(taskset -c "1-$(($(nproc) - 1))")

wait_line() {  # log pattern pid
  local line
  for _ in $(seq 150); do
    line=$(grep -m1 -E "$2" "$1" 2>/dev/null) && { echo "$line"; return 0; }
    kill -0 "$3" 2>/dev/null || { cat "$1" >&2; die "a process exited during startup"; }
    sleep 0.1
  done
  cat "$1" >&2
  die "no '$2' within 15 s"
}

start_backend() {
  "${rest[@]}" "$build_dir/weir-backend" --name "$1" --port 0 >"$tmp/$1.log" 2>&1 &
  pids+=($!)
  local line
  line=$(wait_line "$tmp/$1.log" "^backend $1 listening on " $!)
  echo "${line##*:}"
}
blue=$(start_backend blue)
green=$(start_backend green)

if [ -n "$config_in" ]; then
  sed -e "s/\$BLUE/127.0.0.1:$blue/g" -e "s/\$GREEN/127.0.0.1:$green/g" "$config_in" >"$tmp/weir.toml"
else
  printf '[[token]]\nname = "bench"\nscope = "write"\nsha256 = "%s"\n' \
    "$(head -c 16 /dev/urandom | sha256sum | cut -d' ' -f1)" >"$tmp/tokens.toml"
  python3 "$here/bench/gen_config.py" --services "$services" --blue "127.0.0.1:$blue" \
    --green "127.0.0.1:$green" --state-dir "$tmp/state" --tokens-file "$tmp/tokens.toml" >"$tmp/weir.toml"
fi
host=$(sed -n 's/^# bench host: //p' "$tmp/weir.toml")
host_hdr=()
[ -n "$host" ] && host_hdr=(-H "Host: $host")

start_ms=$(date +%s%3N)
WEIR_MALLOC_COUNT=$tmp/malloc LD_PRELOAD=$build_dir/libweir-malloc-count.so \
  taskset -c 0 "$build_dir/weir" --config "$tmp/weir.toml" >"$tmp/weir.log" 2>&1 &
pids+=($!)
weir_pid=$!
wait_line "$tmp/weir.log" "weir: ready" "$weir_pid" >/dev/null
ready_ms=$(date +%s%3N)
line=$(wait_line "$tmp/weir.log" "weir: listener [^ ]+ listening on " "$weir_pid")
weir_port=${line##*:}
if [ -n "$baseline" ]; then
  [ -x "$baseline" ] || die "no weir binary at $baseline"
  sed 's/^state_dir = "\(.*\)"$/state_dir = "\1-base"/' "$tmp/weir.toml" >"$tmp/base.toml"
  taskset -c 0 "$baseline" --config "$tmp/base.toml" >"$tmp/base.log" 2>&1 &
  pids+=($!)
  base_pid=$!
  line=$(wait_line "$tmp/base.log" "weir: listener [^ ]+ listening on " "$base_pid")
  base_port=${line##*:}
fi
taskset -c 0 "$build_dir/weir-relay" --upstream "127.0.0.1:$blue" >"$tmp/relay.log" 2>&1 &
pids+=($!)
relay_pid=$!
line=$(wait_line "$tmp/relay.log" "^relay listening on " "$relay_pid")
relay_port=${line##*:}

cpu_ticks() { awk '{ sub(/^.*\) /, ""); split($0, f, " "); print f[12] + f[13] }' "/proc/$1/task/"*/stat | awk '{ s += $1 } END { print s }'; }
cat >"$tmp/report.lua" <<'EOF'
done = function(summary, latency)
  local e = summary.errors
  io.write(string.format("PROFILE %d %d %d\n", summary.requests,
    e.connect + e.read + e.write + e.status + e.timeout, latency:percentile(99)))
end
EOF
run_wrk() {  # port secs -> "requests errors p99_us"
  local out
  out=$("${rest[@]}" wrk -t2 -c"$conns" -d"$2s" -s "$tmp/report.lua" "${host_hdr[@]}" "http://127.0.0.1:$1/" 2>&1) ||
    die "wrk failed: $out"
  awk '$1 == "PROFILE" { print $2, $3, $4 }' <<<"$out"
}
hz=$(getconf CLK_TCK)
measure() {  # pid port -> "cpu_us_per_req errors p99_us rps"
  local c0 c1 r e p
  c0=$(cpu_ticks "$1")
  read -r r e p <<<"$(run_wrk "$2" "$duration")"
  c1=$(cpu_ticks "$1")
  awk -v t=$((c1 - c0)) -v hz="$hz" -v r="$r" -v e="$e" -v p="$p" -v d="$duration" \
    'BEGIN { printf "%.2f %d %d %.0f\n", t * 1e6 / hz / r, e, p, r / d }'
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

rss_before=$(awk '/^VmRSS:/ { print $2 }' "/proc/$weir_pid/status")
echo "# weir h1 keep-alive profile ($(date -u +%Y-%m-%dT%H:%MZ)): wrk -t2 -c$conns on CPUs 1-, weir (1 worker) and relay on CPU 0"
echo "config: ${config_in:-$services service(s), 2 versions each}; start to ready ${start_ms:+$((ready_ms - start_ms))} ms; RSS at start $((rss_before / 1024)) MiB"
run_wrk "$weir_port" 1 >/dev/null
[ -z "$baseline" ] || run_wrk "$base_port" 1 >/dev/null
: >"$tmp/base.cpu"
run_wrk "$relay_port" 1 >/dev/null
: >"$tmp/weir.cpu"
: >"$tmp/relay.cpu"
for r in $(seq "$rounds"); do
  w=$(measure "$weir_pid" "$weir_port")
  l=$(measure "$relay_pid" "$relay_port")
  echo "$w" >>"$tmp/weir.cpu"
  echo "$l" >>"$tmp/relay.cpu"
  b=
  if [ -n "$baseline" ]; then
    b=$(measure "$base_pid" "$base_port")
    echo "$b" >>"$tmp/base.cpu"
    b=" | baseline $b"
  fi
  echo "round $r: weir $w | relay $l$b  (cpu_us/req errors p99_us req/s)"
done
wm=$(cut -d' ' -f1 "$tmp/weir.cpu" | median)
lm=$(cut -d' ' -f1 "$tmp/relay.cpu" | median)
wp=$(cut -d' ' -f3 "$tmp/weir.cpu" | median)
lp=$(cut -d' ' -f3 "$tmp/relay.cpu" | median)
awk -v w="$wm" -v l="$lm" -v wp="$wp" -v lp="$lp" 'BEGIN {
  printf "CPU us/req median: weir %.2f, relay %.2f, ratio %.3f; p99 us: weir %d, relay %d\n", w, l, w / l, wp, lp }'
if [ -n "$baseline" ]; then
  bm=$(cut -d' ' -f1 "$tmp/base.cpu" | median)
  bp=$(cut -d' ' -f3 "$tmp/base.cpu" | median)
  awk -v b="$bm" -v l="$lm" -v w="$wm" -v bp="$bp" 'BEGIN {
    printf "baseline: CPU us/req median %.2f, ratio to relay %.3f (weir/baseline %.3f); p99 us %d\n", b, b / l, w / b, bp }'
  echo "baseline RSS after load: $(($(awk '/^VmRSS:/ { print $2 }' "/proc/$base_pid/status") / 1024)) MiB"
fi
echo "RSS after load: $(($(awk '/^VmRSS:/ { print $2 }' "/proc/$weir_pid/status") / 1024)) MiB"

# Reloads (SIGHUP) while wrk runs: wall time from the signal to weir's "reloaded" line, and the
# p99 of the run that had the reloads in it.
reloads=3
run_wrk "$weir_port" "$((reloads + 2))" >"$tmp/reload.wrk" &
load=$!
sleep 1
: >"$tmp/reload.ms"
for i in $(seq "$reloads"); do
  before=$(grep -c "weir: reloaded" "$tmp/weir.log" || true)
  t0=$(date +%s%N)
  kill -HUP "$weir_pid"
  for _ in $(seq 1000); do
    [ "$(grep -c "weir: reloaded" "$tmp/weir.log" || true)" -gt "$before" ] && break
    grep -q "reload failed" "$tmp/weir.log" && die "reload failed: $(tail -5 "$tmp/weir.log")"
    sleep 0.005
  done
  echo $((($(date +%s%N) - t0) / 1000000)) >>"$tmp/reload.ms"
  sleep 0.5
done
wait "$load"
read -r _ _ rp99 <"$tmp/reload.wrk"
echo "reload (SIGHUP to 'reloaded', under load): median $(median <"$tmp/reload.ms") ms of $(tr '\n' ' ' <"$tmp/reload.ms")ms; p99 of that run $rp99 us"

read_counts() { od -An -tu8 -N24 "$tmp/malloc" | tr -s " \n" "  " | sed "s/^ //"; }
read -r a0 f0 b0 <<<"$(read_counts)"
read -r r _ _ <<<"$(run_wrk "$weir_port" 2)"
read -r a1 f1 b1 <<<"$(read_counts)"
awk -v a=$((a1 - a0)) -v f=$((f1 - f0)) -v b=$((b1 - b0)) -v r="$r" 'BEGIN {
  printf "allocations per request: %.2f (frees %.2f, %.0f bytes asked)\n", a / r, f / r, b / r }'

if [ "$do_strace" -eq 1 ] && command -v strace >/dev/null; then
  strace -c -f -p "$weir_pid" -o "$tmp/strace.out" 2>/dev/null &
  st=$!
  sleep 0.5
  read -r r _ _ <<<"$(run_wrk "$weir_port" 2)"
  kill -INT "$st"
  wait "$st" 2>/dev/null || true
  echo "syscalls per request ($r requests under strace):"
  awk -v r="$r" '$NF ~ /^[a-z_0-9]+$/ && $(NF-1) ~ /^[0-9]+$/ && $NF != "total" {
      calls = $4; printf "  %-16s %.3f\n", $NF, calls / r }' \
    "$tmp/strace.out" | sort -k2 -gr | head -12
fi

if [ "$do_perf" -eq 1 ] && command -v perf >/dev/null; then
  "${rest[@]}" wrk -t2 -c"$conns" -d"$((duration + 1))s" "${host_hdr[@]}" "http://127.0.0.1:$weir_port/" >/dev/null 2>&1 &
  load=$!
  sleep 0.5
  perf record -q -F 2999 -g -p "$weir_pid" -o "$tmp/perf.data" -- sleep "$duration" >/dev/null 2>&1 || true
  wait "$load" || true
  echo "perf top entries (self, weir process):"
  perf report -i "$tmp/perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null |
    awk '/^ +[0-9.]+%/' | head -30
fi
