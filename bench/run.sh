#!/usr/bin/env bash
# The bench suite: weir, nginx and haproxy (2 workers each, equivalent configs written here)
# in front of the same two weir-backend processes (blue weight 90, green weight 10), scenario
# by scenario, beside the floor: weir-relay, a bare L4 relay (bench/relay.cc: one upstream
# socket per client, bytes copied, no HTTP; plain-TCP scenarios only). Within a scenario the rounds are interleaved (weir nginx haproxy, weir nginx
# haproxy, ...) so drift hits every proxy alike; the tables show medians over rounds.
# Everything binds 127.0.0.1 and every child is stopped on exit.
#
# usage: bench/run.sh [options] [scenario...]      (default: all)
#   scenarios: idle-10k h1-64 h1-1024 h1-close h1-1mib tls-h1 tls-h2 h2c weight-flip direct all
#   --rounds 3  --duration 5 (s per run)  --warmup 1 (s per proxy and scenario, not counted)
#   --targets weir,nginx,haproxy,relay (also weir-fleet: weir with [fleet] on a 3-member etcd)
#   --pin     proxies on CPU 0 (taskset), load generators and backends on the other CPUs  --workers 2  --wrk-threads 2  --h2-conns 32  --h2-streams 8
#   --idle-conns 10000  --flip-rate 10 (weight changes per second)
#   --build-dir DIR (use DIR as built; default: build Release into ./build-rel)  --no-build
#   --out-dir DIR (default bench/results: latest.md, latest.png, latest-rps.dat, latest-cpu.dat)
#   --smoke   CI check of the script itself: ./build as is, 1 round of 1 s, a few scenarios
set -euo pipefail
shopt -s inherit_errexit

here=$(cd "$(dirname "$0")/.." && pwd)
# idle-10k first: before any load has grown the proxies' heaps, RSS growth is per connection.
all_scenarios=(idle-10k h1-64 h1-1024 h1-close h1-1mib tls-h1 tls-h2 h2c weight-flip direct)
smoke_scenarios=(idle-10k h1-64 tls-h2 weight-flip direct)
rounds=3
duration=5
warmup=1
targets=weir,nginx,haproxy,relay
pin=0
workers=2
wrk_threads=2
h2_conns=32
h2_streams=8
idle_conns=10000
flip_rate=10
build_dir=
do_build=1
out_dir=$here/bench/results
smoke=0
scenarios=()

usage() {
  awk '/^# usage:/ { on = 1 } on && !/^#/ { exit } on { sub(/^# ?/, ""); print }' "$0" >&2
  exit 2
}
declare -A plain_port tls_port h2c_port pid_of
current=  # the target under load, named by die() when it crashed
die() {
  echo "bench: $*" >&2
  local pid=${pid_of[${current:-none}]-} log
  if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
    log=$tmp/$current.log
    [ "$current" = nginx ] && log=$tmp/nginx/error.log
    mkdir -p "$out_dir" && cp "$log" "$out_dir/$current-crash.log" 2>/dev/null || true
    echo "bench: $current exited during the bench; its log is in $out_dir/$current-crash.log:" >&2
    tail -20 "$log" >&2 2>/dev/null || true
  fi
  exit 1
}
note() { echo "bench: $*" >&2; }
posint() { [[ $2 =~ ^[1-9][0-9]*$ ]] || { echo "bench: $1 wants a positive integer" >&2; usage; }; }

while [ $# -gt 0 ]; do
  case $1 in
    -h | --help) usage ;;
    --smoke) smoke=1; shift; continue ;;
    --no-build) do_build=0; shift; continue ;;
    --pin) pin=1; shift; continue ;;
    -*) [ $# -ge 2 ] || { echo "bench: $1 needs a value" >&2; usage; } ;;
    *) scenarios+=("$1"); shift; continue ;;
  esac
  case $1 in
    --rounds) posint "$1" "$2"; rounds=$2 ;;
    --duration) posint "$1" "$2"; duration=$2 ;;
    --warmup) [[ $2 =~ ^[0-9]+$ ]] || usage; warmup=$2 ;;
    --targets) targets=$2 ;;
    --workers) posint "$1" "$2"; workers=$2 ;;
    --wrk-threads) posint "$1" "$2"; wrk_threads=$2 ;;
    --h2-conns) posint "$1" "$2"; h2_conns=$2 ;;
    --h2-streams) posint "$1" "$2"; h2_streams=$2 ;;
    --idle-conns) posint "$1" "$2"; idle_conns=$2 ;;
    --flip-rate) posint "$1" "$2"; flip_rate=$2 ;;
    --build-dir) build_dir=$2 ;;
    --out-dir) out_dir=$2 ;;
    *) echo "bench: unknown option $1" >&2; usage ;;
  esac
  shift 2
done

