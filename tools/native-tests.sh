#!/usr/bin/env bash
# Configures, builds and runs the native (C++) unit tests of the engine (chunked AEAD, detector,
# secure buffer) with ctest.
# Usage: tools/native-tests.sh [BUILD_DIR]   (default: build/native-tests, git-ignored)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build/native-tests}

# Build tools and OpenSSL headers, from Debian when missing (CI machines start bare).
need=()
command -v cmake >/dev/null || need+=(cmake)
command -v g++ >/dev/null || need+=(g++)
dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev)
if ((${#need[@]})); then
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO=sudo
  echo "native-tests: installing ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S "$root" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DEDGEGUARD_BUILD_MODULE=OFF -DEDGEGUARD_BUILD_TESTS=ON >/dev/null
cmake --build "$build" --parallel 2
ctest --test-dir "$build" --output-on-failure
