"""Atomic output files: written under a temporary name beside the target, then renamed into place."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _naming(exc: OSError, target: Path, tmp: str | None) -> OSError:
    """`exc` about the user's `target`: an error with no file name, or naming our temporary file,
    would otherwise leave the user guessing (or show a `.name.xxxx.tmp` that no longer exists)."""
    if exc.errno is None or exc.filename not in (None, tmp):
        return exc
    return OSError(exc.errno, exc.strerror, os.fspath(target))  # the errno's own subclass


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], *, overwrite: bool, mode: int = 0o644) -> Iterator[tuple[int, Path]]:
    """Yields (fd, temp_path) for writing; on success the file appears at `path` complete, never half.

    Without `overwrite`, an existing `path` is never replaced (checked atomically at the rename).
    On any failure the temporary file is removed, and an OSError that names no file (ENOSPC from
    a write, say) or names the temporary file is raised again naming `path`.

    Raises:
        FileExistsError: `path` exists and overwrite is False.
        OSError: the directory is not writable, the disk is full, ...
    """
    target = Path(path)
    if not overwrite and os.path.lexists(target):
        raise FileExistsError(f"{target} already exists")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise _naming(exc, target, None) from None
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
    except OSError as exc:
        named = _naming(exc, target, tmp_name)
        if named is exc:
            raise
        raise named from None
    finally:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)


def write_fd(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Writes all of `data` (os.write may write less than asked, e.g. above 2 GiB on Linux)."""
    with memoryview(data) as whole, whole.cast("B") as view:  # released even when a write fails
        done = 0
        while done < len(view):
            done += os.write(fd, view[done:])


def write_file(path: str | os.PathLike[str], data: bytes | bytearray | memoryview, *, overwrite: bool, mode: int = 0o644) -> None:
    """Writes `data` to `path` atomically (see :func:`atomic_output`): a failure leaves no file.

    Raises:
        FileExistsError: `path` exists and overwrite is False.
        OSError: the file cannot be written (ENOSPC, EFBIG, ... naming `path`).
    """
    with atomic_output(path, overwrite=overwrite, mode=mode) as (fd, _tmp):
        write_fd(fd, data)
