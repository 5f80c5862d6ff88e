"""benchmarks/runtime_load.py --quick runs end to end and writes well-formed JSON and Markdown.

Only the shape of the report is checked here: speed goals live in the benchmark's output, not in
timed unit tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_benchmark_writes_json_and_markdown(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "runtime_load.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "runtime_load.json").read_text())
    assert [round(s["size_mb"]) for s in report["sizes"]] == [2, 8]
    for size in report["sizes"]:
        assert set(size["modes"]) == {"plain_path", "plain_bytes", "strict", "fast", "open_only"}
        for mode in ("plain_path", "plain_bytes", "strict", "fast"):
            m = size["modes"][mode]
            assert m["load_s"] > 0 and m["peak_rss_above_baseline"] > 0 and m["steady_b32_s"] > 0
        assert {"strict_load_over_plain", "fast_load_over_plain", "strict_peak_rss_over_model"} <= set(size["ratios"])
    table = (tmp_path / "runtime_load.md").read_text()
    assert "| strict/plain load |" in table and table.count("| strict |") == 2
