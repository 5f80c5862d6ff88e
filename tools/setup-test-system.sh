#!/bin/sh
# Installs the Debian/Ubuntu packages the test suite drives for real: openssl (key interop), strace
# (proof that loading opens no file for writing), SoftHSM2 (a real PKCS#11 token), and the OpenSSL
# headers and build tools for the native core. tools/test and the GitHub workflow both run this, so
# no test is skipped on either (in CI a skipped test fails). Idempotent; uses sudo when not root.
set -eu
missing=""
for pkg_cmd in openssl:openssl strace:strace softhsm2:softhsm2-util cmake:cmake g++:g++; do
  command -v "${pkg_cmd#*:}" >/dev/null 2>&1 || missing="$missing ${pkg_cmd%%:*}"
done
dpkg -s libssl-dev >/dev/null 2>&1 || missing="$missing libssl-dev"
if [ -n "$missing" ]; then
  if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "setup-test-system: need root to install:$missing" >&2
    exit 1
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
for lib in /usr/lib/softhsm/libsofthsm2.so /usr/lib/*/softhsm/libsofthsm2.so; do
  if [ -f "$lib" ]; then
    echo "setup-test-system: SoftHSM2 module at $lib"
    exit 0
  fi
done
echo "setup-test-system: libsofthsm2.so not found after install" >&2
exit 1
