#!/usr/bin/env bash
# Fuzzes each libFuzzer target of tests/fuzz/ for SECONDS (default 30; long campaigns: e.g.
# `scripts/fuzz.sh 3600`), two targets at a time, starting from the seed corpus in
# tests/fuzz/corpus/<target>/. New coverage goes to a scratch corpus (the tree keeps only the
# seeds and regression inputs). Any finding (crash, broken invariant, leak, timeout, OOM) fails
# the run; its input is copied into tests/fuzz/corpus/<target>/ as a regression input, to fix
# and commit (ctest -L fuzz replays every corpus file).
# Builds the targets first, in BUILD_DIR (default ./build-fuzz; clang, -DWEIR_FUZZ=ON).
# Usage: scripts/fuzz.sh [SECONDS] [BUILD_DIR] [TARGET...]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-30}
build_dir=${2:-"$here/build-fuzz"}
shift $(($# > 2 ? 2 : $#))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(h1_head chunked h2_session config_load admin_api routing)
jobs=${WEIR_FUZZ_JOBS:-2}

if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  CC=clang CXX=clang++ cmake -S "$here" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DWEIR_FUZZ=ON ${WEIR_CMAKE_ARGS:-} >/dev/null
fi
cmake --build "$build_dir" -j"$(nproc)" --target "${targets[@]/#/fuzz_}"

work=$(mktemp -d /tmp/weir-fuzz.XXXX)
trap 'rm -rf "$work"' EXIT

fuzz_one() {
  local t=$1 seeds="$here/tests/fuzz/corpus/$1" out="$work/$1"
  mkdir -p "$out/corpus" "$out/artifacts"
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb: 2 GiB is an OOM.
  if "$build_dir/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len=16384 -print_final_stats=1 -artifact_prefix="$out/artifacts/" \
    "$out/corpus" "$seeds" >"$out/log" 2>&1; then
    local runs
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out/log" | grep -o '[0-9]*$')
    echo "fuzz: $t: $runs runs in ${seconds} s, no finding"
    return 0
  fi
  echo "fuzz: $t: FINDING" >&2
  grep -v '^#[0-9]' "$out/log" | tail -60 >&2
  for a in "$out"/artifacts/*; do
    [ -f "$a" ] || continue
    local keep
    keep="$seeds/regression-$(sha1sum "$a" | cut -c1-16)"
    cp "$a" "$keep"
    echo "fuzz: $t: input kept as ${keep#"$here"/} (base64: $(head -c 600 "$a" | base64 -w0))" >&2
  done
  return 1
}

status=0
running=0
pids=()
for t in "${targets[@]}"; do
  fuzz_one "$t" &
  pids+=($!)
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait "${pids[0]}" || status=1
    pids=("${pids[@]:1}")
    running=$((running - 1))
  fi
done
for p in "${pids[@]}"; do wait "$p" || status=1; done
[ "$status" -eq 0 ] && echo "fuzz: ${#targets[@]} targets, no finding"
exit "$status"