if [ "$smoke" -eq 1 ]; then
  # Seconds in all: only proves that every piece of the script still works end to end.
  rounds=1 duration=1 warmup=0 idle_conns=200
  build_dir=${build_dir:-$here/build}
  [ ${#scenarios[@]} -gt 0 ] || scenarios=("${smoke_scenarios[@]}")
fi
[ ${#scenarios[@]} -gt 0 ] || scenarios=(all)
expanded=()
for s in "${scenarios[@]}"; do
  if [ "$s" = all ]; then expanded+=("${all_scenarios[@]}"); continue; fi
  [[ " ${all_scenarios[*]} " == *" $s "* ]] || die "unknown scenario '$s' (${all_scenarios[*]} all)"
  expanded+=("$s")
done
# Always in the order of all_scenarios, whatever the order asked.
scenarios=()
for s in "${all_scenarios[@]}"; do [[ " ${expanded[*]} " == *" $s "* ]] && scenarios+=("$s"); done
wants_scenario() { [[ " ${scenarios[*]} " == *" $1 "* ]]; }

IFS=, read -r -a target_list <<<"$targets"
for t in "${target_list[@]}"; do
  case $t in weir | weir-fleet | nginx | haproxy | relay) ;;
    *) die "unknown target '$t' (weir, weir-fleet, nginx, haproxy, relay)" ;;
  esac
done
wants() { [[ ",$targets," == *",$1,"* ]]; }
# wrk and h2load want at least one connection per thread; h1-1mib runs 16 connections.
[ "$wrk_threads" -le 16 ] || die "--wrk-threads: at most 16 (h1-1mib runs 16 connections)"
[ "$h2_conns" -ge "$wrk_threads" ] || die "--h2-conns must be at least --wrk-threads ($wrk_threads)"

# --- tools and binaries -------------------------------------------------------------------------
export PATH=$PATH:/usr/sbin
missing=()
for tool in wrk h2load curl openssl python3 pgrep gnuplot; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
wants nginx && { command -v nginx >/dev/null || missing+=(nginx); }
wants haproxy && { command -v haproxy >/dev/null || missing+=(haproxy); }
[ ${#missing[@]} -eq 0 ] ||
  die "missing ${missing[*]}: run scripts/setup.sh (wrk, nghttp2-client, nginx-light, haproxy, gnuplot-nox, ...)"

if [ -z "$build_dir" ]; then
  build_dir=$here/build-rel
  if [ "$do_build" -eq 1 ]; then
    note "building weir (Release) in $build_dir"
    launcher=()
    command -v ccache >/dev/null &&
      launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
    cmake -S "$here" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" >/dev/null ||
      die "cmake configure of $build_dir failed"
    cmake --build "$build_dir" --target weir weir-backend weir-relay >&2 || die "build of $build_dir failed"
  fi
fi
weir_bin=$build_dir/weir
backend_bin=$build_dir/weir-backend
relay_bin=$build_dir/weir-relay
[ -x "$backend_bin" ] || die "no weir-backend at $backend_bin (build it, or pass --build-dir)"
{ wants weir || wants weir-fleet; } &&
  { [ -x "$weir_bin" ] || die "no weir at $weir_bin (build it, or pass --build-dir)"; }
wants relay && { [ -x "$relay_bin" ] || die "no weir-relay at $relay_bin (build it, or pass --build-dir)"; }
wants weir-fleet && { command -v etcd >/dev/null || die "the weir-fleet target needs etcd: run scripts/setup.sh (etcd-server)"; }
if [ "${#target_list[@]}" -eq 0 ] && [ "${scenarios[*]}" != direct ]; then die "no targets"; fi

# 10k idle connections need 10k descriptors in the helper and in the proxy, plus headroom.
maxconn=$((idle_conns + 1024))
# Idle upstream connections a worker keeps: enough for h1-1024, so that no proxy churns backend
# connections (haproxy keeps every one by default; weir's default is 128, nginx has no default).
upstream_idle=1024
fd_need=$((maxconn + 1024))
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fd_limit=$(ulimit -n)
if wants_scenario idle-10k && [ "$fd_limit" != unlimited ] && [ "$fd_limit" -lt "$fd_need" ]; then
  die "idle-10k needs $fd_need file descriptors, the hard limit is $(ulimit -Hn): raise it or lower --idle-conns"
fi
[ "$fd_limit" = unlimited ] && fd_limit=1048576

# --pin: every proxy on CPU 0, the rest of the bench on the other CPUs.
proxy_cpu=() rest_cpu=()
if [ "$pin" -eq 1 ]; then
  command -v taskset >/dev/null || die "--pin needs taskset (util-linux)"
  [ "$(nproc)" -ge 2 ] || die "--pin needs at least 2 CPUs"
  proxy_cpu=(taskset -c 0) rest_cpu=(taskset -c "1-$(($(nproc) - 1))")
fi

# --- process bookkeeping ------------------------------------------------------------------------
tmp=$(mktemp -d /tmp/weir-bench.XXXXXX)
chmod 755 "$tmp" # nginx workers run as another user
# shellcheck source=bench/cleanup.sh
. "$(dirname "$0")/cleanup.sh"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits (bounded) until a line matching $2 appears in log $1 of process $3; prints the line.
wait_line() {
  local log=$1 pattern=$2 pid=$3 name=$4 line
  for _ in $(seq 150); do
    line=$(grep -m1 -E "$pattern" "$log" 2>/dev/null) && { echo "$line"; return 0; }
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; die "$name exited during startup (log above)"; }
    sleep 0.1
  done
  cat "$log" >&2
  die "$name did not print '$pattern' within 15 s"
}

# Dies when target $1's process has exited (crashed) during the bench.
alive_or_die() {
  [ -z "${pid_of[$1]-}" ] || kill -0 "${pid_of[$1]}" 2>/dev/null || die "$1 is gone"
}

# Waits (bounded) until a request to $1 succeeds; $2 is the process that must stay alive.
wait_http() {
  local url=$1 pid=$2 name=$3 log=$4
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2 2>/dev/null; die "$name exited during startup (log above)"; }
    curl -kfsS -o /dev/null -m 1 "$url" 2>/dev/null && return 0
    sleep 0.1
  done
  cat "$log" >&2 2>/dev/null
  die "$name did not answer on $url within 10 s"
}

# A process and all its descendants (nginx's master and workers).
proc_tree() {
  local queue=("$@") pid
  while [ ${#queue[@]} -gt 0 ]; do
    pid=${queue[0]}
    queue=("${queue[@]:1}")
    [ -d "/proc/$pid" ] || continue
    echo "$pid"
    for child in $(pgrep -P "$pid" 2>/dev/null); do queue+=("$child"); done
  done
}

# Sum of utime+stime (clock ticks) over a process tree; /proc/PID/stat counts every thread.
cpu_ticks() {
  local total=0 pid stat fields
  for pid in $(proc_tree "$@"); do
    if stat=$(cat "/proc/$pid/stat" 2>/dev/null); then
      read -r -a fields <<<"${stat##*) }" # the name field may hold spaces
      total=$((total + fields[11] + fields[12]))
    fi
  done
  echo "$total"
}

# Sum of VmRSS (KiB) over a process tree.
rss_kib() {
  local total=0 pid kib
  for pid in $(proc_tree "$@"); do
    kib=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) || kib=0
    total=$((total + ${kib:-0}))
  done
  echo "$total"
}

# Prints "connections requests green_requests" of both backends (their /__stats).
backend_counts() {
  local port c r tc=0 tr=0
  for port in "$blue_port" "$green_port"; do
    read -r c r <<<"$(curl -fsS -m 2 "http://127.0.0.1:$port/__stats" |
      sed -n 's/.*"connections":\([0-9]*\).*"requests":\([0-9]*\).*/\1 \2/p')"
    tc=$((tc + ${c:-0})) tr=$((tr + ${r:-0}))
  done
  echo "$tc $tr ${r:-0}"
}

# --- backends and certificate -------------------------------------------------------------------
start_backend() {
  local name=$1 log=$tmp/$1.log line
  "${rest_cpu[@]}" "$backend_bin" --name "$name" --host 127.0.0.1 --port 0 --threads 1 >"$log" 2>&1 &
  pids+=($!)
  backend_pid=$!
  line=$(wait_line "$log" "^backend $name listening on " "$backend_pid" "backend $name")
  backend_port=${line##*:}
}
start_backend blue
blue_port=$backend_port blue_pid=$backend_pid
start_backend green
green_port=$backend_port green_pid=$backend_pid

# One self-signed ECDSA P-256 certificate for every proxy's TLS listener.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench.local \
  -addext subjectAltName=DNS:bench.local -keyout "$tmp/bench.key" -out "$tmp/bench.crt" 2>/dev/null ||
  die "openssl could not make a certificate"
cat "$tmp/bench.crt" "$tmp/bench.key" >"$tmp/bench.pem" # haproxy wants both in one file

# --- proxies: one process each, with a plain, a TLS (h2 + http/1.1) and an h2c listener ----------
admin_addr=
admin_token=
fleet_toml= # the [fleet] table of the weir-fleet target, once its etcd runs

# start_weir [TARGET]: weir (the default) or weir-fleet (the same config plus fleet_toml). The
# weir target's admin address and token are the weight-flip scenario's.
start_weir() {
  local t=${1:-weir} token digest log line fleet=
  log=$tmp/$t.log
  [ "$t" = weir-fleet ] && fleet=$fleet_toml
  token=$(openssl rand -hex 16)
  digest=$(printf %s "$token" | sha256sum | cut -d' ' -f1)
  printf '[[token]]\nname = "bench"\nscope = "write"\nsha256 = "%s"\n' "$digest" >"$tmp/$t-tokens.toml"
  cat >"$tmp/$t.toml" <<EOF
[proxy]
workers = $workers
upstream_max_idle = $upstream_idle

[admin]
address = "127.0.0.1:0"
tokens_file = "$tmp/$t-tokens.toml"
state_dir = "$tmp/$t-state"
$fleet
[[listener]]
name = "plain"
address = "127.0.0.1:0"

[[listener]]
name = "tls"
address = "127.0.0.1:0"
protocols = ["h2", "http1"]
  [[listener.tls.certificate]]
  cert = "$tmp/bench.crt"
  key = "$tmp/bench.key"

[[listener]]
name = "h2c"
address = "127.0.0.1:0"
protocols = ["h2c"]

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
listener = "plain"
service = "app"
[[route]]
listener = "tls"
service = "app"
[[route]]
listener = "h2c"
service = "app"
EOF
  "${proxy_cpu[@]}" "$weir_bin" --config "$tmp/$t.toml" >"$log" 2>&1 &
  pids+=($!)
  pid_of[$t]=$!
  wait_line "$log" "weir: ready" "${pid_of[$t]}" "$t" >/dev/null
  line=$(wait_line "$log" "weir: listener plain listening on " "${pid_of[$t]}" "$t")
  plain_port[$t]=${line##*:}
  line=$(wait_line "$log" "weir: listener tls listening on " "${pid_of[$t]}" "$t")
  tls_port[$t]=${line##*:}
  line=$(wait_line "$log" "weir: listener h2c listening on " "${pid_of[$t]}" "$t")
  h2c_port[$t]=${line##*:}
  if [ "$t" = weir ]; then
    line=$(wait_line "$log" "weir: admin listening on " "${pid_of[$t]}" "$t")
    admin_addr=${line##* } admin_token=$token
  fi
}

# A 3-member etcd on free ports (data in $tmp/etcd), waited for until every member has a leader;
# sets fleet_toml. Its CPU is not the proxy's: measure() counts weir's process tree only.
start_etcd() {
  local i peers=() clients=() initial=
  for i in 1 2 3; do
    clients[i]=$(free_port) peers[i]=$(free_port)
    initial+="${initial:+,}m$i=http://127.0.0.1:${peers[i]}"
  done
  for i in 1 2 3; do
    etcd --name "m$i" --data-dir "$tmp/etcd/m$i" --logger zap --log-outputs stderr \
      --listen-client-urls "http://127.0.0.1:${clients[i]}" --advertise-client-urls "http://127.0.0.1:${clients[i]}" \
      --listen-peer-urls "http://127.0.0.1:${peers[i]}" --initial-advertise-peer-urls "http://127.0.0.1:${peers[i]}" \
      --initial-cluster "$initial" --initial-cluster-token "weir-bench-$$" --initial-cluster-state new \
      >"$tmp/etcd-m$i.log" 2>&1 &
    pids+=($!)
    pid_of[etcd-m$i]=$!
  done
  for i in 1 2 3; do
    for _ in $(seq 150); do
      curl -fsS -m 1 "http://127.0.0.1:${clients[i]}/health" 2>/dev/null | grep -q '"health":"true"' && continue 2
      kill -0 "${pid_of[etcd-m$i]}" 2>/dev/null || { cat "$tmp/etcd-m$i.log" >&2; die "etcd m$i exited during startup (log above)"; }
      sleep 0.1
    done
    cat "$tmp/etcd-m$i.log" >&2
    die "etcd m$i did not become healthy within 15 s"
  done
  fleet_toml="[fleet]
store = \"etcd\"
endpoints = [\"http://127.0.0.1:${clients[1]}\", \"http://127.0.0.1:${clients[2]}\", \"http://127.0.0.1:${clients[3]}\"]
prefix = \"/weir/bench-$$/\"
replica = \"bench\"
"
}

start_weir-fleet() {
  start_etcd
  start_weir weir-fleet
}

start_nginx() {
  local d=$tmp/nginx
  plain_port[nginx]=$(free_port) tls_port[nginx]=$(free_port) h2c_port[nginx]=$(free_port)
  mkdir -p "$d"
  chmod 755 "$d"
  # keepalive (idle upstream connections kept per worker): as weir's upstream_max_idle.
  # keepalive_requests: nginx closes a keep-alive connection after 1000 requests by default
  # (client and upstream side); weir and haproxy do not. proxy_max_temp_file_size 0: stream
  # large responses through memory buffers instead of spooling them to disk.
  cat >"$d/nginx.conf" <<EOF
worker_processes $workers;
worker_rlimit_nofile $fd_limit;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections $maxconn; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  client_body_temp_path $d/body;
  proxy_temp_path $d/proxy;
  fastcgi_temp_path $d/fastcgi;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_certificate $tmp/bench.crt;
  ssl_certificate_key $tmp/bench.key;
  upstream app {
    server 127.0.0.1:$blue_port weight=9;
    server 127.0.0.1:$green_port weight=1;
    keepalive $upstream_idle;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${plain_port[nginx]};
    listen 127.0.0.1:${tls_port[nginx]} ssl http2;
    listen 127.0.0.1:${h2c_port[nginx]} http2;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_max_temp_file_size 0;
    }
  }
}
EOF
  # -e: without it nginx opens its compiled-in error log before reading the config.
  "${proxy_cpu[@]}" nginx -e "$d/error.log" -c "$d/nginx.conf" -p "$d" -g 'daemon off;' >"$d/stdout.log" 2>&1 &
  pids+=($!)
  pid_of[nginx]=$!
}

start_haproxy() {
  plain_port[haproxy]=$(free_port) tls_port[haproxy]=$(free_port) h2c_port[haproxy]=$(free_port)
  cat >"$tmp/haproxy.cfg" <<EOF
global
  nbthread $workers
  maxconn $maxconn
  # haproxy sizes its descriptor need as 2 x maxconn (client + server side) and by default
  # refuses to start when the hard limit is lower; idle clients need only one each.
  no strict-limits
  ssl-default-bind-options ssl-min-ver TLSv1.2

defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s

frontend bench
  bind 127.0.0.1:${plain_port[haproxy]}
  bind 127.0.0.1:${tls_port[haproxy]} ssl crt $tmp/bench.pem alpn h2,http/1.1
  bind 127.0.0.1:${h2c_port[haproxy]} proto h2
  default_backend app

backend app
  balance roundrobin
  server blue 127.0.0.1:$blue_port weight 90
  server green 127.0.0.1:$green_port weight 10
EOF
  "${proxy_cpu[@]}" haproxy -f "$tmp/haproxy.cfg" -db >"$tmp/haproxy.log" 2>&1 &
  pids+=($!)
  pid_of[haproxy]=$!
}

# The floor: plain TCP only, 9 of 10 client connections to blue (the others' 90/10 by request).
start_relay() {
  local log=$tmp/relay.log line ups=() i
  for i in $(seq 9); do ups+=(--upstream "127.0.0.1:$blue_port"); done
  ups+=(--upstream "127.0.0.1:$green_port")
  "${proxy_cpu[@]}" "$relay_bin" --threads "$workers" "${ups[@]}" >"$log" 2>&1 &
  pids+=($!)
  pid_of[relay]=$!
  line=$(wait_line "$log" "^relay listening on " "${pid_of[relay]}" relay)
  plain_port[relay]=${line##*:}
}
# Targets that serve scenario $2: the relay speaks no TLS and no HTTP/2.
serves() {
  [ "$1" = relay ] || return 0
  case $2 in tls-h1 | tls-h2 | h2c | idle-10k) return 1 ;; esac
}

for t in "${target_list[@]}"; do "start_$t"; done
for t in "${target_list[@]}"; do
  log=$tmp/$t.log
  [ "$t" = nginx ] && log=$tmp/nginx/error.log
  wait_http "http://127.0.0.1:${plain_port[$t]}/" "${pid_of[$t]}" "$t" "$log"
  [ "$t" = relay ] || wait_http "https://127.0.0.1:${tls_port[$t]}/" "${pid_of[$t]}" "$t" "$log"
done

# --- load generators ----------------------------------------------------------------------------
# Both print "requests duration_us p50_us p99_us p999_us errors".
cat >"$tmp/report.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WEIRBENCH %d %d %.0f %.0f %.0f %d\n", summary.requests,
    summary.duration, latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    e.connect + e.read + e.write + e.status + e.timeout))
end
EOF

# wrk's errors: connect, read, write, timeout and responses with status >= 400.
load_wrk() {
  local url=$1 conns=$2 secs=$3 out
  shift 3
  out=$(timeout $((secs + 30)) "${rest_cpu[@]}" wrk -t"$wrk_threads" -c"$conns" -d"${secs}s" -s "$tmp/report.lua" "$@" "$url" 2>&1) ||
    die "wrk against $url failed: $out"
  awk '$1 == "WEIRBENCH" { print $2, $3, $4, $5, $6, $7; found = 1 } END { exit !found }' <<<"$out" ||
    die "wrk printed no summary: $out"
}

# h2load reports only min/mean/max latency; the percentiles come from its per-request log.
# Errors: failed, errored and timed-out requests, and responses with status >= 400.
load_h2() {
  local url=$1 conns=$2 streams=$3 secs=$4 out log=$tmp/h2load.log
  rm -f "$log"
  out=$(timeout $((secs + 30)) "${rest_cpu[@]}" h2load -t"$wrk_threads" -c"$conns" -m"$streams" -D"$secs" \
    --log-file="$log" "$url" 2>&1) || die "h2load against $url failed: $out"
  local summary pct
  summary=$(awk '
    /^finished in / { secs = ($3 ~ /ms,$/) ? $3 / 1000 : $3 + 0 }
    /^requests: / { done = $6; errs = $10 + $12 + $14 }
    /^status codes: / { errs += $7 + $9 }
    END { if (done == "") exit 1; printf "%d %.0f %d\n", done, secs * 1e6, errs }' <<<"$out") ||
    die "h2load printed no summary: $out"
  pct=$(cut -f3 "$log" | sort -n | awk '{ v[NR] = $1 }
    function at(p,  i) { i = int(p * NR + 0.999999); if (i < 1) i = 1; return v[i] }
    END { if (NR == 0) print "0 0 0"; else print at(0.5), at(0.99), at(0.999) }')
  read -r r d e <<<"$summary"
  read -r p50 p99 p999 <<<"$pct"
  echo "$r $d $p50 $p99 $p999 $e"
}

# --- scenarios ------------------------------------------------------------------------------
clk_tck=$(getconf CLK_TCK)

# load SCENARIO TARGET SECS: runs the scenario's load once against the target.
load() {
  local s=$1 t=$2 secs=$3 p=${plain_port[$2]-}
  current=$t
  case $s in
    h1-64 | weight-flip) load_wrk "http://127.0.0.1:$p/" 64 "$secs" ;;
    direct) load_wrk "http://127.0.0.1:$blue_port/" 64 "$secs" ;;
    h1-1024) load_wrk "http://127.0.0.1:$p/" 1024 "$secs" ;;
    h1-close) load_wrk "http://127.0.0.1:$p/" 64 "$secs" -H "Connection: close" ;;
    h1-1mib) load_wrk "http://127.0.0.1:$p/bytes/1048576" 16 "$secs" ;;
    tls-h1) load_wrk "https://127.0.0.1:${tls_port[$t]}/" 64 "$secs" ;;
    tls-h2) load_h2 "https://127.0.0.1:${tls_port[$t]}/" "$h2_conns" "$h2_streams" "$secs" ;;
    h2c) load_h2 "http://127.0.0.1:${h2c_port[$t]}/" "$h2_conns" "$h2_streams" "$secs" ;;
  esac
}

