"""How the runtime, the guard and the CLI record into an audit log, in as few lines of theirs as possible.

Auditing never changes what a load or a query does: a failure to record is counted on the log
(``write_errors``) and logged with :mod:`logging`, never raised into inference.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from ..freshness import VersionStore
from ._format import MODEL_LOAD, MODEL_REFUSED, ROLLBACK_UPDATE
from .log import AuditLog

_log = logging.getLogger("edgeguard.audit")
# Names another part of edgeguard may give the session's protected-coverage figure.
_COVERAGE_ATTRS = ("coverage", "protected_coverage", "weight_coverage")


def open_audit(audit: Any) -> tuple[AuditLog | None, bool]:
    """(log, owned): an AuditLog as given, or one opened at a path (then owned by the caller)."""
    if audit is None:
        return None, False
    if isinstance(audit, AuditLog):
        return audit, False
    if isinstance(audit, (str, os.PathLike)):
        return AuditLog(audit), True
    raise TypeError("audit must be an edgeguard.audit.AuditLog or a path")


def _safe(log: AuditLog | None, event_type: str, data: dict[str, Any]) -> None:
    if log is None:
        return
    try:
        log.record(event_type, data, urgent=True)
    except Exception as exc:  # a closed log, an unserialisable value: never break a load for it
        log.write_errors += 1
        _log.warning("could not record %s in the audit log: %s", event_type, type(exc).__name__)


def jsonable(value: Any, depth: int = 0) -> Any:
    """A JSON-safe rendering of a figure someone else computes (read defensively)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return round(value, 6) if value == value and abs(value) != float("inf") else str(value)
    if depth > 4:
        return str(value)[:200]
    to_dict = getattr(value, "to_dict", None) or getattr(value, "as_dict", None)
    if callable(to_dict):
        try:
            return jsonable(to_dict(), depth + 1)
        except Exception:
            return str(value)[:200]
    if isinstance(value, dict):
        return {str(k): jsonable(v, depth + 1) for k, v in list(value.items())[:64]}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, depth + 1) for v in value[:64]]
    if hasattr(value, "__dataclass_fields__"):
        return {k: jsonable(getattr(value, k, None), depth + 1) for k in value.__dataclass_fields__}
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)[:200]


def coverage_of(obj: Any) -> Any:
    """The protected-coverage figure `obj` exposes, if any (None when it has none)."""
    for name in _COVERAGE_ATTRS:
        value = getattr(obj, name, None)
        if value is not None and not callable(value):
            return jsonable(value)
    return None


def header_facts(container: Any) -> dict[str, Any]:
    """What a load record says about the sealed file: all of it from the verified header."""
    header = container.header
    return {
        "model": header.model.name,
        "version": header.model.version,
        "header_digest": hashlib.sha256(container.preamble_and_header).hexdigest(),
        "signer": {"alg": header.signer_alg, "key_id": header.signer_key_id},
        "payload_kind": header.payload_kind,
        "cipher": header.cipher,
    }


def refusal(path: Any, exc: BaseException) -> dict[str, Any]:
    """The typed reason a load was refused: the exception's class and message (no secrets: the
    error hierarchy keeps key material and plaintext out of messages)."""
    return {"file": Path(os.fspath(path)).name if isinstance(path, (str, os.PathLike)) else str(path),
            "error": type(exc).__name__, "message": str(exc)[:500]}  # fmt: skip


class _WatchedStore(VersionStore):
    """A VersionStore that records each anti-rollback update it makes."""

    def __init__(self, inner: VersionStore, log: AuditLog) -> None:
        super().__init__(inner.path)
        self._inner, self._audit = inner, log

    def highest(self, name: str) -> int | None:
        return self._inner.highest(name)

    def check(self, name: str, version: int) -> None:
        self._inner.check(name, version)

    def check_and_record(self, name: str, version: int) -> None:
        before = self._inner.highest(name)
        self._inner.check_and_record(name, version)
        if before != version:
            _safe(self._audit, ROLLBACK_UPDATE, {"model": name, "version": version, "previous": before, "store": self.path.name})


class SessionAudit:
    """The runtime's side of auditing: a no-op without a log.

    ``SessionAudit(audit, guard)``: `audit` is None, a path (the session then owns and closes the
    log) or an AuditLog. A guard without a log of its own records into this one.
    """

    def __init__(self, audit: Any, guard: Any = None) -> None:
        self.log, self._owned = open_audit(audit)
        if self.log is not None and guard is not None and getattr(guard, "audit", False) is None:
            guard.audit = self.log

    def watch(self, store: Any) -> Any:
        """The version store, recording its anti-rollback updates into the log."""
        if self.log is None or store is None or not isinstance(store, (VersionStore, str, os.PathLike)):
            return store
        return _WatchedStore(store if isinstance(store, VersionStore) else VersionStore(store), self.log)

    def refused(self, path: Any, exc: BaseException) -> None:
        _safe(self.log, MODEL_REFUSED, refusal(path, exc))
        if self._owned:
            self.close()

    def loaded(self, path: Any, opened: Any, session: Any) -> None:
        if self.log is None:
            return
        data = {"file": Path(os.fspath(path)).name, **header_facts(opened.container),
                "mode": getattr(session, "hygiene", None)}  # fmt: skip
        memory = getattr(session, "memory", None)
        if memory is not None:
            data["locked"] = bool(getattr(memory, "locked", False))
        coverage = coverage_of(session)
        if coverage is not None:
            data["protected_coverage"] = coverage
        _safe(self.log, MODEL_LOAD, data)

    def close(self) -> None:
        log, self.log = self.log, None
        if log is not None and self._owned:
            log.close()


def guard_audit(audit: Any) -> AuditLog | None:
    """The Guard's ``audit=``: None, an AuditLog, or a path (a log the guard keeps until exit)."""
    return open_audit(audit)[0]
