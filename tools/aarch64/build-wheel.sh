#!/usr/bin/env bash
# Cross-builds the edgeguard wheel for linux-aarch64 (cpython 3.11) into build/aarch64/dist.
# Needs a host python3 of the target's minor version with scikit-build-core and pybind11.
set -euo pipefail
source "$(dirname "$0")/env.sh"
export EDGEGUARD_AARCH64_SYSROOT=$SYSROOT
host_py=${EDGEGUARD_HOST_PYTHON:-python3}
ver=$("$host_py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
if [[ $ver != "$TARGET_PY" ]]; then
  echo "build-wheel: host $host_py is $ver, the aarch64 target is $TARGET_PY" >&2
  exit 1
fi
# --no-build-isolation (the cross settings must reach CMake unchanged) needs the build backend in
# the host interpreter itself.
if ! "$host_py" -c 'import scikit_build_core, pybind11' 2>/dev/null; then
  echo "build-wheel: installing scikit-build-core and pybind11 into $host_py"
  "$host_py" -m pip install -q --disable-pip-version-check "scikit-build-core>=0.10" "pybind11>=2.12"
fi
tag=${TARGET_PY/./}
dist=$DIST
rm -rf "$dist"
# The suffix and platform variables make scikit-build-core name the module and wheel for the
# target rather than the host (pip would refuse an x86_64-tagged wheel there).
SETUPTOOLS_EXT_SUFFIX=.cpython-$tag-aarch64-linux-gnu.so _PYTHON_HOST_PLATFORM=linux-aarch64 \
  "$host_py" -m pip wheel --no-build-isolation --no-deps -q -w "$dist" "$ROOT" \
  -Cbuild-dir="$BUILD/wheel" \
  -Ccmake.define.CMAKE_TOOLCHAIN_FILE="$ROOT/tools/aarch64/toolchain.cmake" \
  -Ccmake.python-hints=false \
  -Ccmake.define.Python_INCLUDE_DIR="$SYSROOT/usr/include/python$TARGET_PY"
wheel=$(ls "$dist"/edgeguard-*-cp$tag-*linux_aarch64.whl)
echo "wheel: $wheel"