# measure SCENARIO TARGET: one counted run. Prints "rps p50_ms p99_ms p999_ms errors
# cpu_us_per_req rss_mib upstream_conns green_share" ("-" where it does not apply).
measure() {
  local s=$1 t=$2 pid=${pid_of[$2]-} c0=0 c1=0 bc0 br0 bc1 br1 g0 g1 out rss=-
  [ -n "$pid" ] && c0=$(cpu_ticks "$pid")
  read -r bc0 br0 g0 <<<"$(backend_counts)"
  out=$(load "$s" "$t" "$duration")
  alive_or_die "$t"
  [ -n "$pid" ] && { c1=$(cpu_ticks "$pid"); rss=$(rss_kib "$pid"); }
  read -r bc1 br1 g1 <<<"$(backend_counts)"
  # The /__stats requests above open one backend connection each; they are not counted.
  awk -v hz="$clk_tck" -v ticks=$((c1 - c0)) -v has_pid="${pid:+1}" -v rss="$rss" \
    -v conns=$((bc1 - bc0 - 2)) -v sent=$((br1 - br0 - 2)) -v green=$((g1 - g0 - 1)) '
    { reqs = $1; secs = $2 / 1e6
      cpu = (has_pid && reqs > 0) ? sprintf("%.1f", ticks * 1e6 / hz / reqs) : "-"
      mib = (rss == "-") ? "-" : sprintf("%.1f", rss / 1024)
      share = sent > 0 ? sprintf("%.1f", 100 * green / sent) : "-"
      printf "%.0f %.2f %.2f %.2f %d %s %s %d %s\n", reqs / secs, $3 / 1000, $4 / 1000, $5 / 1000,
        $6, cpu, mib, conns, share }' <<<"$out"
}

