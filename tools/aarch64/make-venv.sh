#!/usr/bin/env bash
# Creates (once) an aarch64 Python venv that runs under qemu-user and keeps it in step with the
# dependencies and the "test" and "bench" extras of pyproject.toml (installed from PyPI's aarch64
# wheels). Its bin/python is a host shell wrapper around qemu-aarch64, so console scripts and
# sys.executable subprocesses work without binfmt_misc.
set -euo pipefail
source "$(dirname "$0")/env.sh"

# pip evaluates the environment markers on the target side.
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
  # ensurepip would exec an aarch64 binary directly (no binfmt here), so create it without pip.
  qemu-aarch64 "$pybin" -m venv --without-pip "$VENV"
  rm -f "$VENV/bin/python$TARGET_PY"
  # -0 keeps argv[0] pointing into the venv, which is how Python finds pyvenv.cfg.
  cat >"$VENV/bin/python$TARGET_PY" <<WRAP
#!/bin/sh
exec qemu-aarch64 -L "$SYSROOT" -cpu "$QEMU_CPU" -0 "\$0" "$pybin" "\$@"
WRAP
  chmod +x "$VENV/bin/python$TARGET_PY"
  "$py" -c 'import platform, sys; assert platform.machine() == "aarch64", platform.machine(); print("venv:", sys.version.split()[0], platform.machine())'
  pip_whl=$(ls "$SYSROOT"/usr/share/python-wheels/pip-*.whl)
  "$py" "$pip_whl/pip" install -q --no-index "$pip_whl"
else
  echo "venv: updating $VENV"
fi
# This machine's pip configuration may list local indexes that do not exist; hide the noise.
"$py" -m pip install -q --disable-pip-version-check --only-binary=:all: "${requirements[@]}" 2>&1 |
  { grep -v "^WARNING: Location 'file:" || true; }
printf '%s\n' "${requirements[@]}" | paste -sd' ' >"$stamp"
"$py" -m pip list --format=freeze 2>/dev/null | grep -iE '^(numpy|onnxruntime|onnx|cryptography|pytest)=' | sed 's/^/  /'
