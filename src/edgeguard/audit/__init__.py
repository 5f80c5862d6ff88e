"""The device's tamper-evident audit log (docs/audit.md).

* :class:`AuditLog` writes it: framed, hash-chained records, checkpoints signed by a device key
  (Ed25519 or P-256 in a PEM file, P-256 on a PKCS#11 token) or MACed with a device secret.
* :func:`verify_log` checks it and says how far it is intact and vouched for.
* ``InferenceSession(audit=...)``, ``Guard(audit=...)`` and ``edgeguard verify/unseal --audit``
  record into it; ``edgeguard audit verify|show|export`` read it.
"""

from __future__ import annotations

from ._format import DEFAULT_EVENTS, EVENT_TYPES
from .keys import CheckpointVerifier, HmacSigner, PemSigner, Pkcs11Signer, load_signer
from .log import FSYNC_POLICIES, AuditLog, AuditLogError, segment_paths
from .reader import AuditReport, Record, load_anchors, verify_log

__all__ = [
    "DEFAULT_EVENTS",
    "EVENT_TYPES",
    "FSYNC_POLICIES",
    "AuditLog",
    "AuditLogError",
    "AuditReport",
    "CheckpointVerifier",
    "HmacSigner",
    "PemSigner",
    "Pkcs11Signer",
    "Record",
    "load_anchors",
    "load_signer",
    "segment_paths",
    "verify_log",
]