declare -A results # "scenario/target" -> one line per round

# Interleaved rounds of a load scenario over the given targets.
run_load_scenario() {
  local s=$1 t r line served=()
  shift
  for t in "$@"; do serves "$t" "$s" && served+=("$t"); done
  set -- "${served[@]}"
  if [ "$warmup" -gt 0 ]; then
    for t in "$@"; do load "$s" "$t" "$warmup" >/dev/null; done
  fi
  for r in $(seq "$rounds"); do
    for t in "$@"; do
      line=$(measure "$s" "$t")
      results[$s/$t]+="$line"$'\n'
      awk -v s="$s" -v t="$t" -v r="$r" '{ printf "bench: %-11s round %d %-8s %9.0f req/s  p99 %7.2f ms  errors %d\n", s, r, t, $1, $3, $5 }' <<<"$line" >&2
    done
  done
}

# idle-10k: the proxy's RSS before and while it holds N idle keep-alive connections.
# Sets idle_line to "rss_before_mib rss_idle_mib kib_per_conn" (no subshell: the helper's pid
# must reach the cleanup list).
measure_idle() {
  local t=$1 pid=${pid_of[$1]} before after helper out=$tmp/idle.out stop=$tmp/idle.stop
  current=$t
  rm -f "$stop" "$out"
  before=$(rss_kib "$pid")
  python3 "$here/bench/idle_conns.py" 127.0.0.1 "${plain_port[$t]}" "$idle_conns" "$stop" \
    --timeout 90 --hold 120 >"$out" 2>&1 &
  helper=$!
  pids+=("$helper")
  for _ in $(seq 1000); do
    grep -q '^ready' "$out" 2>/dev/null && break
    kill -0 "$helper" 2>/dev/null || break
    sleep 0.1
  done
  alive_or_die "$t"
  grep -q '^ready' "$out" || { cat "$out" >&2; die "$t: could not hold $idle_conns idle connections"; }
  sleep 0.5 # let the proxy finish its per-connection work
  after=$(rss_kib "$pid")
  alive_or_die "$t"
  touch "$stop"
  wait "$helper" || true
  sleep 0.5 # the proxy sees the closes before the next measurement
  idle_line=$(awk -v b="$before" -v a="$after" -v n="$idle_conns" \
    'BEGIN { printf "%.1f %.1f %.1f\n", b / 1024, a / 1024, (a - b) / n }')
}

