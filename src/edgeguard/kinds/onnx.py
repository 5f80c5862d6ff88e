"""The ``onnx`` kind: a ``graph`` section (the ModelProto) and a ``weights`` section it refers to.

Publisher side (needs the onnx package, imported only there; devices never import onnx): every
initializer of at least EXTERNALIZE_MIN_BYTES moves out of the graph into one weights blob,
laid out per the tensor table rules, and the graph refers to it as external data at location
WEIGHTS_LOCATION. onnxruntime can then read the weights in place from the decrypted buffer.
Models that already keep their weights in external files (needed above 2 GB) are read from there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._files import atomic_output
from ..errors import FormatError
from ..payload import Layout, TensorEntry, tensor_entries, tensors_extent
from .base import PayloadKind, Sections, tensor_views

if TYPE_CHECKING:
    import onnx

WEIGHTS_LOCATION = "edgeguard.weights"
EXTERNALIZE_MIN_BYTES = 1024
_PROTOBUF_LIMIT = 2**31 - 1
# onnx.TensorProto.DataType values (stable in the ONNX spec) -> the tensor table's dtype names.
_DTYPE_NAMES = {
    1: "float32", 11: "float64", 10: "float16", 16: "bfloat16", 7: "int64", 6: "int32", 5: "int16",
    3: "int8", 13: "uint64", 12: "uint32", 4: "uint16", 2: "uint8", 9: "bool",
}  # fmt: skip


def _tensor_bytes(t: onnx.TensorProto) -> bytes:
    from onnx import TensorProto, numpy_helper

    if t.raw_data:
        return t.raw_data
    if t.data_type == TensorProto.BFLOAT16:  # typed storage keeps bf16 in int32 fields
        return np.asarray(t.int32_data, dtype=np.uint16).tobytes()
    arr = numpy_helper.to_array(t)
    return arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()


def onnx_sections(path: Path) -> tuple[Sections, tuple[TensorEntry, ...]]:
    """Returns ([("graph", ...), ("weights", ...)], tensor table) for the model at `path`.

    Raises:
        FormatError: not a loadable ONNX model, or its external data cannot be read.
    """
    import onnx
    from onnx import TensorProto

    try:
        model = onnx.load(str(path), load_external_data=True)
    except Exception as exc:  # onnx raises DecodeError, OSError, ValidationError, ...
        raise FormatError(f"{path} is not a loadable ONNX model ({type(exc).__name__})") from None
    moved = []
    for t in model.graph.initializer:
        if t.data_type not in _DTYPE_NAMES:
            continue
        data = _tensor_bytes(t)
        if len(data) >= EXTERNALIZE_MIN_BYTES:
            moved.append((t, data))
    entries = tensor_entries([(t.name, _DTYPE_NAMES[t.data_type], tuple(t.dims)) for t, _ in moved])
    blob = bytearray(tensors_extent(entries))
    for (t, data), entry in zip(moved, entries, strict=True):
        if len(data) != entry.length:
            raise FormatError(f"initializer {t.name!r} holds {len(data)} bytes, its shape says {entry.length}")
        blob[entry.offset : entry.offset + entry.length] = data
        t.ClearField("raw_data")
        for field in ("float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
            t.ClearField(field)
        del t.external_data[:]
        t.data_location = TensorProto.EXTERNAL
        for key, value in (("location", WEIGHTS_LOCATION), ("offset", str(entry.offset)), ("length", str(entry.length))):
            t.external_data.add(key=key, value=value)
    return [("graph", model.SerializeToString()), ("weights", bytes(blob))], entries


def reassemble(graph: bytes, weights: memoryview) -> onnx.ModelProto:
    """The inverse of :func:`onnx_sections`: a self-contained ModelProto with weights embedded.

    Raises:
        FormatError: the graph does not parse, or an external initializer does not name a range
            of the weights section (a signed but malformed payload).
    """
    import onnx
    from google.protobuf.message import DecodeError  # type: ignore[import-untyped]  # protobuf ships no stubs
    from onnx import TensorProto

    model = onnx.ModelProto()
    try:
        model.ParseFromString(graph)
    except DecodeError:
        raise FormatError("the payload's graph section is not an ONNX model") from None
    for t in model.graph.initializer:
        if t.data_location != TensorProto.EXTERNAL:
            continue
        offset, length = _external_range(t, len(weights))
        t.raw_data = bytes(weights[offset : offset + length])
        del t.external_data[:]
        t.data_location = TensorProto.DEFAULT
    return model


def _external_range(t: onnx.TensorProto, weights_len: int) -> tuple[int, int]:
    info = {e.key: e.value for e in t.external_data}
    offset, length = info.get("offset", ""), info.get("length", "")
    if info.get("location") != WEIGHTS_LOCATION or not all(v.isascii() and v.isdigit() for v in (offset, length)):
        raise FormatError(f"initializer {t.name!r} does not refer to the weights section")
    if int(offset) + int(length) > weights_len:
        raise FormatError(f"initializer {t.name!r} lies outside the weights section")
    return int(offset), int(length)


class OnnxKind(PayloadKind):
    name = "onnx"
    sections = ("graph", "weights")
    tensor_section = "weights"
    suffixes = (".onnx",)

    def build(self, path: Path) -> tuple[Sections, tuple[TensorEntry, ...]]:
        return onnx_sections(path)

    def tensors(self, layout: Layout, buffer: Any) -> dict[str, np.ndarray]:
        return tensor_views(layout, buffer, "weights", layout.tensors)

    def write_original(self, layout: Layout, buffer: Any, target: Path) -> None:
        """One self-contained model with the weights embedded again (or, above protobuf's 2 GB
        limit, `target` plus external data beside it)."""
        import onnx

        model = reassemble(bytes(layout.section(buffer, "graph")), layout.section(buffer, "weights"))
        with atomic_output(target, overwrite=False, mode=0o600) as (_fd, tmp):
            if model.ByteSize() < _PROTOBUF_LIMIT:
                onnx.save_model(model, os.fspath(tmp))
            else:
                onnx.save_model(model, os.fspath(tmp), save_as_external_data=True, location=target.name + ".data")


KIND = OnnxKind()
