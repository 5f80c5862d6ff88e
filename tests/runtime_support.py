"""Shared helpers for the runtime tests: real ONNX models, real keys, real sealed files."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeguard.recipients import load_recipient
from edgeguard.seal import seal_model
from helpers import Keys, new_keys


def make_mlp(path: Path, widths: tuple[int, ...] = (32, 256, 256, 10), seed: int = 0) -> Path:
    """An fp32 MLP (MatMul + Add + Relu layers) with a dynamic batch dimension."""
    rng = np.random.default_rng(seed)
    nodes, inits, prev = [], [], "x"
    for i, (a, b) in enumerate(pairwise(widths)):
        w = (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
        bias = rng.standard_normal(b).astype(np.float32) * 0.1
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(bias, f"b{i}")]
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]))
        last = i == len(widths) - 2
        nodes.append(helper.make_node("Add", [f"m{i}", f"b{i}"], ["y" if last else f"a{i}"]))
        if not last:
            nodes.append(helper.make_node("Relu", [f"a{i}"], [f"h{i}"]))
            prev = f"h{i}"
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", widths[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", widths[-1]])],
        inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgeguard-tests")
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


def make_keys(tmp: Path, kind: str = "p256") -> Keys:
    """Fresh keys with the publisher's and one `kind` device's key files in `tmp` (see helpers.Keys)."""
    return new_keys().with_files(tmp, device=kind)


def seal(model: Path, out: Path, keys: Keys, **kwargs: object) -> Path:
    seal_model(model, out, signer=keys.signer, recipients=[load_recipient(keys.recipient_path)], **kwargs)  # type: ignore[arg-type]
    return out
