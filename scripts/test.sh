#!/usr/bin/env bash
# Runs every test (unit + integration) against the build in ./build (or $1); ctest prints the
# summary. Extra arguments go to ctest, e.g. `scripts/test.sh build -L unit`.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${1:-"$here/build"}
shift || true
cmake --build "$build_dir" -j"$(nproc)"
cd "$build_dir"
ctest --output-on-failure -j"$(nproc)" --timeout 300 "$@"