# One pass, whatever --rounds says: memory freed by a first pass stays in the heap, so a second
# pass would find its connections' memory already resident.
run_idle_scenario() {
  local t
  for t in "$@"; do
    measure_idle "$t"
    results[idle-10k/$t]=$idle_line
    awk -v t="$t" -v n="$idle_conns" '{ printf "bench: idle-10k    %-8s %d conns: RSS %.1f -> %.1f MiB, %.1f KiB/conn\n", t, n, $1, $2, $3 }' <<<"$idle_line" >&2
  done
}

# weight-flip: weir's weights flip between blue 90/green 10 and blue 10/green 90 at --flip-rate
# per second through the admin API (If-Match: *) while wrk runs; every request must succeed.
flip_loop() {
  local stop=$1 ok=0 failed=0 i=0 code body next now wait_us
  local period_us=$((1000000 / flip_rate))
  next=${EPOCHREALTIME/./}
  while [ ! -e "$stop" ]; do
    if ((i % 2)); then body='{"blue": 90, "green": 10}'; else body='{"blue": 10, "green": 90}'; fi
    code=$(curl -s -o /dev/null -w '%{http_code}' -m 2 -X PUT "http://$admin_addr/api/v1/services/app/weights" \
      -H "Authorization: Bearer $admin_token" -H 'If-Match: *' -H 'Content-Type: application/json' \
      --data "{\"weights\": $body, \"reason\": \"bench weight-flip\"}") || true
    if [ "$code" = 200 ]; then ok=$((ok + 1)); else failed=$((failed + 1)); fi
    i=$((i + 1))
    next=$((next + period_us))
    now=${EPOCHREALTIME/./}
    wait_us=$((next - now))
    if [ "$wait_us" -gt 0 ]; then sleep "$((wait_us / 1000000)).$(printf %06d $((wait_us % 1000000)))"; fi
  done
  echo "$ok $failed"
}

