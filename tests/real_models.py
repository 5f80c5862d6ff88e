"""Real third-party ONNX models for the coverage tests, read out of their PyPI wheels.

PaddleOCR PP-OCRv4 det/rec and the mobile v2.0 direction classifier from ``rapidocr-onnxruntime``
(Apache-2.0): weights as ``Constant`` nodes. Silero VAD variants from ``silero-vad`` (MIT): weights
inside If branches, as initializers, and an fp16 variant. Both packages depend on heavy stacks
(opencv-python; torch), so they are not test dependencies: the wheels are fetched with
``pip download --no-deps`` (pinned versions and hashes) into a cache folder
(``$EDGEGUARD_TEST_CACHE``, default ``~/.cache/edgeguard-tests``) and the ``.onnx`` files are read
out of the zip. Nothing is installed and no weights are committed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

WHEELS = {
    "rapidocr-onnxruntime": (
        "1.4.4", "rapidocr_onnxruntime-1.4.4-py3-none-any.whl", "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf",
    ),
    "silero-vad": ("6.2.3", "silero_vad-6.2.3-py3-none-any.whl", "7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8"),
}  # fmt: skip
MODELS = {
    "ppocrv4-det": ("rapidocr-onnxruntime", "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"),
    "ppocrv4-rec": ("rapidocr-onnxruntime", "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"),
    "ppocr-cls": ("rapidocr-onnxruntime", "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
    "silero-vad": ("silero-vad", "silero_vad/data/silero_vad.onnx"),
    "silero-vad-16k-op15": ("silero-vad", "silero_vad/data/silero_vad_16k_op15.onnx"),
    "silero-vad-16k-sequence": ("silero-vad", "silero_vad/data/silero_vad_16k_sequence.onnx"),
    "silero-vad-half": ("silero-vad", "silero_vad/data/silero_vad_half.onnx"),
    "silero-vad-op18-ifless": ("silero-vad", "silero_vad/data/silero_vad_op18_ifless.onnx"),
    "silero-vad-openvino-16k": ("silero-vad", "silero_vad/data/silero_vad_openvino_16k.onnx"),
}
# Input shapes that the models accept (dynamic dimensions filled in).
_SHAPES = {
    "ppocrv4-det": {"x": (1, 3, 64, 96)},
    "ppocrv4-rec": {"x": (1, 3, 48, 160)},
    "ppocr-cls": {"x": (1, 3, 48, 192)},
    "silero-vad-16k-sequence": {"input": (2, 576), "h": (1, 1, 128), "c": (1, 1, 128)},
    "silero-vad-openvino-16k": {"input": (1, 576), "state": (2, 1, 128)},
}
_SILERO = {"input": (1, 512), "state": (2, 1, 128)}


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEGUARD_TEST_CACHE") or Path.home() / ".cache" / "edgeguard-tests")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def wheel(package: str) -> Path:
    """The package's pinned wheel, downloaded once (hash-checked) into the cache."""
    version, filename, digest = WHEELS[package]
    folder = cache_dir() / "wheels"
    path = folder / filename
    if not path.is_file() or _sha256(path) != digest:
        folder.mkdir(parents=True, exist_ok=True)
        requirements = folder / f"{package}.txt"
        requirements.write_text(f"{package}=={version} --hash=sha256:{digest}\n")
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes",
             "--disable-pip-version-check", "-q", "-d", str(folder), "-r", str(requirements)],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if result.returncode != 0 or not path.is_file():
            pytest.skip(f"cannot download {package}=={version} from PyPI: {result.stderr.strip()[-300:]}")
    return path


def extract(names: list[str], folder: Path) -> dict[str, Path]:
    """The named models, written from their wheels into `folder`."""
    out = {}
    for name in names:
        package, member = MODELS[name]
        target = folder / f"{name}.onnx"
        with zipfile.ZipFile(wheel(package)) as z:
            target.write_bytes(z.read(member))
        out[name] = target
    return out


def feed(name: str, input_names: list[str], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = _SHAPES.get(name, _SILERO)
    out: dict[str, np.ndarray] = {}
    for i in input_names:
        if i == "sr":
            out[i] = np.array(16000, dtype=np.int64)
        else:
            out[i] = (0.5 * rng.standard_normal(shapes[i])).astype(np.float32)
    return out
