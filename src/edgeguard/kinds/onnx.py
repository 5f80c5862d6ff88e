"""The ``onnx`` kind: a ``graph`` section (the ModelProto) and a ``weights`` section it refers to.

Publisher side (needs the onnx package, imported only there; devices never import onnx): every
tensor of at least EXTERNALIZE_MIN_BYTES moves out of the graph into one weights blob, laid out
per the tensor table rules, and the graph refers to it as external data at location
WEIGHTS_LOCATION, so onnxruntime reads it in place from the decrypted buffer. That is every
parameter tensor wherever the model keeps it: main-graph initializers (dense or sparse), ``Constant``
nodes, and the initializers and ``Constant`` nodes of every subgraph (If/Loop/Scan bodies, at any
depth) and model-local function. onnxruntime (1.32) accepts in-memory external data only for
main-graph initializers ("... should be stored in edgeguard.weights, but it is not regular file"
for a subgraph's), so subgraph tensors are hoisted into main-graph initializers, which subgraphs
reference as outer-scope values, under names unique in the whole model. A tensor that must move
and cannot (an element type the tensor table lacks, a tensor attribute of another operator) makes
sealing fail rather than leave weights in the graph. Models that already keep their weights in
external files (needed above 2 GB) are read from there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._files import atomic_output
from ..coverage import EXTERNALIZE_MIN_BYTES, WEIGHTS_LOCATION, graph_coverage
from ..errors import FormatError
from ..payload import Layout, TensorEntry, tensor_entries, tensors_extent
from .base import PayloadKind, Sections, tensor_views

if TYPE_CHECKING:
    import onnx

__all__ = ["EXTERNALIZE_MIN_BYTES", "KIND", "WEIGHTS_LOCATION", "OnnxKind", "onnx_sections", "reassemble"]

_PROTOBUF_LIMIT = 2**31 - 1
# onnx.TensorProto.DataType values (stable in the ONNX spec) -> the tensor table's dtype names.
_DTYPE_NAMES = {
    1: "float32", 11: "float64", 10: "float16", 16: "bfloat16", 7: "int64", 6: "int32", 5: "int16",
    3: "int8", 13: "uint64", 12: "uint32", 4: "uint16", 2: "uint8", 9: "bool",
}  # fmt: skip
_DATA_FIELDS = ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data")


def _tensor_bytes(t: onnx.TensorProto) -> bytes:
    from onnx import TensorProto, numpy_helper

    if t.raw_data:
        return t.raw_data
    if t.data_type == TensorProto.BFLOAT16:  # typed storage keeps bf16 in int32 fields
        return np.asarray(t.int32_data, dtype=np.uint16).tobytes()
    arr = numpy_helper.to_array(t)
    return arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()


def _movable(t: onnx.TensorProto) -> bool:
    """Whether `t` must go to the weights section (and can: the tensor table has its type)."""
    if t.data_type not in _DTYPE_NAMES:
        return False
    itemsize = np.dtype(_DTYPE_NAMES[t.data_type].replace("bfloat16", "uint16")).itemsize
    count = 1
    for d in t.dims:
        count *= d
    return count * itemsize >= EXTERNALIZE_MIN_BYTES


def _dense(sparse: onnx.SparseTensorProto, name: str) -> onnx.TensorProto:
    """A SparseTensorProto as the dense tensor it stands for (what onnxruntime builds at load)."""
    from onnx import helper, numpy_helper

    dims = tuple(sparse.dims)
    values = numpy_helper.to_array(sparse.values)
    indices = numpy_helper.to_array(sparse.indices).astype(np.int64)
    if sparse.values.data_type == 16:  # bfloat16: numpy_helper gives float32; keep the bit pattern
        values = (values.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    dense = np.zeros(int(np.prod(dims, dtype=np.int64)), dtype=values.dtype)
    flat = indices if indices.ndim == 1 else np.ravel_multi_index(tuple(indices.T), dims)
    dense[flat] = values.reshape(-1)
    if sparse.values.data_type == 16:
        t = helper.make_tensor(name, 16, dims, dense.tobytes(), raw=True)
    else:
        t = numpy_helper.from_array(dense.reshape(dims), name)
    return t


def _constant_tensor(node: onnx.NodeProto) -> onnx.TensorProto | None:
    """The tensor a ``Constant`` node outputs, named after its output; None for strings."""
    from onnx import TensorProto, numpy_helper

    if node.op_type != "Constant" or node.domain not in ("", "ai.onnx") or len(node.attribute) != 1:
        return None
    a = node.attribute[0]
    name = node.output[0]
    if a.name == "value":
        t = TensorProto()
        t.CopyFrom(a.t)
        t.name = name
        return t
    if a.name == "sparse_value":
        return _dense(a.sparse_tensor, name)
    if a.name == "value_floats":
        return numpy_helper.from_array(np.asarray(a.floats, dtype=np.float32), name)
    if a.name == "value_ints":
        return numpy_helper.from_array(np.asarray(a.ints, dtype=np.int64), name)
    return None  # value_float, value_int (4 or 8 bytes), value_string(s) (onnxruntime: no external strings)


def _subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    for a in node.attribute:
        if a.HasField("g"):
            yield a.g
        yield from a.graphs


def _names(graph: onnx.GraphProto, out: set[str]) -> None:
    """Every value name used in `graph` and its subgraphs."""
    out.update(v.name for v in (*graph.input, *graph.output, *graph.value_info))
    out.update(t.name for t in graph.initializer)
    out.update(t.values.name for t in graph.sparse_initializer)
    for node in graph.node:
        out.update(node.input)
        out.update(node.output)
        for g in _subgraphs(node):
            _names(g, out)


def _defines(graph: onnx.GraphProto, name: str) -> bool:
    return any(v.name == name for v in graph.input) or any(t.name == name for t in graph.initializer) or any(name in node.output for node in graph.node)


def _rename_uses(graph: onnx.GraphProto, renames: dict[str, str]) -> None:
    """Renames the uses of outer-scope values in `graph` and its subgraphs (not what they define)."""
    live = {old: new for old, new in renames.items() if not _defines(graph, old)}
    if not live:
        return
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in live:
                node.input[i] = live[name]
        for g in _subgraphs(node):
            _rename_uses(g, live)


def _replace(container: Any, items: list[Any]) -> None:
    """Sets a repeated message field to `items` (copies: clearing the field invalidates its elements)."""
    copies = []
    for item in items:
        c = type(item)()
        c.CopyFrom(item)
        copies.append(c)
    del container[:]
    container.extend(copies)


class _Surgery:
    """Moves every movable tensor of a model into main-graph initializers (see the module docstring)."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.top = model.graph
        self.taken: set[str] = set()
        _names(self.top, self.taken)

    def _fresh(self, name: str) -> str:
        candidate, n = name, 0
        while candidate in self.taken:
            n += 1
            candidate = f"{name}__edgeguard{n}"
        self.taken.add(candidate)
        return candidate

    def run(self) -> None:
        top = self.top
        kept_sparse = []
        for sparse in top.sparse_initializer:
            dense = _dense(sparse, sparse.values.name)
            if _movable(dense):
                top.initializer.append(dense)
            else:
                kept_sparse.append(sparse)
        if len(kept_sparse) != len(top.sparse_initializer):
            _replace(top.sparse_initializer, kept_sparse)
        nodes = []
        for node in top.node:
            tensor = _constant_tensor(node)
            if tensor is not None and _movable(tensor):
                top.initializer.append(tensor)  # the node's output name becomes the initializer's
            else:
                nodes.append(node)
        if len(nodes) != len(top.node):
            _replace(top.node, nodes)
        for node in list(top.node):
            for g in _subgraphs(node):
                self._hoist(g)
        if self.model.ir_version < 4 and len(top.initializer):  # before IR 4 every initializer had to be an input
            self.model.ir_version = 4

    def _hoist(self, graph: onnx.GraphProto) -> None:
        from onnx import helper

        renames: dict[str, str] = {}
        kept_inits = []
        for t in graph.initializer:
            if _movable(t):
                renames[t.name] = self._add(t)
            else:
                kept_inits.append(t)
        kept_sparse = []
        for sparse in graph.sparse_initializer:
            t = _dense(sparse, sparse.values.name)
            if _movable(t):
                renames[t.name] = self._add(t)
            else:
                kept_sparse.append(sparse)
        nodes = []
        for node in graph.node:
            t = _constant_tensor(node)
            if t is not None and _movable(t):
                renames[t.name] = self._add(t)
            else:
                nodes.append(node)
        if renames:
            # onnxruntime refuses a subgraph output that is an outer-scope value itself.
            outputs = [o.name for o in graph.output if o.name in renames]
            nodes[:0] = [helper.make_node("Identity", [renames[o]], [o], name=self._fresh(f"{o}__edgeguard_identity")) for o in outputs]
            _replace(graph.initializer, kept_inits)
            _replace(graph.sparse_initializer, kept_sparse)
            _replace(graph.node, nodes)
            for v in graph.value_info:
                if v.name in renames:
                    v.name = renames[v.name]
            _rename_uses(graph, renames)
        for node in graph.node:
            for g in _subgraphs(node):
                self._hoist(g)

    def _add(self, t: onnx.TensorProto) -> str:
        from onnx import TensorProto

        moved = TensorProto()
        moved.CopyFrom(t)
        moved.name = self._fresh(t.name)  # the name is in use (at least where it was defined)
        self.top.initializer.append(moved)
        return moved.name


