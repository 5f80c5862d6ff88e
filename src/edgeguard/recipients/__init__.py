"""Recipient types: who can unwrap a sealed file's content key (one module per type).

A *recipient* is the public side used when sealing (``wrap``); an *identity* is the private side
used when opening (``unwrap``). Security property: a stanza produced by ``wrap`` reveals nothing
about the content key to anyone without the matching identity, and is bound to one file's salt,
so it cannot be moved into another file.
"""

from __future__ import annotations

from typing import Protocol, Sequence

from ..format import Stanza

WRAP_LABEL = b"edgeguard/v1 dek\x00"
DEK_LEN = 32


def wrap_context(file_salt: bytes) -> bytes:
    """HPKE info / AEAD associated data that binds a key wrap to one sealed file."""
    return WRAP_LABEL + file_salt


class Recipient(Protocol):
    def wrap(self, dek: bytes, file_salt: bytes) -> Stanza:
        """Returns a stanza from which only the matching identity recovers `dek`."""
        ...


class Identity(Protocol):
    def unwrap(self, stanzas: Sequence[Stanza], file_salt: bytes) -> bytes | None:
        """Returns the content key if one of `stanzas` is addressed to this identity and opens, else None."""
        ...


class NoPickle:
    """Key material must never be pickled into a cache, a queue or a crash dump by accident."""

    def __reduce__(self) -> None:  # type: ignore[override]
        raise TypeError(f"{type(self).__name__} holds key material and cannot be pickled")
