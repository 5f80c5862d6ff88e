"""Recipient types: who can unwrap a sealed file's content key (one module per type).

A *recipient* is the public side used when sealing (``wrap``); an *identity* is the private side
used when opening (``unwrap``). Security property: a stanza produced by ``wrap`` reveals nothing
about the content key to anyone without the matching identity, and is bound to one file's salt,
so it cannot be moved into another file.

Each type's module declares its stanza (``STANZA``, a :class:`~edgeguard.format.StanzaSpec`: the
fields the generic strict parser in :mod:`edgeguard.format` checks) and, for key-file types, turns
a loaded key into its recipient or identity (``recipient_for`` / ``identity_for``). The table below
is the only place that lists the types: adding one is a module, a line here and the spec.
Identities that live elsewhere than in a key file (a PKCS#11 token) open an existing type's stanzas.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib import import_module
from types import ModuleType
from typing import Any, NoReturn, Protocol

from ..format import Stanza, StanzaSpec

WRAP_LABEL = b"edgeguard/v1 dek\x00"
DEK_LEN = 32

# Stanza type -> the module that implements it.
_MODULES = {
    "hpke-x25519": ".x25519",
    "hpke-p256": ".p256",
    "scrypt": ".scrypt",
}
STANZA_TYPES = tuple(_MODULES)


WRAP_LABEL_V2 = b"edgeguard/v2 dek\x00"


def wrap_context(file_salt: bytes) -> bytes:
    """HPKE info / AEAD associated data that binds a key wrap to one sealed file."""
    return WRAP_LABEL + file_salt


def wrap_context_v2(salt: bytes, artifact_id: bytes) -> bytes:
    """HPKE info that binds a grant's key wrap to one version 2 artifact (its salt and its id)."""
    return WRAP_LABEL_V2 + salt + artifact_id


class Recipient(Protocol):
    def wrap(self, dek: bytes, file_salt: bytes) -> Stanza:
        """Returns a stanza from which only the matching identity recovers `dek`.

        Key-file recipients also take ``context=`` (a version 2 grant's whole wrap context, used
        instead of ``wrap_context(file_salt)``)."""
        ...


class KeyRecipient(Recipient, Protocol):
    """A recipient that is a device key, addressed in its stanzas by `key_id`."""

    key_id: str


class Identity(Protocol):
    def unwrap(self, stanzas: Sequence[Stanza], file_salt: bytes) -> bytes | None:
        """Returns the content key if one of `stanzas` is addressed to this identity and opens, else None.

        Identities that open version 2 grants also take ``context=`` (the grant's wrap context,
        used instead of ``wrap_context(file_salt)``)."""
        ...


class NoPickle:
    """Key material must never be pickled into a cache, a queue or a crash dump by accident."""

    def __reduce__(self) -> NoReturn:
        raise TypeError(f"{type(self).__name__} holds key material and cannot be pickled")


def _module(stanza_type: str) -> ModuleType:
    return import_module(_MODULES[stanza_type], __name__)


def stanza_spec(stanza_type: str) -> StanzaSpec:
    """The stanza declaration of a registered type. Raises KeyError for an unknown type."""
    spec: StanzaSpec = _module(stanza_type).STANZA
    return spec


def load_recipient(source: str | os.PathLike[str] | bytes) -> KeyRecipient:
    """A device public key (PEM path or bytes) as the recipient of whichever type takes it.

    Raises:
        KeyFileError: unreadable, malformed, or a key no recipient type takes (an Ed25519 key only signs).
    """
    from ..errors import KeyFileError
    from ..keys import load_public_key

    key = load_public_key(source)
    for module in _key_file_modules():
        recipient: KeyRecipient | None = module.recipient_for(key)
        if recipient is not None:
            return recipient
    raise KeyFileError("a recipient must be an X25519 or P-256 device public key (an Ed25519 key only signs)")


def load_identity(source: str | os.PathLike[str] | bytes) -> Identity:
    """A device private key from a PEM file (permission-checked) or PEM bytes.

    Raises:
        KeyFileError: unreadable, insecure, malformed, or not a device key type.
    """
    from ..errors import KeyFileError
    from ..keys import load_private_key

    key = load_private_key(source)
    for module in _key_file_modules():
        identity: Identity | None = module.identity_for(key)
        if identity is not None:
            return identity
    raise KeyFileError("an identity must be an X25519 or P-256 device private key (an Ed25519 key only signs)")


def _key_file_modules() -> list[ModuleType]:
    """The recipient types whose keys live in PEM files (a passphrase has no key file)."""
    return [m for m in map(_module, STANZA_TYPES) if hasattr(m, "identity_for")]


PKCS11_SCHEME = "pkcs11:"


def resolve_identities(identity: Any, passphrase: str | bytes | None = None) -> list[Identity]:
    """Turns every accepted identity form into Identity objects; the runtime and the CLI both use it.

    `identity` is an object with ``unwrap(stanzas, file_salt)``, a PEM file path
    (permission-checked), PEM bytes, an RFC 7512 ``pkcs11:`` URI (a key on a token), or a list of
    these; `passphrase` adds a passphrase identity.

    Raises:
        ValueError: neither an identity nor a passphrase, or a malformed pkcs11 URI.
        TypeError: an identity of an unsupported type.
        KeyFileError: a key file or token cannot be used (TokenError for a token).
    """
    out: list[Identity] = []
    if passphrase is not None:
        from .scrypt import PassphraseIdentity

        out.append(PassphraseIdentity(passphrase))
    pending = list(identity) if isinstance(identity, (list, tuple)) else ([] if identity is None else [identity])
    for item in pending:
        if isinstance(item, str) and item.startswith(PKCS11_SCHEME):
            from .pkcs11 import Pkcs11Identity

            out.append(Pkcs11Identity(item))
        elif isinstance(item, (str, os.PathLike, bytes)):
            out.append(load_identity(item))
        elif callable(getattr(item, "unwrap", None)):
            out.append(item)
        else:
            raise TypeError(f"unsupported identity type {type(item).__name__}")
    if not out:
        raise ValueError("an identity (device key) or a passphrase is needed to open a sealed model")
    return out


__all__ = [
    "DEK_LEN", "STANZA_TYPES", "Identity", "KeyRecipient", "NoPickle", "Recipient", "load_identity", "load_recipient",
    "resolve_identities", "stanza_spec", "wrap_context", "wrap_context_v2",
]  # fmt: skip
