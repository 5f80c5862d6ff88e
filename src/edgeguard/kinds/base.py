"""What every payload kind provides; see :mod:`edgeguard.kinds`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .._files import atomic_output
from ..payload import DTYPES, Layout, TensorEntry

Sections = list[tuple[str, Any]]  # (name, bytes-like) in the kind's canonical order


class PayloadKind:
    """A payload kind. Subclasses set the class attributes and override what differs.

    ``sections`` are the required sections in order (any kind may add ``detector_profile``);
    ``tensor_section``, when set, is the section the layout's tensor table describes (the table
    must then tile it exactly); ``suffixes`` are the file name endings that select the kind.
    """

    name: ClassVar[str]
    sections: ClassVar[tuple[str, ...]]
    tensor_section: ClassVar[str | None] = None
    suffixes: ClassVar[tuple[str, ...]] = ()

    def build(self, path: Path) -> tuple[Sections, tuple[TensorEntry, ...]]:
        """Publisher side: the sections (and tensor table) of the model file at `path`.

        Raises:
            FormatError: the file is not a valid model of this kind.
            OSError: the file cannot be read.
        """
        return [(self.sections[0], path.read_bytes())], ()

    def tensors(self, layout: Layout, buffer: Any) -> dict[str, np.ndarray]:
        """Device side: read-only numpy views of the payload's tensors, sharing `buffer`'s memory.

        Raises:
            FormatError: the section does not hold what the kind says (checked here, on the device).
        """
        raise NotImplementedError

    def write_original(self, layout: Layout, buffer: Any, target: Path) -> None:
        """``unseal``: writes the original model file to `target` (0600, atomic, never overwriting).

        Raises:
            FileExistsError: `target` exists.
            OSError: it cannot be written.
        """
        with atomic_output(target, overwrite=False, mode=0o600) as (fd, _tmp), os.fdopen(os.dup(fd), "wb") as f:
            f.write(layout.section(buffer, self.sections[0]))


def tensor_views(layout: Layout, buffer: Any, section: str, entries: Sequence[TensorEntry]) -> dict[str, np.ndarray]:
    """Little-endian numpy views of a tensor table's entries within `section` (bfloat16 as uint16)."""
    data = layout.section(buffer, section)
    out = {}
    for t in entries:
        dtype = np.dtype(DTYPES[t.dtype]).newbyteorder("<")
        out[t.name] = np.frombuffer(data[t.offset : t.offset + t.length], dtype=dtype).reshape(t.shape)
    return out