def _inline_functions_with_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """Model-local functions cannot see main-graph initializers: inline them when they hold tensors."""
    if not any(_constant_tensor(n) is not None or any(a.HasField("t") for a in n.attribute) for f in model.functions for n in f.node):
        return model
    import onnx.inliner

    return onnx.inliner.inline_local_functions(model)


def onnx_sections(path: Path, require_full_coverage: bool = True) -> tuple[Sections, tuple[TensorEntry, ...]]:
    """Returns ([("graph", ...), ("weights", ...)], tensor table) for the model at `path`.

    Raises:
        FormatError: not a loadable ONNX model, its external data cannot be read, or (with
            `require_full_coverage`) a tensor of EXTERNALIZE_MIN_BYTES or more cannot be moved to
            the weights section.
    """
    import onnx
    from onnx import TensorProto

    try:
        model = onnx.load(str(path), load_external_data=True)
    except Exception as exc:  # onnx raises DecodeError, OSError, ValidationError, ...
        raise FormatError(f"{path} is not a loadable ONNX model ({type(exc).__name__})") from None
    model = _inline_functions_with_weights(model)
    _Surgery(model).run()
    moved = [t for t in model.graph.initializer if _movable(t)]
    entries = tensor_entries([(t.name, _DTYPE_NAMES[t.data_type], tuple(t.dims)) for t in moved])
    blob = bytearray(tensors_extent(entries))
    for t, entry in zip(moved, entries, strict=True):  # one tensor's bytes at a time: models can exceed 2 GB
        data = _tensor_bytes(t)
        if len(data) != entry.length:
            raise FormatError(f"initializer {t.name!r} holds {len(data)} bytes, its shape says {entry.length}")
        blob[entry.offset : entry.offset + entry.length] = data
        del data
        for field in _DATA_FIELDS:
            t.ClearField(field)
        del t.external_data[:]
        t.data_location = TensorProto.EXTERNAL
        for key, value in (("location", WEIGHTS_LOCATION), ("offset", str(entry.offset)), ("length", str(entry.length))):
            t.external_data.add(key=key, value=value)
    graph = model.SerializeToString()
    if require_full_coverage:
        coverage = graph_coverage(graph)
        if coverage.unprotected:
            raise FormatError(
                f"{path}: {len(coverage.unprotected)} tensor(s) of {EXTERNALIZE_MIN_BYTES} bytes or more cannot be moved to the "
                f"sealed weights section (an element type the tensor table lacks, or a tensor attribute of an operator other "
                f"than Constant): {', '.join(coverage.unprotected[:5])}; seal the file as kind raw to protect it whole"
            )
    return [("graph", graph), ("weights", blob)], entries


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
