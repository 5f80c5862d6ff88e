# Sourced by the tools/aarch64 scripts: paths and the qemu-user settings shared by every step.
# The cache holds what does not depend on the source tree (sysroot, venv). It defaults to
# .cache/aarch64 in the work tree; EDGEGUARD_AARCH64_CACHE moves it elsewhere, e.g. to keep it
# across fresh clones: EDGEGUARD_AARCH64_CACHE=$HOME/.cache/edgeguard-aarch64. Build trees stay
# in the work tree (build/aarch64): CMake caches are tied to their source directory.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${EDGEGUARD_AARCH64_CACHE:-$ROOT/.cache/aarch64}
SYSROOT=$CACHE/sysroot
VENV=$CACHE/venv
BUILD=$ROOT/build/aarch64
DIST=$BUILD/dist
TARGET_PY=3.11  # bookworm's python3; the host interpreter building the wheel must match it
mkdir -p "$CACHE"

# qemu-user reads these from the environment (same as -cpu / -L) and passes them on to the guest,
# which lets edgeguard's fingerprint see that it runs emulated. neoverse-n1: the default "max" CPU
# (SVE/SME) makes onnxruntime ~20x slower under emulation.
export QEMU_CPU=neoverse-n1
export QEMU_LD_PREFIX=$SYSROOT
export EDGEGUARD_EMULATED=qemu-user
