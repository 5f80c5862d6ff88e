"""Parsing and encoding of the sealed container (docs/FORMAT.md). No cryptography happens here.

Every function that reads untrusted bytes raises :class:`~edgeguard.errors.FormatError` (or its
subclass :class:`~edgeguard.errors.UnsupportedVersionError`) on anything but a well-formed,
canonical structure, so one set of bytes has exactly one meaning.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import kinds
from .errors import FormatError, IntegrityError, UnsupportedVersionError

MAGIC = b"EDGESEAL"
VERSION = 1
VERSION_2 = 2  # artifacts without recipients, opened through grants: edgeguard.format_v2
VERSIONS = (VERSION, VERSION_2)
PREAMBLE = struct.Struct(">8sHHI")
PREAMBLE_LEN = PREAMBLE.size
ROOT_LEN = 32
SIGNATURE_LEN = 64
SIGNATURE_BLOCK_LEN = ROOT_LEN + SIGNATURE_LEN
TAG_LEN = 16

MAX_HEADER_SIZE = 1 << 20
MIN_CHUNK_SIZE = 1 << 12
MAX_CHUNK_SIZE = 1 << 26
DEFAULT_CHUNK_SIZE = 1 << 20
MAX_CHUNK_COUNT = 1 << 32
MAX_RECIPIENTS = 64
MAX_LABELS = 64
MAX_LABEL_KEY = 64
MAX_LABEL_VALUE = 256
MAX_NAME_LENGTH = 256
MAX_INT = (1 << 53) - 1
MAX_JSON_DEPTH = 8  # the header and the inner layout nest 3 deep; Python's parser recurses per level
SALT_LEN = 32

CIPHERS = ("aes-256-gcm", "chacha20-poly1305")
SIGNATURE_ALGS = ("ed25519", "ecdsa-p256-sha256")
PAYLOAD_KINDS = kinds.NAMES
_KEY_ID = re.compile(r"[0-9a-f]{16}\Z")


def canonical_json(obj: Any) -> bytes:
    """The one encoding edgeguard accepts for a JSON structure."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise FormatError("duplicate key in JSON object")
    return obj


def _reject_constant(name: str) -> Any:
    raise FormatError(f"{name} is not allowed")


