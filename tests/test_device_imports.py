"""The device path (verify, open) must not import onnx: devices install only what they run."""

from __future__ import annotations

import subprocess
import sys


def test_verify_and_open_do_not_import_onnx() -> None:
    code = "import sys, edgeguard.unseal, edgeguard.keys, edgeguard.cli; print('onnx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
