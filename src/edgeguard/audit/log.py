"""The append-only, hash-chained, checkpointed audit log a device writes (docs/audit.md).

Producers (the runtime, the guard, the CLI) hand events to :class:`AuditLog`; by default a writer
thread frames, chains and writes them, so that inference never waits on the disk for more than
``max_block_ms`` per event: when the bounded queue is full after that long, the event is dropped
and counted, and the count is itself logged (an ``audit.dropped`` record) once there is room.
"""

from __future__ import annotations

import atexit
import base64
import collections
import hashlib
import hmac
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ._format import (
    BOOKKEEPING,
    CHECKPOINT,
    DEFAULT_EVENTS,
    DETECTOR_ALERT,
    DROPPED,
    EVENT_TYPES,
    GUARD_DECISION,
    LOG_CLOSE,
    LOG_ID_LEN,
    LOG_OPEN,
    LOG_RESUME,
    LOG_ROTATE,
    MAGIC,
    MAX_RECORD,
    ZERO_CHAIN,
    chain_next,
    checkpoint_message,
    encode_body,
    frame,
)
from .keys import CheckpointSigner, load_signer
from .reader import Segment, parse_segment

FSYNC_POLICIES = ("always", "checkpoint", "never")
ACTIONS = ("allow", "alert", "degrade", "throttle", "block")  # edgeguard.detect.Action, by value
_MAX_PENDING = 8 << 20  # bytes the writer holds while the disk refuses writes; then events drop
_PSEUDONYM_CACHE = 4096
_LIVE: weakref.WeakSet[AuditLog] = weakref.WeakSet()
_SELF_CHECKPOINTED = (LOG_OPEN, LOG_RESUME, LOG_ROTATE, LOG_CLOSE)


class AuditLogError(ValueError):
    """A bad AuditLog argument, or a log that is already closed."""


