"""P-256 device keys: HPKE DHKEM(P-256, HKDF-SHA256) key wrapping (secure elements, HSMs).

A P-256 key that never leaves a PKCS#11 token is in :mod:`edgeguard.recipients.pkcs11`.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.hpke import KEM

from ._hpke import HpkeIdentity, HpkeRecipient

STANZA_TYPE = "hpke-p256"


class P256Recipient(HpkeRecipient):
    """Seals to a P-256 device public key."""

    KEM = KEM.P256
    STANZA_TYPE = STANZA_TYPE


class P256Identity(HpkeIdentity):
    """A P-256 device private key held in memory. Its repr never shows key material."""

    KEM = KEM.P256
    STANZA_TYPE = STANZA_TYPE
