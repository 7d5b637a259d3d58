#!/usr/bin/env bash
# Side-by-side benchmark: weir, nginx and haproxy (2 workers each) in front of the same two
# weir-backend processes (blue weight 90, green weight 10), plus wrk straight at blue as the
# physical limit. Rounds are interleaved (A B C D, A B C D, ...) so drift hits every target
# alike; the table shows medians over rounds. Everything binds 127.0.0.1 and is stopped on exit.
#
# usage: bench/run.sh [--rounds 3] [--duration 10] [--connections 64] [--wrk-threads 2]
#                     [--workers 2] [--warmup 2] [--targets direct,weir,nginx,haproxy]
#                     [--path /] [--build-dir DIR] [--backend-bin FILE] [--out FILE]
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
rounds=3
duration=10
connections=64
wrk_threads=2
workers=2
warmup=2
targets=direct,weir,nginx,haproxy
path=/
build_dir=${WEIR_BUILD_DIR:-$here/build}
backend_bin=
out_file=

usage() {
  sed -n '7,9p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
die() {
  echo "bench: $*" >&2
  exit 1
}
posint() { [[ $2 =~ ^[1-9][0-9]*$ ]] || { echo "bench: $1 wants a positive integer" >&2; usage; }; }

while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || { [ "$1" = -h ] || [ "$1" = --help ] || echo "bench: $1 needs a value" >&2; usage; }
  case $1 in
    --rounds) posint "$1" "$2"; rounds=$2 ;;
    --duration) posint "$1" "$2"; duration=$2 ;;
    --connections) posint "$1" "$2"; connections=$2 ;;
    --wrk-threads) posint "$1" "$2"; wrk_threads=$2 ;;
    --workers) posint "$1" "$2"; workers=$2 ;;
    --warmup) [[ $2 =~ ^[0-9]+$ ]] || usage; warmup=$2 ;;
    --targets) targets=$2 ;;
    --path) [[ $2 == /* ]] || usage; path=$2 ;;
    --build-dir) build_dir=$2 ;;
    --backend-bin) backend_bin=$2 ;;
    --out) out_file=$2 ;;
    *) echo "bench: unknown option $1" >&2; usage ;;
  esac
  shift 2
done
[ "$connections" -ge "$wrk_threads" ] || die "--connections must be at least --wrk-threads"
IFS=, read -r -a target_list <<<"$targets"
for t in "${target_list[@]}"; do
  case $t in direct | weir | nginx | haproxy) ;; *) die "unknown target '$t' (direct, weir, nginx, haproxy)" ;; esac
done
wants() { [[ ",$targets," == *",$1,"* ]]; }

# --- tools ------------------------------------------------------------------------------------
missing=()
for tool in wrk curl python3 pgrep; do command -v "$tool" >/dev/null || missing+=("$tool"); done
wants nginx && { command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx); }
wants haproxy && { command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy); }
[ ${#missing[@]} -eq 0 ] || die "missing ${missing[*]}: run scripts/setup.sh (installs wrk, nginx-light, haproxy, ...)"
export PATH=$PATH:/usr/sbin
backend_bin=${backend_bin:-$build_dir/weir-backend}
[ -x "$backend_bin" ] || die "no weir-backend at $backend_bin: run scripts/setup.sh (it builds into $here/build) or pass --build-dir / --backend-bin"
weir_bin=$build_dir/weir
if wants weir && [ ! -x "$weir_bin" ]; then
  echo "bench: no weir binary at $weir_bin; the weir column is skipped (run scripts/setup.sh)" >&2
  target_list=("${target_list[@]/weir/}")
fi

# --- process bookkeeping ------------------------------------------------------------------------
tmp=$(mktemp -d /tmp/weir-bench.XXXXXX)
chmod 755 "$tmp"  # nginx workers may run as another user
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    # Up to 12 s each (weir drains for up to 10 s), then insist: nothing may be left behind.
    for _ in $(seq 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits (bounded) until an HTTP request to $1 succeeds; $2 is the process that must stay alive.
wait_http() {
  local url=$1 pid=$2 name=$3 log=$4
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2 2>/dev/null; die "$name exited during startup (log above)"; }
    curl -fsS -o /dev/null -m 1 "$url" 2>/dev/null && return 0
    sleep 0.1
  done
  cat "$log" >&2 2>/dev/null
  die "$name did not answer on $url within 10 s"
}

# Starts a weir-backend; sets $backend_port (from its "listening on" line) and $backend_pid.
start_backend() {
  local name=$1 log=$tmp/$1.log
  "$backend_bin" --name "$name" --host 127.0.0.1 --port 0 --threads 1 >"$log" 2>&1 &
  pids+=($!)
  local pid=$!
  for _ in $(seq 100); do
    if grep -q "^backend $name listening on " "$log"; then
      backend_port=$(sed -n "s/^backend $name listening on 127.0.0.1:\([0-9]*\)$/\1/p" "$log")
      backend_pid=$pid
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; die "backend $name failed to start"; }
    sleep 0.1
  done
  die "backend $name did not start within 10 s"
}

# Sum of utime+stime (clock ticks) over a process and all its descendants; /proc/PID/stat
# already includes every thread of the process.
cpu_ticks() {
  local total=0 pid stat fields queue=("$@")
  while [ ${#queue[@]} -gt 0 ]; do
    pid=${queue[0]}
    queue=("${queue[@]:1}")
    if stat=$(cat "/proc/$pid/stat" 2>/dev/null); then
      read -r -a fields <<<"${stat##*) }"  # the name field may hold spaces
      total=$((total + fields[11] + fields[12]))
    fi
    for child in $(pgrep -P "$pid" 2>/dev/null); do queue+=("$child"); done
  done
  echo "$total"
}

# Prints "requests connections" from a backend's /__stats.
backend_stats() {
  curl -fsS -m 2 "http://127.0.0.1:$1/__stats" |
    sed -n 's/.*"connections":\([0-9]*\).*"requests":\([0-9]*\).*/\2 \1/p'
}

# --- backends -------------------------------------------------------------------------------
start_backend blue
blue_port=$backend_port
blue_pid=$backend_pid
start_backend green
green_port=$backend_port
green_pid=$backend_pid

# --- proxies ----------------------------------------------------------------------------------
declare -A port_of pid_of
port_of[direct]=$blue_port
pid_of[direct]=

if [[ " ${target_list[*]} " == *" weir "* ]]; then
  port=$(free_port)
  cat >"$tmp/weir.toml" <<EOF
[proxy]
workers = $workers

[[listener]]
name = "bench"
address = "127.0.0.1:$port"

[[service]]
name = "app"
stable = "blue"
  [[service.version]]
  name = "blue"
  weight = 90
  endpoints = ["127.0.0.1:$blue_port"]
  [[service.version]]
  name = "green"
  weight = 10
  endpoints = ["127.0.0.1:$green_port"]

[[route]]
listener = "bench"
service = "app"
EOF
  "$weir_bin" --config "$tmp/weir.toml" >"$tmp/weir.log" 2>&1 &
  pids+=($!)
  pid_of[weir]=$!
  for _ in $(seq 100); do
    grep -q "weir: listener bench listening on " "$tmp/weir.log" && break
    kill -0 "${pid_of[weir]}" 2>/dev/null || { cat "$tmp/weir.log" >&2; die "weir exited during startup"; }
    sleep 0.1
  done
  announced=$(sed -n 's/.*weir: listener bench listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$tmp/weir.log" | head -1)
  port_of[weir]=${announced:-$port}
  wait_http "http://127.0.0.1:${port_of[weir]}$path" "${pid_of[weir]}" weir "$tmp/weir.log"
fi

if wants nginx; then
  port_of[nginx]=$(free_port)
  mkdir -p "$tmp/nginx"
  chmod 755 "$tmp/nginx"
  cat >"$tmp/nginx/nginx.conf" <<EOF
worker_processes $workers;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $tmp/nginx/body;
  proxy_temp_path $tmp/nginx/proxy;
  fastcgi_temp_path $tmp/nginx/fastcgi;
  upstream app {
    server 127.0.0.1:$blue_port weight=9;
    server 127.0.0.1:$green_port weight=1;
    keepalive 64;
  }
  server {
    listen 127.0.0.1:${port_of[nginx]};
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering on;
    }
  }
}
EOF
  # -e: without it nginx opens its compiled-in error log before reading the config.
  nginx -e "$tmp/nginx/error.log" -c "$tmp/nginx/nginx.conf" -p "$tmp/nginx" -g 'daemon off;' \
    >"$tmp/nginx/stdout.log" 2>&1 &
  pids+=($!)
  pid_of[nginx]=$!
  wait_http "http://127.0.0.1:${port_of[nginx]}$path" "${pid_of[nginx]}" nginx "$tmp/nginx/error.log"
