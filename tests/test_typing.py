"""The whole package type-checks under ``mypy --strict`` ([tool.mypy] in pyproject.toml: its
``files`` is src/edgeguard), so the types users see through py.typed are checked, not just written."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "edgeguard"

pytestmark = pytest.mark.skipif(not (ROOT / "pyproject.toml").is_file() or not PACKAGE.is_dir(),
                                reason="needs the source tree (pyproject.toml and src/edgeguard)")


def test_every_lazy_name_is_typed() -> None:
    """Each name edgeguard loads on first use (_LAZY) is imported under TYPE_CHECKING from the same
    module, so type checkers see the real class or function rather than module __getattr__'s Any."""
    import edgeguard

    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    typed = {
        alias.asname: "." * node.level + (node.module or "")
        for block in tree.body
        if isinstance(block, ast.If) and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.asname == alias.name  # "X as X": an explicit re-export
    }
    assert typed == edgeguard._LAZY


@pytest.mark.slow
def test_mypy_strict(tmp_path: Path) -> None:
    """mypy (the test extra) with a fresh cache: about 5 s on two cores."""
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
