"""The ``raw`` kind: any file, sealed byte for byte in one ``data`` section."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..payload import Layout
from .base import PayloadKind


class RawKind(PayloadKind):
    name = "raw"
    sections = ("data",)

    def tensors(self, layout: Layout, buffer: Any) -> dict[str, np.ndarray]:
        return {"data": np.frombuffer(layout.section(buffer, "data"), dtype=np.uint8)}


KIND = RawKind()
