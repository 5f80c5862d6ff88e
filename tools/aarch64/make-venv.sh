#!/usr/bin/env bash
# Creates (once) an aarch64 Python venv that runs under qemu-user, with the dependencies and the
# "test" and "bench" extras of pyproject.toml from PyPI's aarch64 wheels, and keeps it in step
# with them. Its bin/python is a host shell wrapper around qemu-aarch64, so console scripts and
# sys.executable subprocesses work without binfmt_misc.
#
# Packages are installed by the host's pip into the venv's site-packages for the aarch64 wheel
# tags (no emulation: ~25 s instead of ~3 min for pip itself under qemu). The venv has no pip of
# its own; tools/aarch64 scripts install into it the same way.
set -euo pipefail
source "$(dirname "$0")/env.sh"

mapfile -t requirements < <(python3 - "$ROOT/pyproject.toml" <<'PY'
import sys
try:
    import tomllib
except ImportError:  # the host python may be older than the target's
    import tomli as tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
reqs = list(project["dependencies"])
for extra in ("test", "bench"):
    reqs += project["optional-dependencies"].get(extra, [])
print("\n".join(sorted(set(reqs))))
PY
)
stamp=$VENV/.edgeguard-venv
if [[ -f $stamp && $(cat "$stamp") == "${requirements[*]}" ]]; then
  echo "venv: cached at $VENV"
  exit 0
fi
pybin=$SYSROOT/usr/bin/python$TARGET_PY
py=$VENV/bin/python
if ! "$py" -c '' 2>/dev/null; then
  rm -rf "$VENV"
  qemu-aarch64 "$pybin" -m venv --without-pip "$VENV"
  rm -f "$VENV/bin/python$TARGET_PY"
  # -0 keeps argv[0] pointing into the venv, which is how Python finds pyvenv.cfg.
  cat >"$VENV/bin/python$TARGET_PY" <<WRAP
#!/bin/sh
exec qemu-aarch64 -L "$SYSROOT" -cpu "$QEMU_CPU" -0 "\$0" "$pybin" "\$@"
WRAP
  chmod +x "$VENV/bin/python$TARGET_PY"
  "$py" -c 'import platform, sys; assert platform.machine() == "aarch64", platform.machine(); print("venv:", sys.version.split()[0], platform.machine())'
else
  echo "venv: updating $VENV"
fi
"$ROOT/tools/aarch64/pip-install.sh" "${requirements[@]}"
printf '%s\n' "${requirements[@]}" | paste -sd' ' >"$stamp"
"$py" - <<'PY'
from importlib import metadata
print("  " + ", ".join(f"{d}=={metadata.version(d)}" for d in ("numpy", "onnxruntime", "onnx", "cryptography", "pytest")))
PY
