"""The inner payload layout (docs/FORMAT.md, "Inner payload"): sections and the tensor table.

Pure byte layout, no cryptography and no onnx: the device parses it after decryption to find the
sections and tensors in place. Which sections a payload has is its kind's business
(:mod:`edgeguard.kinds`). Malformed layouts raise FormatError.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from . import kinds
from .errors import FormatError
from .format import MAX_INT, canonical_json, parse_canonical_json

INNER_MAGIC = b"EGPAYLD1"
SECTION_ALIGN = 4096  # page aligned, so a section can back an onnxruntime buffer or an mmap view
TENSOR_ALIGN = 64
MAX_LAYOUT_SIZE = 16 << 20
MAX_TENSORS = 1 << 20
MAX_TENSOR_NAME = 4096
MAX_RANK = 16
_LEN = struct.Struct(">I")

OPTIONAL_SECTIONS = ("detector_profile", "ml_bom")

# The dtypes a tensor table may name, as numpy dtype names (``np.dtype(DTYPES[name])``); numpy has
# no bfloat16, so those tensors are exposed as uint16. Names, not numpy types: verifying a file
# (the CLI's `verify`) must not pay numpy's import.
DTYPES = {
    "float64": "float64", "float32": "float32", "float16": "float16", "bfloat16": "uint16",
    "int64": "int64", "int32": "int32", "int16": "int16", "int8": "int8",
    "uint64": "uint64", "uint32": "uint32", "uint16": "uint16", "uint8": "uint8", "bool": "bool",
}  # fmt: skip
ITEMSIZE = {
    "float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "int64": 8, "int32": 4, "int16": 2, "int8": 1,
    "uint64": 8, "uint32": 4, "uint16": 2, "uint8": 1, "bool": 1,
}  # fmt: skip


def align_up(n: int, alignment: int) -> int:
    return -(-n // alignment) * alignment


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int
    length: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape), "offset": self.offset, "length": self.length}


@dataclass(frozen=True)
class Layout:
    """Where each section lies in the payload (absolute offsets) and the tensor table."""

    sections: dict[str, tuple[int, int]]  # name -> (offset, length)
    tensors: tuple[TensorEntry, ...]
    payload_length: int

    def section(self, buf: Any, name: str) -> memoryview:
        """A zero-copy view of one section. Raises KeyError if the payload has no such section."""
        offset, length = self.sections[name]
        return memoryview(buf)[offset : offset + length]


def tensor_entries(specs: Sequence[tuple[str, str, tuple[int, ...]]]) -> tuple[TensorEntry, ...]:
    """Lays tensors out back to back at TENSOR_ALIGN: the only layout the reader accepts."""
    entries, offset = [], 0
    for name, dtype, shape in specs:
        length = math.prod(shape) * ITEMSIZE[dtype]  # exact: np.prod wraps at 2**63
        entries.append(TensorEntry(name, dtype, tuple(int(d) for d in shape), offset, length))
        offset = align_up(offset + length, TENSOR_ALIGN)
    return tuple(entries)


def tensors_extent(entries: Sequence[TensorEntry]) -> int:
    return entries[-1].offset + entries[-1].length if entries else 0


def build_payload(kind: str, sections: Sequence[tuple[str, Any]], tensors: Sequence[TensorEntry] = ()) -> bytearray:
    """Assembles the plaintext payload from (name, bytes-like) sections in their canonical order."""
    layout = canonical_json(
        {"sections": [{"name": n, "length": len(memoryview(d).cast("B"))} for n, d in sections], "tensors": [t.to_json() for t in tensors]}
    )
    parsed_names = [n for n, _ in sections]
    _check_section_names(kind, parsed_names)
    head = INNER_MAGIC + _LEN.pack(len(layout)) + layout
    total = align_up(len(head), SECTION_ALIGN)
    offsets = []
    for _, data in sections:
        total = align_up(total, SECTION_ALIGN)
        offsets.append(total)
        total += len(memoryview(data).cast("B"))
    out = bytearray(total)
    out[: len(head)] = head
    for (_, data), offset in zip(sections, offsets, strict=True):
        view = memoryview(data).cast("B")
        out[offset : offset + len(view)] = view
    return out


def _check_section_names(kind: str, names: Sequence[str]) -> None:
    required = kinds.get(kind).sections
    extra = tuple(names[len(required) :])
    if tuple(names[: len(required)]) != required or any(n not in OPTIONAL_SECTIONS for n in extra) or len(set(extra)) != len(extra):
        raise FormatError(f"a {kind} payload has sections {', '.join(required)} (+ optional {', '.join(OPTIONAL_SECTIONS)})")


def _parse_tensor(obj: Any) -> tuple[str, str, tuple[int, ...], int, int]:
    if not isinstance(obj, dict) or set(obj) != {"name", "dtype", "shape", "offset", "length"}:
        raise FormatError("tensor entry must have exactly name, dtype, shape, offset, length")
    name, dtype, shape = obj["name"], obj["dtype"], obj["shape"]
    if not isinstance(name, str) or not 0 < len(name) <= MAX_TENSOR_NAME:
        raise FormatError("tensor name must be a non-empty string")
    if not isinstance(dtype, str) or dtype not in DTYPES:  # a JSON list is unhashable
        raise FormatError(f"unsupported tensor dtype {dtype!r}")
    if not isinstance(shape, list) or len(shape) > MAX_RANK or any(type(d) is not int or not 0 <= d <= MAX_INT for d in shape):
        raise FormatError("tensor shape must be a list of non-negative integers")
    # Zero-element tensors too: a device maps the shape onto memory (numpy refuses larger extents).
    if math.prod(d for d in shape if d) * ITEMSIZE[dtype] > MAX_INT:
        raise FormatError("tensor shape is larger than MAX_INT bytes")
    offset, length = obj["offset"], obj["length"]
    if type(offset) is not int or type(length) is not int:  # JSON true/false would compare equal to 1/0
        raise FormatError("tensor offset and length must be integers")
    return name, dtype, tuple(shape), offset, length


def parse_payload(buf: Any, kind: str) -> Layout:
    """Validates the inner payload of a sealed file of payload kind `kind` and returns its layout.

    Raises:
        FormatError: bad magic, malformed layout, wrong sections, nonzero padding, holes or
            trailing bytes, or a tensor table that is not the canonical back-to-back layout.
    """
    view = memoryview(buf).cast("B")
    if len(view) < len(INNER_MAGIC) + _LEN.size or bytes(view[: len(INNER_MAGIC)]) != INNER_MAGIC:
        raise FormatError("inner payload has a bad magic")
    (layout_len,) = _LEN.unpack_from(view, len(INNER_MAGIC))
    start = len(INNER_MAGIC) + _LEN.size
    if layout_len > MAX_LAYOUT_SIZE or start + layout_len > len(view):
        raise FormatError("inner layout length is out of range")
    obj = parse_canonical_json(bytes(view[start : start + layout_len]), "inner layout")
    if set(obj) != {"sections", "tensors"} or not isinstance(obj["sections"], list) or not isinstance(obj["tensors"], list):
        raise FormatError("inner layout must have exactly sections and tensors")
    cursor = start + layout_len
    sections: dict[str, tuple[int, int]] = {}
    for entry in obj["sections"]:
        if not isinstance(entry, dict) or set(entry) != {"name", "length"} or not isinstance(entry["name"], str):
            raise FormatError("section entry must have exactly name and length")
        length = entry["length"]
        if type(length) is not int or not 0 <= length <= MAX_INT:
            raise FormatError("section length must be a non-negative integer")
        offset = align_up(cursor, SECTION_ALIGN)
        if offset + length > len(view):
            raise FormatError("section runs past the end of the payload")
        if any(view[cursor:offset]):
            raise FormatError("padding between sections must be zero")
        sections[entry["name"]] = (offset, length)
        cursor = offset + length
    if cursor != len(view):
        raise FormatError("inner payload has trailing bytes")
    _check_section_names(kind, [e["name"] for e in obj["sections"]])
    if len(obj["tensors"]) > MAX_TENSORS:
        raise FormatError("too many tensors")
    parsed = [_parse_tensor(t) for t in obj["tensors"]]
    expected = tensor_entries([(n, d, s) for n, d, s, _, _ in parsed])
    if any((t.offset, t.length) != (off, ln) for t, (_, _, _, off, ln) in zip(expected, parsed, strict=True)):
        raise FormatError("tensor table offsets or lengths are not the canonical layout")
    tensor_section = kinds.get(kind).tensor_section
    if tensor_section is not None:
        section_offset, section_len = sections[tensor_section]
        if tensors_extent(expected) != section_len:
            raise FormatError(f"{tensor_section} section length does not match the tensor table")
        for prev, nxt in pairwise(expected):
            if any(view[section_offset + prev.offset + prev.length : section_offset + nxt.offset]):
                raise FormatError("padding between tensors must be zero")
    elif expected:
        raise FormatError(f"a {kind} payload has no tensor table")
    return Layout(sections=sections, tensors=expected, payload_length=len(view))
