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


# glibc's perturb byte for freed memory: any value but 0 works; this one is easy to spot in a dump.
WIPE_BYTE = 0xA5


@dataclass(frozen=True)
class ProcessHardening:
    """What :func:`harden_process` has done to this process."""

    non_dumpable: bool  # prctl(PR_SET_DUMPABLE, 0) is in effect
    memory_locked: bool  # mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) succeeded
    wipes_freed_memory: bool  # glibc overwrites freed heap chunks (M_PERTURB)

    @property
    def complete(self) -> bool:
        """Everything ``hygiene="hardened"`` needs."""
        return self.non_dumpable and self.memory_locked and self.wipes_freed_memory


def harden_process(*, lock_memory: bool = False, wipe_freed: bool = False) -> ProcessHardening:
    """Opt-in, process-wide and irreversible in practice.

    Always ``prctl(PR_SET_DUMPABLE, 0)``: the process writes no core dumps and other unprivileged
    processes of the same user can no longer ptrace it or read ``/proc/<pid>/mem``. Root still can.

    `lock_memory`: ``mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)``: every page the process
    has touched or will touch stays in RAM (never swapped), onnxruntime's heap included. Needs
    CAP_IPC_LOCK or an ``RLIMIT_MEMLOCK`` as large as the process will grow; allocations beyond
    the limit then fail.

    `wipe_freed`: glibc's ``mallopt(M_PERTURB)``: ``free()`` overwrites the chunks it keeps (and
    ``malloc()`` fills new ones), so onnxruntime's freed copies of weights (its arena, prepacked
    and optimized tensors, temporaries) do not outlive it in the heap; large chunks are unmapped
    on free anyway. Small chunks (up to 1032 bytes) that go to glibc's per-thread cache are not
    overwritten. Costs a memset per malloc and free for the whole process.

    ``hygiene="hardened"`` needs all three. Returns what is now in effect.

    Raises:
        OSError: prctl or mlockall failed (nothing later in the list was attempted).
        RuntimeError: `wipe_freed` where the C library is not glibc.
    """
    _core.harden_process()
    if lock_memory and not _core.all_memory_locked():
        _core.lock_all_memory()
    if wipe_freed and not _core.set_malloc_perturb(WIPE_BYTE):
        raise RuntimeError("wipe_freed needs glibc's mallopt(M_PERTURB); this C library has none")
    return process_hardening()


def process_hardening() -> ProcessHardening:
    """What :func:`harden_process` has put in effect in this process."""
    return ProcessHardening(non_dumpable=not _core.is_dumpable(), memory_locked=_core.all_memory_locked(),
                            wipes_freed_memory=_core.malloc_perturb() != 0)


def is_dumpable() -> bool:
    return bool(_core.is_dumpable())
