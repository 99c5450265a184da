#!/usr/bin/env bash
# Builds GoogleTest from Debian's source package (/usr/src/googletest, package googletest) into
# PREFIX with the given CMake arguments: Debian's libgtest is built with g++ and libstdc++ for
# this machine, so a libc++ or an aarch64 build of the tests needs its own. Does nothing when
# PREFIX already holds one. Prints the directory to pass as -DGTest_DIR.
# Usage: bash scripts/gtest_from_source.sh PREFIX [CMAKE_ARGS...]
set -euo pipefail
prefix=$(realpath -m "$1")
shift
config=$prefix/lib/cmake/GTest
if [[ ! -f $config/GTestConfig.cmake ]]; then
  [[ -f /usr/src/googletest/CMakeLists.txt ]] || {
    echo "no /usr/src/googletest: apt-get install googletest" >&2
    exit 1
  }
  cmake -S /usr/src/googletest -B "$prefix/build" -G Ninja -Wno-dev -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_GMOCK=OFF -DCMAKE_INSTALL_PREFIX="$prefix" "$@" >/dev/null
  cmake --build "$prefix/build" >/dev/null
  cmake --install "$prefix/build" >/dev/null
fi
echo "$config"
