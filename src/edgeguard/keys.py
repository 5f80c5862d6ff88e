"""Keys: generation, PEM files (PKCS#8 / SubjectPublicKeyInfo, readable by `openssl pkey`),
key ids, publisher signatures and the trust store.

Private key files are created 0600 and refused when group or others have any access. Private key
objects hide their material in ``repr`` and cannot be pickled; exporting a secret takes an
explicit call (:meth:`SigningKey.export_private_pem`, :func:`export_private_pem`).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from .errors import KeyFileError, UntrustedSignerError
from .recipients import NoPickle

SIGNING_KEY_TYPES = ("ed25519", "p256")
DEVICE_KEY_TYPES = ("x25519", "p256")
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
MAX_KEY_FILE_SIZE = 64 * 1024

PrivateKey = ed25519.Ed25519PrivateKey | x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | x25519.X25519PublicKey | ec.EllipticCurvePublicKey


def key_id(public_key: PublicKey) -> str:
    """First 8 bytes (hex) of SHA-256 over the key's DER SubjectPublicKeyInfo."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]


def generate_private_key(kind: str) -> PrivateKey:
    """Raises ValueError for an unknown key type."""
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "x25519":
        return x25519.X25519PrivateKey.generate()
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"unknown key type {kind!r} (expected one of ed25519, x25519, p256)")


