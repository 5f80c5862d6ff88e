"""Atomic output files: written under a temporary name beside the target, then renamed into place."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], *, overwrite: bool, mode: int = 0o644) -> Iterator[tuple[int, Path]]:
    """Yields (fd, temp_path) for writing; on success the file appears at `path` complete, never half.

    Without `overwrite`, an existing `path` is never replaced (checked atomically at the rename).

    Raises:
        FileExistsError: `path` exists and overwrite is False.
        OSError: the directory is not writable, the disk is full, ...
    """
    target = Path(path)
    if not overwrite and target.exists():
        raise FileExistsError(f"{target} already exists")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, mode)
        yield fd, tmp
        os.fsync(fd)
        os.close(fd)
        fd = -1
        if overwrite:
            os.replace(tmp, target)
        else:
            os.link(tmp, target)  # fails if target appeared meanwhile: no silent overwrite
            tmp.unlink()
    finally:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)
