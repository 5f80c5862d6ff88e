"""The device path (verify, open) must not import onnx: devices install only what they run."""

from __future__ import annotations

import subprocess
import sys


def test_verify_and_open_do_not_import_onnx() -> None:
    code = "import sys, edgeguard.unseal, edgeguard.keys, edgeguard.cli; print('onnx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_import_edgeguard_is_light_and_loads_the_runtime_on_first_use() -> None:
    code = (
        "import sys, edgeguard; light = 'onnxruntime' not in sys.modules and 'onnx' not in sys.modules; "
        "edgeguard.InferenceSession, edgeguard.Guard; print(light, 'onnxruntime' in sys.modules, 'onnx' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "False"]


def test_cli_start_up_imports_no_numpy_detector_bench_or_metadata() -> None:
    """`edgeguard verify` is timed against `openssl dgst` (bench --suite verify): its start-up counts."""
    code = (
        "import sys, edgeguard.cli, edgeguard.unseal, edgeguard.keys; p = edgeguard.cli.build_parser(); "
        "p.parse_args(['verify', 'x', '--trust', 'y']); "
        "print(sorted(m for m in ('numpy', 'edgeguard.detect', 'edgeguard.bench.crypto', 'importlib.metadata', "
        "'onnxruntime') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    version = subprocess.run([sys.executable, "-m", "edgeguard.cli", "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("edgeguard ") and "unknown" not in version.stdout
