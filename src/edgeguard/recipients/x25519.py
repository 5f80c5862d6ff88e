"""X25519 device keys: HPKE DHKEM(X25519, HKDF-SHA256) key wrapping."""

from __future__ import annotations

from typing import Sequence

from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.hpke import KEM

from ..format import Stanza
from . import NoPickle, _hpke

STANZA_TYPE = "hpke-x25519"


class X25519Recipient:
    """Seals to an X25519 device public key."""

    def __init__(self, public_key: x25519.X25519PublicKey, key_id: str) -> None:
        self._public_key = public_key
        self.key_id = key_id

    def wrap(self, dek: bytes, file_salt: bytes) -> Stanza:
        return _hpke.wrap(KEM.X25519, STANZA_TYPE, self.key_id, self._public_key, dek, file_salt)

    def __repr__(self) -> str:
        return f"X25519Recipient(key_id={self.key_id!r})"


class X25519Identity(NoPickle):
    """An X25519 device private key. Its repr never shows key material."""

    def __init__(self, private_key: x25519.X25519PrivateKey, key_id: str) -> None:
        self._private_key = private_key
        self.key_id = key_id

    def unwrap(self, stanzas: Sequence[Stanza], file_salt: bytes) -> bytes | None:
        return _hpke.unwrap(KEM.X25519, STANZA_TYPE, self.key_id, self._private_key, stanzas, file_salt)

    def __repr__(self) -> str:
        return f"X25519Identity(key_id={self.key_id!r})"
