#!/usr/bin/env bash
# Installs the Debian packages needed to cross-build for aarch64 and run it under qemu-user.
# Idempotent: does nothing when every tool is already present.
set -euo pipefail

need=()
command -v aarch64-linux-gnu-g++ >/dev/null || need+=(g++-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v cmake >/dev/null || need+=(cmake)
command -v ninja >/dev/null || need+=(ninja-build)
if ((${#need[@]} == 0)); then
  echo "aarch64 deps: already installed"
  exit 0
fi
SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO=sudo
echo "aarch64 deps: installing ${need[*]}"
$SUDO apt-get update -qq
# Never `dpkg --add-architecture arm64` here: it would upgrade the host's libssl; the arm64
# libraries live in a separate sysroot instead (see make-sysroot.sh).
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
