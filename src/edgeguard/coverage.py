"""Protected coverage of an ONNX payload: how many of a model's parameter bytes onnxruntime reads
from the secure buffer (the sealed ``weights`` section) rather than from inline copies in the graph.

Parameter bytes are every tensor the model carries, at any depth: initializers (dense and
sparse), ``Constant`` node values (``value``, ``sparse_value``, ``value_float(s)``,
``value_int(s)``, ``value_string(s)``), tensor-valued attributes of other nodes, in the main
graph, in every subgraph (If/Loop/Scan bodies, nested) and in model-local functions. A tensor is
*protected* when it is a main-graph initializer whose external data lies in the weights section
(location :data:`~edgeguard.kinds.onnx.WEIGHTS_LOCATION`). Tensors smaller than
:data:`INLINE_MAX_BYTES` + 1 (shapes, axes, scalars) and string tensors (onnxruntime cannot read
those from external data) may stay inline: they count in :attr:`Coverage.total_bytes` but not in
:attr:`Coverage.required_bytes`, the denominator of :attr:`Coverage.fraction`.

The device measures this itself from the decrypted graph (a small protobuf walker: devices never
import ``onnx``), so a file sealed by an older edgeguard that left weights inline is measured as it
is, not as its publisher claims.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .errors import FormatError

WEIGHTS_LOCATION = "edgeguard.weights"
EXTERNALIZE_MIN_BYTES = 1024
"""Tensors of at least this many bytes must live in the weights section; smaller ones may stay inline."""
INLINE_MAX_BYTES = EXTERNALIZE_MIN_BYTES - 1

# onnx.TensorProto.DataType -> bytes per element (sub-byte types as fractions); STRING (8) has none.
_ITEM_BITS = {
    1: 32, 2: 8, 3: 8, 4: 16, 5: 16, 6: 32, 7: 64, 9: 8, 10: 16, 11: 64, 12: 32, 13: 64,
    14: 64, 15: 128, 16: 16, 17: 8, 18: 8, 19: 8, 20: 8, 21: 4, 22: 4, 23: 4, 24: 8, 25: 2, 26: 2,
}  # fmt: skip
_STRING = 8
_EXTERNAL = 1


@dataclass(frozen=True)
class Coverage:
    """Where an ONNX payload's parameter bytes are.

    ``total_bytes``: every parameter tensor's bytes (see the module docstring);
    ``required_bytes``: those of tensors that must be protected (at least ``threshold`` bytes and
    not strings); ``protected_bytes``: those in the secure buffer; ``unprotected``: names of
    tensors that must be protected but are inline (or in an external file on disk), largest first;
    ``fraction``: protected share of ``required_bytes`` (1.0 when nothing is required).
    """

    total_bytes: int
    required_bytes: int
    protected_bytes: int
    unprotected: tuple[str, ...]
    threshold: int = EXTERNALIZE_MIN_BYTES

    @property
    def fraction(self) -> float:
        if self.required_bytes == 0:
            return 1.0
        return min(self.protected_bytes, self.required_bytes) / self.required_bytes

    @property
    def percent(self) -> float:
        return 100.0 * self.fraction

    @property
    def inline_bytes(self) -> int:
        """Parameter bytes that stay in the graph (small tensors, strings and unprotected ones)."""
        return self.total_bytes - self.protected_bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "protected_bytes": self.protected_bytes,
            "required_bytes": self.required_bytes,
            "total_bytes": self.total_bytes,
            "percent": round(self.percent, 2),
            "threshold_bytes": self.threshold,
            "unprotected": list(self.unprotected),
        }

    def __str__(self) -> str:
        text = (
            f"{self.percent:.1f}% of weight bytes in the secure buffer ({self.protected_bytes:,} of {self.required_bytes:,}; "
            f"{self.inline_bytes:,} bytes inline, tensors under {self.threshold:,} bytes may stay inline)"
        )
        if self.unprotected:
            more = f" and {len(self.unprotected) - 3} more" if len(self.unprotected) > 3 else ""
            text += f"; not protected: {', '.join(self.unprotected[:3])}{more}"
        return text


# --- a minimal protobuf reader (wire format only; field numbers from onnx.proto) ---


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise FormatError("the ONNX graph is not valid protobuf")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value): an int for varint/fixed, a memoryview for length-delimited."""
    pos, end = 0, len(buf)
    value: Any
    while pos < end:
        key = buf[pos]  # one-byte varints (most keys and lengths) inline: this loop is the device's load cost
        if key < 0x80:
            pos += 1
        else:
            key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 2:
            if pos < end and buf[pos] < 0x80:
                length = buf[pos]
                pos += 1
            else:
                length, pos = _varint(buf, pos)
            if pos + length > end:
                raise FormatError("the ONNX graph is not valid protobuf")
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            if pos + 8 > end:
                raise FormatError("the ONNX graph is not valid protobuf")
            value, pos = int.from_bytes(buf[pos : pos + 8], "little"), pos + 8
        elif wire == 5:
            if pos + 4 > end:
                raise FormatError("the ONNX graph is not valid protobuf")
            value, pos = int.from_bytes(buf[pos : pos + 4], "little"), pos + 4
        else:
            raise FormatError("the ONNX graph is not valid protobuf")
        yield field, wire, value


