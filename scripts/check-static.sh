#!/usr/bin/env bash
# Static analysis, clean or failing: clang-tidy with the checked-in .clang-tidy over weir's
# sources (config/ routing/ health/ proxy/ bench/ and the fuzz targets), in parallel, and
# cppcheck over config/ routing/ health/ proxy/ bench/.
# BUILD_DIR (default ./build) provides compile_commands.json; configure it first (any compiler).
# Usage: scripts/check-static.sh [BUILD_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${1:-"$here/build"}
[ -f "$build_dir/compile_commands.json" ] ||
  {
    echo "check-static: no $build_dir/compile_commands.json (configure $build_dir first)" >&2
    exit 2
  }
# The dashboard page is generated at build time; clang-tidy needs it to exist.
cmake --build "$build_dir" --target generated/dashboard_page.cc >/dev/null

status=0
start=$SECONDS
# run-clang-tidy exits non-zero when a file has a finding (WarningsAsErrors: '*').
run-clang-tidy -p "$build_dir" -j "$(nproc)" -quiet \
  "^$here/(config|routing|health|proxy|bench|tests/fuzz)/" >"$build_dir/clang-tidy.log" 2>&1 ||
  status=1
grep -E '(error|warning): ' "$build_dir/clang-tidy.log" | sort -u || true
verdict() { if [ "$1" -eq 0 ]; then echo clean; else echo "FOUND ISSUES"; fi; }
echo "check-static: clang-tidy $(verdict $status) in $((SECONDS - start)) s"

start=$SECONDS
c=0
# Suppressed: missingIncludeSystem (cppcheck is not given the system headers; the compilers
# check those), and uninitMemberVar for read buffers, which recv fills before anything reads.
cppcheck --std=c++20 --language=c++ --enable=warning,performance,portability --inline-suppr \
  --suppress=missingIncludeSystem --suppress='uninitMemberVar:*/proxy/admin_server.cc' \
  --error-exitcode=1 --quiet -j "$(nproc)" -I "$here" \
  --template='{file}:{line}:{column}: {severity}: {message} [{id}]' \
  "$here/config" "$here/routing" "$here/health" "$here/proxy" "$here/bench" || c=1
echo "check-static: cppcheck $(verdict $c) in $((SECONDS - start)) s"
[ $c -eq 0 ] || status=1
exit "$status"
