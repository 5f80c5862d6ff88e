"""Parsing and encoding of version 2 artifacts, grants and revocation lists (docs/FORMAT.md,
"Version 2"). No cryptography happens here besides naming what is hashed.

As in :mod:`edgeguard.format`, every function that reads untrusted bytes raises
:class:`~edgeguard.errors.FormatError` (or :class:`~edgeguard.errors.UnsupportedVersionError`) on
anything but a well-formed, canonical structure, so one set of bytes has exactly one meaning.
"""

from __future__ import annotations

import bisect
import re
import struct
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from .errors import FormatError, IntegrityError, UnsupportedVersionError
from .format import (
    CIPHERS,
    MAGIC,
    MAX_CHUNK_COUNT,
    MAX_HEADER_SIZE,
    MAX_INT,
    PAYLOAD_KINDS,
    PREAMBLE,
    PREAMBLE_LEN,
    ROOT_LEN,
    SALT_LEN,
    SIGNATURE_ALGS,
    SIGNATURE_BLOCK_LEN,
    SIGNATURE_LEN,
    VERSION_2,
    ChunkedPayload,
    Container,
    ModelInfo,
    Stanza,
    _choice,
    _fields,
    _int,
    b64decode,
    b64encode,
    canonical_json,
    chunk_count,
    key_id_field,
    parse_canonical_json,
    validate_chunk_size,
)

GRANT_MAGIC = b"EDGEGRNT"
REVOCATION_MAGIC = b"EDGEREVK"
SIGNED_FILE_OVERHEAD = PREAMBLE_LEN + SIGNATURE_LEN  # 80: preamble and signature around a body
GRANT_LEN_FIELD = 4

MAX_GRANT_SIZE = 32 << 20
MAX_GRANT_RECIPIENTS = 1 << 17
MAX_REVOCATION_SIZE = 16 << 20
MAX_REVOKED = 1 << 18
COMMITMENT_LEN = 32
ARTIFACT_ID_LEN = 32
GRANT_ID_LEN = 16
GRANT_STANZA_TYPES = ("hpke-x25519", "hpke-p256")
GRANT_SUFFIX = ".grant"  # a folder of grants: <key_id>.grant per device

_HEX32 = re.compile(r"[0-9a-f]{32}\Z")
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_HEX16 = re.compile(r"[0-9a-f]{16}\Z")


def _hex(value: Any, pattern: re.Pattern[str], what: str, digits: int) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise FormatError(f"{what} must be {digits} lowercase hex digits")
    return value


def _signer(obj: Any, what: str) -> tuple[str, str]:
    if not isinstance(obj, dict):
        raise FormatError(f"{what} signer must be an object")
    _fields(obj, f"{what} signer", {"alg", "key_id"})
    return _choice(obj["alg"], f"{what} signer alg", SIGNATURE_ALGS), key_id_field(obj["key_id"], f"{what} signer key_id")


def _window(obj: dict[str, Any], what: str) -> tuple[int | None, int | None]:
    nb = None if "not_before" not in obj else _int(obj["not_before"], f"{what} not_before")
    na = None if "not_after" not in obj else _int(obj["not_after"], f"{what} not_after")
    if nb is not None and na is not None and nb >= na:
        raise FormatError(f"{what} not_before must be earlier than not_after")
    return nb, na


# --- the artifact's payload header -------------------------------------------------------------


@dataclass(frozen=True)
class PayloadHeader(ChunkedPayload):
    """The parsed, validated payload header of a version 2 artifact: no recipients, a key commitment."""

    cipher: str
    chunk_size: int
    payload_length: int
    salt: bytes
    signer_alg: str
    signer_key_id: str
    model: ModelInfo
    payload_kind: str
    key_commitment: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "cipher": self.cipher,
            "chunk_size": self.chunk_size,
            "payload_length": self.payload_length,
            "salt": b64encode(self.salt),
            "signer": {"alg": self.signer_alg, "key_id": self.signer_key_id},
            "model": self.model.to_json(),
            "payload": {"kind": self.payload_kind},
            "key_commitment": b64encode(self.key_commitment),
        }

    def encode(self) -> bytes:
        """Preamble plus canonical header bytes. Raises FormatError if the header breaks a limit."""
        body = canonical_json(self.to_json())
        assert parse_payload_header(body) == self  # the writer obeys the reader's rules
        return PREAMBLE.pack(MAGIC, VERSION_2, 0, len(body)) + body


