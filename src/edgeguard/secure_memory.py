"""Secure memory for decrypted payloads (the native :class:`SecureBuffer`) and process hardening.

A SecureBuffer is a private anonymous mapping between two guard pages, excluded from core dumps
(MADV_DONTDUMP) and from forked children (MADV_WIPEONFORK, else MADV_DONTFORK), locked in RAM
with mlock when the process may (best effort: an unprivileged process is usually limited to a few
MiB by RLIMIT_MEMLOCK; the result is reported, never fatal), and wiped with OPENSSL_cleanse and
unlocked on close(). The pages are unmapped only when the last reference goes, so closing can
never make a reader fault: a view held past close() reads zeros, and whatever it writes after
close() is wiped again when it is released.

None of this stops root on the device (or anyone with ptrace rights over the process) from
reading the process's memory while a model is loaded.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import _core

if TYPE_CHECKING:
    from .coverage import Coverage

SecureBuffer = _core.SecureBuffer


@dataclass(frozen=True)
class MemoryReport:
    """What protection a secure buffer got. `lock_error` says why mlock failed (None if locked)."""

    size: int
    locked: bool
    lock_error: str | None
    dontdump: bool
    fork_protection: str
    memlock_limit: int | None  # RLIMIT_MEMLOCK soft limit in bytes, None if unlimited
    coverage: Coverage | None = None  # an ONNX session's weight bytes read from this buffer (edgeguard.coverage)


def memory_report(buffer: SecureBuffer) -> MemoryReport:
    soft, _hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    return MemoryReport(
        size=len(buffer),
        locked=buffer.locked,
        lock_error=buffer.lock_error,
        dontdump=buffer.dontdump,
        fork_protection=buffer.fork_protection,
        memlock_limit=None if soft == resource.RLIM_INFINITY else soft,
    )


def harden_process() -> None:
    """Opt-in: ``prctl(PR_SET_DUMPABLE, 0)`` for the whole process.

    Afterwards the process writes no core dumps and other unprivileged processes of the same user
    can no longer ptrace it or read ``/proc/<pid>/mem``. Root still can. It cannot be undone
    safely, so it is never done implicitly.

    Raises:
        OSError: prctl failed.
    """
    _core.harden_process()


def is_dumpable() -> bool:
    return bool(_core.is_dumpable())
