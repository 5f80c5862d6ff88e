"""Payload kinds: what a sealed payload holds (docs/FORMAT.md, "Inner payload"). One module a kind.

Each kind module defines ``KIND``, a :class:`~edgeguard.kinds.base.PayloadKind`: its sections, how
the publisher builds them from a model file, the device's zero-copy tensor views and how ``unseal``
writes the original file back. The table below is the only place that lists the kinds; adding one
is a module, a line here and its section of the spec. Modules load on first use, so parsing a
header needs none of them (and no numpy).
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import PayloadKind

_MODULES = {
    "onnx": ".onnx",
    "safetensors": ".safetensors",
    "raw": ".raw",
}
NAMES = tuple(_MODULES)


def get(name: str) -> PayloadKind:
    """The kind called `name`. Raises ValueError for a name that is not a payload kind."""
    module = _MODULES.get(name)
    if module is None:
        raise ValueError(f"unknown payload kind {name!r} (one of {', '.join(NAMES)})")
    kind: PayloadKind = import_module(module, __name__).KIND
    return kind


def detect(path: Path) -> str:
    """The kind whose file suffix `path` has; ``raw`` (any file) when none claims it."""
    suffix = path.suffix.lower()
    return next((name for name in NAMES if suffix in get(name).suffixes), "raw")
