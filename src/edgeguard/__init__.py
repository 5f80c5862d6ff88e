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
]
