"""X25519 device keys: HPKE DHKEM(X25519, HKDF-SHA256) key wrapping."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.hpke import KEM

from ._hpke import HpkeIdentity, HpkeRecipient, stanza

STANZA_TYPE = "hpke-x25519"
STANZA = stanza(STANZA_TYPE, 80)


class X25519Recipient(HpkeRecipient):
    """Seals to an X25519 device public key."""

    KEM = KEM.X25519
    STANZA_TYPE = STANZA_TYPE


class X25519Identity(HpkeIdentity):
    """An X25519 device private key. Its repr never shows key material; it cannot be pickled."""

    KEM = KEM.X25519
    STANZA_TYPE = STANZA_TYPE


def recipient_for(public_key: Any) -> X25519Recipient | None:
    from ..keys import key_id

    return X25519Recipient(public_key, key_id(public_key)) if isinstance(public_key, x25519.X25519PublicKey) else None


def identity_for(private_key: Any) -> X25519Identity | None:
    from ..keys import key_id

    if not isinstance(private_key, x25519.X25519PrivateKey):
        return None
    return X25519Identity(private_key, key_id(private_key.public_key()))