def parse_payload_header(body: bytes) -> PayloadHeader:
    """Parses and validates a version 2 payload header (without the preamble).

    Raises:
        FormatError: malformed, non-canonical, a `recipients` key, or outside a named limit.
    """
    if len(body) > MAX_HEADER_SIZE:
        raise FormatError(f"header exceeds MAX_HEADER_SIZE ({MAX_HEADER_SIZE} bytes)")
    obj = parse_canonical_json(body, "header")
    _fields(obj, "version 2 header", {"cipher", "chunk_size", "payload_length", "salt", "signer", "model", "payload", "key_commitment"})
    size = validate_chunk_size(obj["chunk_size"])
    length = _int(obj["payload_length"], "payload_length")
    if chunk_count(length, size) > MAX_CHUNK_COUNT:
        raise FormatError(f"payload needs more than MAX_CHUNK_COUNT ({MAX_CHUNK_COUNT}) chunks")
    alg, kid = _signer(obj["signer"], "header")
    payload = obj["payload"]
    if not isinstance(payload, dict):
        raise FormatError("payload must be an object")
    _fields(payload, "payload", {"kind"})
    return PayloadHeader(
        cipher=_choice(obj["cipher"], "cipher", CIPHERS),
        chunk_size=size,
        payload_length=length,
        salt=b64decode(obj["salt"], SALT_LEN, "salt"),
        signer_alg=alg,
        signer_key_id=kid,
        model=ModelInfo.from_json(obj["model"]),
        payload_kind=_choice(payload["kind"], "payload kind", PAYLOAD_KINDS),
        key_commitment=b64decode(obj["key_commitment"], COMMITMENT_LEN, "key_commitment"),
    )


def read_artifact(f: Any, preamble: bytes, body: bytes) -> Container:
    """The rest of a version 2 artifact after its preamble and header bytes (read by
    :func:`edgeguard.format.read_container`): the signature block, then the embedded grant that
    follows the chunks (its bytes are framed here but parsed only when used).

    Raises:
        FormatError: a malformed header, or a grant_len that cannot frame a grant.
        IntegrityError: the file ends before the grant_len field or inside the embedded grant.
    """
    header = parse_payload_header(body)
    block = f.read(SIGNATURE_BLOCK_LEN)
    if len(block) != SIGNATURE_BLOCK_LEN:
        raise IntegrityError()
    payload_offset = PREAMBLE_LEN + len(body) + SIGNATURE_BLOCK_LEN
    f.seek(payload_offset + header.sealed_payload_len)
    field = f.read(GRANT_LEN_FIELD)
    if len(field) != GRANT_LEN_FIELD:
        raise IntegrityError()  # the wrong file size
    (grant_len,) = struct.unpack(">I", field)
    if grant_len and not SIGNED_FILE_OVERHEAD < grant_len <= SIGNED_FILE_OVERHEAD + MAX_GRANT_SIZE:
        raise FormatError(f"grant_len {grant_len} is neither 0 nor 81..{SIGNED_FILE_OVERHEAD + MAX_GRANT_SIZE}")
    grant = f.read(grant_len) if grant_len else b""
    if len(grant) != grant_len:
        raise IntegrityError()
    return Container(
        header=header,
        preamble_and_header=preamble + body,
        chunk_root=block[:ROOT_LEN],
        signature=block[ROOT_LEN:],
        payload_offset=payload_offset,
        version=VERSION_2,
        embedded_grant=grant or None,
    )


# --- signed files: grants and revocation lists -------------------------------------------------


def _split_signed(data: bytes, magic: bytes, what: str, max_body: int) -> tuple[bytes, bytes, bytes]:
    """(preamble + body, body, signature) of a grant or revocation list file.

    Raises FormatError (UnsupportedVersionError for a version other than 2) for the framing, and
    IntegrityError for a file of the wrong size (as a sealed file of the wrong size).
    """
    data = bytes(data)
    if len(data) < PREAMBLE_LEN:
        raise FormatError(f"too short to be a {what}")
    got, version, flags, body_len = PREAMBLE.unpack_from(data)
    if got != magic:
        raise FormatError(f"not an edgeguard {what} (bad magic)")
    if version != VERSION_2:
        raise UnsupportedVersionError(f"{what} version {version} is not supported (this build reads 2)")
    if flags != 0:
        raise FormatError("reserved flags must be zero")
    if not 1 <= body_len <= max_body:
        raise FormatError(f"{what} body length {body_len} is outside 1..{max_body}")
    if len(data) < PREAMBLE_LEN + body_len:
        raise FormatError(f"{what} ends inside its body")
    if len(data) != SIGNED_FILE_OVERHEAD + body_len:
        raise IntegrityError()
    return data[: PREAMBLE_LEN + body_len], data[PREAMBLE_LEN : PREAMBLE_LEN + body_len], data[PREAMBLE_LEN + body_len :]


