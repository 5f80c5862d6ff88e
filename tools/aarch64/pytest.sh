#!/usr/bin/env bash
# Installs the cross-built wheel into the qemu venv and runs the repo's Python tests under
# qemu-aarch64. Extra arguments go to pytest (default: -m "not slow and not native_process and not emulation_heavy").
set -euo pipefail
source "$(dirname "$0")/env.sh"
py=$VENV/bin/python
wheel=$(ls "$DIST"/edgeguard-*-linux_aarch64.whl)
"$(dirname "$0")/pip-install.sh" --no-deps --force-reinstall "$wheel"
cd "$ROOT"
# Running from the repo root imports the installed wheel: the sources live under src/.
"$py" -c 'import edgeguard, platform; assert "site-packages" in edgeguard.__file__; print("edgeguard from", edgeguard.__file__, platform.machine())'
# onnxruntime is the part most sensitive to emulation (it parses /proc/cpuinfo on import): run a
# one-node model before the suite so a broken runtime fails here with a clear message.
"$py" - <<'PY'
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "double", [x], [y])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
out = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
    None, {"x": np.array([1.5, -2.0], dtype=np.float32)})[0]
assert out.tolist() == [3.0, -4.0], out
print("onnxruntime", ort.__version__, "runs under qemu:", out.tolist())
PY
args=("$@")
# Emulation budget: skip slow tests; native_process tests check kernel facilities qemu-user does
# not emulate (they run natively in tools/test), so here they would only measure qemu;
# emulation_heavy tests (real models, a 10,000-device fleet) run natively too.
((${#args[@]})) || args=(-m "not slow and not native_process and not emulation_heavy")
exec "$py" -m pytest -p no:cacheprovider -q tests "${args[@]}"
