"""Passphrase recipients: scrypt-derived key wrapping. Must be a file's only recipient (as in age)."""

from __future__ import annotations

import os
from typing import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ..format import SCRYPT_LOG_N_RANGE, SCRYPT_SALT_LEN, Stanza
from . import DEK_LEN, NoPickle, wrap_context

STANZA_TYPE = "scrypt"
DEFAULT_LOG_N = 18  # 256 MiB and about a second here: costly to brute-force, tolerable on a device
_LABEL = b"edgeguard/v1 scrypt\x00"
_ZERO_NONCE = bytes(12)  # each derived key wraps exactly one DEK, so a fixed nonce is safe


def _derive(passphrase: bytes, salt: bytes, log_n: int) -> bytes:
    return Scrypt(salt=_LABEL + salt, length=32, n=1 << log_n, r=8, p=1).derive(passphrase)


def _encode(passphrase: str | bytes) -> bytes:
    raw = passphrase.encode("utf-8") if isinstance(passphrase, str) else bytes(passphrase)
    if not raw:
        raise ValueError("the passphrase is empty")
    return raw


class PassphraseRecipient(NoPickle):
    """Seals to a passphrase. Raises ValueError for an empty passphrase or a work factor out of range."""

    def __init__(self, passphrase: str | bytes, log_n: int = DEFAULT_LOG_N) -> None:
        if not SCRYPT_LOG_N_RANGE[0] <= log_n <= SCRYPT_LOG_N_RANGE[1]:
            raise ValueError(f"scrypt log_n must be in {SCRYPT_LOG_N_RANGE[0]}..{SCRYPT_LOG_N_RANGE[1]}")
        self._passphrase = _encode(passphrase)
        self._log_n = log_n

    def wrap(self, dek: bytes, file_salt: bytes) -> Stanza:
        salt = os.urandom(SCRYPT_SALT_LEN)
        key = _derive(self._passphrase, salt, self._log_n)
        wrapped = ChaCha20Poly1305(key).encrypt(_ZERO_NONCE, dek, wrap_context(file_salt))
        return Stanza(type=STANZA_TYPE, wrapped=wrapped, salt=salt, log_n=self._log_n)

    def __repr__(self) -> str:
        return "PassphraseRecipient(<hidden>)"


class PassphraseIdentity(NoPickle):
    """Opens passphrase-sealed files. `max_log_n` bounds the memory an attacker's file can make us spend."""

    def __init__(self, passphrase: str | bytes, max_log_n: int = SCRYPT_LOG_N_RANGE[1]) -> None:
        self._passphrase = _encode(passphrase)
        self._max_log_n = max_log_n

    def unwrap(self, stanzas: Sequence[Stanza], file_salt: bytes) -> bytes | None:
        for stanza in stanzas:
            if stanza.type != STANZA_TYPE or stanza.log_n is None or stanza.salt is None:
                continue
            if stanza.log_n > self._max_log_n:
                return None
            key = _derive(self._passphrase, stanza.salt, stanza.log_n)
            try:
                dek = ChaCha20Poly1305(key).decrypt(_ZERO_NONCE, stanza.wrapped, wrap_context(file_salt))
            except InvalidTag:
                return None
            return dek if len(dek) == DEK_LEN else None
        return None

    def __repr__(self) -> str:
        return "PassphraseIdentity(<hidden>)"