def _count(wire: int, value: Any, width: int) -> int:
    """Elements in one occurrence of a repeated scalar field, packed (wire 2) or not."""
    if wire != 2:
        return 1
    if width:
        return len(value) // width
    return sum(1 for b in value if not b & 0x80)  # packed varints: one terminal byte each


@dataclass
class _Tensor:
    name: str
    nbytes: int
    string: bool
    protected: bool


def _tensor(buf: memoryview, name: str = "") -> _Tensor:
    dims: list[int] = []
    data_type = 0
    location = ""
    external = False
    stored = counted = strings = 0
    for field, wire, value in _fields(buf):
        if field == 1:
            if wire == 2:
                pos = 0
                while pos < len(value):
                    d, pos = _varint(value, pos)
                    dims.append(d)
            else:
                dims.append(value)
        elif field == 2:
            data_type = value
        elif field == 8 and wire == 2 and not name:
            name = bytes(value).decode("utf-8", "replace")
        elif field == 9 and wire == 2:
            stored += len(value)
        elif field == 6 and wire == 2:
            strings += len(value)
        elif field in (4, 5, 7, 10, 11):  # typed data: only needed for an unknown element type
            counted += len(value) if wire == 2 else 8
        elif field == 13 and wire == 2:
            entry = {f: bytes(v).decode("utf-8", "replace") for f, w, v in _fields(value) if w == 2}
            if entry.get(1) == "location":
                location = entry.get(2, "")
        elif field == 14:
            external = value == _EXTERNAL
    if data_type == _STRING:
        return _Tensor(name, strings, True, False)
    bits = _ITEM_BITS.get(data_type)
    if bits is not None and all(d >= 0 for d in dims):
        nbytes = -(-math.prod(dims) * bits // 8)
    else:  # an unknown element type: what the graph stores
        nbytes = stored or counted
    return _Tensor(name, nbytes, False, external and location == WEIGHTS_LOCATION)


def _sparse(buf: memoryview, name: str = "") -> _Tensor:
    nbytes = 0
    for field, wire, value in _fields(buf):
        if field in (1, 2) and wire == 2:
            t = _tensor(value)
            nbytes += t.nbytes
            if field == 1:
                name = t.name or name
    return _Tensor(name, nbytes, False, False)


def _attribute(buf: memoryview, op_type: str, output: str) -> Iterator[_Tensor]:
    name = ""
    floats = ints = 0
    strings = 0
    scalar: list[_Tensor] = []
    subgraphs: list[memoryview] = []
    for field, wire, value in _fields(buf):
        if field == 1 and wire == 2:
            name = bytes(value).decode("utf-8", "replace")
        elif field in (5, 10) and wire == 2:
            scalar.append(_tensor(value, output))
        elif field in (22, 23) and wire == 2:
            scalar.append(_sparse(value, output))
        elif field in (6, 11) and wire == 2:
            subgraphs.append(value)
        elif field == 7:
            floats += _count(wire, value, 4)
        elif field == 8:
            ints += _count(wire, value, 0)
        elif field == 2:
            floats += 1
        elif field == 3:
            ints += 1
        elif field in (4, 9) and wire == 2:
            strings += len(value)
    yield from scalar
    if op_type == "Constant":
        if name in ("value_float", "value_floats") and floats:
            yield _Tensor(output, 4 * floats, False, False)
        elif name in ("value_int", "value_ints") and ints:
            yield _Tensor(output, 8 * ints, False, False)
        elif name in ("value_string", "value_strings"):
            yield _Tensor(output, strings, True, False)
    for g in subgraphs:
        yield from _graph(g, top=False)


def _node(buf: memoryview) -> Iterator[_Tensor]:
    op_type, domain, output = "", "", ""
    attributes = []
    for field, wire, value in _fields(buf):
        if wire != 2:
            continue
        if field == 2 and not output:
            output = bytes(value).decode("utf-8", "replace")
        elif field == 4:
            op_type = bytes(value).decode("utf-8", "replace")
        elif field == 7:
            domain = bytes(value).decode("utf-8", "replace")
        elif field == 5:
            attributes.append(value)
    if domain not in ("", "ai.onnx"):
        op_type = f"{domain}.{op_type}"
    for a in attributes:
        yield from _attribute(a, op_type, output)


def _graph(buf: memoryview, top: bool) -> Iterator[_Tensor]:
    for field, wire, value in _fields(buf):
        if wire != 2:
            continue
        if field == 5:
            t = _tensor(value)
            if not top:  # onnxruntime reads in-memory external data only for main-graph initializers
                t.protected = False
            yield t
        elif field == 15:
            yield _sparse(value)
        elif field == 1:
            yield from _node(value)


def _model(buf: memoryview) -> Iterator[_Tensor]:
    for field, wire, value in _fields(buf):
        if field == 7 and wire == 2:
            yield from _graph(value, top=True)
        elif field == 25 and wire == 2:  # FunctionProto: its nodes are field 7
            for f, w, v in _fields(value):
                if f == 7 and w == 2:
                    yield from _node(v)


def graph_coverage(graph: Any, threshold: int = EXTERNALIZE_MIN_BYTES) -> Coverage:
    """The coverage of a serialized ONNX ModelProto (an ``onnx`` payload's ``graph`` section).

    Raises:
        FormatError: `graph` is not valid protobuf.
    """
    total = required = protected = 0
    unprotected: list[tuple[int, str]] = []
    with memoryview(graph) as raw, raw.cast("B") as view:
        tensors = list(_model(view))
    for t in tensors:
        total += t.nbytes
        must = not t.string and t.nbytes >= threshold
        if must:
            required += t.nbytes
        if t.protected:
            protected += t.nbytes if must else 0
        elif must:
            unprotected.append((t.nbytes, t.name or "<unnamed>"))
    unprotected.sort(key=lambda x: (-x[0], x[1]))
    return Coverage(total, required, protected, tuple(n for _, n in unprotected), threshold)


def payload_coverage(payload: Any, kind: str = "onnx") -> Coverage | None:
    """The coverage of a laid-out payload (:mod:`edgeguard.payload`): ``None`` for kinds other than
    ``onnx`` (safetensors and raw payloads are in the secure buffer whole).

    Raises:
        FormatError: the payload's layout or graph is malformed.
    """
    if kind != "onnx":
        return None
    from .payload import parse_payload

    layout = parse_payload(payload, kind)
    with layout.section(payload, "graph") as graph:
        return graph_coverage(graph)


def model_coverage(path: Any) -> Coverage:
    """The coverage an ONNX model file would get once sealed by this edgeguard (publisher side;
    needs the ``onnx`` package): the seal-time surgery is run in memory and measured.

    Raises:
        FormatError: not a loadable ONNX model, or a tensor that must be protected cannot be.
    """
    from pathlib import Path

    from .kinds.onnx import onnx_sections

    sections, _ = onnx_sections(Path(path), require_full_coverage=False)
    return graph_coverage(sections[0][1])


def sealed_coverage(path: Any, *, identity: Any = None, trust: Any = None, passphrase: str | bytes | None = None, threads: int = 0) -> Coverage | None:
    """The coverage of a sealed file's payload (``None`` unless it is an ``onnx`` payload): it is
    inside the encryption, so this verifies and decrypts the file into a secure buffer, measures,
    and wipes the buffer. `identity`, `trust` and `passphrase` as for
    :class:`~edgeguard.runtime.InferenceSession`; no validity window or anti-rollback check.

    Raises:
        the errors of :func:`edgeguard.unseal.decrypt_file` (FormatError, IntegrityError,
        UntrustedSignerError, NotARecipientError, KeyFileError, OSError).
    """
    from .keys import resolve_trust
    from .recipients import resolve_identities
    from .secure_memory import SecureBuffer
    from .unseal import decrypt_file

    opened = decrypt_file(path, resolve_identities(identity, passphrase), resolve_trust(trust), allocate=SecureBuffer, threads=threads)
    try:
        if opened.container.header.payload_kind != "onnx":
            return None
        with opened.layout.section(opened.buffer, "graph") as graph:
            return graph_coverage(graph)
    finally:
        opened.buffer.close()
