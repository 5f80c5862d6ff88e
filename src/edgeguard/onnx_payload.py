"""ONNX model surgery for sealing (publisher side only; devices never import onnx).

Every initializer of at least EXTERNALIZE_MIN_BYTES moves out of the graph into one weights blob,
laid out per the tensor table rules, and the graph refers to it as external data at location
WEIGHTS_LOCATION. onnxruntime can then read the weights in place from the decrypted buffer.
Models that already keep their weights in external files (needed above 2 GB) are read from there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from .errors import FormatError
from .payload import TensorEntry, tensor_entries, tensors_extent

WEIGHTS_LOCATION = "edgeguard.weights"
EXTERNALIZE_MIN_BYTES = 1024
_DTYPE_NAMES = {
    TensorProto.FLOAT: "float32", TensorProto.DOUBLE: "float64", TensorProto.FLOAT16: "float16",
    TensorProto.BFLOAT16: "bfloat16", TensorProto.INT64: "int64", TensorProto.INT32: "int32",
    TensorProto.INT16: "int16", TensorProto.INT8: "int8", TensorProto.UINT64: "uint64",
    TensorProto.UINT32: "uint32", TensorProto.UINT16: "uint16", TensorProto.UINT8: "uint8",
    TensorProto.BOOL: "bool",
}  # fmt: skip


def _tensor_bytes(t: TensorProto) -> bytes:
    if t.raw_data:
        return t.raw_data
    if t.data_type == TensorProto.BFLOAT16:  # typed storage keeps bf16 in int32 fields
        return np.asarray(t.int32_data, dtype=np.uint16).tobytes()
    arr = numpy_helper.to_array(t)
    return arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()


def onnx_sections(path: Path) -> tuple[list[tuple[str, bytes]], tuple[TensorEntry, ...]]:
    """Returns ([("graph", ...), ("weights", ...)], tensor table) for the model at `path`.

    Raises:
        FormatError: not a loadable ONNX model, or its external data cannot be read.
    """
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
    for (t, data), entry in zip(moved, entries):
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
    """The inverse of :func:`onnx_sections`: a self-contained ModelProto with weights embedded."""
    model = onnx.ModelProto()
    model.ParseFromString(graph)
    for t in model.graph.initializer:
        if t.data_location != TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        offset, length = int(info["offset"]), int(info["length"])
        t.raw_data = bytes(weights[offset : offset + length])
        del t.external_data[:]
        t.data_location = TensorProto.DEFAULT
    return model