def export_private_pem(private_key: PrivateKey) -> bytes:
    """Explicit secret export: unencrypted PKCS#8 PEM."""
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_pem(public_key: PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def write_private_key(path: str | os.PathLike[str], private_key: PrivateKey) -> None:
    """Creates `path` with mode 0600, atomically: a full disk leaves no empty or half key file.

    Raises:
        FileExistsError: rather than overwrite a key.
        OSError: the file cannot be written.
    """
    from ._files import write_file

    write_file(path, export_private_pem(private_key), overwrite=False, mode=0o600)


def write_public_key(path: str | os.PathLike[str], public_key: PublicKey) -> None:
    """Creates `path` (0644), atomically. Raises FileExistsError rather than overwrite, OSError."""
    from ._files import write_file

    write_file(path, public_pem(public_key), overwrite=False, mode=0o644)


def _read_key_file(path: str | os.PathLike[str], private: bool) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # O_NONBLOCK: opening a FIFO must not hang
    except OSError as exc:
        raise KeyFileError(f"cannot open key file {os.fspath(path)!r}: {exc.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):  # checked before fdopen, which raises IsADirectoryError itself
        os.close(fd)
        raise KeyFileError(f"key file {os.fspath(path)!r} is not a regular file")
    with os.fdopen(fd, "rb") as f:
        if private and st.st_mode & 0o077:
            raise KeyFileError(
                f"private key file {os.fspath(path)!r} is accessible by group or others "
                f"(mode {stat.S_IMODE(st.st_mode):04o}); run: chmod 600 {os.fspath(path)}"
            )
        data = f.read(MAX_KEY_FILE_SIZE + 1)
    if len(data) > MAX_KEY_FILE_SIZE:
        raise KeyFileError(f"key file {os.fspath(path)!r} is too large to be a key")
    return data


def load_private_key(source: str | os.PathLike[str] | bytes) -> PrivateKey:
    """Loads an unencrypted PKCS#8 PEM private key from a path (permission-checked) or bytes.

    Raises:
        KeyFileError: unreadable, group/world accessible, not a PEM private key, or unsupported type.
    """
    data = source if isinstance(source, bytes) else _read_key_file(source, private=True)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyFileError("not an unencrypted PEM private key") from None
    if not isinstance(key, (ed25519.Ed25519PrivateKey, x25519.X25519PrivateKey, ec.EllipticCurvePrivateKey)):
        raise KeyFileError(f"unsupported private key type {type(key).__name__}")
    _check_curve(key)
    return key


def load_public_key(source: str | os.PathLike[str] | bytes) -> PublicKey:
    """Loads a PEM SubjectPublicKeyInfo public key from a path or bytes.

    Raises:
        KeyFileError: unreadable, not a PEM public key, or unsupported type.
    """
    data = source if isinstance(source, bytes) else _read_key_file(source, private=False)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyFileError("not a PEM public key") from None
    if not isinstance(key, (ed25519.Ed25519PublicKey, x25519.X25519PublicKey, ec.EllipticCurvePublicKey)):
        raise KeyFileError(f"unsupported public key type {type(key).__name__}")
    _check_curve(key)
    return key


def _check_curve(key: PrivateKey | PublicKey) -> None:
    """Raises KeyFileError for an elliptic-curve key on any curve but P-256."""
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) and not isinstance(key.curve, ec.SECP256R1):
        raise KeyFileError("only the P-256 curve is supported")


def _signature_message(header_digest: bytes, chunk_root: bytes) -> bytes:
    return b"edgeguard/v1 signature\x00" + header_digest + chunk_root


class VerifyingKey:
    """A publisher's public key."""

    def __init__(self, public_key: PublicKey) -> None:
        """Raises KeyFileError unless the key is Ed25519 or P-256 (an X25519 key cannot sign)."""
        if isinstance(public_key, ed25519.Ed25519PublicKey):
            self.alg = "ed25519"
        elif isinstance(public_key, ec.EllipticCurvePublicKey) and isinstance(public_key.curve, ec.SECP256R1):
            self.alg = "ecdsa-p256-sha256"
        else:
            raise KeyFileError("a publisher key must be Ed25519 or P-256")
        self._public_key = public_key
        self.key_id = key_id(public_key)

    @classmethod
    def load(cls, source: str | os.PathLike[str] | bytes) -> VerifyingKey:
        """Raises KeyFileError for an unreadable or unsuitable key."""
        return cls(load_public_key(source))

    def verify(self, header_digest: bytes, chunk_root: bytes, signature: bytes) -> bool:
        """True iff `signature` is this key's valid (and, for ECDSA, low-s) signature."""
        return self.verify_message(_signature_message(header_digest, chunk_root), signature)

    def verify_message(self, message: bytes, signature: bytes) -> bool:
        """True iff `signature` is this key's valid (and, for ECDSA, low-s) signature over the whole,
        already domain-separated `message` (version 2 artifacts, grants, revocation lists)."""
        if len(signature) != 64:
            return False
        try:
            if isinstance(self._public_key, ed25519.Ed25519PublicKey):
                self._public_key.verify(signature, message)
            else:
                r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
                if not (0 < r < _P256_ORDER and 0 < s <= _P256_ORDER // 2):
                    return False
                self._public_key.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True

    def public_pem(self) -> bytes:
        return public_pem(self._public_key)

    def __repr__(self) -> str:
        return f"VerifyingKey(alg={self.alg!r}, key_id={self.key_id!r})"


class SigningKey(NoPickle):
    """A publisher's private signing key (Ed25519 or ECDSA P-256). Its repr never shows key material."""

    def __init__(self, private_key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> None:
        self._private_key = private_key
        self.verifying_key = VerifyingKey(private_key.public_key())

    @classmethod
    def generate(cls, kind: str = "ed25519") -> SigningKey:
        """Raises ValueError for a type that cannot sign."""
        if kind not in SIGNING_KEY_TYPES:
            raise ValueError(f"signing keys are one of {', '.join(SIGNING_KEY_TYPES)}")
        return cls(ed25519.Ed25519PrivateKey.generate() if kind == "ed25519" else ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def load(cls, source: str | os.PathLike[str] | bytes) -> SigningKey:
        """Raises KeyFileError for an unreadable, insecure or unsuitable key file."""
        key = load_private_key(source)
        if isinstance(key, x25519.X25519PrivateKey):
            where = "" if isinstance(source, bytes) else f"{os.fspath(source)} holds "
            raise KeyFileError(f"{where}an X25519 key, a device key that cannot sign; use an ed25519 or p256 key")
        return cls(key)

    @property
    def alg(self) -> str:
        return self.verifying_key.alg

    @property
    def key_id(self) -> str:
        return self.verifying_key.key_id

    def sign(self, header_digest: bytes, chunk_root: bytes) -> bytes:
        """64-byte signature: Ed25519, or ECDSA P-256 as low-s r || s."""
        return self.sign_message(_signature_message(header_digest, chunk_root))

    def sign_message(self, message: bytes) -> bytes:
        """64-byte signature over the whole, already domain-separated `message`."""
        if isinstance(self._private_key, ed25519.Ed25519PrivateKey):
            return self._private_key.sign(message)
        r, s = decode_dss_signature(self._private_key.sign(message, ec.ECDSA(hashes.SHA256())))
        s = min(s, _P256_ORDER - s)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def export_private_pem(self) -> bytes:
        return export_private_pem(self._private_key)

    def __repr__(self) -> str:
        return f"SigningKey(alg={self.alg!r}, key_id={self.key_id!r})"


class TrustStore:
    """The publisher keys a device accepts signatures from, indexed by key id."""

    def __init__(self, keys: Iterable[VerifyingKey] = ()) -> None:
        self._keys: dict[str, VerifyingKey] = {}
        for k in keys:
            self.add(k)

    @classmethod
    def load(cls, paths: Iterable[str | os.PathLike[str]]) -> TrustStore:
        """Raises KeyFileError if any file is not a usable publisher public key."""
        return cls(VerifyingKey.load(Path(p)) for p in paths)

    def add(self, key: VerifyingKey) -> None:
        self._keys[key.key_id] = key

    def find(self, alg: str, key_id: str) -> VerifyingKey:
        """Raises UntrustedSignerError unless a trusted key has this id and algorithm."""
        key = self._keys.get(key_id)
        if key is None or key.alg != alg:
            raise UntrustedSignerError(f"the file is signed by key {key_id} ({alg}), which is not trusted")
        return key

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"TrustStore({sorted(self._keys)})"


def resolve_trust(trust: Any) -> TrustStore:
    """A TrustStore from a TrustStore, VerifyingKey, PEM path or bytes, or a list of these.

    Raises:
        ValueError: no publisher key at all (loading would then trust nobody).
        KeyFileError: a file is not a usable publisher public key.
    """
    if isinstance(trust, TrustStore):
        store = trust
    else:
        items = list(trust) if isinstance(trust, (list, tuple)) else ([] if trust is None else [trust])
        store = TrustStore(k if isinstance(k, VerifyingKey) else VerifyingKey.load(k) for k in items)
    if len(store) == 0:
        raise ValueError("the trust store is empty: give the publisher's public key(s) in trust=")
    return store
