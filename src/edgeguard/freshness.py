"""Freshness checks on a verified header: the signed validity window and anti-rollback.

Both run only on metadata the publisher signed, right after its signature verifies and before any
key is unwrapped, so an attacker who edits the header gets an IntegrityError, never a decision made
on forged values, and a stale or rolled-back model is refused before any plaintext exists.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from ._files import atomic_output
from .errors import ExpiredError, LoadRefusedError, NotYetValidError, RollbackError
from .format import ModelInfo, canonical_json

Clock = Callable[[], float]


def _utc(t: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def check_validity(model: ModelInfo, now: float) -> None:
    """Enforces not_before <= now <= not_after (both optional, Unix seconds).

    Raises:
        NotYetValidError: now is before not_before.
        ExpiredError: now is after not_after.
    """
    if model.not_before is not None and now < model.not_before:
        raise NotYetValidError(f"model {model.name!r} v{model.version} is not valid before {_utc(model.not_before)}")
    if model.not_after is not None and now > model.not_after:
        raise ExpiredError(f"model {model.name!r} v{model.version} expired at {_utc(model.not_after)}")


class HighWaterStore:
    """The highest value seen per name, in one small JSON file ``{FIELD: {name: value}}``.

    Updates are atomic (temp file, fsync, rename) and serialised between processes with an
    advisory lock on ``<path>.lock``; a corrupt file fails closed. The base of
    :class:`VersionStore` and :class:`~edgeguard.revocation.RevocationStore`.
    """

    FIELD = ""
    WHAT = ""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def _read(self) -> dict[str, int]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            values = json.loads(data)[self.FIELD]
            if not isinstance(values, dict) or not all(isinstance(k, str) and type(v) is int for k, v in values.items()):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            # Fail closed: a damaged store must not silently become an empty one.
            raise LoadRefusedError(f"{self.WHAT} {self.path} is corrupt; refusing to load") from None
        return values

    def highest(self, name: str) -> int | None:
        """Raises LoadRefusedError if the store is corrupt."""
        return self._read().get(name)

    def _check_and_record(self, name: str, value: int, older: Callable[[int], Exception]) -> None:
        """Raises ``older(highest)`` for a value below the highest recorded, else records it."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            values = self._read()
            highest = values.get(name)
            if highest is not None and value < highest:
                raise older(highest)
            if highest == value:
                return
            values[name] = value
            with atomic_output(self.path, overwrite=True, mode=0o600) as (out, _tmp):
                os.write(out, canonical_json({self.FIELD: values}))
        finally:
            os.close(fd)  # releases the lock


class VersionStore(HighWaterStore):
    """Highest model version loaded so far, per model name, in one small JSON file.

    Limits: the store is only as trustworthy as the file system it lives on. Anyone who can write,
    delete or restore the file (root, a reflashed device, a restored backup) can reset it and so
    re-enable an old model; it protects against rollback by an attacker who can replace the model
    file but not the store. Use a path on storage the app alone can write, ideally backed by a
    hardware monotonic counter.
    """

    FIELD = "models"
    WHAT = "version store"

    def check(self, name: str, version: int) -> None:
        """Refuses a version below the highest recorded for `name`, recording nothing.

        Raises:
            RollbackError: `version` is lower than one already loaded.
            LoadRefusedError: the store is corrupt.
        """
        highest = self.highest(name)
        if highest is not None and version < highest:
            raise _rollback(name, version, highest)

    def check_and_record(self, name: str, version: int) -> None:
        """Refuses a version below the highest recorded for `name`, else records it.

        Raises:
            RollbackError: `version` is lower than one already loaded.
            LoadRefusedError: the store is corrupt.
            OSError: the store cannot be written.
        """
        self._check_and_record(name, version, lambda highest: _rollback(name, version, highest))


def _rollback(name: str, version: int, highest: int) -> RollbackError:
    return RollbackError(f"model {name!r} v{version} is older than v{highest}, which was already loaded")