run_flip_scenario() {
  local r line flips stop=$tmp/flip.stop
  for r in $(seq "$rounds"); do
    rm -f "$stop"
    flip_loop "$stop" >"$tmp/flip.out" &
    pids+=($!)
    local flipper=$!
    line=$(measure weight-flip weir)
    touch "$stop"
    wait "$flipper" || true
    read -r -a flips <"$tmp/flip.out"
    line="$line ${flips[0]:-0} ${flips[1]:-0}"
    results[weight-flip/weir]+="$line"$'\n'
    awk -v r="$r" '{ printf "bench: weight-flip round %d weir     %9.0f req/s  errors %d  flips %d ok %d failed  green %s%%\n", r, $1, $5, $10, $11, $9 }' <<<"$line" >&2
  done
  # Back to the configured weights for any scenario that follows.
  curl -fsS -o /dev/null -m 5 -X PUT "http://$admin_addr/api/v1/services/app/weights" \
    -H "Authorization: Bearer $admin_token" -H 'If-Match: *' \
    --data '{"weights": {"blue": 90, "green": 10}, "reason": "bench weight-flip done"}' ||
    die "could not restore weir's weights"
}

started=$SECONDS
note "scenarios ${scenarios[*]}; targets ${target_list[*]}; $rounds rounds x ${duration}s"
for s in "${scenarios[@]}"; do
  case $s in
    direct) run_load_scenario direct direct ;;
    idle-10k) run_idle_scenario $(for t in "${target_list[@]}"; do serves "$t" idle-10k && echo "$t"; done) ;;
    weight-flip)
      if wants weir; then run_flip_scenario; else note "weight-flip skipped: it needs the weir target"; fi ;;
    *) run_load_scenario "$s" "${target_list[@]}" ;;
  esac
