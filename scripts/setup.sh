#!/usr/bin/env bash
# Installs everything weir's build, tests and bench need (Debian 12), then builds.
# Idempotent: a second run installs nothing new and rebuilds incrementally.
# Usage: scripts/setup.sh [--deps] [--no-build] [BUILD_DIR]   (BUILD_DIR defaults to ./build)
#   --deps      only what building the shipped binaries (weir, weirctl, weir-backend) needs, and
#               build only those (the container image's build stage)
#   --no-build  install, do not build
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
build=1
deps_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0; shift ;;
    --deps) deps_only=1; shift ;;
    -*)
      echo "setup: unknown option $1" \
        "(usage: scripts/setup.sh [--deps] [--no-build] [BUILD_DIR])" >&2
      exit 2
      ;;
    *) break ;;
  esac
done
build_dir=${1:-"$here/build"}

# Building weir, weirctl and weir-backend.
build_packages=(
  build-essential cmake pkg-config ninja-build
  libuv1-dev node-llhttp libssl-dev libnghttp2-dev prometheus-cpp-dev
  libtomlplusplus-dev nlohmann-json3-dev
)
# Tests, CI checks and the bench.
test_packages=(
  doctest-dev
  curl nghttp2-client wrk nginx-light haproxy python3 procps docker-compose yamllint openssl
  python3-h2 python3-prometheus-client python3-grpcio
  gnuplot-nox  # bench/run.sh's chart
  chromium     # headless, for tests/integration/test_dashboard.py
  etcd-server etcd-client  # fleet mode: tests start a real 3-member cluster
  prometheus   # promtool, and a real Prometheus for the KPI and scrape tests
  ccache       # rebuilds (CMake uses it when present)
  clang libclang-rt-14-dev  # the clang build, libFuzzer and the sanitizers' runtimes (CI)
  clang-tidy cppcheck       # static analysis (scripts/check-static.sh)
)
packages=("${build_packages[@]}")
[ "$deps_only" -eq 1 ] || packages+=("${test_packages[@]}")

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  echo "setup: installing ${missing[*]}"
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
    --no-install-recommends "${missing[@]}"
  # The nginx package starts a system nginx on port 80; weir's bench runs its own instances.
  if command -v systemctl >/dev/null 2>&1; then
    "${sudo_cmd[@]}" systemctl disable --now nginx haproxy >/dev/null 2>&1 || true
  fi
fi

[ "$build" -eq 1 ] || exit 0
configure=(cmake -S "$here" -B "$build_dir" -G Ninja
  -DCMAKE_BUILD_TYPE="${WEIR_BUILD_TYPE:-RelWithDebInfo}")
if [ "$deps_only" -eq 1 ]; then
  "${configure[@]}" -DWEIR_TESTS=OFF ${WEIR_CMAKE_ARGS:-}
  cmake --build "$build_dir" -j"$(nproc)" --target weir weirctl weir-backend
else
  "${configure[@]}" ${WEIR_CMAKE_ARGS:-}
  cmake --build "$build_dir" -j"$(nproc)"
fi
echo "setup: built $build_dir/weir"
