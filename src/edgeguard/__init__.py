"""edgeguard: seal ML models for edge devices, load them into locked memory, detect extraction."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from . import errors
from .errors import (
    CoverageError,
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


def _version() -> str:
    # importlib.metadata costs ~30 ms to import: looked up on first use, not at `import edgeguard`.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("edgeguard")
    except PackageNotFoundError:  # running from a source tree without an install
        return "0+unknown"


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

if TYPE_CHECKING:  # what type checkers see for the lazy names; at run time they import on first use
    __version__: str
    from .detect import Action as Action
    from .detect import AlertEvent as AlertEvent
    from .detect import Decision as Decision
    from .detect import Guard as Guard
    from .detect import Policy as Policy
    from .detect import Profile as Profile
    from .detect import Reason as Reason
    from .freshness import VersionStore as VersionStore
    from .keys import TrustStore as TrustStore
    from .recipients import load_identity as load_identity
    from .recipients.pkcs11 import Pkcs11Identity as Pkcs11Identity
    from .recipients.scrypt import PassphraseIdentity as PassphraseIdentity
    from .revocation import RevocationList as RevocationList
    from .revocation import RevocationStore as RevocationStore
    from .runtime import InferenceSession as InferenceSession
    from .runtime import open_sealed as open_sealed
    from .secure_memory import harden_process as harden_process


def __getattr__(name: str) -> Any:
    if name == "__version__":
        globals()[name] = value = _version()
        return value
    if name in _DEPRECATED_ERRORS:
        return getattr(errors, name)  # warns
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgeguard' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "CoverageError",
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
