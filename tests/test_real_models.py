"""Real third-party models (see real_models.py): sealing moves every weight into the secure
buffer (100% coverage; 5 of these 9 had 0% before, their weights being Constant nodes or inside
If branches), strict mode reads them there in place and gives bit-identical outputs to plain
onnxruntime configured the same way, and ``--optimize`` (onnxruntime's basic offline optimization)
never lowers coverage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

import edgeguard
from edgeguard.coverage import model_coverage
from edgeguard.optimize import optimize_onnx
from edgeguard.recipients import load_recipient
from edgeguard.seal import SealResult, seal_model
from edgeguard.unseal import unseal_file
from real_models import MODELS, extract, feed
from runtime_support import Keys, make_keys

NAMES = list(MODELS)


pytestmark = pytest.mark.emulation_heavy  # real models: seconds natively, many minutes under qemu


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("real")
    return {"tmp": tmp, "keys": make_keys(tmp), "models": extract(NAMES, tmp)}


def _plain(model: Path | bytes, x: dict[str, np.ndarray], strict_like: bool) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # onnxruntime warns about the models' unused initializers
    if strict_like:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.add_session_config_entry("session.disable_prepacking", "1")
    model = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"]).run(None, x)


def _inputs(model: Path) -> list[str]:
    return [i.name for i in ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).get_inputs()]


def _seal(world: dict[str, Any], model: Path, out: str) -> SealResult:
    keys: Keys = world["keys"]
    return seal_model(model, world["tmp"] / out, signer=keys.signer, recipients=[load_recipient(keys.recipient_path)])


def _strict(world: dict[str, Any], sealed: Path, **kwargs: Any) -> edgeguard.InferenceSession:
    keys: Keys = world["keys"]
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return edgeguard.InferenceSession(sealed, options, identity=keys.identity_path, trust=keys.trust_path, **kwargs)


@pytest.mark.parametrize("name", NAMES)
def test_every_weight_is_sealed_and_strict_outputs_are_identical(world: dict[str, Any], name: str) -> None:
    model = world["models"][name]
    result = _seal(world, model, f"{name}.sealed")
    cov = result.coverage
    assert cov is not None and cov.unprotected == () and cov.fraction == 1.0
    assert cov.protected_bytes == cov.required_bytes > 100_000
    assert cov.inline_bytes < 0.1 * cov.total_bytes  # tensors under 1 KiB: shapes, scalars, small biases (8% of ppocr-cls)
    assert model_coverage(model) == cov
    x = feed(name, _inputs(model))
    with _strict(world, result.path) as session:
        assert session.coverage == cov
        out = session.run(None, x)
        raw = session._ort  # held past close() to see what onnxruntime reads
    after = raw.run(None, x)  # the secure buffer is wiped now: onnxruntime was reading it in place
    assert any(not np.array_equal(a, b) for a, b in zip(out, after, strict=True))
    # Same kernels as plain onnxruntime on the original model, configured like strict mode: bit-identical.
    for got, want in zip(out, _plain(model, x, strict_like=True), strict=True):
        np.testing.assert_array_equal(got, want)
    # Against onnxruntime's defaults (graph optimizations, prepacking): float rounding only.
    for got, want in zip(out, _plain(model, x, strict_like=False), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["ppocrv4-rec", "silero-vad", "silero-vad-half"])
def test_unsealed_model_gives_the_same_outputs(world: dict[str, Any], name: str) -> None:
    keys: Keys = world["keys"]
    model = world["models"][name]
    sealed = _seal(world, model, f"{name}.unseal.sealed").path
    target = world["tmp"] / f"{name}.unsealed.onnx"
    unseal_file(sealed, target, [edgeguard.load_identity(keys.identity_path)], keys.trust)
    x = feed(name, _inputs(model))
    for got, want in zip(_plain(target, x, strict_like=True), _plain(model, x, strict_like=True), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", NAMES)
def test_optimize_never_lowers_coverage(world: dict[str, Any], name: str) -> None:
    model = world["models"][name]
    before = _seal(world, model, f"{name}.plain.sealed").coverage
    optimized = optimize_onnx(model, world["tmp"] / f"{name}.opt.onnx")
    after = _seal(world, optimized, f"{name}.opt.sealed").coverage
    assert before is not None and after is not None
    assert after.fraction >= before.fraction and after.fraction == 1.0 and after.unprotected == ()
    x = feed(name, _inputs(model))
    with _strict(world, world["tmp"] / f"{name}.opt.sealed") as session:
        out = session.run(None, x)
    # The optimized graph computes the same function with fused / folded operators: float rounding only.
    for got, want in zip(out, _plain(model, x, strict_like=False), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
