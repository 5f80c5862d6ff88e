"""The audit log's byte layout (docs/audit.md, "File format"): framing, the hash chain and the
message a checkpoint signs. Pure functions, no I/O."""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

MAGIC = b"EGAUDIT1"
MAX_RECORD = 64 * 1024  # bytes of record body (JSON); a longer length field is malformed
CHAIN_LEN = 32
LEN = struct.Struct(">I")
FRAME_OVERHEAD = LEN.size + CHAIN_LEN
ZERO_CHAIN = bytes(CHAIN_LEN)
LOG_ID_LEN = 16
_CHAIN_DOMAIN = b"edgeguard/audit v1 chain\x00"
_CHECKPOINT_DOMAIN = b"edgeguard/audit v1 checkpoint\x00"
_CHECKPOINT_TAIL = struct.Struct(">QB")

# Record types. The first four are the log's own bookkeeping and are always written.
LOG_OPEN = "log.open"  # first record of every segment file
LOG_RESUME = "log.resume"  # a writer reopened an existing log (after a restart or a crash)
LOG_CLOSE = "log.close"  # clean shutdown (followed by a final checkpoint)
LOG_ROTATE = "log.rotate"  # the segment is full; the chain continues in the next segment
CHECKPOINT = "checkpoint"
DROPPED = "audit.dropped"  # events lost to a full queue, counted
MODEL_LOAD = "model.load"
MODEL_REFUSED = "model.refused"
MODEL_VERIFY = "model.verify"  # `edgeguard verify --audit`
MODEL_UNSEAL = "model.unseal"  # `edgeguard unseal --audit`
DETECTOR_ALERT = "detector.alert"
GUARD_DECISION = "guard.decision"  # every guarded query: opt-in
ROLLBACK_UPDATE = "rollback.update"
BOOKKEEPING = (LOG_OPEN, LOG_RESUME, LOG_CLOSE, LOG_ROTATE, CHECKPOINT, DROPPED)
EVENT_TYPES = (MODEL_LOAD, MODEL_REFUSED, MODEL_VERIFY, MODEL_UNSEAL, DETECTOR_ALERT, GUARD_DECISION, ROLLBACK_UPDATE)
DEFAULT_EVENTS = tuple(t for t in EVENT_TYPES if t != GUARD_DECISION)


def encode_body(obj: dict[str, Any]) -> bytes:
    """A record body: compact JSON, keys sorted, ASCII only (controls escaped by JSON itself)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")


def chain_next(prev: bytes, body: bytes) -> bytes:
    """chain_i = SHA-256("edgeguard/audit v1 chain" || 0x00 || chain_{i-1} || be32(len) || body_i)."""
    return hashlib.sha256(_CHAIN_DOMAIN + prev + LEN.pack(len(body)) + body).digest()


def frame(body: bytes, chain: bytes) -> bytes:
    return LEN.pack(len(body)) + body + chain


def checkpoint_message(log_id: bytes, seq: int, chain: bytes, final: bool) -> bytes:
    """What a checkpoint signs or MACs: the log, the last record it covers and that record's chain."""
    return _CHECKPOINT_DOMAIN + log_id + _CHECKPOINT_TAIL.pack(seq, 1 if final else 0) + chain
