"""Checkpoint keys: who may vouch for a stretch of the audit log.

A device signs checkpoints with an Ed25519 or P-256 key from a PEM file, with a P-256 key that
never leaves a PKCS#11 token (CKM_ECDSA over the SHA-256 of the message), or MACs them with a
device secret (HMAC-SHA256, at least 32 bytes in a 0600 file). Signatures let anyone holding the
public key verify the log and prove who vouched for it (non-repudiation); a MAC needs the secret
to verify and proves nothing to a third party.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from ..errors import KeyFileError
from ..keys import _P256_ORDER, _read_key_file, key_id, load_private_key, load_public_key
from ..recipients import NoPickle

ED25519 = "ed25519"
P256 = "ecdsa-p256-sha256"
HMAC = "hmac-sha256"
ALGS = (ED25519, P256, HMAC)
MIN_MAC_KEY = 32
_MAC_KEY_ID = b"edgeguard/audit mac key id\x00"


class CheckpointSigner(Protocol):
    """What the log needs from a checkpoint key."""

    alg: str
    key_id: str

    def sign(self, message: bytes) -> bytes: ...


def _low_s(r: int, s: int) -> bytes:
    s = min(s, _P256_ORDER - s)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


class PemSigner(NoPickle):
    """An Ed25519 or P-256 private key from a PKCS#8 PEM file (0600) or PEM bytes."""

    def __init__(self, source: str | os.PathLike[str] | bytes) -> None:
        """Raises KeyFileError for an unreadable, insecure or unsuitable key."""
        key = load_private_key(source)
        if isinstance(key, ed25519.Ed25519PrivateKey):
            self.alg = ED25519
        elif isinstance(key, ec.EllipticCurvePrivateKey):
            self.alg = P256
        else:
            raise KeyFileError("an audit checkpoint key must be Ed25519 or P-256 (an X25519 key cannot sign)")
        self._key = key
        self.key_id = key_id(key.public_key())

    def sign(self, message: bytes) -> bytes:
        if isinstance(self._key, ed25519.Ed25519PrivateKey):
            return self._key.sign(message)
        assert isinstance(self._key, ec.EllipticCurvePrivateKey)
        return _low_s(*decode_dss_signature(self._key.sign(message, ec.ECDSA(hashes.SHA256()))))

    def __repr__(self) -> str:
        return f"PemSigner(alg={self.alg!r}, key_id={self.key_id!r})"


class HmacSigner(NoPickle):
    """HMAC-SHA256 with a device secret. Its key id is a hash of the secret (no use to a forger)."""

    alg = HMAC

    def __init__(self, source: str | os.PathLike[str] | bytes) -> None:
        """Raises KeyFileError: unreadable, group/world accessible, or shorter than 32 bytes."""
        secret = source if isinstance(source, bytes) else _read_key_file(source, private=True)
        if len(secret) < MIN_MAC_KEY:
            raise KeyFileError(f"an audit MAC key is at least {MIN_MAC_KEY} bytes (e.g. head -c 32 /dev/urandom)")
        self._secret = bytes(secret)
        self.key_id = hashlib.sha256(_MAC_KEY_ID + self._secret).hexdigest()[:16]

    def sign(self, message: bytes) -> bytes:
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def verify(self, message: bytes, tag: bytes) -> bool:
        return hmac.compare_digest(self.sign(message), tag)

    def __repr__(self) -> str:
        return f"HmacSigner(key_id={self.key_id!r})"


