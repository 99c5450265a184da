#!/usr/bin/env bash
# Runs every benchmark: the C++ Google Benchmark suites and `replay-buffer bench`, with the peer
# libraries installed into .venv-bench (never into the package's environment).
# Usage: bash scripts/bench.sh [--with-torchrl] [extra args for replay-buffer bench]
#   --with-torchrl  also install torch + torchrl (several GB) to measure TorchRL's prioritized buffer
set -euo pipefail
cd "$(dirname "$0")/.."

with_torchrl=0
if [[ "${1:-}" == "--with-torchrl" ]]; then
  with_torchrl=1
  shift
fi

[[ -x .venv-bench/bin/python ]] || python3 -m venv .venv-bench
.venv-bench/bin/python -m pip install -q --upgrade pip cmake ninja
.venv-bench/bin/python -m pip install -q -r benchmarks/requirements.txt
((with_torchrl)) && .venv-bench/bin/python -m pip install -q -r benchmarks/requirements-torchrl.txt
.venv-bench/bin/python -m pip install -q .
export PATH="$PWD/.venv-bench/bin:$PATH"

cmake -S . -B build/bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DREPLAY_BUFFER_BENCHMARKS=ON >/dev/null
cmake --build build/bench -j "$(nproc 2>/dev/null || echo 2)"
for suite in build/bench/benchmarks/*_bench; do
  echo "=== $suite"
  "$suite" --benchmark_min_time=0.2
done

echo "=== replay-buffer bench"
# OpenBLAS settings of some machines slow NumPy down; unset for this run only (nothing here uses BLAS).
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv-bench/bin/replay-buffer bench "$@"
