#!/usr/bin/env bash
# Runs every test: C++ with g++ (plain, ASan+UBSan, TSan) and with clang and libc++; as if
# on a non-Linux POSIX system, and cross-built for aarch64 under qemu; a project that consumes the
# installed library; the portability check; the documentation site; and Python. Warnings are
# errors in the C++ builds.
# Installs what it needs first: Debian packages (when root, or with sudo) and Python packages into
# .venv. Usage: bash scripts/test.sh [--quick]   (--quick: g++, the consumer, the portability
# check and Python only; no sanitizers, clang, aarch64 or documentation site)
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[[ "${1:-}" == "--quick" ]] && quick=1
jobs=$(nproc 2>/dev/null || echo 2)
# Debian bookworm's clang and libc++. 16 cannot build the library: its libc++ has no
# std::atomic_ref (libc++ has it from 19 on).
clang=19

# Each step's wall-clock and CPU time (its processes' user + system), printed at the end: on a
# shared machine the CPU time is the steadier measure.
started=$SECONDS
current=""
timings=()
timesfile=$(mktemp)
trap 'rm -f "$timesfile"' EXIT
read_cpu() {  # sets cpu: the CPU seconds of every child process that has finished so far
  times >"$timesfile"  # in this shell: a subshell would count only its own children
  cpu=$(awk 'END { t = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }
                   printf "%d", t }' "$timesfile")
}
step() {
  read_cpu
  if [[ -n $current ]]; then
    timings+=("$(printf '%5ds %5ds  %s' $((SECONDS - step_started)) $((cpu - step_cpu)) "$current")")
  fi
  current=$*
  step_started=$SECONDS
  step_cpu=$cpu
  printf '\n=== %s\n' "$*"
}

step "system packages"
need=()
[[ -f /usr/include/gtest/gtest.h ]] || need+=(libgtest-dev)
[[ -f /usr/include/benchmark/benchmark.h ]] || need+=(libbenchmark-dev)
# The dashboard's browser test (python/tests/test_dashboard.py; skipped without them).
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
if ((!quick)); then
  [[ -f /usr/src/googletest/CMakeLists.txt ]] || need+=(googletest)
  command -v "clang++-$clang" >/dev/null || need+=("clang-$clang")
  [[ -d /usr/lib/llvm-$clang/include/c++/v1 ]] || need+=("libc++-$clang-dev" "libc++abi-$clang-dev")
  command -v aarch64-linux-gnu-g++ >/dev/null || need+=(g++-aarch64-linux-gnu)
  command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
fi
if ((${#need[@]})); then
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
  echo "installed ${need[*]}"
fi
echo "system packages present"

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

cpp_tests release -DCMAKE_BUILD_TYPE=Release -DREPLAY_BUFFER_BENCHMARKS=ON -DREPLAY_BUFFER_WERROR=ON

step "C++ consumer: add_subdirectory and find_package after cmake --install"
bash scripts/cmake_consumer.sh build/release

step "portability: Linux-only calls outside a guard"
python3 scripts/check_portability.py

if ((!quick)); then
  # The library as on a POSIX system that is not Linux (macOS's code paths: the pid lock instead
  # of the robust mutex, no /proc, no /dev/shm), compiled with warnings as errors, with the tests
  # of what those paths change. The zombie tests stay out: only Linux tells a zombie from a live
  # process (docs/shared_memory.md, "Limits"), so there they would wait for their alarm.
  step "C++ tests: build/not-linux (as on a non-Linux POSIX system)"
  cmake -S . -B build/not-linux -G Ninja -DCMAKE_BUILD_TYPE=Release -DREPLAY_BUFFER_TESTS=ON \
    -DREPLAY_BUFFER_WERROR=ON "-DCMAKE_CXX_FLAGS=-U__linux__ -U__linux -Ulinux -U__gnu_linux__" \
    >/dev/null
  cmake --build build/not-linux -j "$jobs" --target replay_buffer_core pid_lock_test writers_test \
    shared_buffer_test
  ctest --test-dir build/not-linux -j "$jobs" --output-on-failure \
    -R '^(PidLock|RegionMutex|WriterRegistry|WriterClaim|DeadWriters|SharedBuffer)\.' \
    -E '^(PidLock\.ADeadHolderIsTakenOver|RegionMutex\.ADeadHolderLeavesItUsable|WriterRegistry\.ADeadProcessIsFoundDeadEvenAsAZombie|DeadWriters\.TheNextWriterTakesTheSlotOver)$'

  libcxx=(-DCMAKE_CXX_COMPILER="clang++-$clang" -DCMAKE_CXX_FLAGS=-stdlib=libc++)
  step "GoogleTest for libc++"
  gtest_libcxx=$(bash scripts/gtest_from_source.sh build/gtest-libcxx "${libcxx[@]}")
  cpp_tests clang-libcxx -DCMAKE_BUILD_TYPE=Release -DREPLAY_BUFFER_WERROR=ON "${libcxx[@]}" \
    -DGTest_DIR="$gtest_libcxx"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    cpp_tests asan-ubsan -DCMAKE_BUILD_TYPE=Debug -DREPLAY_BUFFER_SANITIZE=address,undefined \
    -DREPLAY_BUFFER_WERROR=ON
  # ThreadSanitizer with g++: clang's finds nothing more (neither models atomic_thread_fence), and
  # only g++ says where a fence hides an ordering from it (-Wtsan, an error here like every
  # warning): TSan builds express the seqlock's two fences with operations TSan models
  # (sync::claim_word, sync::unchanged_after_copy), and nothing else uses a fence.
  cpp_tests tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DREPLAY_BUFFER_SANITIZE=thread \
    -DREPLAY_BUFFER_WERROR=ON

  step "C++ tests: aarch64 cross build under qemu"
  bash scripts/cross_aarch64.sh

  # The documentation site, warnings as errors (broken links, docstrings, Doxygen; see the script).
  step "documentation site (scripts/docs.sh)"
  bash scripts/docs.sh
fi

step "Python tests"
.venv/bin/python -m pytest -q -rs python/tests   # -rs: list what was skipped, and why

step "lint"
.venv/bin/ruff check python benchmarks examples

step "timings (wall, CPU)"
printf '%s\n' "${timings[@]}"
printf '%5ds %5ds  total\n' $((SECONDS - started)) "$cpu"