def _reject_float(text: str) -> Any:
    raise FormatError("floating-point numbers are not allowed")


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)  # unrolled: no alternation per character
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(data: bytes) -> int:
    """How deeply arrays and objects nest in JSON text (brackets inside strings do not count).

    Strings go first (a regular expression, linear), then everything but brackets: a grant of
    100,000 stanzas is 21 MiB of JSON, too much for a loop over every byte.
    """
    depth = deepest = 0
    for byte in _JSON_STRING.sub(b"", bytes(data)).translate(None, _NOT_BRACKET):
        if byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def parse_canonical_json(data: bytes, what: str) -> dict[str, Any]:
    """Parses `data` as a JSON object and insists it is in canonical form.

    Nesting deeper than MAX_JSON_DEPTH is refused before parsing: it parses, but re-encoding it
    for the canonical check would exhaust Python's recursion limit.

    Raises:
        FormatError: not ASCII, not JSON, nested too deeply, not an object, or not canonical.
    """
    if json_depth(data) > MAX_JSON_DEPTH:
        raise FormatError(f"{what} nests arrays or objects deeper than MAX_JSON_DEPTH ({MAX_JSON_DEPTH})")
    try:
        text = data.decode("ascii")
        obj = json.loads(
            text,
            object_pairs_hook=_reject_duplicates,
            parse_float=_reject_float,
            parse_constant=_reject_constant,
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise FormatError(f"{what} is not ASCII JSON") from None
    if not isinstance(obj, dict):
        raise FormatError(f"{what} is not a JSON object")
    if canonical_json(obj) != data:
        raise FormatError(f"{what} is not in canonical form")
    return obj


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(value: Any, length: int, what: str) -> bytes:
    """Decodes canonical padded standard base64 of exactly `length` bytes.

    Raises:
        FormatError: not a string, not canonical base64, or the wrong length.
    """
    if not isinstance(value, str):
        raise FormatError(f"{what} must be a base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise FormatError(f"{what} is not valid base64") from None
    if len(raw) != length or b64encode(raw) != value:
        raise FormatError(f"{what} must be {length} bytes of canonical base64")
    return raw


def chunk_count(payload_length: int, chunk_size: int) -> int:
    return max(1, -(-payload_length // chunk_size))


def sealed_payload_len(payload_length: int, chunk_size: int) -> int:
    return payload_length + TAG_LEN * chunk_count(payload_length, chunk_size)


def _fields(obj: dict[str, Any], what: str, required: set[str], optional: frozenset[str] = frozenset()) -> None:
    keys = set(obj)
    missing = required - keys
    unknown = keys - required - optional
    if missing:
        raise FormatError(f"{what} is missing {', '.join(sorted(missing))}")
    if unknown:
        raise FormatError(f"{what} has unknown field(s) {', '.join(sorted(unknown))}")


def _int(value: Any, what: str, lo: int = 0, hi: int = MAX_INT) -> int:
    if type(value) is not int or not lo <= value <= hi:
        raise FormatError(f"{what} must be an integer in {lo}..{hi}")
    return value


def _str(value: Any, what: str, lo: int, hi: int) -> str:
    try:
        size = len(value.encode("utf-8")) if isinstance(value, str) else -1
    except UnicodeEncodeError:  # a lone surrogate such as "\ud800" is valid JSON but not UTF-8
        size = -1
    if not isinstance(value, str) or not lo <= size <= hi:
        raise FormatError(f"{what} must be a string of {lo}..{hi} bytes of UTF-8")
    return value


def _choice(value: Any, what: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise FormatError(f"{what} must be one of {', '.join(choices)}")
    return value


def key_id_field(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _KEY_ID.match(value):
        raise FormatError(f"{what} must be 16 lowercase hex digits")
    return value


@dataclass(frozen=True)
class StanzaField:
    """How a stanza field is checked: canonical base64 of exactly `length` bytes (``b64``), an integer
    in `lo`..`hi` (``int``), or a 16-hex-digit key id (``key_id``)."""

    kind: str
    length: int = 0
    lo: int = 0
    hi: int = MAX_INT

    def parse(self, value: Any, what: str) -> Any:
        if self.kind == "b64":
            return b64decode(value, self.length, what)
        if self.kind == "int":
            return _int(value, what, self.lo, self.hi)
        return key_id_field(value, what)

    def encode(self, value: Any) -> Any:
        return b64encode(value) if self.kind == "b64" else value


@dataclass(frozen=True)
class StanzaSpec:
    """A recipient type's stanza: its fields besides ``type`` (``wrapped`` always among them) and
    whether it must be a file's only stanza. Each recipient module declares its own."""

    type: str
    fields: Mapping[str, StanzaField]
    only_recipient: bool = False


@dataclass(frozen=True)
class Stanza:
    """One wrapped copy of the content key. `key_id` addresses a device key (None for a passphrase);
    `params` holds the type's other fields (a passphrase stanza's ``salt`` and ``log_n``)."""

    type: str
    wrapped: bytes
    key_id: str | None = None
    params: tuple[tuple[str, Any], ...] = ()

    def param(self, name: str) -> Any:
        """The value of a type-specific field. Raises KeyError if the stanza has none of that name."""
        return dict(self.params)[name]

    def to_json(self) -> dict[str, Any]:
        fields = _stanza_spec(self.type).fields
        values = {"wrapped": self.wrapped, **({"key_id": self.key_id} if self.key_id is not None else {}), **dict(self.params)}
        return {"type": self.type, **{name: fields[name].encode(value) for name, value in values.items()}}

    @classmethod
    def from_json(cls, obj: Any) -> Stanza:
        if not isinstance(obj, dict):
            raise FormatError("recipient stanza must be an object")
        from .recipients import STANZA_TYPES  # the recipient registry; it imports this module

        kind = _choice(obj.get("type"), "stanza type", STANZA_TYPES)
        spec = _stanza_spec(kind)
        _fields(obj, f"{kind} stanza", {"type", *spec.fields})
        values = {name: field.parse(obj[name], f"{kind} stanza {name}") for name, field in spec.fields.items()}
        wrapped, key_id = values.pop("wrapped"), values.pop("key_id", None)
        return cls(type=kind, wrapped=wrapped, key_id=key_id, params=tuple(sorted(values.items())))


def _stanza_spec(kind: str) -> StanzaSpec:
    from .recipients import stanza_spec

    return stanza_spec(kind)


@dataclass(frozen=True)
class ModelInfo:
    """Signed metadata about the sealed model."""

    name: str
    version: int
    created: int
    not_before: int | None = None
    not_after: int | None = None
    labels: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "created": self.created,
            "labels": dict(self.labels),
        }
        if self.not_before is not None:
            obj["not_before"] = self.not_before
        if self.not_after is not None:
            obj["not_after"] = self.not_after
        return obj

    @classmethod
    def from_json(cls, obj: Any) -> ModelInfo:
        if not isinstance(obj, dict):
            raise FormatError("model must be an object")
        _fields(obj, "model", {"name", "version", "created", "labels"}, frozenset({"not_before", "not_after"}))
        labels = obj["labels"]
        if not isinstance(labels, dict) or len(labels) > MAX_LABELS:
            raise FormatError(f"labels must be an object of at most {MAX_LABELS} entries")
        for key, value in labels.items():
            _str(key, "label key", 1, MAX_LABEL_KEY)
            _str(value, "label value", 0, MAX_LABEL_VALUE)
        info = cls(
            name=_str(obj["name"], "model name", 1, MAX_NAME_LENGTH),
            version=_int(obj["version"], "model version"),
            created=_int(obj["created"], "created"),
            not_before=None if "not_before" not in obj else _int(obj["not_before"], "not_before"),
            not_after=None if "not_after" not in obj else _int(obj["not_after"], "not_after"),
            labels=tuple(sorted(labels.items())),
        )
        if info.not_before is not None and info.not_after is not None and info.not_before >= info.not_after:
            raise FormatError("not_before must be earlier than not_after")
        return info


class ChunkedPayload:
    """What both header versions derive from `payload_length` and `chunk_size`."""

    payload_length: int
    chunk_size: int

    @property
    def chunk_count(self) -> int:
        return chunk_count(self.payload_length, self.chunk_size)

    @property
    def sealed_payload_len(self) -> int:
        return sealed_payload_len(self.payload_length, self.chunk_size)


@dataclass(frozen=True)
class Header(ChunkedPayload):
    """The parsed, validated public header of a sealed file."""

    cipher: str
    chunk_size: int
    payload_length: int
    salt: bytes
    signer_alg: str
    signer_key_id: str
    recipients: tuple[Stanza, ...]
    model: ModelInfo
    payload_kind: str

    def to_json(self) -> dict[str, Any]:
        return {
            "cipher": self.cipher,
            "chunk_size": self.chunk_size,
            "payload_length": self.payload_length,
            "salt": b64encode(self.salt),
            "signer": {"alg": self.signer_alg, "key_id": self.signer_key_id},
            "recipients": [s.to_json() for s in self.recipients],
            "model": self.model.to_json(),
            "payload": {"kind": self.payload_kind},
        }

    def encode(self) -> bytes:
        """Preamble plus canonical header bytes. Raises FormatError if the header breaks a limit."""
        body = canonical_json(self.to_json())
        header = parse_header(body)  # the writer obeys the reader's rules, limits included
        assert header == self
        return PREAMBLE.pack(MAGIC, VERSION, 0, len(body)) + body


def validate_chunk_size(chunk_size: Any) -> int:
    """Raises FormatError unless chunk_size is a power of two within the named limits."""
    size = _int(chunk_size, "chunk_size", MIN_CHUNK_SIZE, MAX_CHUNK_SIZE)
    if size & (size - 1):
        raise FormatError("chunk_size must be a power of two")
    return size


def parse_header(body: bytes) -> Header:
    """Parses and validates the header JSON (without the preamble).

    Raises:
        FormatError: malformed, non-canonical, or outside a named limit.
    """
    if len(body) > MAX_HEADER_SIZE:
        raise FormatError(f"header exceeds MAX_HEADER_SIZE ({MAX_HEADER_SIZE} bytes)")
    obj = parse_canonical_json(body, "header")
    _fields(obj, "header", {"cipher", "chunk_size", "payload_length", "salt", "signer", "recipients", "model", "payload"})
    chunk_size = validate_chunk_size(obj["chunk_size"])
    payload_length = _int(obj["payload_length"], "payload_length")
    if chunk_count(payload_length, chunk_size) > MAX_CHUNK_COUNT:
        raise FormatError(f"payload needs more than MAX_CHUNK_COUNT ({MAX_CHUNK_COUNT}) chunks")
    signer = obj["signer"]
    if not isinstance(signer, dict):
        raise FormatError("signer must be an object")
    _fields(signer, "signer", {"alg", "key_id"})
    payload = obj["payload"]
    if not isinstance(payload, dict):
        raise FormatError("payload must be an object")
    _fields(payload, "payload", {"kind"})
    recipients = obj["recipients"]
    if not isinstance(recipients, list) or not 1 <= len(recipients) <= MAX_RECIPIENTS:
        raise FormatError(f"recipients must be a list of 1..{MAX_RECIPIENTS} stanzas")
    stanzas = tuple(Stanza.from_json(s) for s in recipients)
    sole = next((s.type for s in stanzas if _stanza_spec(s.type).only_recipient), None)
    if sole is not None and len(stanzas) != 1:
        raise FormatError(f"a {sole} recipient must be the only recipient")
    key_ids = [s.key_id for s in stanzas if s.key_id is not None]
    if len(set(key_ids)) != len(key_ids):
        raise FormatError("two recipient stanzas share a key_id")
    return Header(
        cipher=_choice(obj["cipher"], "cipher", CIPHERS),
        chunk_size=chunk_size,
        payload_length=payload_length,
        salt=b64decode(obj["salt"], SALT_LEN, "salt"),
        signer_alg=_choice(signer["alg"], "signer alg", SIGNATURE_ALGS),
        signer_key_id=key_id_field(signer["key_id"], "signer key_id"),
        recipients=stanzas,
        model=ModelInfo.from_json(obj["model"]),
        payload_kind=_choice(payload["kind"], "payload kind", PAYLOAD_KINDS),
    )


def parse_preamble(data: bytes) -> int:
    """Checks the 16-byte preamble and returns the header length.

    Raises:
        FormatError: too short, wrong magic, nonzero flags, or header length out of range.
        UnsupportedVersionError: a version other than 1 or 2.
    """
    if len(data) < PREAMBLE_LEN:
        raise FormatError("file is too short to be a sealed model")
    header_len: int  # PREAMBLE's last field is an unsigned integer
    magic, version, flags, header_len = PREAMBLE.unpack_from(data)
    if magic != MAGIC:
        raise FormatError("not an edgeguard sealed file (bad magic)")
    if version not in VERSIONS:
        raise UnsupportedVersionError(f"sealed format version {version} is not supported (this build reads 1 and 2)")
    if flags != 0:
        raise FormatError("reserved flags must be zero")
    if not 1 <= header_len <= MAX_HEADER_SIZE:
        raise FormatError(f"header length {header_len} is outside 1..MAX_HEADER_SIZE ({MAX_HEADER_SIZE})")
    return header_len


@dataclass(frozen=True)
class Container:
    """A parsed sealed file: header plus where everything lies. Nothing here is authenticated yet.

    A version 2 artifact has a :class:`~edgeguard.format_v2.PayloadHeader` (no recipients) and
    may embed a grant after its chunks (`embedded_grant`, the grant file's bytes, unparsed).
    """

    header: Any  # Header (version 1) or format_v2.PayloadHeader (version 2)
    preamble_and_header: bytes
    chunk_root: bytes
    signature: bytes
    payload_offset: int
    version: int = VERSION
    embedded_grant: bytes | None = None

    @property
    def total_len(self) -> int:
        trailer = 0 if self.version == VERSION else 4 + len(self.embedded_grant or b"")
        sealed: int = self.header.sealed_payload_len
        return self.payload_offset + sealed + trailer


def read_container(f: Any) -> Container:
    """Reads the preamble, header and signature block from a binary file object at offset 0.

    The caller checks the file size against :attr:`Container.total_len` (an integrity check).

    Raises:
        FormatError, UnsupportedVersionError: as for :func:`parse_preamble` and :func:`parse_header`.
        IntegrityError: the file ends inside the signature block (a file of the wrong size).
    """
    preamble = f.read(PREAMBLE_LEN)
    header_len = parse_preamble(preamble)
    body = f.read(header_len)
    if len(body) != header_len:
        raise FormatError("file ends inside the header")
    if PREAMBLE.unpack_from(preamble)[1] == VERSION_2:
        from .format_v2 import read_artifact

        return read_artifact(f, preamble, body)
    header = parse_header(body)
    block = f.read(SIGNATURE_BLOCK_LEN)
    if len(block) != SIGNATURE_BLOCK_LEN:
        raise IntegrityError()  # a well-formed header but the wrong file size (docs/FORMAT.md)
    return Container(
        header=header,
        preamble_and_header=preamble + body,
        chunk_root=block[:ROOT_LEN],
        signature=block[ROOT_LEN:],
        payload_offset=PREAMBLE_LEN + header_len + SIGNATURE_BLOCK_LEN,
    )
