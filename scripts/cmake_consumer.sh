#!/usr/bin/env bash
# Builds and runs cpp/tests/consumer, a project outside this one that links replay_buffer::core,
# both ways README's "From C++" gives: add_subdirectory of this source tree, and find_package
# against a `cmake --install` prefix. Each also compiles and runs README's C++ example.
# Usage: bash scripts/cmake_consumer.sh [LIBRARY_BUILD_DIR] [-- CMAKE_ARGS...]
#   LIBRARY_BUILD_DIR: an already configured and built tree of this project to install from
#   (default: configure and build build/consumer/library); CMAKE_ARGS go to every configure, e.g.
#   -DCMAKE_CXX_COMPILER=clang++-16.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=build/consumer
library=$out/library
if [[ $# -gt 0 && $1 != "--" ]]; then
  library=$1
  shift
fi
[[ ${1:-} == "--" ]] && shift
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)

mkdir -p "$out"
python3 python/tests/doc_blocks.py cpp README.md >"$out/readme_example.cpp"

if [[ ! -f $library/CMakeCache.txt ]]; then
  cmake -S . -B "$library" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
  cmake --build "$library"
fi
rm -rf "$out/prefix"
cmake --install "$library" --prefix "$out/prefix" >/dev/null
echo "installed into $out/prefix:"
(cd "$out/prefix" && find . -name '*.cmake' -o -name '*.a' | sort | sed 's/^/  /')

for way in package subdirectory; do
  if [[ $way == package ]]; then
    source_arg=(-DCMAKE_PREFIX_PATH="$root/$out/prefix")
  else
    source_arg=(-DREPLAY_BUFFER_SOURCE_DIR="$root")
  fi
  echo "consumer through $way"
  rm -rf "$out/$way"
  cmake -S cpp/tests/consumer -B "$out/$way" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DREADME_EXAMPLE="$root/$out/readme_example.cpp" "${source_arg[@]}" "$@" >/dev/null
  cmake --build "$out/$way"
  ctest --test-dir "$out/$way" --output-on-failure
done
