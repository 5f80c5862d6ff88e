"""Shared HPKE wrapping for the X25519 and P-256 recipient types (RFC 9180 base mode).

Each recipient type module subclasses these with its KEM and stanza type.
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from ..format import Stanza
from . import DEK_LEN, NoPickle, wrap_context


def suite(kem: KEM) -> Suite:
    return Suite(kem, KDF.HKDF_SHA256, AEAD.AES_256_GCM)


class HpkeRecipient:
    """Seals to a device public key: only the holder of the matching private key can unwrap."""

    KEM: ClassVar[KEM]
    STANZA_TYPE: ClassVar[str]

    def __init__(self, public_key: Any, key_id: str) -> None:
        self._public_key = public_key
        self.key_id = key_id

    def wrap(self, dek: bytes, file_salt: bytes) -> Stanza:
        wrapped = suite(self.KEM).encrypt(dek, self._public_key, info=wrap_context(file_salt))
        return Stanza(type=self.STANZA_TYPE, key_id=self.key_id, wrapped=wrapped)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key_id={self.key_id!r})"


class HpkeIdentity(NoPickle):
    """A device private key held in memory. Its repr never shows key material."""

    KEM: ClassVar[KEM]
    STANZA_TYPE: ClassVar[str]

    def __init__(self, private_key: Any, key_id: str) -> None:
        self._private_key = private_key
        self.key_id = key_id

    def unwrap(self, stanzas: Sequence[Stanza], file_salt: bytes) -> bytes | None:
        for stanza in stanzas:
            if stanza.type != self.STANZA_TYPE or stanza.key_id != self.key_id:
                continue
            try:
                dek = suite(self.KEM).decrypt(stanza.wrapped, self._private_key, info=wrap_context(file_salt))
            except (InvalidTag, ValueError):
                return None
            return dek if len(dek) == DEK_LEN else None
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key_id={self.key_id!r})"
