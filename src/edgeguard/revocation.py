"""Signed revocation lists (docs/FORMAT.md, "Revocation lists") and their anti-rollback store.

A revocation list names revoked grant ids and device key ids under a monotonic serial. A device
uses a list only once its signer is trusted and its signature verifies, and refuses a list older
(lower serial) than one it already saw from the same signer, so an attacker who controls the
storage or the network cannot hand back an older list that still lets a revoked device in.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ._files import write_file
from .errors import FormatError, IntegrityError, RevocationRollbackError, RevokedError
from .format_v2 import MAX_REVOCATION_SIZE, SIGNED_FILE_OVERHEAD, RevocationBody, RevocationFile, parse_revocation
from .freshness import HighWaterStore
from .keys import SigningKey, TrustStore

REVOCATION_SIGNATURE_LABEL = b"edgeguard/v2 revocation signature\x00"
MAX_REVOCATION_FILE = SIGNED_FILE_OVERHEAD + MAX_REVOCATION_SIZE


def revocation_message(signed: bytes) -> bytes:
    return REVOCATION_SIGNATURE_LABEL + hashlib.sha256(signed).digest()


def make_revocation(
    signer: SigningKey,
    serial: int,
    *,
    grants: Iterable[str] = (),
    keys: Iterable[str] = (),
    now: Callable[[], float] = time.time,
) -> bytes:
    """A signed revocation list file (bytes). Duplicates are merged; order does not matter.

    Raises:
        FormatError: a malformed grant id or key id, a serial outside 1..2^53-1, or too many entries.
    """
    body = RevocationBody(signer.alg, signer.key_id, serial, int(now()), tuple(sorted(set(grants))), tuple(sorted(set(keys))))
    signed = body.encode()
    return signed + signer.sign_message(revocation_message(signed))


@dataclass(frozen=True)
class RevocationList:
    """A revocation list whose signer is trusted and whose signature verified."""

    body: RevocationBody

    @property
    def serial(self) -> int:
        return self.body.serial

    @property
    def signer_key_id(self) -> str:
        return self.body.signer_key_id

    @classmethod
    def load(cls, source: str | os.PathLike[str] | bytes, trust: TrustStore) -> RevocationList:
        """Reads (a path, or bytes), parses and verifies a revocation list.

        Raises:
            FormatError, UnsupportedVersionError: malformed.
            UntrustedSignerError: its signer is not in `trust`.
            IntegrityError: a bad signature or the wrong size.
            OSError: the file cannot be read (a missing list is an error, never "nothing revoked").
        """
        if isinstance(source, (bytes, bytearray)):
            data = bytes(source)
        else:
            with open(source, "rb") as f:
                data = f.read(MAX_REVOCATION_FILE + 1)
            if len(data) > MAX_REVOCATION_FILE:
                raise FormatError(f"{os.fspath(source)} is larger than any revocation list (MAX_REVOCATION_SIZE)")
        parsed: RevocationFile = parse_revocation(data)
        key = trust.find(parsed.body.signer_alg, parsed.body.signer_key_id)
        if not key.verify_message(revocation_message(parsed.signed), parsed.signature):
            raise IntegrityError()
        return cls(parsed.body)

    def check(self, grant_id: str | None, key_id: str | None) -> None:
        """Raises RevokedError if the grant id or the device key id is revoked (binary search)."""
        import bisect

        for value, entries, what in ((grant_id, self.body.grants, "grant"), (key_id, self.body.keys, "device key")):
            if value:
                i = bisect.bisect_left(entries, value)
                if i < len(entries) and entries[i] == value:
                    raise RevokedError(f"{what} {value} is revoked (revocation list {self.body.signer_key_id} serial {self.body.serial})")

    def __repr__(self) -> str:
        return (f"RevocationList(signer={self.body.signer_key_id!r}, serial={self.body.serial}, "
                f"grants={len(self.body.grants)}, keys={len(self.body.keys)})")  # fmt: skip


class RevocationStore(HighWaterStore):
    """The highest revocation list serial seen per signer key id, in one small JSON file.

    The same guarantees and limits as :class:`~edgeguard.freshness.VersionStore`: atomic updates
    under an advisory lock, fail closed on a corrupt file, and only as trustworthy as the storage
    it lives on (anyone who can reset the file can replay an older list).
    """

    FIELD = "revocation_serials"
    WHAT = "revocation store"

    def check_and_record(self, revocation: RevocationList) -> None:
        """Refuses a list older than the newest seen from its signer, else records its serial.

        Raises:
            RevocationRollbackError: a lower serial than one already seen.
            LoadRefusedError: the store is corrupt.
            OSError: the store cannot be written.
        """
        kid, serial = revocation.signer_key_id, revocation.serial
        self._check_and_record(kid, serial, lambda highest: RevocationRollbackError(
            f"revocation list serial {serial} from {kid} is older than serial {highest}, which was already seen"))


def resolve_revocation(
    revocation: Any, trust: TrustStore, store: RevocationStore | str | os.PathLike[str] | None
) -> RevocationList | None:
    """A verified, rollback-checked RevocationList from a RevocationList, a path or bytes (None: none).

    Raises: as :meth:`RevocationList.load` and :meth:`RevocationStore.check_and_record`.
    """
    if revocation is None:
        return None
    rl = revocation if isinstance(revocation, RevocationList) else RevocationList.load(revocation, trust)
    if store is not None:
        (RevocationStore(store) if isinstance(store, (str, os.PathLike)) else store).check_and_record(rl)
    return rl


def write_revocation(path: str | os.PathLike[str], data: bytes, *, overwrite: bool = False) -> None:
    """Writes a revocation list file atomically. Raises FileExistsError, OSError."""
    write_file(path, data, overwrite=overwrite)


__all__ = ["RevocationList", "RevocationStore", "make_revocation", "resolve_revocation", "revocation_message", "write_revocation"]
