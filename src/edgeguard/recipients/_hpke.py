"""Shared HPKE wrapping for the X25519 and P-256 recipient types (RFC 9180 base mode)."""

from __future__ import annotations

from typing import Any, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from ..format import Stanza
from . import DEK_LEN, wrap_context


def suite(kem: KEM) -> Suite:
    return Suite(kem, KDF.HKDF_SHA256, AEAD.AES_256_GCM)


def wrap(kem: KEM, stanza_type: str, key_id: str, public_key: Any, dek: bytes, file_salt: bytes) -> Stanza:
    wrapped = suite(kem).encrypt(dek, public_key, info=wrap_context(file_salt))
    return Stanza(type=stanza_type, key_id=key_id, wrapped=wrapped)


def unwrap(
    kem: KEM, stanza_type: str, key_id: str, private_key: Any, stanzas: Sequence[Stanza], file_salt: bytes
) -> bytes | None:
    for stanza in stanzas:
        if stanza.type != stanza_type or stanza.key_id != key_id:
            continue
        try:
            dek = suite(kem).decrypt(stanza.wrapped, private_key, info=wrap_context(file_salt))
        except (InvalidTag, ValueError):
            return None
        return dek if len(dek) == DEK_LEN else None
    return None
