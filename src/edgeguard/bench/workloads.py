"""The bench's workloads: synthetic fp32 models generated at run time, sealed for a throwaway
device key, and latency statistics shared by the runtime and detector suites.

Generating and sealing ONNX models needs the ``onnx`` package (the ``bench`` extra): the load,
inference and detector suites need it, the crypto suite does not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MB = 1_000_000
# The percentiles kept of every latency distribution: enough to draw its CDF in a report.
PERCENTILES = tuple(range(101))


@dataclass
class Workload:
    """One model on disk, plain and sealed, with the keys that open it."""

    name: str
    source: str  # "synthetic" or "user"
    model: Path
    sealed: Path
    identity: Path
    trust: Path
    width: int | None = None
    layers: int | None = None
    sealed_optimized: bool = False  # sealed from onnxruntime's basic offline optimization (seal --optimize)

    @property
    def model_bytes(self) -> int:
        return self.model.stat().st_size

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "model_bytes": self.model_bytes,
                "sealed_bytes": self.sealed.stat().st_size, "width": self.width, "layers": self.layers,
                "sealed_optimized": self.sealed_optimized}


def make_mlp(path: Path, size_mb: float) -> tuple[int, int]:
    """Writes an fp32 MLP of about ``size_mb`` MB (weights embedded): square MatMul + Add + Relu
    layers of width w, input ``x`` [batch, w], output ``y``. Returns (width, layers).

    Raises ImportError without onnx.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    target = size_mb * MB
    width = 512 if target < 50 * MB else 2048
    layers = max(1, round(target / (4 * width * width)))
    if target < 4 * width * width:  # small sizes: one layer, narrower
        width = max(64, int((target / 4) ** 0.5) // 64 * 64)
    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "x"
    for i in range(layers):
        w = rng.standard_normal((width, width), dtype=np.float32) / np.float32(np.sqrt(width))
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(np.zeros(width, np.float32), f"b{i}")]
        out = "y" if i == layers - 1 else f"h{i}"
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"]),
                  helper.make_node("Relu", [f"a{i}"], [out])]
        prev = out
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return width, layers


