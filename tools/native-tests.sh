#!/usr/bin/env bash
# Configures, builds and runs the native (C++) unit tests of the crypto engine with ctest.
# Usage: tools/native-tests.sh [BUILD_DIR]   (default: build/native-tests, git-ignored)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build/native-tests}
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S "$root" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DEDGEGUARD_BUILD_MODULE=OFF -DEDGEGUARD_BUILD_TESTS=ON >/dev/null
cmake --build "$build" --parallel 2
ctest --test-dir "$build" --output-on-failure
