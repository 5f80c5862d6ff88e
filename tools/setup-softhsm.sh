#!/bin/sh
# Installs what the runtime tests need from Debian: SoftHSM2 (a real PKCS#11 token for the token
# identity tests) and strace (to prove that loading a model opens no file for writing).
# Idempotent; needs root (CI runs as root). Tokens are created by the tests themselves in a temp dir.
set -eu
missing=""
command -v softhsm2-util >/dev/null 2>&1 || missing="$missing softhsm2"
command -v strace >/dev/null 2>&1 || missing="$missing strace"
if [ -n "$missing" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup-softhsm: need root to install:$missing" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
python3 -c "import pkcs11" 2>/dev/null || python3 -m pip install -q "python-pkcs11>=0.7"
for lib in /usr/lib/softhsm/libsofthsm2.so /usr/lib/*/softhsm/libsofthsm2.so; do
  if [ -f "$lib" ]; then
    echo "setup-softhsm: SoftHSM2 module at $lib"
    exit 0
  fi
done
echo "setup-softhsm: libsofthsm2.so not found after install" >&2
exit 1