def make_classifier(path: Path, dim: int, hidden: int, classes: int, seed: int = 0) -> None:
    """Writes a small fp32 classifier: x [batch, dim] -> Relu(x W1 + b1) W2 + b2 -> Softmax ``y``.

    Raises ImportError without onnx.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array((rng.standard_normal((dim, hidden)) / np.sqrt(dim)).astype(np.float32), "w1"),
             numpy_helper.from_array(np.zeros(hidden, np.float32), "b1"),
             numpy_helper.from_array((rng.standard_normal((hidden, classes)) / np.sqrt(hidden)).astype(np.float32), "w2"),
             numpy_helper.from_array(np.zeros(classes, np.float32), "b2")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["m1"]), helper.make_node("Add", ["m1", "b1"], ["a1"]),
             helper.make_node("Relu", ["a1"], ["h"]), helper.make_node("MatMul", ["h", "w2"], ["m2"]),
             helper.make_node("Add", ["m2", "b2"], ["logits"]), helper.make_node("Softmax", ["logits"], ["y"], axis=-1)]
    graph = helper.make_graph(nodes, "classifier", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", dim])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(path))


def seal(model: Path, tmp: Path, name: str, source: str, width: int | None = None,
         layers: int | None = None, optimize: bool = False) -> Workload:
    """Seals ``model`` into ``tmp`` for a fresh device key (P-256) with a fresh Ed25519 publisher key.
    `optimize`: seal onnxruntime's basic offline optimization of it (``edgeguard seal --optimize``);
    plain onnxruntime still loads ``model`` itself.

    Raises ImportError without onnx, FormatError if the file is not a usable ONNX model, OSError.
    """
    from edgeguard.keys import SigningKey, generate_private_key, public_pem, write_private_key
    from edgeguard.recipients import load_recipient
    from edgeguard.seal import seal_model

    # Benchmark-only keys, in the run's temporary directory with the models.
    signer = SigningKey.generate("ed25519")
    device = generate_private_key("p256")
    identity, recipient, trust = tmp / f"{name}-device.pem", tmp / f"{name}-device.pub", tmp / f"{name}-publisher.pub"
    write_private_key(identity, device)
    recipient.write_bytes(public_pem(device.public_key()))
    trust.write_bytes(signer.verifying_key.public_pem())
    sealed = tmp / f"{name}.sealed"
    source_model = model
    if optimize:
        from edgeguard.optimize import optimize_onnx

        source_model = tmp / f"{name}.optimized.onnx"
        source_model.unlink(missing_ok=True)
        optimize_onnx(model, source_model)
    seal_model(source_model, sealed, signer=signer, recipients=[load_recipient(recipient)], overwrite=True)
    return Workload(name, source, model, sealed, identity, trust, width, layers, optimize)


def synthetic(size_mb: float, tmp: Path, optimize: bool = False) -> Workload:
    """A sealed synthetic MLP of about ``size_mb`` MB in ``tmp``. Raises ImportError without onnx."""
    name = f"mlp-{size_mb:g}mb"
    width, layers = make_mlp(tmp / f"{name}.onnx", size_mb)
    return seal(tmp / f"{name}.onnx", tmp, name, "synthetic", width, layers, optimize)


def user_model(path: str | Path, tmp: Path, optimize: bool = False) -> Workload:
    """The user's ONNX model, sealed into ``tmp``.

    Raises ImportError without onnx, FormatError if it is not an ONNX model, OSError.
    """
    path = Path(path)
    return seal(path, tmp, path.stem, "user", optimize=optimize)


def latency_stats(samples_s: list[float]) -> dict[str, Any]:
    """count, mean, p50/p90/p99/p99.9, max and the 0..100th percentiles of latency samples (s)."""
    arr = np.asarray(samples_s, dtype=np.float64)
    p50, p90, p99, p999 = (float(v) for v in np.percentile(arr, [50, 90, 99, 99.9]))
    return {"count": len(arr), "mean_s": float(arr.mean()), "p50_s": p50, "p90_s": p90, "p99_s": p99,
            "p999_s": p999, "max_s": float(arr.max()),
            "percentiles_s": [float(v) for v in np.percentile(arr, PERCENTILES)]}


_SAMPLE_DTYPES = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}  # fmt: skip


def sample_inputs(inputs: Sequence[Any], batch: int, seed: int = 0,
                  shapes: Mapping[str, Sequence[int | str]] | None = None) -> dict[str, np.ndarray]:
    """Deterministic random feeds for onnxruntime input metadata.

    `shapes` gives an input's whole shape (`parse_shape`: ``"N"`` or -1 stands for the batch);
    otherwise symbolic dims are `batch` for the first and 1 for the others.

    Raises:
        ValueError: an input type the demo cannot synthesise, or a shape of the wrong rank.
    """
    rng = np.random.default_rng(seed)
    feeds = {}
    for meta in inputs:
        if meta.type not in _SAMPLE_DTYPES:
            raise ValueError(f"cannot make sample data for input {meta.name!r} of type {meta.type}")
        if shapes and meta.name in shapes:
            given = shapes[meta.name]
            if len(given) != len(meta.shape):
                raise ValueError(f"input {meta.name!r} has rank {len(meta.shape)}, the shape given has {len(given)} dims")
            dims = [batch if d in ("N", "n", -1) else int(d) for d in given]
        else:
            dims = [d if isinstance(d, int) and d > 0 else (batch if i == 0 else 1) for i, d in enumerate(meta.shape)]
        dtype = np.dtype(_SAMPLE_DTYPES[meta.type])
        if dtype.kind == "f":
            feeds[meta.name] = rng.standard_normal(dims).astype(dtype)
        else:
            feeds[meta.name] = rng.integers(0, 2 if dtype.kind == "b" else 10, size=dims).astype(dtype)
    return feeds


def parse_shape(text: str) -> tuple[str, list[int | str]]:
    """``"x=Nx3x64x96"`` -> ``("x", ["N", 3, 64, 96])``: an input's shape, N for the batch dim.

    Raises ValueError if the text is not NAME=DIMS with DIMS integers or N separated by x.
    """
    name, sep, dims = text.partition("=")
    if not sep or not name:
        raise ValueError(f"not NAME=DIMS: {text!r}")
    out: list[int | str] = []
    for d in dims.split("x") if dims else []:
        if d in ("N", "n"):
            out.append("N")
        elif d.isdigit():
            out.append(int(d))
        else:
            raise ValueError(f"bad dimension {d!r} in {text!r}: integers or N (the batch)")
    return name, out
