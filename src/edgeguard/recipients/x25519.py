"""X25519 device keys: HPKE DHKEM(X25519, HKDF-SHA256) key wrapping."""

from __future__ import annotations

from cryptography.hazmat.primitives.hpke import KEM

from ._hpke import HpkeIdentity, HpkeRecipient

STANZA_TYPE = "hpke-x25519"


class X25519Recipient(HpkeRecipient):
    """Seals to an X25519 device public key."""

    KEM = KEM.X25519
    STANZA_TYPE = STANZA_TYPE


class X25519Identity(HpkeIdentity):
    """An X25519 device private key. Its repr never shows key material; it cannot be pickled."""

    KEM = KEM.X25519
    STANZA_TYPE = STANZA_TYPE
