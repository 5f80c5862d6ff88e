"""Reading and verifying audit logs (docs/audit.md, "Verification").

:func:`verify_log` never raises on a damaged or tampered log: it returns an :class:`AuditReport`
saying how far the log is intact, how far checkpoints vouch for it, and what is wrong after that.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._format import (
    CHAIN_LEN,
    CHECKPOINT,
    LEN,
    LOG_CLOSE,
    LOG_ID_LEN,
    LOG_OPEN,
    MAGIC,
    MAX_RECORD,
    chain_next,
    checkpoint_message,
)
from .keys import CheckpointVerifier

MAX_LOG_FILE = 1 << 34  # 16 GiB: refuse to read anything larger into memory


@dataclass(frozen=True)
class Record:
    """One verified-in-chain record: its body fields, its chain hash and where it lies."""

    seq: int
    time_us: int
    type: str
    data: dict[str, Any]
    chain: bytes
    path: str
    offset: int

    def to_json(self) -> dict[str, Any]:
        """The export form (docs/audit.md, "Export"): seq, time, time_us, type, data, chain, file, offset."""
        return {
            "seq": self.seq,
            "time": iso_time(self.time_us),
            "time_us": self.time_us,
            "type": self.type,
            "data": self.data,
            "chain": self.chain.hex(),
            "file": self.path,
            "offset": self.offset,
        }


def iso_time(time_us: int) -> str:
    return dt.datetime.fromtimestamp(time_us / 1e6, dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class Segment:
    """One log file parsed up to its first problem: the records whose chain verified, then either
    a torn tail (an incomplete last frame) or a problem (malformed or altered bytes)."""

    path: str
    records: list[Record]
    size: int
    end: int  # offset just past the last good record
    torn_tail: int = 0
    problem: str | None = None
    prev_chain: bytes = bytes(CHAIN_LEN)  # what its log.open record says precedes it
    log_id: bytes = b""
    index: int = 0


def _parse_body(body: bytes) -> dict[str, Any] | None:
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(obj, dict) or set(obj) != {"seq", "time_us", "type", "data"}:
        return None
    if type(obj["seq"]) is not int or type(obj["time_us"]) is not int or not isinstance(obj["type"], str) or not isinstance(obj["data"], dict):
        return None
    return obj


def _open_fields(data: Mapping[str, Any]) -> tuple[bytes, int, bytes] | None:
    try:
        log_id, prev = bytes.fromhex(data["log_id"]), bytes.fromhex(data["prev_chain"])
        index = data["segment"]
    except (KeyError, TypeError, ValueError):
        return None
    if len(log_id) != LOG_ID_LEN or len(prev) != CHAIN_LEN or type(index) is not int or index < 0:
        return None
    return log_id, index, prev


def parse_segment(path: str | os.PathLike[str], data: bytes | None = None) -> Segment:
    """Walks one segment's frames and its hash chain (no key needed).

    Raises:
        OSError: the file cannot be read.
    """
    name = os.fspath(path)
    if data is None:
        with open(name, "rb") as f:
            if os.fstat(f.fileno()).st_size > MAX_LOG_FILE:
                return Segment(name, [], 0, 0, problem="the file is too large to be an audit log segment")
            data = f.read()
    seg = Segment(name, [], len(data), 0)
    if len(data) < len(MAGIC):
        if data == MAGIC[: len(data)]:
            seg.torn_tail = len(data)  # created but never completed: nothing was logged
        else:
            seg.problem = "not an edgeguard audit log (bad magic)"
        return seg
    if data[: len(MAGIC)] != MAGIC:
        seg.problem = "not an edgeguard audit log (bad magic)"
        return seg
    pos = seg.end = len(MAGIC)
    prev = b""
    while pos < len(data):
        rest = len(data) - pos
        if rest < LEN.size:
            seg.torn_tail = rest
            break
        (length,) = LEN.unpack_from(data, pos)
        if not 0 < length <= MAX_RECORD:
            if not any(data[pos:]):  # a file system extended the file before the data reached it
                seg.torn_tail = rest
            else:
                seg.problem = f"malformed frame at offset {pos} (record length {length})"
            break
        if rest < LEN.size + length + CHAIN_LEN:
            seg.torn_tail = rest
            break
        body = data[pos + LEN.size : pos + LEN.size + length]
        stored = data[pos + LEN.size + length : pos + LEN.size + length + CHAIN_LEN]
        obj = _parse_body(body)
        where = f"offset {pos}"
        if obj is None:
            seg.problem = f"record at {where} is not a well-formed record"
            break
        if not seg.records:
            opened = _open_fields(obj["data"]) if obj["type"] == LOG_OPEN else None
            if opened is None:
                seg.problem = f"the first record (at {where}) is not a well-formed {LOG_OPEN} record"
                break
            seg.log_id, seg.index, seg.prev_chain = opened
            prev = seg.prev_chain
        elif obj["type"] == LOG_OPEN:
            seg.problem = f"a second {LOG_OPEN} record at {where}"
            break
        elif obj["seq"] != seg.records[-1].seq + 1:
            seg.problem = f"record at {where} has seq {obj['seq']}, expected {seg.records[-1].seq + 1} (deleted, inserted or reordered records)"
            break
        chain = chain_next(prev, body)
        if chain != stored:
            seg.problem = f"record {obj['seq']} at {where} does not match the hash chain (edited, deleted, inserted or reordered records)"
            break
        seg.records.append(Record(obj["seq"], obj["time_us"], obj["type"], obj["data"], chain, name, pos))
        prev = chain
        pos += LEN.size + length + CHAIN_LEN
        seg.end = pos
    return seg


@dataclass
class AuditReport:
    """What :func:`verify_log` established.

    ``records`` are the records whose chain verified (in order); ``problem`` is None when nothing
    is wrong. ``signed_through`` is the seq of the last record a valid checkpoint vouches for
    (None without a key, or when none does); records after it (``unsigned_tail``) are chained but
    vouched for by nobody: anyone able to write the file could have rewritten them.
    """

    paths: list[str]
    records: list[Record] = field(default_factory=list)
    problem: str | None = None
    log_id: str | None = None
    key_alg: str | None = None
    key_id: str | None = None
    verified_with: str | None = None  # the key id checkpoints were checked against
    checkpoints: int = 0
    signed_through: int | None = None
    torn_tail: int = 0
    closed_cleanly: bool = False
    anchors_checked: int = 0
    last_checkpoint: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def first_seq(self) -> int | None:
        return self.records[0].seq if self.records else None

    @property
    def last_seq(self) -> int | None:
        return self.records[-1].seq if self.records else None

    @property
    def unsigned_tail(self) -> int:
        """Records no valid checkpoint vouches for (checkpoints themselves carry their own signature)."""
        after = -1 if self.signed_through is None else self.signed_through
        return sum(1 for r in self.records if r.seq > after and r.type != CHECKPOINT)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problem": self.problem,
            "files": self.paths,
            "log_id": self.log_id,
            "records": len(self.records),
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "checkpoint_key": None if self.key_id is None else {"alg": self.key_alg, "key_id": self.key_id},
            "verified_with": self.verified_with,
            "checkpoints": self.checkpoints,
            "signed_through": self.signed_through,
            "unsigned_tail": self.unsigned_tail,
            "torn_tail_bytes": self.torn_tail,
            "closed_cleanly": self.closed_cleanly,
            "anchors_checked": self.anchors_checked,
            "last_checkpoint": self.last_checkpoint,
        }


def _checkpoint_fields(data: Mapping[str, Any]) -> tuple[bytes, int, bytes, str, str, bool, bytes] | None:
    try:
        log_id, chain = bytes.fromhex(data["log_id"]), bytes.fromhex(data["chain"])
        sig = base64.b64decode(data["signature"], validate=True)
        covers, alg, kid, final = data["covers"], data["alg"], data["key_id"], data["final"]
    except (KeyError, TypeError, ValueError, binascii.Error):
        return None
    if type(covers) is not int or not isinstance(alg, str) or not isinstance(kid, str) or type(final) is not bool:
        return None
    return log_id, covers, chain, alg, kid, final, sig


def anchor_of(record: Record) -> dict[str, Any]:
    """A checkpoint record as an anchor to keep off the device: log id, seq, chain (docs/audit.md)."""
    return {"log_id": record.data.get("log_id"), "seq": record.seq, "chain": record.chain.hex(), "covers": record.data.get("covers")}


def load_anchors(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Anchors from a JSON file (one anchor object, or a list) or JSON Lines (an `audit export`).

    Raises:
        ValueError: not anchors. OSError: unreadable.
    """
    with open(path, "rb") as f:
        text = f.read(64 << 20).decode("utf-8", errors="strict")
    try:
        loaded = json.loads(text)
        items = loaded if isinstance(loaded, list) else [loaded]
    except ValueError:
        items = [json.loads(line) for line in text.splitlines() if line.strip()]
    anchors = []
    for item in items:
        if not isinstance(item, dict):
            raise ValueError("an anchor is a JSON object with log_id, seq and chain")
        if item.get("type", CHECKPOINT) != CHECKPOINT:
            continue  # an export's other records
        log_id = item.get("log_id", (item.get("data") or {}).get("log_id"))
        if not isinstance(log_id, str) or type(item.get("seq")) is not int or not isinstance(item.get("chain"), str):
            raise ValueError("an anchor is a JSON object with log_id, seq and chain")
        anchors.append({"log_id": log_id, "seq": item["seq"], "chain": item["chain"]})
    if not anchors:
        raise ValueError("no checkpoint anchors found")
    return anchors


