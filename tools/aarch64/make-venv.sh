#!/usr/bin/env bash
# Creates (once) an aarch64 Python venv that runs under qemu-user, with the test and bench
# dependencies from PyPI's aarch64 wheels. Its bin/python is a host shell wrapper around
# qemu-aarch64, so console scripts and sys.executable subprocesses work without binfmt_misc.
set -euo pipefail
source "$(dirname "$0")/env.sh"

# Keep in step with the "test" extra in pyproject.toml (plus cryptography, a core dependency).
requirements=(numpy onnxruntime cryptography onnx pytest hypothesis jsonschema pyyaml)
stamp=$VENV/.edgeguard-venv
if [[ -f $stamp && $(cat "$stamp") == "${requirements[*]}" ]]; then
  echo "venv: cached at $VENV"
  exit 0
fi
rm -rf "$VENV"
pybin=$SYSROOT/usr/bin/python$TARGET_PY
# ensurepip would exec an aarch64 binary directly (no binfmt here), so create it without pip.
qemu-aarch64 "$pybin" -m venv --without-pip "$VENV"
rm -f "$VENV/bin/python$TARGET_PY"
# -0 keeps argv[0] pointing into the venv, which is how Python finds pyvenv.cfg.
cat >"$VENV/bin/python$TARGET_PY" <<WRAP
#!/bin/sh
exec qemu-aarch64 -L "$SYSROOT" -cpu "$QEMU_CPU" -0 "\$0" "$pybin" "\$@"
WRAP
chmod +x "$VENV/bin/python$TARGET_PY"
py=$VENV/bin/python
"$py" -c 'import platform, sys; assert platform.machine() == "aarch64", platform.machine(); print("venv:", sys.version.split()[0], platform.machine())'
pip_whl=$(ls "$SYSROOT"/usr/share/python-wheels/pip-*.whl)
"$py" "$pip_whl/pip" install -q --no-index "$pip_whl"
"$py" -m pip install -q --disable-pip-version-check --only-binary=:all: "${requirements[@]}"
echo "${requirements[*]}" >"$stamp"
"$py" -m pip list --format=freeze 2>/dev/null | grep -iE '^(numpy|onnxruntime|onnx|cryptography|pytest)=' | sed 's/^/  /'
