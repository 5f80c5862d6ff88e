#!/usr/bin/env bash
# Installs the cross-built wheel into the qemu venv and runs the repo's Python tests under
# qemu-aarch64. Extra arguments go to pytest (default: -m "not slow", the emulation-time budget).
set -euo pipefail
source "$(dirname "$0")/env.sh"
py=$VENV/bin/python
wheel=$(ls "$DIST"/edgeguard-*-linux_aarch64.whl)
"$py" -m pip install -q --disable-pip-version-check --no-deps --force-reinstall "$wheel"
cd "$ROOT"
# Running from the repo root imports the installed wheel: the sources live under src/.
"$py" -c 'import edgeguard, platform; assert "site-packages" in edgeguard.__file__; print("edgeguard from", edgeguard.__file__, platform.machine())'
args=("$@")
((${#args[@]})) || args=(-m "not slow")
exec "$py" -m pytest -p no:cacheprovider -q tests "${args[@]}"
