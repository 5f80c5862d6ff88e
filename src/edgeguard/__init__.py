"""edgeguard: seal ML models for edge devices, load them into locked memory, detect extraction."""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from . import errors
from .errors import (
    DetectorError,
    EdgeguardError,
    ExpiredError,
    FormatError,
    IntegrityError,
    KeyFileError,
    LoadRefusedError,
    NotARecipientError,
    NotYetValidError,
    ProfileError,
    QueryBlockedError,
    RevocationRollbackError,
    RevokedError,
    RollbackError,
    UnsupportedVersionError,
    UntrustedSignerError,
)

try:
    __version__ = version("edgeguard")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0+unknown"

_DEPRECATED_ERRORS = ("PolicyError",)

# Heavier parts load on first use, so `import edgeguard` (and the CLI) stays quick.
_LAZY = {
    "Action": ".detect",
    "AlertEvent": ".detect",
    "Decision": ".detect",
    "Guard": ".detect",
    "Policy": ".detect",
    "Profile": ".detect",
    "Reason": ".detect",
    "InferenceSession": ".runtime",
    "open_sealed": ".runtime",
    "harden_process": ".secure_memory",
    "Pkcs11Identity": ".recipients.pkcs11",
    "PassphraseIdentity": ".recipients.scrypt",
    "TrustStore": ".keys",
    "VersionStore": ".freshness",
    "load_identity": ".recipients",
    "RevocationList": ".revocation",
    "RevocationStore": ".revocation",
}


def __getattr__(name: str) -> Any:
    if name in _DEPRECATED_ERRORS:
        return getattr(errors, name)  # warns
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgeguard' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "DetectorError",
    "EdgeguardError",
    "ExpiredError",
    "FormatError",
    "IntegrityError",
    "KeyFileError",
    "NotARecipientError",
    "NotYetValidError",
    "LoadRefusedError",
    "ProfileError",
    "QueryBlockedError",
    "RevocationRollbackError",
    "RevokedError",
    "RollbackError",
    "UnsupportedVersionError",
    "UntrustedSignerError",
    "__version__",
    *_LAZY,
]
