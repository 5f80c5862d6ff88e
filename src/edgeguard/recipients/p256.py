"""P-256 device keys: HPKE DHKEM(P-256, HKDF-SHA256) key wrapping (secure elements, HSMs)."""

from __future__ import annotations

from typing import Sequence

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.hpke import KEM

from ..format import Stanza
from . import NoPickle, _hpke

STANZA_TYPE = "hpke-p256"


class P256Recipient:
    """Seals to a P-256 device public key."""

    def __init__(self, public_key: ec.EllipticCurvePublicKey, key_id: str) -> None:
        self._public_key = public_key
        self.key_id = key_id

    def wrap(self, dek: bytes, file_salt: bytes) -> Stanza:
        return _hpke.wrap(KEM.P256, STANZA_TYPE, self.key_id, self._public_key, dek, file_salt)

    def __repr__(self) -> str:
        return f"P256Recipient(key_id={self.key_id!r})"


class P256Identity(NoPickle):
    """A P-256 device private key held in memory. Its repr never shows key material."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey, key_id: str) -> None:
        self._private_key = private_key
        self.key_id = key_id

    def unwrap(self, stanzas: Sequence[Stanza], file_salt: bytes) -> bytes | None:
        return _hpke.unwrap(KEM.P256, STANZA_TYPE, self.key_id, self._private_key, stanzas, file_salt)

    def __repr__(self) -> str:
        return f"P256Identity(key_id={self.key_id!r})"