def verify_log(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    verifier: CheckpointVerifier | None = None,
    anchors: Iterable[Mapping[str, Any]] = (),
) -> AuditReport:
    """Verifies one log made of one or more segment files (given in any order).

    Checks the framing and hash chain of every record, the links between segments, every
    checkpoint's position and (with `verifier`) its signature or MAC, and that every anchor (a
    checkpoint kept off the device) is still in the log. Stops at the first problem.

    Raises:
        OSError: a file cannot be read.
    """
    names = [os.fspath(paths)] if isinstance(paths, (str, os.PathLike)) else [os.fspath(p) for p in paths]
    report = AuditReport(paths=names)
    segments = [parse_segment(p) for p in names]
    bad_head = next((s for s in segments if s.problem and not s.records), None)
    if bad_head is not None:
        report.problem = f"{bad_head.path}: {bad_head.problem}"
        return report
    segments = [s for s in segments if s.records or s.problem] or segments[:1]
    segments.sort(key=lambda s: s.index)
    if not segments or not segments[0].records:
        report.torn_tail = segments[0].torn_tail if segments else 0
        report.problem = "the log holds no complete record"
        return report
    first = segments[0].records[0]
    report.log_id = segments[0].log_id.hex()
    report.key_alg, report.key_id = first.data.get("checkpoint_alg"), first.data.get("checkpoint_key_id")
    if verifier is not None:
        report.verified_with = verifier.key_id
        if report.key_id is None:
            report.problem = "the log declares no checkpoint key: it has no checkpoints to verify"
            return report
        if (report.key_alg, report.key_id) != (verifier.alg, verifier.key_id):
            report.problem = f"the log's checkpoints are made with key {report.key_id} ({report.key_alg}), not the given key {verifier.key_id} ({verifier.alg})"
            return report

    prev_seg: Segment | None = None
    for seg in segments:
        if prev_seg is not None:
            problem = _link_problem(prev_seg, seg, report.log_id)
            if problem:
                report.problem = problem
                return report
        problem = _check_records(seg, report, verifier)
        if problem:
            report.problem = f"{seg.path}: {problem}"
            return report
        if seg.problem:
            report.problem = f"{seg.path}: {seg.problem}"
            return report
        prev_seg = seg
    last_seg = segments[-1]
    report.torn_tail = last_seg.torn_tail
    recs = report.records
    report.closed_cleanly = (
        len(recs) >= 2 and recs[-2].type == LOG_CLOSE and recs[-1].type == CHECKPOINT and recs[-1].data.get("final") is True
    ) or (len(recs) >= 1 and recs[-1].type == LOG_CLOSE and report.key_id is None)
    report.problem = _check_anchors(report, anchors)
    return report


