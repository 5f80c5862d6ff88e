"""edgeguard: seal ML models for edge devices, load them into locked memory, detect extraction."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .errors import (
    EdgeguardError,
    ExpiredError,
    FormatError,
    IntegrityError,
    KeyFileError,
    NotARecipientError,
    NotYetValidError,
    PolicyError,
    RollbackError,
    UnsupportedVersionError,
    UntrustedSignerError,
)
from .keys import TrustStore, load_identity
from .policy import VersionStore
from .recipients.pkcs11 import Pkcs11Identity
from .recipients.scrypt import PassphraseIdentity
from .runtime import InferenceSession, open_sealed
from .secure_memory import harden_process

try:
    __version__ = version("edgeguard")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0+unknown"

__all__ = [
    "EdgeguardError",
    "ExpiredError",
    "FormatError",
    "IntegrityError",
    "KeyFileError",
    "NotARecipientError",
    "NotYetValidError",
    "PolicyError",
    "RollbackError",
    "UnsupportedVersionError",
    "UntrustedSignerError",
    "__version__",
    "InferenceSession",
    "open_sealed",
    "harden_process",
    "Pkcs11Identity",
    "PassphraseIdentity",
    "TrustStore",
    "VersionStore",
    "load_identity",
]