done

# --- report -----------------------------------------------------------------------------------
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# col SCENARIO/TARGET N: the median of column N over the rounds ("-" when not numeric).
col() {
  awk -v n="$2" 'NF && $n != "-" { print $n }' <<<"${results[$1]-}" | median
}
# num FORMAT VALUE: printf, but "-" stays "-".
num() { if [ "$2" = - ]; then echo -; else printf "$1" "$2"; fi; }
total() { awk -v n="$2" 'NF { s += $n } END { print s + 0 }' <<<"${results[$1]-}"; }

declare -A describe=(
  [h1-64]="HTTP/1.1 keep-alive, wrk -t$wrk_threads -c64, GET / (small response)"
  [h1-1024]="HTTP/1.1 keep-alive, wrk -t$wrk_threads -c1024, GET /"
  [h1-close]="HTTP/1.1, a new connection per request (wrk -c64 -H 'Connection: close')"
  [h1-1mib]="HTTP/1.1 keep-alive, 1 MiB responses (GET /bytes/1048576), wrk -t$wrk_threads -c16"
  [tls-h1]="HTTP/1.1 over TLS (ECDSA P-256, no ALPN, keep-alive), wrk -t$wrk_threads -c64"
  [tls-h2]="HTTP/2 over TLS (ALPN h2), h2load -t$wrk_threads -c$h2_conns -m$h2_streams"
  [h2c]="HTTP/2 prior knowledge (h2c), h2load -t$wrk_threads -c$h2_conns -m$h2_streams"
  [direct]="wrk -t$wrk_threads -c64 straight at the blue backend: the physical limit of this box"
  [weight-flip]="weir only: wrk -c64 while the weights flip blue 90/10 <-> 10/90 $flip_rate times a second (admin API, If-Match: *)"
)

