"""The edgeguard exception hierarchy.

Every error edgeguard raises on bad input derives from :class:`EdgeguardError`. Integrity failures
are deliberately opaque: a tampered header signature, a failed chunk tag, a wrong chunk digest, a
truncated or extended file all raise the same :class:`IntegrityError` with the same message, so a
caller (or an attacker probing a device) learns nothing about which check failed. No exception
text ever contains key material or plaintext.
"""

from __future__ import annotations


class EdgeguardError(Exception):
    """Base class of every error edgeguard raises on bad input or failed checks."""


class FormatError(EdgeguardError):
    """The bytes are not a well-formed sealed file (bad magic, malformed header, limit exceeded).

    The header is public, so saying what is malformed gives nothing away.
    """


class UnsupportedVersionError(FormatError):
    """The file declares a format version this build does not read."""


class IntegrityError(EdgeguardError):
    """The sealed file failed authentication. Which check failed is deliberately not said."""

    MESSAGE = "sealed file failed integrity verification"

    def __init__(self) -> None:
        super().__init__(self.MESSAGE)


class UntrustedSignerError(EdgeguardError):
    """The file is signed by a key that is not in the caller's trust store."""


class NotARecipientError(EdgeguardError):
    """None of the given identities can unwrap the file's content key (or the passphrase is wrong)."""


class KeyFileError(EdgeguardError):
    """A key file is unreadable, malformed, of the wrong type, or insecurely permissioned."""


class LoadRefusedError(EdgeguardError):
    """The file is authentic but a load-time rule refuses it (validity window, anti-rollback)."""


class NotYetValidError(LoadRefusedError):
    """The model's not-before time is in the future."""


class ExpiredError(LoadRefusedError):
    """The model's not-after time has passed."""


class RollbackError(LoadRefusedError):
    """The model version is lower than one already loaded under the same name."""


class CoverageError(LoadRefusedError):
    """Strict mode refuses an ONNX model whose weights are not all in the secure buffer: less than
    ``min_coverage`` of its parameter bytes would be read from there (the rest would sit in
    onnxruntime's ordinary heap), typically a file sealed by an older edgeguard. Re-seal it.

    ``coverage`` is the measured :class:`~edgeguard.coverage.Coverage`.
    """

    def __init__(self, message: str, coverage: object = None) -> None:
        super().__init__(message)
        self.coverage = coverage


class RevokedError(LoadRefusedError):
    """A revocation list the device trusts revokes the grant or the device key that would open the file."""


class RevocationRollbackError(RollbackError):
    """A revocation list's serial is lower than one already seen from the same signer."""


class DetectorError(EdgeguardError):
    """The extraction-query detector refused its input (bad argument, mismatched profile or state)."""


class DetectorArgumentError(DetectorError, ValueError):
    """A detector call got a bad argument: a client id, max_clients, policy levels, a feed or outputs
    that do not fit the profile, a decision that did not come from the guard.

    Also a :class:`ValueError`, like every other bad argument in edgeguard; malformed profiles and
    state snapshots raise :class:`ProfileError` and plain :class:`DetectorError` instead.
    """


class ProfileError(DetectorError):
    """A detector profile is malformed, non-canonical, of an unknown version, or cannot be built."""


class QueryBlockedError(DetectorError):
    """The guard's policy blocks this client's queries; no answer is released."""


_DEPRECATED = {"PolicyError": "LoadRefusedError"}


def __getattr__(name: str) -> type[EdgeguardError]:
    """Old names, for one release: ``PolicyError`` read as the detector's Policy."""
    new = _DEPRECATED.get(name)
    if new is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import warnings

    warnings.warn(f"edgeguard.errors.{name} is deprecated; use {new}", DeprecationWarning, stacklevel=2)
    cls: type[EdgeguardError] = globals()[new]
    return cls
