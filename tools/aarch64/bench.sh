#!/usr/bin/env bash
# Runs `edgeguard bench --quick` (every suite) under qemu-aarch64 and writes its JSON (labelled
# emulated) to $1 (default: results/bench-aarch64-emulated.json). `openssl speed` runs the
# sysroot's aarch64 openssl under qemu too, so both sides of the comparison are emulated alike.
# A 1 MB model instead of 8 MB: emulated inference is ~100x slower than native; with the
# default size the inference suite alone took 3 minutes, and 1.7 minutes at 2 MB.
set -euo pipefail
source "$(dirname "$0")/env.sh"
out=${1:-$ROOT/results/bench-aarch64-emulated.json}
mkdir -p "$(dirname "$out")"
# A host-side wrapper: the emulated Python can exec a shell script (the kernel runs the host's sh),
# but not an aarch64 binary without binfmt_misc; and plain "openssl" would find the host's x86 one.
wrapper=$CACHE/openssl-aarch64
cat >"$wrapper" <<WRAP
#!/bin/sh
exec qemu-aarch64 -L "$SYSROOT" -cpu "$QEMU_CPU" "$SYSROOT/usr/bin/openssl" "\$@"
WRAP
chmod +x "$wrapper"
"$VENV/bin/python" -m edgeguard.bench --quick --sizes 1 --no-progress --openssl "$wrapper" \
  --label "aarch64 qemu-user $QEMU_CPU (emulated)" --output "$out"
python3 - "$out" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
assert doc["emulated"] is True, "an emulated run must be labelled emulated"
assert doc["fingerprint"]["arch"] == "aarch64", doc["fingerprint"]["arch"]
assert set(doc["suites"]) == {"crypto", "load", "inference", "detector"}, sorted(doc["suites"])
print("bench: wrote", sys.argv[1], "signals:", ", ".join(doc["fingerprint"]["emulation_signals"]))
PY
