"""Shared HPKE wrapping for the X25519 and P-256 recipient types (RFC 9180 base mode).

Each recipient type module subclasses these with its KEM and stanza type. :func:`hpke_p256_open`
is the receiver for identities whose ECDH happens elsewhere (a PKCS#11 token).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from ..format import Stanza, StanzaField, StanzaSpec
from . import DEK_LEN, NoPickle, wrap_context

_POINT_LEN = 65  # uncompressed SEC1 P-256 point
_KEM_ID, _KDF_ID = 0x0010, 0x0001
AEAD_AES_128_GCM, AEAD_AES_256_GCM = 0x0001, 0x0002
_AEAD_KEY_LEN = {AEAD_AES_128_GCM: 16, AEAD_AES_256_GCM: 32}


def stanza(stanza_type: str, wrapped_len: int) -> StanzaSpec:
    """An HPKE stanza: the device key's id and ``enc || ct`` of `wrapped_len` bytes."""
    return StanzaSpec(stanza_type, {"key_id": StanzaField("key_id"), "wrapped": StanzaField("b64", wrapped_len)})


def suite(kem: KEM) -> Suite:
    return Suite(kem, KDF.HKDF_SHA256, AEAD.AES_256_GCM)


class HpkeRecipient:
    """Seals to a device public key: only the holder of the matching private key can unwrap."""

    KEM: ClassVar[KEM]
    STANZA_TYPE: ClassVar[str]

    def __init__(self, public_key: Any, key_id: str) -> None:
        self._public_key = public_key
        self.key_id = key_id

    def wrap(self, dek: bytes, file_salt: bytes, *, context: bytes | None = None) -> Stanza:
        info = wrap_context(file_salt) if context is None else context
        wrapped = suite(self.KEM).encrypt(dek, self._public_key, info=info)
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

    def unwrap(self, stanzas: Sequence[Stanza], file_salt: bytes, *, context: bytes | None = None) -> bytes | None:
        info = wrap_context(file_salt) if context is None else context
        for stanza in stanzas:
            if stanza.type != self.STANZA_TYPE or stanza.key_id != self.key_id:
                continue
            try:
                dek = suite(self.KEM).decrypt(stanza.wrapped, self._private_key, info=info)
            except (InvalidTag, ValueError):
                return None
            return dek if len(dek) == DEK_LEN else None
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key_id={self.key_id!r})"


def _extract(salt: bytes, ikm: bytes) -> bytes:
    # HKDF-Extract (RFC 5869): an absent salt is HashLen zero bytes.
    h = hmac.HMAC(salt or bytes(32), hashes.SHA256())
    h.update(ikm)
    return h.finalize()


def _labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return _extract(salt, b"HPKE-v1" + suite_id + label + ikm)


def _labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    labeled = length.to_bytes(2, "big") + b"HPKE-v1" + suite_id + label + info
    return HKDFExpand(hashes.SHA256(), length, labeled).derive(prk)


def hpke_p256_open(
    wrapped: bytes,
    recipient_point: bytes,
    dh: Callable[[bytes], bytes],
    info: bytes,
    aad: bytes = b"",
    aead_id: int = AEAD_AES_256_GCM,
) -> bytes:
    """Single-shot HPKE base-mode open where `dh(enc)` computes the ECDH x-coordinate elsewhere.

    `wrapped` is enc (65 bytes) || ciphertext, as `cryptography`'s ``Suite.encrypt`` returns it;
    `recipient_point` is the recipient's uncompressed public point (pkRm).

    Raises:
        cryptography.exceptions.InvalidTag: the ciphertext, info or key do not match.
        ValueError: `wrapped` is too short.
    """
    if len(wrapped) < _POINT_LEN + 16:
        raise ValueError("wrapped key is too short")
    enc, ct = wrapped[:_POINT_LEN], wrapped[_POINT_LEN:]
    kem_suite = b"KEM" + _KEM_ID.to_bytes(2, "big")
    eae_prk = _labeled_extract(kem_suite, b"", b"eae_prk", dh(enc))
    shared_secret = _labeled_expand(kem_suite, eae_prk, b"shared_secret", enc + recipient_point, 32)
    suite_id = b"HPKE" + _KEM_ID.to_bytes(2, "big") + _KDF_ID.to_bytes(2, "big") + aead_id.to_bytes(2, "big")
    context = (
        b"\x00"  # mode_base
        + _labeled_extract(suite_id, b"", b"psk_id_hash", b"")
        + _labeled_extract(suite_id, b"", b"info_hash", info)
    )
    secret = _labeled_extract(suite_id, shared_secret, b"secret", b"")
    key = _labeled_expand(suite_id, secret, b"key", context, _AEAD_KEY_LEN[aead_id])
    base_nonce = _labeled_expand(suite_id, secret, b"base_nonce", context, 12)
    return AESGCM(key).decrypt(base_nonce, ct, aad)  # sequence number 0: nonce = base_nonce
