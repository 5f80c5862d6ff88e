"""Loading a sealed model writes no file: traced with strace -f at the system-call level."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runtime_support import make_keys, make_mlp, seal

_CHILD = """
import sys
import numpy as np
import edgeguard
sealed, identity, trust = sys.argv[1:4]
for hygiene in ("strict", "fast"):
    with edgeguard.InferenceSession(sealed, identity=identity, trust=trust, hygiene=hygiene) as session:
        session.run(None, {"x": np.ones((2, 32), np.float32)})
with edgeguard.open_sealed(sealed, identity=identity, trust=trust) as tensors:
    assert tensors["w0"].shape == (32, 256)
print("loaded")
"""
_SYSCALLS = "open,openat,openat2,creat,rename,renameat,renameat2,link,linkat,symlink,symlinkat,unlink,unlinkat,mkdir,mkdirat,truncate"
_WRITE_FLAGS = re.compile(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC|O_APPEND")


def test_loading_opens_no_file_for_writing(tmp_path: Path) -> None:
    if shutil.which("strace") is None:
        if os.geteuid() == 0:
            pytest.fail("strace is missing: run tools/setup-test-system.sh (CI must not skip this test)")
        pytest.skip("strace is not installed and installing it needs root (tools/setup-test-system.sh)")
    keys = make_keys(tmp_path)
    sealed = seal(make_mlp(tmp_path / "m.onnx"), tmp_path / "m.sealed", keys)
    log = tmp_path / "strace.log"
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}  # edgeguard must set it itself
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # keep Python's own .pyc cache out of the picture
    result = subprocess.run(
        ["strace", "-f", "-qq", "-e", f"trace={_SYSCALLS}", "-o", str(log),
         sys.executable, "-c", _CHILD, str(sealed), str(keys.identity_path), str(keys.trust_path)],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "loaded" in result.stdout
    calls = log.read_text().splitlines()
    assert any("m.sealed" in c for c in calls)  # the trace did see the load
    writes = [c for c in calls if _WRITE_FLAGS.search(c) or re.search(r"\b(creat|rename\w*|link\w*|symlink\w*|unlink\w*|mkdir\w*|truncate)\(", c)]
    assert writes == []
