"""Seal-side offline graph optimization (``edgeguard seal --optimize``).

Strict on-device loading turns onnxruntime's graph optimizations off, because optimizations that
rewrite weights (constant folding, fusions) would put plaintext copies of them in onnxruntime's
heap. Running the hardware-independent ("basic") optimizations once, before sealing, gives the
device an already optimized graph that it can still read in place.
"""

from __future__ import annotations

import os
from pathlib import Path

import onnxruntime as ort


def optimize_onnx(model_path: str | os.PathLike[str], out_path: str | os.PathLike[str]) -> Path:
    """Writes onnxruntime's basic-level offline optimization of `model_path` to `out_path`.

    Basic level only: constant folding, redundant-node elimination and fusions that are the same
    on every device. Extended and layout optimizations depend on the execution provider and CPU
    of the machine that runs them, so they are left to the device (fast mode) or skipped
    (strict mode). Models above protobuf's 2 GB limit are not supported here.

    Raises:
        FileExistsError: `out_path` exists.
        onnxruntime's errors (``onnxruntime.capi.onnxruntime_pybind11_state.*``) for an invalid model.
        OSError: the output cannot be written.
    """
    target = Path(out_path)
    if target.exists():
        raise FileExistsError(f"{target} already exists")
    tmp = target.with_name(f".{target.name}.optimizing.onnx")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(tmp)
    try:
        ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        os.link(tmp, target)  # fails rather than overwrite a file that appeared meanwhile
    finally:
        tmp.unlink(missing_ok=True)
    return target
