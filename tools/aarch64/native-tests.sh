#!/usr/bin/env bash
# Cross-builds the engine and its native tests for aarch64 and runs ctest under qemu-aarch64,
# once with OpenSSL's default (crypto-extension) code paths and once with OPENSSL_armcap=0
# (plain C, as on a core without NEON/crypto extensions).
set -euo pipefail
source "$(dirname "$0")/env.sh"
export EDGEGUARD_AARCH64_SYSROOT=$SYSROOT
build=$BUILD/native-tests
cmake -S "$ROOT" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_TOOLCHAIN_FILE="$ROOT/tools/aarch64/toolchain.cmake" \
  -DEDGEGUARD_BUILD_MODULE=OFF -DEDGEGUARD_BUILD_TESTS=ON >/dev/null
cmake --build "$build" --parallel 2
aarch64-linux-gnu-readelf -h "$build/edgeguard_native_tests" | grep -q AArch64 || { echo "not an aarch64 binary" >&2; exit 1; }
echo "== ctest (aarch64, qemu $QEMU_CPU, OpenSSL default capabilities)"
ctest --test-dir "$build" --output-on-failure
echo "== ctest (aarch64, qemu $QEMU_CPU, OPENSSL_armcap=0)"
OPENSSL_armcap=0 ctest --test-dir "$build" --output-on-failure