report() {
  local s t name
  echo "# weir vs nginx vs haproxy ($(date -u +%Y-%m-%dT%H:%MZ))"
  echo
  echo "$(nproc) cores ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)); load generator, proxies and" \
    "backends all on 127.0.0.1. ${duration} s x $rounds interleaved rounds, medians." \
    "Each proxy has $workers workers, upstream keep-alive, access log off, TLS 1.2/1.3 with the same" \
    "ECDSA P-256 certificate; backends: weir-backend blue (weight 90) and green (weight 10), 1 thread each." \
    "$("$weir_bin" --version 2>/dev/null | head -1 || echo "weir ?"), nginx $(nginx -v 2>&1 | sed 's/.*nginx\///')," \
    "haproxy $(haproxy -v | sed -n '1s/HAProxy version \([^ ]*\).*/\1/p')."
  echo
  echo "CPU = utime+stime of every process and thread of the proxy during the run (clock tick" \
    "$((1000 / clk_tck)) ms) / requests completed; RSS = VmRSS summed over its processes, after the" \
    "run. Errors: connect/read/write/timeout and status >= 400. Upstream conns = backend" \
    "connections the proxy opened during the run (stays near the pool size with keep-alive)."
  for s in "${scenarios[@]}"; do
    echo
    echo "## $s"
    echo
    case $s in
      idle-10k)
        echo "$idle_conns idle HTTP/1.1 keep-alive connections (bench/idle_conns.py: one GET each, then idle)," \
          "one pass per proxy before any other load (a second pass would reuse memory the first freed)."
        echo
        echo "| proxy | RSS before (MiB) | RSS holding $idle_conns (MiB) | KiB per connection |"
        echo "|---|---:|---:|---:|"
        for t in "${target_list[@]}"; do
          serves "$t" idle-10k || continue
          printf '| %s | %s | %s | %s |\n' "$t" "$(col "$s/$t" 1)" "$(col "$s/$t" 2)" "$(col "$s/$t" 3)"
        done
        continue ;;
    esac
    echo "${describe[$s]}."
    echo
    local extra_h="" extra_a="" list=()
    for t in "${target_list[@]}"; do serves "$t" "$s" && list+=("$t"); done
    [ "$s" = direct ] && list=(direct)
    if [ "$s" = weight-flip ]; then
      wants weir || { echo "(skipped: needs the weir target)"; continue; }
      list=(weir) extra_h=" green share | flips ok | flips failed |" extra_a="---:|---:|---:|"
    fi
    echo "| target | req/s | p50 (ms) | p99 (ms) | p99.9 (ms) | CPU µs/req | RSS (MiB) | upstream conns | errors |$extra_h"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|$extra_a"
    for t in "${list[@]}"; do
      name=$t
      [ "$t" = direct ] && name="direct (blue backend)"
      [ "$t" = relay ] && name="relay (L4 floor)"
      printf '| %s | %.0f | %.2f | %.2f | %.2f | %s | %s | %.0f | %d |' "$name" "$(col "$s/$t" 1)" \
        "$(col "$s/$t" 2)" "$(col "$s/$t" 3)" "$(col "$s/$t" 4)" "$(num %.1f "$(col "$s/$t" 6)")" \
        "$(num %.1f "$(col "$s/$t" 7)")" "$(col "$s/$t" 8)" "$(total "$s/$t" 5)"
      if [ "$s" = weight-flip ]; then
        printf ' %s%% | %d | %d |' "$(num %.1f "$(col "$s/$t" 9)")" "$(total "$s/$t" 10)" "$(total "$s/$t" 11)"
      fi
      echo
    done
    if [[ " ${list[*]} " == *" relay "* ]]; then
      local floor ratios=() v
      floor=$(col "$s/relay" 6)
      for t in "${list[@]}"; do
        [ "$t" = relay ] && continue
        v=$(col "$s/$t" 6)
        [ "$floor" != - ] && [ "$v" != - ] &&
          ratios+=("$t $(awk -v a="$v" -v b="$floor" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')x")
      done
      [ ${#ratios[@]} -eq 0 ] || { echo; echo "CPU per request / the relay's: $(IFS=,; echo "${ratios[*]}" | sed 's/,/, /g')."; }
    fi
  done
}

# One row per load scenario, one column per proxy: $1 = column of the results (1 req/s, 6 CPU).
chart_data() {
  local s t v
  echo "scenario weir nginx haproxy relay direct"
  for s in "${scenarios[@]}"; do
    [ "$s" = idle-10k ] && continue
    printf '%s' "$s"
    for t in weir nginx haproxy relay direct; do
      v=$(col "$s/$t" "$1")
      printf ' %s' "${v:--}"
    done
    echo
  done
}

chart() {
  local png=$1 rps=$2 cpu=$3 n
  n=$(($(wc -l <"$rps") - 1)) # scenarios: clusters sit at x = 0 .. n-1 in both panels
  # Its warnings (a proxy left out leaves a column without data) only show when it fails.
  gnuplot 2>"$tmp/gnuplot.err" <<EOF || { cat "$tmp/gnuplot.err" >&2; return 1; }
set terminal pngcairo size 1200,900 font ",10"
set output "$png"
set datafile missing "-"
set style data histogram
set style histogram cluster gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key top right
set xtics rotate by -20
# Log scale: 1 MiB responses run at a few thousand requests/s, small ones at tens of thousands.
set logscale y
set xrange [-0.6:$n - 0.4]
set lmargin 10
set rmargin 3
set multiplot layout 2,1 title "weir vs nginx vs haproxy, $rounds x ${duration} s rounds (medians)"
set title "requests per second, log scale (higher is better)"
plot for [i=2:6] "$rps" using i:xtic(1) title columnheader(i)
set title "proxy CPU µs per request, log scale (lower is better)"
plot for [i=2:5] "$cpu" using i:xtic(1) title columnheader(i)
unset multiplot
EOF
}

mkdir -p "$out_dir"
report | tee "$out_dir/latest.md"
chart_data 1 >"$out_dir/latest-rps.dat"
chart_data 6 >"$out_dir/latest-cpu.dat"
chart "$out_dir/latest.png" "$out_dir/latest-rps.dat" "$out_dir/latest-cpu.dat" || die "gnuplot failed"
note "wrote $out_dir/latest.md and $out_dir/latest.png in $((SECONDS - started)) s"

# weight-flip is a correctness check too: a single failed request fails the run.
if wants_scenario weight-flip && wants weir; then
  flip_errors=$(total weight-flip/weir 5)
  [ "$flip_errors" -eq 0 ] || die "weight-flip: $flip_errors requests failed while the weights changed"
  [ "$(total weight-flip/weir 11)" -eq 0 ] || die "weight-flip: some weight changes were refused"
  [ "$(total weight-flip/weir 10)" -gt 0 ] || die "weight-flip: no weight change went through"
fi
