"""benchmarks/runtime_load.py, a thin wrapper of `edgeguard bench --suite load,inference`, runs end
to end and writes a valid result document and the report's tables.

Only the shape of the output is checked here: speed goals live in the benchmark's output, not in
timed unit tests.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgeguard.bench.results import load

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("onnx")


@pytest.mark.slow  # ~8 s natively, 100 s under qemu (where tools/aarch64/bench.sh runs the same suites)
def test_quick_benchmark_writes_json_and_markdown(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "runtime_load.py"), "--quick", "--sizes", "2",
         "--repetitions", "2", "--no-progress", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    doc = load(tmp_path / "runtime_load.json")
    assert set(doc["suites"]) == {"load", "inference"}
    (m,) = doc["suites"]["load"]["models"]
    assert m["name"] == "mlp-2mb" and len(m["modes"]["strict"]["load_samples_s"]) == 2
    table = (tmp_path / "runtime_load.md").read_text()
    assert "| strict/plain load |" in table and table.count("| strict |") == 1


def test_script_help_lists_the_bench_options() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "runtime_load.py"), "--help"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--model" in out.stdout and "--sizes" in out.stdout