class Pkcs11Signer(NoPickle):
    """A P-256 key on a PKCS#11 token: CKM_ECDSA signs SHA-256(message) on the token.

    ``uri`` is an RFC 7512 URI as for :class:`~edgeguard.recipients.pkcs11.Pkcs11Identity`; the key
    needs CKA_SIGN. One session per signature, as for unwrapping.
    """

    alg = P256

    def __init__(self, uri: str, *, pin: str | None = None, module_path: str | None = None) -> None:
        """Raises ValueError for a malformed URI, TokenError when the token or key is unusable."""
        from ..recipients.pkcs11 import Pkcs11Identity

        self._token = Pkcs11Identity(uri, pin=pin, module_path=module_path)
        self.key_id = self._token.key_id
        self.public_key = self._token.public_key

    def sign(self, message: bytes) -> bytes:
        digest = hashlib.sha256(message).digest()

        def on_token(session: Any) -> bytes:
            from pkcs11 import Mechanism, ObjectClass

            private = self._token._find_one(session, ObjectClass.PRIVATE_KEY)
            return bytes(private.sign(digest, mechanism=Mechanism.ECDSA))

        raw: bytes = self._token._with_session(on_token)
        if len(raw) != 64:
            from ..recipients.pkcs11 import TokenError

            raise TokenError("the token's ECDSA signature is not 64 bytes (r || s)")
        sig = _low_s(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        # A token that signed with another key, or mangled the digest, must not yield a bad checkpoint.
        if not CheckpointVerifier(self.public_key).verify(self.alg, self.key_id, message, sig):
            from ..recipients.pkcs11 import TokenError

            raise TokenError("the token's signature does not verify under its public key")
        return sig

    def __repr__(self) -> str:
        return f"Pkcs11Signer(key_id={self.key_id!r})"


def load_signer(key: Any = None, mac_key: Any = None) -> CheckpointSigner | None:
    """A checkpoint signer from `key` (a signer object, PEM path or bytes, or a ``pkcs11:`` URI) or
    `mac_key` (an HmacSigner, or a path or bytes of the secret); None when neither is given.

    Raises:
        ValueError: both are given.
        KeyFileError: the key cannot be used (TokenError for a token).
    """
    if key is not None and mac_key is not None:
        raise ValueError("give a checkpoint signing key or a MAC key, not both")
    if mac_key is not None:
        return mac_key if isinstance(mac_key, HmacSigner) else HmacSigner(mac_key)
    if key is None:
        return None
    if hasattr(key, "sign") and hasattr(key, "alg") and hasattr(key, "key_id"):
        signer: CheckpointSigner = key
        return signer
    if isinstance(key, str) and key.startswith("pkcs11:"):
        return Pkcs11Signer(key)
    return PemSigner(key)


class CheckpointVerifier:
    """Checks checkpoints: a public key (Ed25519 or P-256; PEM path, bytes or key object) or an
    :class:`HmacSigner` holding the device secret."""

    def __init__(self, key: Any) -> None:
        """Raises KeyFileError for an unusable key."""
        self._mac: HmacSigner | None = None
        self._public: Any = None
        if isinstance(key, HmacSigner):
            self._mac, self.alg, self.key_id = key, HMAC, key.key_id
            return
        public = key if isinstance(key, (ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey)) else load_public_key(key)
        if isinstance(public, ed25519.Ed25519PublicKey):
            self.alg = ED25519
        elif isinstance(public, ec.EllipticCurvePublicKey):
            self.alg = P256
        else:
            raise KeyFileError("an audit verification key must be an Ed25519 or P-256 public key")
        self._public = public
        self.key_id = key_id(public)

    def verify(self, alg: str, kid: str, message: bytes, sig: bytes) -> bool:
        """True iff `sig` is this key's valid signature (or MAC) of `message` under `alg` and `kid`."""
        if alg != self.alg or kid != self.key_id:
            return False
        if self._mac is not None:
            return self._mac.verify(message, sig)
        if len(sig) != 64:
            return False
        try:
            if isinstance(self._public, ed25519.Ed25519PublicKey):
                self._public.verify(sig, message)
            else:
                r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
                if not (0 < r < _P256_ORDER and 0 < s <= _P256_ORDER // 2):
                    return False
                self._public.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True

    def __repr__(self) -> str:
        return f"CheckpointVerifier(alg={self.alg!r}, key_id={self.key_id!r})"


__all__ = ["ALGS", "HMAC", "CheckpointSigner", "CheckpointVerifier", "HmacSigner", "PemSigner", "Pkcs11Signer", "load_signer"]
