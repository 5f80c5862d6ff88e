"""The ``safetensors`` kind: the original file byte for byte, in one ``safetensors`` section.

A strict reader (no dependency on the safetensors package) validates the file at seal time and
again on the device, and returns zero-copy numpy views. It follows the safetensors rules: an
8-byte little-endian header length, a JSON header of at most 100 MB, tensors that exactly tile the
data area (no holes, no overlaps, no trailing bytes).
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FormatError
from ..format import MAX_JSON_DEPTH, json_depth
from ..payload import Layout, TensorEntry
from .base import PayloadKind, Sections

MAX_HEADER_SIZE = 100_000_000  # safetensors' own limit
_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8, "BOOL": np.bool_,
}  # fmt: skip


def parse_safetensors(buf: Any) -> dict[str, tuple[str, tuple[int, ...], int, int]]:
    """Returns name -> (dtype, shape, start, end) with absolute offsets into `buf`.

    Raises:
        FormatError: anything that safetensors itself would reject.
    """
    view = memoryview(buf).cast("B")
    if len(view) < 8:
        raise FormatError("safetensors file is too short")
    (n,) = struct.unpack_from("<Q", view)
    if n > MAX_HEADER_SIZE or 8 + n > len(view):
        raise FormatError("safetensors header length is out of range")
    text = bytes(view[8 : 8 + n])
    if json_depth(text) > MAX_JSON_DEPTH:  # a flat format: deep nesting only exhausts the parser's recursion
        raise FormatError("safetensors header nests too deeply")
    try:
        header = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise FormatError("safetensors header is not JSON") from None
    if not isinstance(header, dict):
        raise FormatError("safetensors header is not an object")
    header.pop("__metadata__", None)
    base, spans, out = 8 + n, [], {}
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise FormatError(f"safetensors entry {name!r} is malformed")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(dtype, str) or dtype not in _DTYPES:  # a JSON list is unhashable
            raise FormatError(f"safetensors dtype {dtype!r} is not supported")
        if not isinstance(shape, list) or any(type(d) is not int or d < 0 for d in shape):
            raise FormatError(f"safetensors shape of {name!r} is malformed")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
            raise FormatError(f"safetensors data_offsets of {name!r} are malformed")
        start, end = offsets
        if not 0 <= start <= end or end - start != math.prod(shape) * np.dtype(_DTYPES[dtype]).itemsize:
            raise FormatError(f"safetensors tensor {name!r} has a size that does not match its shape")
        spans.append((start, end))
        out[name] = (dtype, tuple(shape), base + start, base + end)
    cursor = 0
    for start, end in sorted(spans):
        if start != cursor:
            raise FormatError("safetensors tensors overlap or leave a hole")
        cursor = end
    if base + cursor != len(view):
        raise FormatError("safetensors data area has trailing bytes")
    return out


def safetensors_views(buf: Any) -> dict[str, np.ndarray]:
    """Read-only numpy views of every tensor, sharing memory with `buf` (BF16 as uint16)."""
    view = memoryview(buf).cast("B")
    arrays = {}
    for name, (dtype, shape, start, end) in parse_safetensors(view).items():
        arr = np.frombuffer(view[start:end], dtype=np.dtype(_DTYPES[dtype]).newbyteorder("<")).reshape(shape)
        arr.flags.writeable = False
        arrays[name] = arr
    return arrays


class SafetensorsKind(PayloadKind):
    name = "safetensors"
    sections = ("safetensors",)
    suffixes = (".safetensors",)

    def build(self, path: Path) -> tuple[Sections, tuple[TensorEntry, ...]]:
        data = path.read_bytes()
        parse_safetensors(data)  # refuse to seal a file devices would reject
        return [("safetensors", data)], ()

    def tensors(self, layout: Layout, buffer: Any) -> dict[str, np.ndarray]:
        return safetensors_views(layout.section(buffer, "safetensors"))


KIND = SafetensorsKind()
