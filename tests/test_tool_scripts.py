"""The shell scripts under tools/ parse and are executable (they run in .ci/run and on CI, not in
this suite)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "tools").rglob("*.sh"))


def test_scripts_exist() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in SCRIPTS}
    assert {"tools/native-tests.sh", "tools/aarch64/run-all.sh"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_script_parses(script: Path) -> None:
    bash = shutil.which("bash")
    assert bash, "bash is required by the project's tools"
    out = subprocess.run([bash, "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    if script.name != "env.sh":  # sourced, not run
        assert os.access(script, os.X_OK), f"{script} is not executable"


def test_tests_readme_lists_every_test_module() -> None:
    table = (ROOT / "tests" / "README.md").read_text()
    missing = [p.name for p in sorted((ROOT / "tests").glob("*.py")) if p.name != "conftest.py" and f"`{p.name}`" not in table]
    assert not missing, f"tests/README.md does not describe {missing}"