def _fsync(fd: int) -> None:
    (getattr(os, "fdatasync", None) or os.fsync)(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AuditLog:
    """A tamper-evident audit log at `path` (rotated segments ``path.1``, ``path.2``, ...).

    Args:
        key: checkpoint signing key: a PEM path or bytes (Ed25519 or P-256), a ``pkcs11:`` URI of a
            P-256 token key, or a signer object. `mac_key` instead: a path to (or bytes of) a
            device secret of at least 32 bytes for HMAC-SHA256 checkpoints. Neither: the log is
            chained but has no checkpoints (it then detects accidents, not an attacker).
        events: the event types to record (default: all of ``DEFAULT_EVENTS``; ``"all"`` adds
            ``guard.decision``, one record per guarded query). Bookkeeping records are always written.
        fsync: ``"checkpoint"`` (default: fdatasync after every checkpoint, rotation, resume and
            close), ``"always"`` (after every write) or ``"never"``.
        checkpoint_every, checkpoint_interval_s: a checkpoint after this many records or this long
            since the last one (whichever first), and always at rotation and close.
        max_bytes, keep: rotate once a segment reaches max_bytes (None: never), keeping `keep` old ones.
        queue_size, max_block_ms, flush_interval_s: the writer thread's bounded queue, how long an
            event may wait for room before it is dropped (and counted), and how often it writes.
        threaded: False writes each event in the caller's thread before returning (the CLI, tests).
        client_salt: bytes (or a path to a file of them): client ids are logged as
            ``"hmac:" + HMAC-SHA256(salt, id)[:16 bytes]`` instead of in the clear.
        on_checkpoint: called (in the writer thread) with each checkpoint's anchor dict, to ship it
            off the device.

    Raises:
        AuditLogError: a bad argument.
        KeyFileError: the key cannot be used.
        OSError: the log cannot be created or written.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        key: Any = None,
        mac_key: Any = None,
        events: Iterable[str] | str | None = None,
        fsync: str = "checkpoint",
        checkpoint_every: int = 1000,
        checkpoint_interval_s: float = 60.0,
        max_bytes: int | None = 64 << 20,
        keep: int = 5,
        queue_size: int = 8192,
        max_block_ms: float = 10.0,
        flush_interval_s: float = 0.05,
        threaded: bool = True,
        client_salt: bytes | str | os.PathLike[str] | None = None,
        on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if fsync not in FSYNC_POLICIES:
            raise AuditLogError(f"fsync must be one of {', '.join(FSYNC_POLICIES)}")
        if type(checkpoint_every) is not int or checkpoint_every < 1 or checkpoint_interval_s <= 0:
            raise AuditLogError("checkpoint_every must be a positive integer and checkpoint_interval_s positive")
        if (max_bytes is not None and (type(max_bytes) is not int or max_bytes < 4096)) or type(keep) is not int or keep < 0:
            raise AuditLogError("max_bytes must be None or at least 4096, keep a non-negative integer")
        if type(queue_size) is not int or queue_size < 1 or max_block_ms < 0 or flush_interval_s <= 0:
            raise AuditLogError("queue_size must be a positive integer, max_block_ms >= 0, flush_interval_s > 0")
        if events is None:
            self.events = frozenset(DEFAULT_EVENTS)
        elif events == "all":
            self.events = frozenset(EVENT_TYPES)
        elif isinstance(events, str):
            raise AuditLogError('events is a collection of event types, or "all"')
        else:
            self.events = frozenset(events)
        self.path = Path(path)
        self.fsync = fsync
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval_s = float(checkpoint_interval_s)
        self.max_bytes = max_bytes
        self.keep = keep
        self.queue_size = queue_size
        self.max_block_s = max_block_ms / 1000
        self.flush_interval_s = flush_interval_s
        self.on_checkpoint = on_checkpoint
        self._clock = clock
        self._signer: CheckpointSigner | None = load_signer(key, mac_key)
        if isinstance(client_salt, (str, os.PathLike)):
            from ..keys import _read_key_file

            client_salt = _read_key_file(client_salt, private=True)
        self._salt = client_salt
        self._pseudonyms: dict[str, str] = {}
        self._log_decisions = GUARD_DECISION in self.events
        self._queue: collections.deque[tuple[Any, ...]] = collections.deque()
        self._io = threading.RLock()
        self._drop_lock = threading.Lock()
        self._dropped = 0
        self._dropped_logged = 0
        self.write_errors = 0
        self._pending = bytearray()
        self._fd = -1
        self._closed = False
        self._last_checkpoint: dict[str, Any] | None = None
        self._log_id, self._chain, self._segment, self._size = b"", ZERO_CHAIN, 0, 0
        self._seq, self._last_seq, self._since_checkpoint = 0, -1, 0
        self._checkpoint_time, self._sync_due = 0.0, False
        self._open()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(target=self._run, name=f"edgeguard-audit:{self.path.name}", daemon=True)
            self._thread.start()
        _LIVE.add(self)

    # ------------------------------------------------------------------ producers

    @property
    def dropped(self) -> int:
        """Events lost because the queue stayed full longer than max_block_ms."""
        return self._dropped

    @property
    def log_id(self) -> str:
        return self._log_id.hex()

    @property
    def last_checkpoint(self) -> dict[str, Any] | None:
        """The latest checkpoint's anchor (log_id, seq, chain, covers): keep copies off the device."""
        return self._last_checkpoint

    def wants(self, event_type: str) -> bool:
        return event_type in self.events

    def record(self, event_type: str, data: Mapping[str, Any], *, urgent: bool = False) -> bool:
        """Logs one event of a type in `events` (others are ignored: False). `data` must be
        JSON-serialisable and hold no secret and no raw input. `urgent` wakes the writer at once.

        Raises:
            AuditLogError: the log is closed, or `event_type` is a bookkeeping type.
        """
        if event_type in BOOKKEEPING:
            raise AuditLogError(f"{event_type} records are written by the log itself")
        if event_type not in self.events:
            return False
        return self._put(("e", self._clock(), event_type, dict(data)), urgent)

    def guard_decision(self, client_id: str, action: int, risk: float, queries: int, alert: Any) -> None:
        """The guard's hot path: an alert always (if ``detector.alert`` is logged), every decision
        only with ``guard.decision``. Costs a tuple and a deque append; the writer does the rest."""
        if alert is None and not self._log_decisions:
            return
        if alert is not None and DETECTOR_ALERT not in self.events and not self._log_decisions:
            return
        self._put(("g", self._clock(), client_id, int(action), risk, queries, alert), alert is not None)

    def _put(self, item: tuple[Any, ...], urgent: bool) -> bool:
        if self._closed:
            raise AuditLogError("the audit log is closed")
        if self._thread is None:
            with self._io:
                self._write_items([item])
            return True
        queue = self._queue
        if len(queue) >= self.queue_size:
            self._wake.set()
            deadline = time.monotonic() + self.max_block_s
            while len(queue) >= self.queue_size and time.monotonic() < deadline:
                time.sleep(0.0005)
            if len(queue) >= self.queue_size:
                with self._drop_lock:
                    self._dropped += 1
                return False
        queue.append(item)
        if urgent:
            self._wake.set()
        return True

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Waits until every event queued before the call is written (and the write fsynced under
        ``fsync="always"``). False if that took longer than `timeout`."""
        if self._thread is None or self._closed:
            return True
        done = threading.Event()
        self._queue.append(("f", done))
        self._wake.set()
        return done.wait(timeout)

    def checkpoint(self) -> None:
        """Writes a checkpoint now (if the log has a key), e.g. before exporting the log."""
        if self._thread is None:
            with self._io:
                self._emit_checkpoint(final=False)
                self._write_pending(sync=self.fsync != "never")
            return
        done = threading.Event()
        self._queue.append(("c", done))
        self._wake.set()
        done.wait(10.0)

    def close(self) -> None:
        """Writes what is queued, a ``log.close`` record and a final checkpoint, and closes. Idempotent."""
        if self._closed:
            return
        self._closed = True
        thread, self._thread = self._thread, None
        if thread is not None:
            self._wake.set()
            thread.join()
        with self._io:
            self._write_items(list(self._drain_queue()))
            self._append(LOG_CLOSE, {"dropped": self._dropped})
            self._emit_checkpoint(final=True)
            self._write_pending(sync=self.fsync != "never")
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        _LIVE.discard(self)

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        key = "no key" if self._signer is None else f"{self._signer.alg} {self._signer.key_id}"
        return f"AuditLog({str(self.path)!r}, {key}, {'closed' if self._closed else 'open'})"

    def __reduce__(self) -> Any:
        raise TypeError("an AuditLog holds an open file and a key and cannot be pickled")

    # ------------------------------------------------------------------ writer

    def _run(self) -> None:
        while self._thread is not None:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            try:
                with self._io:
                    if self._closed:
                        return
                    self._write_items(self._drain_queue())
            except Exception:  # never let the writer die; the next round retries what is pending
                self.write_errors += 1

    def _drain_queue(self) -> Iterable[tuple[Any, ...]]:
        queue = self._queue
        for _ in range(len(queue)):
            if len(self._pending) > _MAX_PENDING:  # the disk refuses writes: leave the rest queued
                return
            try:
                yield queue.popleft()
            except IndexError:
                return

    def _write_items(self, items: Iterable[tuple[Any, ...]]) -> None:
        done: list[threading.Event] = []
        for item in items:
            kind = item[0]
            if kind == "e":
                self._append(item[2], item[3], item[1])
            elif kind == "g":
                self._guard_records(*item[1:])
            elif kind == "f":
                done.append(item[1])
            elif kind == "c":
                self._emit_checkpoint(final=False)
                done.append(item[1])
        if self._dropped > self._dropped_logged:
            total = self._dropped
            self._append(DROPPED, {"count": total - self._dropped_logged, "total": total})
            self._dropped_logged = total
        if (self._signer is not None and self._since_checkpoint
                and self._clock() - self._checkpoint_time >= self.checkpoint_interval_s):
            self._emit_checkpoint(final=False)
        self._write_pending(sync=self.fsync == "always")
        for event in done:
            event.set()
        if self.max_bytes is not None and self._size >= self.max_bytes:
            self._rotate()

    def _guard_records(self, when: float, client_id: str, action: int, risk: float, queries: int, alert: Any) -> None:
        client = self._client(client_id)
        action_name = ACTIONS[action] if 0 <= action < len(ACTIONS) else str(action)
        if alert is not None and DETECTOR_ALERT in self.events:
            self._append(DETECTOR_ALERT, {
                "client": client,
                "query_index": int(alert.query_index),
                "risk": round(float(alert.risk), 4),
                "signals": [{"signal": r.signal, "value": round(float(r.value), 4), "threshold": round(float(r.threshold), 4)}
                            for r in alert.reasons],
                "mitre_atlas": list(alert.techniques),
                "action": action_name,
            }, when)  # fmt: skip
        if self._log_decisions:
            self._append(GUARD_DECISION, {"client": client, "action": action_name, "risk": round(float(risk), 4), "queries": int(queries)}, when)

    def _client(self, client_id: Any) -> Any:
        if self._salt is None or not isinstance(client_id, str):
            return client_id
        cached = self._pseudonyms.get(client_id)
        if cached is None:
            cached = "hmac:" + hmac.new(self._salt, client_id.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:32]
            if len(self._pseudonyms) >= _PSEUDONYM_CACHE:
                self._pseudonyms.clear()
            self._pseudonyms[client_id] = cached
        return cached

    def pseudonym(self, client_id: str) -> str:
        """What the log records for `client_id` (its pseudonym with a client_salt, else the id)."""
        return str(self._client(client_id))

    def _append(self, event_type: str, data: Mapping[str, Any], when: float | None = None) -> None:
        """Frames one record onto the pending bytes, and a checkpoint after it when one is due."""
        t = self._clock() if when is None else when
        body = encode_body({"seq": self._seq, "time_us": int(t * 1e6), "type": event_type, "data": data})
        if len(body) > MAX_RECORD:
            body = encode_body({"seq": self._seq, "time_us": int(t * 1e6), "type": event_type,
                                "data": {"truncated": True, "bytes": len(body)}})  # fmt: skip
        self._chain = chain_next(self._chain, body)
        self._pending += frame(body, self._chain)
        self._last_seq = self._seq
        self._seq += 1
        if event_type != CHECKPOINT:
            self._since_checkpoint += 1
            # open, resume, rotate and close are followed by their own checkpoint right away
            if self._signer is not None and self._since_checkpoint >= self.checkpoint_every and event_type not in _SELF_CHECKPOINTED:
                self._emit_checkpoint(final=False)

    def _emit_checkpoint(self, final: bool) -> None:
        signer = self._signer
        if signer is None or (not self._since_checkpoint and not final):
            return
        covers, chain = self._last_seq, self._chain
        try:
            sig = signer.sign(checkpoint_message(self._log_id, covers, chain, final))
        except Exception as exc:  # a token gone away: say so in the log, keep logging
            self._append("checkpoint.error", {"error": type(exc).__name__, "message": str(exc)[:200]})
            return
        self._append(CHECKPOINT, {
            "log_id": self._log_id.hex(), "covers": covers, "chain": chain.hex(), "alg": signer.alg,
            "key_id": signer.key_id, "final": final, "signature": base64.b64encode(sig).decode("ascii"),
        })  # fmt: skip
        self._since_checkpoint = 0
        self._checkpoint_time = self._clock()
        self._last_checkpoint = {"log_id": self._log_id.hex(), "seq": self._last_seq, "chain": self._chain.hex(), "covers": covers}
        self._sync_due = True
        if self.on_checkpoint is not None:
            try:
                self.on_checkpoint(dict(self._last_checkpoint))
            except Exception:
                self.write_errors += 1

    def _write_pending(self, sync: bool) -> None:
        view = memoryview(self._pending)
        written = 0
        try:
            while written < len(view):
                written += os.write(self._fd, view[written:])
        except OSError:
            self.write_errors += 1
        finally:
            view.release()
            del self._pending[:written]
            self._size += written
        if (sync or (self._sync_due and self.fsync == "checkpoint")) and self.fsync != "never" and written:
            try:
                _fsync(self._fd)
            except OSError:
                self.write_errors += 1
        self._sync_due = False

    # ------------------------------------------------------------------ files

    def _open(self) -> None:
        self._seq = 0
        self._last_seq = -1
        self._since_checkpoint = 0
        self._checkpoint_time = self._clock()
        self._sync_due = False
        existing = parse_segment(self.path) if self.path.exists() else None
        if existing is not None and self._resumable(existing):
            self._resume(existing)
            return
        if existing is not None:  # damaged, or under another key: keep it for an investigator
            os.replace(self.path, self.path.with_name(f"{self.path.name}.retired-{int(self._clock())}-{os.getpid()}"))
        previous = self._previous_segment()
        if previous is not None:  # a crash between rotating and creating the next segment
            self._log_id, self._chain, self._seq = previous.log_id, previous.records[-1].chain, previous.records[-1].seq + 1
            self._create_segment(previous.index + 1)
        else:
            self._log_id, self._chain = os.urandom(LOG_ID_LEN), ZERO_CHAIN
            self._create_segment(0)

    def _resumable(self, seg: Segment) -> bool:
        if seg.problem or not seg.records:
            return False
        declared = seg.records[0].data.get("checkpoint_key_id")
        return declared == (None if self._signer is None else self._signer.key_id)

    def _resume(self, seg: Segment) -> None:
        last = seg.records[-1]
        self._log_id, self._segment, self._chain, self._seq = seg.log_id, seg.index, last.chain, last.seq + 1
        self._last_seq = last.seq
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        if seg.torn_tail:  # an incomplete last frame: cut it, and say so
            os.ftruncate(self._fd, seg.end)
        self._size = seg.end
        clean = len(seg.records) >= 2 and seg.records[-2].type == LOG_CLOSE
        self._append(LOG_RESUME, {"torn_tail_bytes": seg.torn_tail, "after_clean_close": clean, "pid": os.getpid()})
        self._emit_checkpoint(final=False)
        self._write_pending(sync=self.fsync != "never")

    def _previous_segment(self) -> Segment | None:
        older = self.path.with_name(self.path.name + ".1")
        if not older.exists():
            return None
        seg = parse_segment(older)
        if seg.problem or seg.torn_tail or not seg.records or not self._resumable(seg):
            return None
        return seg

    def _create_segment(self, index: int) -> None:
        """Writes magic, log.open and the opening checkpoint to a temporary file, then links it into
        place: a segment never exists without its opening checkpoint."""
        self._segment = index
        signer = self._signer
        opening = {"log_id": self._log_id.hex(), "segment": index, "prev_chain": self._chain.hex(), "fsync": self.fsync,
                   "events": sorted(self.events)}  # fmt: skip
        if signer is not None:
            opening.update(checkpoint_alg=signer.alg, checkpoint_key_id=signer.key_id)
        self._pending = bytearray(MAGIC)
        self._append(LOG_OPEN, opening)
        self._emit_checkpoint(final=False)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            self._fd, self._size = fd, 0
            self._write_pending(sync=False)
            if self._pending:
                raise OSError(28, "could not write the audit log", str(self.path))
            if self.fsync != "never":
                _fsync(fd)
            os.replace(tmp, self.path)
        except BaseException:
            os.close(fd)
            self._fd = -1
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        if self.fsync != "never":
            _fsync_dir(self.path.parent)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self._size = os.fstat(self._fd).st_size

    def _rotate(self) -> None:
        self._append(LOG_ROTATE, {"next_segment": self._segment + 1})
        self._emit_checkpoint(final=False)
        self._write_pending(sync=self.fsync != "never")
        if self._pending:  # the disk refuses writes: keep this segment
            return
        os.close(self._fd)
        self._fd = -1
        name = self.path.name
        if self.keep == 0:
            self.path.unlink()
        else:
            oldest = self.path.with_name(f"{name}.{self.keep}")
            oldest.unlink(missing_ok=True)
            for i in range(self.keep - 1, 0, -1):
                src = self.path.with_name(f"{name}.{i}")
                if src.exists():
                    os.replace(src, self.path.with_name(f"{name}.{i + 1}"))
            os.replace(self.path, self.path.with_name(f"{name}.1"))
        self._create_segment(self._segment + 1)


def segment_paths(path: str | os.PathLike[str]) -> list[Path]:
    """The current segment and the rotated ones beside it (``path``, ``path.1``, ...), oldest first."""
    base = Path(path)
    found = [base] if base.exists() else []
    i = 1
    while base.with_name(f"{base.name}.{i}").exists():
        found.append(base.with_name(f"{base.name}.{i}"))
        i += 1
    return found[::-1]


@atexit.register
def _close_all() -> None:
    for log in list(_LIVE):
        try:
            log.close()
        except Exception:
            pass


__all__ = ["FSYNC_POLICIES", "AuditLog", "AuditLogError", "segment_paths"]
