"""P-256 device keys: HPKE DHKEM(P-256, HKDF-SHA256) key wrapping (secure elements, HSMs).

A P-256 key that never leaves a PKCS#11 token is in :mod:`edgeguard.recipients.pkcs11`.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.hpke import KEM

from ._hpke import HpkeIdentity, HpkeRecipient, stanza

STANZA_TYPE = "hpke-p256"
STANZA = stanza(STANZA_TYPE, 113)


class P256Recipient(HpkeRecipient):
    """Seals to a P-256 device public key."""

    KEM = KEM.P256
    STANZA_TYPE = STANZA_TYPE


class P256Identity(HpkeIdentity):
    """A P-256 device private key held in memory. Its repr never shows key material."""

    KEM = KEM.P256
    STANZA_TYPE = STANZA_TYPE


# keys.load_public_key / load_private_key admit only the P-256 curve.
def recipient_for(public_key: Any) -> P256Recipient | None:
    from ..keys import key_id

    return P256Recipient(public_key, key_id(public_key)) if isinstance(public_key, ec.EllipticCurvePublicKey) else None


def identity_for(private_key: Any) -> P256Identity | None:
    from ..keys import key_id

    if not isinstance(private_key, ec.EllipticCurvePrivateKey):
        return None
    return P256Identity(private_key, key_id(private_key.public_key()))
