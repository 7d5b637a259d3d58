# Sourced by the bench scripts after they set $tmp: every process whose pid they add to `pids`
# is stopped on exit (TERM, then KILL after 12 s: weir drains for up to 10 s), and $tmp goes.
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]-}"; do [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]-}"; do
    [ -n "$pid" ] || continue
    for _ in $(seq 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