def _link_problem(prev: Segment, seg: Segment, log_id: str | None) -> str | None:
    if seg.log_id.hex() != log_id:
        return f"{seg.path} belongs to another log ({seg.log_id.hex()}, not {log_id}): logs were spliced"
    if seg.index != prev.index + 1:
        return f"segment {prev.index + 1} is missing between {prev.path} and {seg.path}"
    if prev.torn_tail or prev.problem:
        return f"{prev.path} does not end cleanly, yet segment {seg.index} follows it"
    if seg.prev_chain != prev.records[-1].chain or seg.records[0].seq != prev.records[-1].seq + 1:
        return f"{seg.path} does not continue the chain of {prev.path} (records removed or segments swapped)"
    return None


def _check_records(seg: Segment, report: AuditReport, verifier: CheckpointVerifier | None) -> str | None:
    """Checkpoints of one segment; appends its good records to the report. A problem text or None."""
    recs = seg.records
    if report.key_id is not None and (len(recs) < 2 or recs[1].type != CHECKPOINT):
        # A writer creates each segment with its opening checkpoint atomically: no crash leaves one without.
        return "the segment's opening checkpoint is missing (a writer always checkpoints its first record)"
    for i, rec in enumerate(recs):
        if rec.type == CHECKPOINT:
            fields = _checkpoint_fields(rec.data)
            if fields is None or i == 0:
                return f"record {rec.seq} is a malformed checkpoint"
            log_id, covers, chain, alg, kid, final, sig = fields
            before = recs[i - 1]
            if log_id != seg.log_id or covers != before.seq or chain != before.chain:
                return f"checkpoint at record {rec.seq} does not match the chain before it"
            if report.key_id is not None and (alg, kid) != (report.key_alg, report.key_id):
                return f"checkpoint at record {rec.seq} is made with another key ({kid})"
            if verifier is not None:
                if not verifier.verify(alg, kid, checkpoint_message(log_id, covers, chain, final), sig):
                    return f"checkpoint at record {rec.seq} has a bad signature: records up to {covers} were altered or the checkpoint forged"
                report.signed_through = covers
            report.checkpoints += 1
            report.last_checkpoint = anchor_of(rec)
        report.records.append(rec)
    return None


def _check_anchors(report: AuditReport, anchors: Iterable[Mapping[str, Any]]) -> str | None:
    by_seq = {r.seq: r for r in report.records}
    for anchor in anchors:
        report.anchors_checked += 1
        if anchor.get("log_id") != report.log_id:
            return f"anchor for record {anchor.get('seq')} belongs to another log ({anchor.get('log_id')})"
        rec = by_seq.get(int(anchor["seq"]))
        if rec is None:
            last = report.last_seq
            if last is not None and anchor["seq"] > last:
                return f"the log ends at record {last}, before the exported checkpoint at record {anchor['seq']}: it was truncated"
            return f"record {anchor['seq']} of an exported checkpoint is not in the given files (an older segment is missing)"
        if rec.chain.hex() != anchor["chain"] or rec.type != CHECKPOINT:
            return f"record {anchor['seq']} differs from the exported checkpoint: history was rewritten"
    return None


__all__ = ["AuditReport", "Record", "Segment", "anchor_of", "iso_time", "load_anchors", "parse_segment", "verify_log"]