fi

if wants haproxy; then
  port_of[haproxy]=$(free_port)
  cat >"$tmp/haproxy.cfg" <<EOF
global
  nbthread $workers
  maxconn 4096

defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 60s
  timeout server 60s

frontend bench
  bind 127.0.0.1:${port_of[haproxy]}
  default_backend app

backend app
  balance roundrobin
  server blue 127.0.0.1:$blue_port weight 90
  server green 127.0.0.1:$green_port weight 10
EOF
  haproxy -f "$tmp/haproxy.cfg" -db >"$tmp/haproxy.log" 2>&1 &
  pids+=($!)
  pid_of[haproxy]=$!
  wait_http "http://127.0.0.1:${port_of[haproxy]}$path" "${pid_of[haproxy]}" haproxy "$tmp/haproxy.log"
fi

active=()
for t in "${target_list[@]}"; do [ -n "$t" ] && active+=("$t"); done
[ ${#active[@]} -gt 0 ] || die "nothing to benchmark"

# --- runs -------------------------------------------------------------------------------------
clk_tck=$(getconf CLK_TCK)

# Prints "rps p99_ms requests errors proxy_ticks backend_ticks green_requests
# backend_connections".
run_wrk() {
  local target=$1 secs=$2 url="http://127.0.0.1:${port_of[$1]}$path" out
  local p0=0 p1=0 b0 b1 g0 g1 bc0 bc1 gc0 gc1 _
  [ -n "${pid_of[$target]}" ] && p0=$(cpu_ticks "${pid_of[$target]}")
  b0=$(cpu_ticks "$blue_pid" "$green_pid")
  read -r g0 gc0 <<<"$(backend_stats "$green_port")"
  read -r _ bc0 <<<"$(backend_stats "$blue_port")"
  out=$(timeout $((secs + 30)) wrk -t"$wrk_threads" -c"$connections" -d"${secs}s" --latency "$url") ||
    die "wrk against $target failed: $out"
  [ -n "${pid_of[$target]}" ] && p1=$(cpu_ticks "${pid_of[$target]}")
  b1=$(cpu_ticks "$blue_pid" "$green_pid")
  read -r g1 gc1 <<<"$(backend_stats "$green_port")"
  read -r _ bc1 <<<"$(backend_stats "$blue_port")"
  # The stats requests themselves open one connection each; they are not counted here.
  echo "$out" | awk -v pt=$((p1 - p0)) -v bt=$((b1 - b0)) -v green=$((g1 - g0)) \
    -v conns=$((gc1 - gc0 + bc1 - bc0 - 2)) '
    function ms(v) {
      if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /m$/) return v * 60000
      if (v ~ /s$/) return v * 1000; return v + 0
    }
    /Requests\/sec:/ { rps = $2 }
    $1 == "99%" { p99 = ms($2) }
    / requests in / { reqs = $1 }
    /Socket errors:/ { gsub(/[^0-9 ]/, " "); errs += $1 + $2 + $3 + $4 }
    /Non-2xx or 3xx responses:/ { errs += $NF }
    END { printf "%s %s %s %d %d %d %d %d\n", rps, p99, reqs, errs, pt, bt, green, conns }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "bench: targets ${active[*]}; $rounds rounds x ${duration}s, wrk -t$wrk_threads -c$connections" >&2
if [ "$warmup" -gt 0 ]; then
  for t in "${active[@]}"; do run_wrk "$t" "$warmup" >/dev/null; done
fi
declare -A results
for r in $(seq "$rounds"); do
  for t in "${active[@]}"; do
    line=$(run_wrk "$t" "$duration")
    results[$t]+="$line"$'\n'
    echo "bench: round $r $t: $line" | awk '{ printf "bench: round %s %-8s %10.0f req/s  p99 %.2f ms  errors %d\n", $3, $4, $5, $6, $8 }' >&2
  done
done

# --- report -----------------------------------------------------------------------------------
report() {
  echo "## weir vs nginx vs haproxy ($(date -u +%Y-%m-%dT%H:%MZ))"
  echo
  echo "$(nproc) cores; wrk -t$wrk_threads -c$connections, ${duration} s x $rounds interleaved rounds" \
    "(medians), GET $path; proxies with $workers workers, upstream keep-alive; backends" \
    "blue (weight 90) and green (weight 10), weir-backend 1 thread each; all on 127.0.0.1."
  echo "nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), haproxy $(haproxy -v | sed -n '1s/HAProxy version \([^ ]*\).*/\1/p')."
  echo
  echo "| target | req/s | p99 latency (ms) | proxy CPU µs/req | backends CPU µs/req | green share | backend conns opened | errors |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  local t rows rps p99 cpu bcpu green conns errs
  for t in "${active[@]}"; do
    rows=${results[$t]}
    rps=$(awk 'NF { print $1 }' <<<"$rows" | median)
    p99=$(awk 'NF { print $2 }' <<<"$rows" | median)
    # CPU per request: ticks -> µs, divided by that run's request count.
    cpu=$(awk -v hz="$clk_tck" 'NF && $3 > 0 { print $5 * 1e6 / hz / $3 }' <<<"$rows" | median)
    bcpu=$(awk -v hz="$clk_tck" 'NF && $3 > 0 { print $6 * 1e6 / hz / $3 }' <<<"$rows" | median)
    green=$(awk 'NF && $3 > 0 { print 100 * $7 / $3 }' <<<"$rows" | median)
    conns=$(awk 'NF { print $8 }' <<<"$rows" | median)
    errs=$(awk 'NF { s += $4 } END { print s + 0 }' <<<"$rows")
    [ "$t" = direct ] && cpu="—"
    printf '| %s | %.0f | %.2f | %s | %.1f | %.1f%% | %.0f | %d |\n' \
      "$([ "$t" = direct ] && echo "direct (blue, the limit)" || echo "$t")" \
      "$rps" "$p99" "$([ "$cpu" = "—" ] && echo "—" || printf '%.1f' "$cpu")" "$bcpu" "$green" \
      "$conns" "$errs"
  done
  echo
  echo "proxy CPU = utime+stime of every process and thread of that proxy during the run" \
    "(clock tick $((1000 / clk_tck)) ms), divided by the requests wrk completed. Backend conns" \
    "opened (median per run) stays near the pool size when upstream keep-alive works."
}

if [ -n "$out_file" ]; then
  report | tee "$out_file"
else
  report
fi
