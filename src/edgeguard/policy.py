"""Deprecated name of :mod:`edgeguard.freshness` (validity window and anti-rollback), kept for one
release: ``edgeguard.policy`` read as the detector's response ``Policy``."""

import warnings

from .freshness import Clock, VersionStore, check_validity

warnings.warn("edgeguard.policy is deprecated; use edgeguard.freshness", DeprecationWarning, stacklevel=2)

__all__ = ["Clock", "VersionStore", "check_validity"]