@dataclass(frozen=True)
class GrantBody:
    """What a grant says: which artifact, whose signature, when, and one stanza per device."""

    artifact: str  # the artifact id, 64 hex digits
    grant_id: str  # 32 hex digits
    signer_alg: str
    signer_key_id: str
    issued: int
    recipients: tuple[Stanza, ...]  # strictly ascending key_id
    not_before: int | None = None
    not_after: int | None = None

    def stanza_for(self, key_id: str) -> Stanza | None:
        """The stanza addressed to `key_id` (binary search), or None."""
        i = bisect.bisect_left(self.recipients, key_id, key=lambda s: s.key_id or "")
        return self.recipients[i] if i < len(self.recipients) and self.recipients[i].key_id == key_id else None

    @property
    def key_ids(self) -> list[str]:
        return [s.key_id or "" for s in self.recipients]

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "artifact": self.artifact,
            "grant_id": self.grant_id,
            "signer": {"alg": self.signer_alg, "key_id": self.signer_key_id},
            "issued": self.issued,
            # Stanza.to_json, inlined for the two HPKE types a grant holds (100,000 of them)
            "recipients": [{"key_id": s.key_id, "type": s.type, "wrapped": b64encode(s.wrapped)} for s in self.recipients],
        }
        if self.not_before is not None:
            obj["not_before"] = self.not_before
        if self.not_after is not None:
            obj["not_after"] = self.not_after
        return obj

    def encode(self) -> bytes:
        """Preamble plus canonical body: the bytes the grant signature covers.

        The writer obeys the reader's rules: this checks what :func:`parse_grant_body` would (its
        tests parse what this writes) without parsing the body back, which would cost as much as
        writing it.

        Raises FormatError if the grant breaks a rule or a limit (too many or unsorted recipients, ...)."""
        _hex(self.artifact, _HEX64, "grant artifact", 64)
        _hex(self.grant_id, _HEX32, "grant_id", 32)
        _choice(self.signer_alg, "grant signer alg", SIGNATURE_ALGS)
        key_id_field(self.signer_key_id, "grant signer key_id")
        _int(self.issued, "grant issued")
        _window({k: v for k, v in (("not_before", self.not_before), ("not_after", self.not_after)) if v is not None}, "grant")
        if not 1 <= len(self.recipients) <= MAX_GRANT_RECIPIENTS:
            raise FormatError(f"grant recipients must be a list of 1..{MAX_GRANT_RECIPIENTS} stanzas")
        from .recipients import stanza_spec

        lengths = {t: stanza_spec(t).fields["wrapped"].length for t in GRANT_STANZA_TYPES}
        previous = ""
        for s in self.recipients:
            if s.type not in lengths or len(s.wrapped) != lengths[s.type] or s.params:
                raise FormatError(f"grant stanzas are {' or '.join(GRANT_STANZA_TYPES)} stanzas")
            key_id_field(s.key_id, "grant stanza key_id")
            if s.key_id <= previous:  # type: ignore[operator]
                raise FormatError("grant stanzas must be in strictly ascending key_id order")
            previous = s.key_id  # type: ignore[assignment]
        body = canonical_json(self.to_json())
        if len(body) > MAX_GRANT_SIZE:
            raise FormatError(f"grant exceeds MAX_GRANT_SIZE ({MAX_GRANT_SIZE} bytes)")
        return PREAMBLE.pack(GRANT_MAGIC, VERSION_2, 0, len(body)) + body


def _grant_stanzas(value: Any) -> tuple[Stanza, ...]:
    from .recipients import stanza_spec

    if not isinstance(value, list) or not 1 <= len(value) <= MAX_GRANT_RECIPIENTS:
        raise FormatError(f"grant recipients must be a list of 1..{MAX_GRANT_RECIPIENTS} stanzas")
    lengths = {t: stanza_spec(t).fields["wrapped"].length for t in GRANT_STANZA_TYPES}
    out = []
    previous = ""
    for obj in value:  # the version 1 stanza rules, inlined: a grant may hold 100,000 stanzas
        if not isinstance(obj, dict) or obj.keys() != {"type", "key_id", "wrapped"}:
            raise FormatError("a grant stanza has exactly the fields type, key_id and wrapped")
        kind = obj["type"]
        if kind not in lengths:
            raise FormatError(f"grant stanza type must be one of {', '.join(GRANT_STANZA_TYPES)}")
        kid = obj["key_id"]
        if not isinstance(kid, str) or not _HEX16.match(kid):
            raise FormatError("grant stanza key_id must be 16 lowercase hex digits")
        if kid <= previous:
            raise FormatError("grant stanzas must be in strictly ascending key_id order")
        previous = kid
        out.append(Stanza(type=kind, key_id=kid, wrapped=b64decode(obj["wrapped"], lengths[kind], f"{kind} stanza wrapped")))
    return tuple(out)


