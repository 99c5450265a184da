#!/usr/bin/env bash
# Runs every test: C++ (plain, ASan+UBSan, TSan) and Python. Installs what it needs first:
# Debian's libgtest-dev and libbenchmark-dev (when root, or with sudo), and Python packages into
# .venv. Usage: bash scripts/test.sh [--quick]   (--quick skips the sanitizer builds)
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[[ "${1:-}" == "--quick" ]] && quick=1
jobs=$(nproc 2>/dev/null || echo 2)

step() { printf '\n=== %s\n' "$*"; }

step "system packages"
need=()
[[ -f /usr/include/gtest/gtest.h ]] || need+=(libgtest-dev)
[[ -f /usr/include/benchmark/benchmark.h ]] || need+=(libbenchmark-dev)
# The dashboard's browser test (python/tests/test_dashboard.py; skipped without them).
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
if ((${#need[@]})); then
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi
echo "gtest, google benchmark and chromium present"

step "python environment (.venv)"
[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q cmake ninja
export PATH="$PWD/.venv/bin:$PATH"
.venv/bin/python -m pip install -q '.[test]'

cpp_tests() {  # name, extra cmake args...
  local dir="build/$1"
  shift
  step "C++ tests: $dir"
  cmake -S . -B "$dir" -G Ninja -DREPLAY_BUFFER_TESTS=ON "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
  ctest --test-dir "$dir" -j "$jobs" --output-on-failure
}

cpp_tests release -DCMAKE_BUILD_TYPE=Release -DREPLAY_BUFFER_BENCHMARKS=ON
if ((!quick)); then
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    cpp_tests asan-ubsan -DCMAKE_BUILD_TYPE=Debug -DREPLAY_BUFFER_SANITIZE=address,undefined
  cpp_tests tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DREPLAY_BUFFER_SANITIZE=thread
fi

step "Python tests"
.venv/bin/python -m pytest -q python/tests

step "lint"
.venv/bin/ruff check python benchmarks examples
