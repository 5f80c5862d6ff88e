#!/usr/bin/env bash
# Installs packages (requirement specifiers or wheel files) into the qemu venv's site-packages
# with the host's pip, choosing aarch64 cpython-3.11 wheels. Extra pip options may come first
# (e.g. --no-deps). Environment markers are evaluated for the host's Python version, which equals
# the target's (3.11), but with the host's platform_machine.
set -euo pipefail
source "$(dirname "$0")/env.sh"
site=$VENV/lib/python$TARGET_PY/site-packages
# Every manylinux tag up to bookworm's glibc 2.36 (and a margin): given only one, pip silently
# falls back to old releases that happen to carry it.
platforms=(--platform linux_aarch64 --platform manylinux2014_aarch64)
for minor in $(seq 17 40); do platforms+=(--platform "manylinux_2_${minor}_aarch64"); done
# This machine's pip configuration may list local indexes that do not exist; hide the noise.
python3 -m pip install -q --disable-pip-version-check --no-warn-conflicts --upgrade \
  --target "$site" --only-binary=:all: --python-version "$TARGET_PY" --implementation cp \
  --abi "cp${TARGET_PY/./}" --abi abi3 --abi none "${platforms[@]}" "$@" 2>&1 |
  { grep -vE "^WARNING: (Location 'file:|Running pip as the 'root' user|Target directory)" || true; }
