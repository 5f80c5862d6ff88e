"""Passphrase recipients: scrypt-derived key wrapping. Must be a file's only recipient (as in age).

The work factor is the sealer's choice and so an attacker's: a device refuses, before deriving
anything, a stanza that asks for more than its ``max_log_n`` (memory is 1 KiB x 2^log_n).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ..errors import NotARecipientError
from ..format import Stanza, StanzaField, StanzaSpec
from . import DEK_LEN, NoPickle, wrap_context

STANZA_TYPE = "scrypt"
LOG_N_RANGE = (10, 22)  # what a stanza may say; 22 is 4 GiB
SALT_LEN = 16
STANZA = StanzaSpec(
    STANZA_TYPE,
    {"salt": StanzaField("b64", SALT_LEN), "log_n": StanzaField("int", lo=LOG_N_RANGE[0], hi=LOG_N_RANGE[1]), "wrapped": StanzaField("b64", 48)},
    only_recipient=True,
)
DEFAULT_LOG_N = 18  # 256 MiB and about a second here: costly to brute-force, tolerable on a device
DEFAULT_MAX_LOG_N = 19  # what a device spends at most by default: 512 MiB, two seconds here
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
        if not LOG_N_RANGE[0] <= log_n <= LOG_N_RANGE[1]:
            raise ValueError(f"scrypt log_n must be in {LOG_N_RANGE[0]}..{LOG_N_RANGE[1]}")
        self._passphrase = _encode(passphrase)
        self._log_n = log_n

    def wrap(self, dek: bytes, file_salt: bytes) -> Stanza:
        salt = os.urandom(SALT_LEN)
        key = _derive(self._passphrase, salt, self._log_n)
        wrapped = ChaCha20Poly1305(key).encrypt(_ZERO_NONCE, dek, wrap_context(file_salt))
        return Stanza(type=STANZA_TYPE, wrapped=wrapped, params=(("log_n", self._log_n), ("salt", salt)))

    def __repr__(self) -> str:
        return "PassphraseRecipient(<hidden>)"


class PassphraseIdentity(NoPickle):
    """Opens passphrase-sealed files.

    `max_log_n` bounds the memory and time an attacker's file can make the device spend (default
    DEFAULT_MAX_LOG_N, 512 MiB; raise it for files sealed with a larger work factor).

    Raises:
        ValueError: an empty passphrase, or `max_log_n` outside LOG_N_RANGE.
    """

    def __init__(self, passphrase: str | bytes, max_log_n: int = DEFAULT_MAX_LOG_N) -> None:
        if type(max_log_n) is not int or not LOG_N_RANGE[0] <= max_log_n <= LOG_N_RANGE[1]:
            raise ValueError(f"max_log_n must be an integer in {LOG_N_RANGE[0]}..{LOG_N_RANGE[1]}")
        self._passphrase = _encode(passphrase)
        self._max_log_n = max_log_n

    def unwrap(self, stanzas: Sequence[Stanza], file_salt: bytes, *, context: bytes | None = None) -> bytes | None:
        """Raises NotARecipientError, before deriving anything, for a work factor above max_log_n.
        A version 2 grant (`context` given) holds no passphrase stanza: it opens nothing."""
        if context is not None:
            return None
        for stanza in stanzas:
            if stanza.type != STANZA_TYPE:
                continue
            log_n = stanza.param("log_n")
            if log_n > self._max_log_n:
                raise NotARecipientError(
                    f"the file's passphrase needs scrypt log_n {log_n} ({1 << (log_n - 10)} MiB), above this "
                    f"device's max_log_n {self._max_log_n}; pass PassphraseIdentity(..., max_log_n={log_n}) to allow it"
                )
            key = _derive(self._passphrase, stanza.param("salt"), log_n)
            try:
                dek = ChaCha20Poly1305(key).decrypt(_ZERO_NONCE, stanza.wrapped, wrap_context(file_salt))
            except InvalidTag:
                return None
            return dek if len(dek) == DEK_LEN else None
        return None

    def __repr__(self) -> str:
        return "PassphraseIdentity(<hidden>)"