def parse_grant_body(body: bytes) -> GrantBody:
    """Raises FormatError unless `body` is a canonical, well-formed grant body within the limits."""
    if len(body) > MAX_GRANT_SIZE:
        raise FormatError(f"grant exceeds MAX_GRANT_SIZE ({MAX_GRANT_SIZE} bytes)")
    obj = parse_canonical_json(body, "grant")
    _fields(obj, "grant", {"artifact", "grant_id", "signer", "issued", "recipients"}, frozenset({"not_before", "not_after"}))
    alg, kid = _signer(obj["signer"], "grant")
    nb, na = _window(obj, "grant")
    return GrantBody(
        artifact=_hex(obj["artifact"], _HEX64, "grant artifact", 64),
        grant_id=_hex(obj["grant_id"], _HEX32, "grant_id", 32),
        signer_alg=alg,
        signer_key_id=kid,
        issued=_int(obj["issued"], "grant issued"),
        recipients=_grant_stanzas(obj["recipients"]),
        not_before=nb,
        not_after=na,
    )


@dataclass(frozen=True)
class GrantFile:
    """A parsed grant file. Nothing here is authenticated yet (see :mod:`edgeguard.grants`)."""

    body: GrantBody
    signed: bytes  # preamble + body: SHA-256 of these is the grant digest
    signature: bytes

    def to_bytes(self) -> bytes:
        return self.signed + self.signature

    def __len__(self) -> int:
        return len(self.signed) + len(self.signature)


def parse_grant(data: bytes) -> GrantFile:
    """Parses a grant file (standalone or embedded).

    Raises:
        FormatError, UnsupportedVersionError: malformed framing or body.
        IntegrityError: the file is longer or shorter than its framing says.
    """
    signed, body, signature = _split_signed(data, GRANT_MAGIC, "grant", MAX_GRANT_SIZE)
    return GrantFile(parse_grant_body(body), signed, signature)


@dataclass(frozen=True)
class RevocationBody:
    """What a revocation list says: its signer, serial, and the revoked grant ids and key ids."""

    signer_alg: str
    signer_key_id: str
    serial: int
    issued: int
    grants: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "signer": {"alg": self.signer_alg, "key_id": self.signer_key_id},
            "serial": self.serial,
            "issued": self.issued,
            "grants": list(self.grants),
            "keys": list(self.keys),
        }

    def encode(self) -> bytes:
        """Preamble plus canonical body. Raises FormatError if the list breaks a limit."""
        body = canonical_json(self.to_json())
        if parse_revocation_body(body) != self:
            raise FormatError("revocation list does not round-trip")
        return PREAMBLE.pack(REVOCATION_MAGIC, VERSION_2, 0, len(body)) + body


def _ascending(value: Any, pattern: re.Pattern[str], what: str, digits: int) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise FormatError(f"revoked {what} must be a list")
    out = tuple(_hex(v, pattern, f"revoked {what}", digits) for v in value)
    if any(a >= b for a, b in pairwise(out)):
        raise FormatError(f"revoked {what} must be in strictly ascending order")
    return out


def parse_revocation_body(body: bytes) -> RevocationBody:
    """Raises FormatError unless `body` is a canonical, well-formed revocation list body."""
    if len(body) > MAX_REVOCATION_SIZE:
        raise FormatError(f"revocation list exceeds MAX_REVOCATION_SIZE ({MAX_REVOCATION_SIZE} bytes)")
    obj = parse_canonical_json(body, "revocation list")
    _fields(obj, "revocation list", {"signer", "serial", "issued", "grants", "keys"})
    alg, kid = _signer(obj["signer"], "revocation list")
    grants = _ascending(obj["grants"], _HEX32, "grants", 32)
    keys = _ascending(obj["keys"], _HEX16, "keys", 16)
    if len(grants) + len(keys) > MAX_REVOKED:
        raise FormatError(f"a revocation list holds at most MAX_REVOKED ({MAX_REVOKED}) entries")
    return RevocationBody(alg, kid, _int(obj["serial"], "serial", 1, MAX_INT), _int(obj["issued"], "issued"), grants, keys)


@dataclass(frozen=True)
class RevocationFile:
    body: RevocationBody
    signed: bytes
    signature: bytes

    def to_bytes(self) -> bytes:
        return self.signed + self.signature


def parse_revocation(data: bytes) -> RevocationFile:
    """Parses a revocation list file. Raises as :func:`parse_grant`."""
    signed, body, signature = _split_signed(data, REVOCATION_MAGIC, "revocation list", MAX_REVOCATION_SIZE)
    return RevocationFile(parse_revocation_body(body), signed, signature)


__all__ = [
    "GRANT_MAGIC", "MAX_GRANT_RECIPIENTS", "MAX_GRANT_SIZE", "MAX_REVOCATION_SIZE", "MAX_REVOKED", "REVOCATION_MAGIC",
    "GrantBody", "GrantFile", "PayloadHeader", "RevocationBody", "RevocationFile",
    "parse_grant", "parse_grant_body", "parse_payload_header", "parse_revocation", "parse_revocation_body", "read_artifact",
]  # fmt: skip
