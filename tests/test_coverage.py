"""Protected coverage: every weight of a model ends up in the secure buffer whatever form it takes
(Constant nodes of every flavour, sparse tensors, initializers and constants of If/Loop/Scan bodies
at any depth, model-local functions, fp16/bf16, int8/uint8 quantized models, external data above
2 GB), strict outputs stay bit-identical, and strict mode refuses a model whose weights would sit in
onnxruntime's heap (a file sealed the old way) with a CoverageError that names the fix."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgeguard
from edgeguard.coverage import EXTERNALIZE_MIN_BYTES, Coverage, graph_coverage, model_coverage, payload_coverage, sealed_coverage
from edgeguard.errors import CoverageError, FormatError, LoadRefusedError
from edgeguard.format import ModelInfo
from edgeguard.payload import build_payload
from edgeguard.recipients import load_recipient
from edgeguard.seal import SealResult, seal_model, seal_payload
from runtime_support import Keys, make_keys

RNG = np.random.default_rng(11)
vi = helper.make_tensor_value_info


def f32(*shape: int) -> np.ndarray:
    return (RNG.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32)


def const(out: str, **attr: Any) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [out], name=f"const_{out}", **attr)


def _model(nodes: list[Any], inputs: list[Any], outputs: list[Any], inits: list[Any] = (), opset: int = 17, **kw: Any) -> onnx.ModelProto:  # type: ignore[assignment]
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits), **kw)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="edgeguard-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)  # onnxruntime checks the rest (onnx's shape inference misreads sparse Constant ranks)
    return model


def every_form_model() -> onnx.ModelProto:
    """Weights as top-level Constant nodes (value, sparse_value, value_floats, value_ints), a dense and a
    sparse initializer, If branches with an initializer and a Constant of the same name, a branch whose
    output is a Constant itself, a Loop nested in a branch and a Scan body, each with its own Constant."""
    sparse_dense = np.zeros((64, 300), np.float32)
    idx = RNG.choice(64 * 300, 600, replace=False)
    sparse_dense.flat[idx] = RNG.standard_normal(600).astype(np.float32)
    order = np.sort(idx)
    sparse = helper.make_sparse_tensor(numpy_helper.from_array(sparse_dense.flat[order], "Ws"), numpy_helper.from_array(order.astype(np.int64), "Ws_idx"), [64, 300])
    sparse_init = helper.make_sparse_tensor(numpy_helper.from_array(sparse_dense.flat[order] * 2, "Wsi"), numpy_helper.from_array(order.astype(np.int64), "Wsi_idx"), [64, 300])
    then_b = helper.make_graph(
        [helper.make_node("MatMul", ["h4", "W"], ["t1"]), const("tb", value=numpy_helper.from_array(f32(16), "tb")), helper.make_node("Add", ["t1", "tb"], ["t"])],
        "then", [], [vi("t", TensorProto.FLOAT, None)], [numpy_helper.from_array(f32(300, 16), "W")],
    )  # fmt: skip
    loop_body = helper.make_graph(
        [const("Wl", value=numpy_helper.from_array(f32(16, 16), "Wl")), helper.make_node("MatMul", ["v", "Wl"], ["v2"]), helper.make_node("Identity", ["cond"], ["cond2"])],
        "body", [vi("i", TensorProto.INT64, []), vi("cond", TensorProto.BOOL, []), vi("v", TensorProto.FLOAT, [1, 16])],
        [vi("cond2", TensorProto.BOOL, []), vi("v2", TensorProto.FLOAT, [1, 16])],
    )  # fmt: skip
    else_b = helper.make_graph(
        [const("W", value=numpy_helper.from_array(f32(300, 16), "W")), helper.make_node("MatMul", ["h4", "W"], ["e1"]),
         const("n", value=numpy_helper.from_array(np.array(2, np.int64), "n")), helper.make_node("Loop", ["n", "", "e1"], ["e"], body=loop_body)],
        "else", [], [vi("e", TensorProto.FLOAT, None)],
    )  # fmt: skip
    big = f32(1, 16 * 20)
    out_then = helper.make_graph([const("k", value=numpy_helper.from_array(big, "k"))], "then2", [], [vi("k", TensorProto.FLOAT, None)])
    out_else = helper.make_graph([const("k2", value=numpy_helper.from_array(-big, "k2"))], "else2", [], [vi("k2", TensorProto.FLOAT, None)])
    scan_body = helper.make_graph(
        [const("Wsc", value=numpy_helper.from_array(f32(16, 16), "Wsc")), helper.make_node("MatMul", ["xi", "Wsc"], ["yi"]), helper.make_node("Add", ["s", "yi"], ["s2"])],
        "scan", [vi("s", TensorProto.FLOAT, [1, 16]), vi("xi", TensorProto.FLOAT, [1, 16])],
        [vi("s2", TensorProto.FLOAT, [1, 16]), vi("yi", TensorProto.FLOAT, [1, 16])],
    )  # fmt: skip
    nodes = [
        const("W1", value=numpy_helper.from_array(f32(32, 64), "ignored")),
        helper.make_node("MatMul", ["X", "W1"], ["h1"]),
        const("b1", value_floats=[0.5] * 64),  # 256 bytes: stays inline
        helper.make_node("Add", ["h1", "b1"], ["h2"]),
        const("Ws", sparse_value=sparse),
        helper.make_node("MatMul", ["h2", "Ws"], ["h3a"]),
        helper.make_node("MatMul", ["h2", "Wsi"], ["h3b"]),
        helper.make_node("Add", ["h3a", "h3b"], ["h3"]),
        const("bf", value_floats=RNG.standard_normal(300).astype(np.float32).tolist()),  # 1200 bytes
        const("bi", value_ints=RNG.integers(-3, 3, 300).tolist()),  # 2400 bytes
        helper.make_node("Cast", ["bi"], ["bif"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["h3", "bf"], ["h3c"]),
        helper.make_node("Add", ["h3c", "bif"], ["h3d"]),
        helper.make_node("MatMul", ["h3d", "Wd"], ["h4"]),
        helper.make_node("If", ["c"], ["y1"], then_branch=then_b, else_branch=else_b),
        helper.make_node("If", ["c"], ["y2"], then_branch=out_then, else_branch=out_else),
        helper.make_node("Reshape", ["y2", "shape"], ["y2r"]),
        helper.make_node("Scan", ["y1", "y2r"], ["y", "ys"], body=scan_body, num_scan_inputs=1),
    ]
    inits = [numpy_helper.from_array(f32(300, 300) * 0.1, "Wd"), numpy_helper.from_array(np.array([20, 1, 16], np.int64), "shape")]
    return _model(
        nodes, [vi("X", TensorProto.FLOAT, [1, 32]), vi("c", TensorProto.BOOL, [])],
        [vi("y", TensorProto.FLOAT, [1, 16]), vi("ys", TensorProto.FLOAT, [20, 1, 16])], inits, sparse_initializer=[sparse_init],
    )  # fmt: skip


def _onnx_parameter_bytes(model: onnx.ModelProto) -> tuple[int, int]:
    """(all, at least EXTERNALIZE_MIN_BYTES) parameter bytes, counted with the onnx package."""
    sizes: list[int] = []

    def graph(g: onnx.GraphProto) -> None:
        sizes.extend(numpy_helper.to_array(t).nbytes for t in g.initializer)
        for s in g.sparse_initializer:
            sizes.append(numpy_helper.to_array(s.values).nbytes + numpy_helper.to_array(s.indices).nbytes)
        for n in g.node:
            for a in n.attribute:
                if a.type == onnx.AttributeProto.TENSOR:
                    sizes.append(numpy_helper.to_array(a.t).nbytes)
                elif a.type == onnx.AttributeProto.SPARSE_TENSOR:
                    sizes.append(numpy_helper.to_array(a.sparse_tensor.values).nbytes + numpy_helper.to_array(a.sparse_tensor.indices).nbytes)
                elif a.type == onnx.AttributeProto.FLOATS:
                    sizes.append(4 * len(a.floats))
                elif a.type == onnx.AttributeProto.INTS and n.op_type == "Constant":
                    sizes.append(8 * len(a.ints))
                elif a.type == onnx.AttributeProto.GRAPH:
                    graph(a.g)

    graph(model.graph)
    return sum(sizes), sum(s for s in sizes if s >= EXTERNALIZE_MIN_BYTES)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("cov-keys"))


def _seal(model: Path, keys: Keys, out: Path) -> SealResult:
    return seal_model(model, out, signer=keys.signer, recipients=[load_recipient(keys.recipient_path)])


def _plain(model: Any, feed: dict[str, Any], strict_like: bool = True) -> list[np.ndarray]:
    options = ort.SessionOptions()
    if strict_like:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.add_session_config_entry("session.disable_prepacking", "1")
    model = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"]).run(None, feed)


def _check_strict(sealed: Path, original: Any, keys: Keys, feeds: list[dict[str, Any]]) -> Coverage:
    """Strict outputs are bit-identical to plain onnxruntime configured the same way, and come from the secure buffer."""
    with edgeguard.InferenceSession(sealed, identity=keys.identity_path, trust=keys.trust_path) as session:
        outs = [session.run(None, f) for f in feeds]
        raw = session._ort
        coverage = session.coverage
    for feed, out in zip(feeds, outs, strict=True):
        for got, want in zip(out, _plain(original, feed), strict=True):
            np.testing.assert_array_equal(got, want)
    assert any(not np.array_equal(a, b) for a, b in zip(outs[0], raw.run(None, feeds[0]), strict=True))  # wiped: it read in place
    return coverage


def test_every_form_of_weight_is_moved_and_outputs_are_identical(keys: Keys, tmp_path: Path) -> None:
    model = every_form_model()
    path = tmp_path / "forms.onnx"
    onnx.save_model(model, str(path))
    total, required = _onnx_parameter_bytes(model)
    before = graph_coverage(model.SerializeToString())  # the plain file: nothing protected
    assert (before.total_bytes, before.required_bytes, before.protected_bytes) == (total, required, 0)
    assert set(before.unprotected) >= {"W1", "Ws", "Wsi", "bf", "bi", "W", "Wl", "k", "k2", "Wsc", "Wd"}
    result = _seal(path, keys, tmp_path / "forms.sealed")
    cov = result.coverage
    assert cov is not None and cov.fraction == 1.0 and cov.unprotected == ()
    # Densifying the sparse tensors changes what they weigh; everything else is counted the same.
    dense_sparse = 2 * 64 * 300 * 4
    sparse_stored = 2 * (600 * 4 + 600 * 8)
    assert cov.required_bytes == required - sparse_stored + dense_sparse
    assert cov.inline_bytes < EXTERNALIZE_MIN_BYTES * 4  # b1, tb, n, shape: small
    feeds = [{"X": RNG.standard_normal((1, 32)).astype(np.float32), "c": np.array(c)} for c in (True, False)]
    assert _check_strict(result.path, path, keys, feeds) == cov


def test_names_stay_unique_and_subgraph_outputs_keep_their_names(tmp_path: Path) -> None:
    from edgeguard.kinds.onnx import onnx_sections

    path = tmp_path / "forms.onnx"
    onnx.save_model(every_form_model(), str(path))
    sections, entries = onnx_sections(path)
    names = [e.name for e in entries]
    assert len(names) == len(set(names)) and {"W1", "Ws", "Wsi", "bf", "bi", "Wd"} <= set(names)
    sealed = onnx.ModelProto()
    sealed.ParseFromString(sections[0][1])
    assert not any(n.op_type == "Constant" and n.output[0] in ("W1", "Ws", "bf", "bi") for n in sealed.graph.node)
    branches = [a.g for n in sealed.graph.node if n.op_type == "If" for a in n.attribute]
    assert all(not b.initializer for b in branches)
    assert sorted(o.name for b in branches for o in b.output) == ["e", "k", "k2", "t"]  # Identity keeps returned constants' names


def test_model_local_function_weights_are_inlined_and_moved(keys: Keys, tmp_path: Path) -> None:
    w = f32(32, 64)
    fn = helper.make_function(
        "local", "proj", ["x"], ["y"], [const("w", value=numpy_helper.from_array(w, "w")), helper.make_node("MatMul", ["x", "w"], ["y"])],
        opset_imports=[helper.make_opsetid("", 17)],
    )  # fmt: skip
    graph = helper.make_graph([helper.make_node("proj", ["X"], ["Y"], domain="local")], "g", [vi("X", TensorProto.FLOAT, [1, 32])], [vi("Y", TensorProto.FLOAT, [1, 64])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)], functions=[fn])
    model.ir_version = 8
    path = tmp_path / "fn.onnx"
    onnx.save_model(model, str(path))
    assert graph_coverage(model.SerializeToString()).unprotected == ("w",)
    result = _seal(path, keys, tmp_path / "fn.sealed")
    assert result.coverage is not None and result.coverage.fraction == 1.0 and result.coverage.required_bytes == w.nbytes
    _check_strict(result.path, path, keys, [{"X": RNG.standard_normal((1, 32)).astype(np.float32)}])


def test_half_precision_weights_keep_full_coverage(keys: Keys, tmp_path: Path) -> None:
    w16 = f32(32, 64).astype(np.float16)
    wbf = (f32(64, 32).view(np.uint32) >> 16).astype(np.uint16)  # bfloat16 bit patterns
    bf16 = helper.make_tensor("Wbf", TensorProto.BFLOAT16, [64, 32], wbf.tobytes(), raw=True)
    nodes = [
        helper.make_node("Cast", ["X"], ["x16"], to=TensorProto.FLOAT16),
        helper.make_node("MatMul", ["x16", "W16"], ["h16"]),
        const("c16", value=numpy_helper.from_array(f32(64).astype(np.float16) * 0 + np.float16(0.25), "c16")),
        helper.make_node("Add", ["h16", "c16"], ["h16b"]),
        helper.make_node("Cast", ["h16b"], ["h"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["Wbf"], ["Wbf32"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["h", "Wbf32"], ["Y"]),
    ]
    model = _model(nodes, [vi("X", TensorProto.FLOAT, [1, 32])], [vi("Y", TensorProto.FLOAT, [1, 32])], [numpy_helper.from_array(w16, "W16"), bf16])
    path = tmp_path / "half.onnx"
    onnx.save_model(model, str(path))
    result = _seal(path, keys, tmp_path / "half.sealed")
    assert result.coverage is not None and result.coverage.fraction == 1.0
    assert result.coverage.required_bytes == w16.nbytes + wbf.nbytes
    _check_strict(result.path, path, keys, [{"X": RNG.standard_normal((1, 32)).astype(np.float32)}])


def _float_convnet(path: Path) -> Path:
    nodes = [
        helper.make_node("Conv", ["X", "Wc", "Bc"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"]),
        helper.make_node("MatMul", ["f", "Wm"], ["m"]),
        helper.make_node("Add", ["m", "Bm"], ["Y"]),
    ]
    inits = [
        numpy_helper.from_array(f32(16, 3, 3, 3), "Wc"),
        numpy_helper.from_array(f32(16), "Bc"),
        numpy_helper.from_array(f32(16 * 8 * 8, 32), "Wm"),
        numpy_helper.from_array(f32(32), "Bm"),
    ]
    onnx.save_model(_model(nodes, [vi("X", TensorProto.FLOAT, [1, 3, 8, 8])], [vi("Y", TensorProto.FLOAT, [1, 32])], inits, opset=13), str(path))
    return path


@pytest.mark.parametrize("method", ["dynamic-uint8", "dynamic-int8", "static-qoperator"])
def test_quantized_models_keep_full_coverage(keys: Keys, tmp_path: Path, method: str) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static

    fp32 = _float_convnet(tmp_path / "fp32.onnx")
    quantized = tmp_path / "q.onnx"
    x = [{"X": RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(4)]
    if method.startswith("dynamic"):
        quantize_dynamic(fp32, quantized, weight_type=QuantType.QUInt8 if method.endswith("uint8") else QuantType.QInt8)
        ops = {"MatMulInteger", "ConvInteger", "DynamicQuantizeLinear"}
    else:

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.it = iter(x)

            def get_next(self) -> dict[str, np.ndarray] | None:
                return next(self.it, None)

        quantize_static(fp32, quantized, Reader(), quant_format=QuantFormat.QOperator, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        ops = {"QLinearConv", "QLinearMatMul"}
    model = onnx.load(str(quantized))
    assert ops & {n.op_type for n in model.graph.node}
    assert {TensorProto.INT8, TensorProto.UINT8} & {t.data_type for t in model.graph.initializer}
    result = _seal(quantized, keys, tmp_path / "q.sealed")
    assert result.coverage is not None and result.coverage.fraction == 1.0 and result.coverage.required_bytes >= 16 * 8 * 8 * 32
    _check_strict(result.path, quantized, keys, x[:2])


def _inline_payload(model: onnx.ModelProto) -> bytearray:
    """What an older edgeguard sealed for a model whose weights are Constant nodes: all inline."""
    return build_payload("onnx", [("graph", model.SerializeToString()), ("weights", b"")])


def _open(sealed: Path, keys: Keys, **kwargs: Any) -> edgeguard.InferenceSession:
    return edgeguard.InferenceSession(sealed, identity=keys.identity_path, trust=keys.trust_path, **kwargs)


def test_strict_mode_refuses_a_model_sealed_with_inline_weights(keys: Keys, tmp_path: Path) -> None:
    model = every_form_model()
    payload = _inline_payload(model)
    assert payload_coverage(payload) == graph_coverage(model.SerializeToString())
    info = ModelInfo(name="old", version=1, created=0)
    result = seal_payload(payload, tmp_path / "old.sealed", kind="onnx", signer=keys.signer, recipients=[load_recipient(keys.recipient_path)], model=info)
    assert result.coverage is not None and result.coverage.protected_bytes == 0
    assert sealed_coverage(result.path, identity=keys.identity_path, trust=keys.trust_path) == result.coverage
    with pytest.raises(CoverageError, match=r"0\.0% of its weight bytes.*`edgeguard seal`") as caught:
        _open(result.path, keys)
    assert isinstance(caught.value, LoadRefusedError) and edgeguard.CoverageError is CoverageError
    assert caught.value.coverage == result.coverage
    feed = {"X": np.ones((1, 32), np.float32), "c": np.array(True)}
    for kwargs in ({"min_coverage": 0.0}, {"hygiene": "fast"}):  # the caller's choice; fast mode copies everything anyway
        with _open(result.path, keys, **kwargs) as session:
            assert session.coverage == result.coverage
            want = _plain(model.SerializeToString(), feed, strict_like="hygiene" not in kwargs)[0]
            np.testing.assert_array_equal(session.run(None, feed)[0], want)


def test_min_coverage_is_a_threshold_on_the_measured_share(keys: Keys, tmp_path: Path) -> None:
    w_out, w_in = f32(32, 96), f32(96, 32)  # 12 KiB each; only the first one is moved, the way a partial sealer would
    nodes = [helper.make_node("MatMul", ["X", "Wo"], ["h"]), const("Wi", value=numpy_helper.from_array(w_in, "Wi")), helper.make_node("MatMul", ["h", "Wi"], ["Y"])]
    model = _model(nodes, [vi("X", TensorProto.FLOAT, [1, 32])], [vi("Y", TensorProto.FLOAT, [1, 32])], [numpy_helper.from_array(w_out, "Wo")])
    ext = model.graph.initializer[0]
    ext.ClearField("raw_data")
    ext.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "edgeguard.weights"), ("offset", "0"), ("length", str(w_out.nbytes))):
        ext.external_data.add(key=k, value=v)
    from edgeguard.payload import tensor_entries

    payload = build_payload("onnx", [("graph", model.SerializeToString()), ("weights", w_out.tobytes())], tensor_entries([("Wo", "float32", (32, 96))]))
    info = ModelInfo(name="half", version=1, created=0)
    sealed = seal_payload(payload, tmp_path / "half.sealed", kind="onnx", signer=keys.signer, recipients=[load_recipient(keys.recipient_path)], model=info)
    assert sealed.coverage is not None and sealed.coverage.fraction == 0.5 and sealed.coverage.unprotected == ("Wi",)
    with pytest.raises(CoverageError, match=r"50\.0%.*min_coverage is 60\.0%.*Wi"):
        _open(sealed.path, keys, min_coverage=0.6)
    with _open(sealed.path, keys, min_coverage=0.5) as session:
        assert session.coverage.percent == 50.0
    for bad in (-0.1, 1.5, "1", True, float("nan")):
        with pytest.raises(ValueError, match="min_coverage"):
            _open(sealed.path, keys, min_coverage=bad)


def test_a_weight_that_cannot_be_moved_refuses_to_seal(keys: Keys, tmp_path: Path) -> None:
    f8 = helper.make_tensor("W8", TensorProto.FLOAT8E4M3FN, [32, 64], bytes(32 * 64), raw=True)  # no tensor-table dtype
    nodes = [helper.make_node("Cast", ["W8"], ["W"], to=TensorProto.FLOAT), helper.make_node("MatMul", ["X", "W"], ["Y"])]
    path = tmp_path / "f8.onnx"
    onnx.save_model(_model(nodes, [vi("X", TensorProto.FLOAT, [1, 32])], [vi("Y", TensorProto.FLOAT, [1, 64])], [f8], opset=19), str(path))
    with pytest.raises(FormatError, match=r"cannot be moved.*W8"):
        _seal(path, keys, tmp_path / "f8.sealed")
    assert not (tmp_path / "f8.sealed").exists()
    assert model_coverage(path).unprotected == ("W8",)  # what the seal would leave behind, measured without sealing


def test_coverage_reports_and_serializes() -> None:
    cov = Coverage(total_bytes=5000, required_bytes=4096, protected_bytes=3072, unprotected=("a", "b", "c", "d"))
    assert cov.percent == 75.0 and cov.inline_bytes == 1928
    assert cov.to_json() == {
        "protected_bytes": 3072, "required_bytes": 4096, "total_bytes": 5000, "percent": 75.0,
        "threshold_bytes": EXTERNALIZE_MIN_BYTES, "unprotected": ["a", "b", "c", "d"],
    }  # fmt: skip
    assert str(cov).startswith("75.0% of weight bytes in the secure buffer (3,072 of 4,096;") and "a, b, c and 1 more" in str(cov)
    assert Coverage(10, 0, 0, ()).fraction == 1.0  # nothing big enough to need protection
    with pytest.raises(FormatError):
        graph_coverage(b"\x3a\xff\xff\xff\xff\x0f")  # a length running past the end


_BIG_ROWS = 190_000  # x 1024 float32 = 778 MB a tensor, three of them: 2.33 GB of external data


@pytest.mark.slow
def test_external_data_model_over_2gb_keeps_full_coverage(keys: Keys, tmp_path: Path) -> None:
    start = time.monotonic()
    width, inits, nodes, prev = 1024, [], [], "X"
    with (tmp_path / "big.data").open("wb") as f:  # written directly: protobuf cannot hold the tensors in one message
        for i in range(3):
            t = onnx.TensorProto(name=f"W{i}", data_type=TensorProto.FLOAT, dims=[_BIG_ROWS, width], data_location=TensorProto.EXTERNAL)
            for k, v in (("location", "big.data"), ("offset", str(f.tell())), ("length", str(_BIG_ROWS * width * 4))):
                t.external_data.add(key=k, value=v)
            np.full((_BIG_ROWS, width), 2.0 ** -(20 + i), np.float32).tofile(f)  # exact sums in float32
            inits.append(t)
            nodes += [helper.make_node("ReduceSum", [f"W{i}", "axes"], [f"s{i}"], keepdims=0), helper.make_node("Add", [prev, f"s{i}"], [f"y{i}"])]
            prev = f"y{i}"
    nodes.append(helper.make_node("Identity", [prev], ["Y"]))
    inits.append(numpy_helper.from_array(np.array([0], np.int64), "axes"))
    graph = helper.make_graph(nodes, "big", [vi("X", TensorProto.FLOAT, [width])], [vi("Y", TensorProto.FLOAT, [width])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(tmp_path / "big.onnx"))
    assert (tmp_path / "big.data").stat().st_size > 2**31
    result = _seal(tmp_path / "big.onnx", keys, tmp_path / "big.sealed")
    assert result.coverage is not None and result.coverage.fraction == 1.0 and result.coverage.required_bytes == 3 * _BIG_ROWS * width * 4
    (tmp_path / "big.data").unlink()  # less disk and page cache for the load
    x = np.arange(width, dtype=np.float32)
    with _open(result.path, keys) as session:
        assert session.coverage == result.coverage
        y = session.run(None, {"X": x})[0]
    np.testing.assert_array_equal(y, x + np.float32(_BIG_ROWS * (2.0**-20 + 2.0**-21 + 2.0**-22)))
    print(f"> 2 GB external-data test: {time.monotonic() - start:.1f} s")


def test_other_payload_kinds_have_no_coverage(keys: Keys, tmp_path: Path) -> None:
    raw = tmp_path / "blob.bin"
    raw.write_bytes(bytes(range(256)) * 8)
    result = _seal(raw, keys, tmp_path / "blob.sealed")
    assert result.coverage is None  # a raw or safetensors payload is in the secure buffer whole
    assert sealed_coverage(result.path, identity=keys.identity_path, trust=keys.trust_path) is None
    assert payload_coverage(b"anything", "raw") is None


def test_a_branch_constant_used_only_by_a_nested_loop_body_is_renamed_there(keys: Keys, tmp_path: Path) -> None:
    w = f32(16, 16)
    body = helper.make_graph(
        [helper.make_node("MatMul", ["v", "Wn"], ["v2"]), helper.make_node("Identity", ["cond"], ["cond2"]), const("ret", value=numpy_helper.from_array(w * 2, "ret"))],
        "body", [vi("i", TensorProto.INT64, []), vi("cond", TensorProto.BOOL, []), vi("v", TensorProto.FLOAT, [1, 16])],
        [vi("cond2", TensorProto.BOOL, []), vi("v2", TensorProto.FLOAT, [1, 16]), vi("ret", TensorProto.FLOAT, [16, 16])],
    )  # fmt: skip
    then_b = helper.make_graph(
        [const("Wn", value=numpy_helper.from_array(w, "Wn")), const("n", value=numpy_helper.from_array(np.array(3, np.int64), "n")),
         helper.make_node("Loop", ["n", "", "X"], ["t", "rets"], body=body), helper.make_node("ReduceSum", ["rets"], ["r"], keepdims=0),
         helper.make_node("Add", ["t", "r"], ["tr"])],
        "then", [], [vi("tr", TensorProto.FLOAT, [1, 16])],
    )  # fmt: skip
    else_b = helper.make_graph([helper.make_node("Identity", ["X"], ["e"])], "else", [], [vi("e", TensorProto.FLOAT, [1, 16])])
    model = _model(
        [helper.make_node("If", ["c"], ["Y"], then_branch=then_b, else_branch=else_b)],
        [vi("X", TensorProto.FLOAT, [1, 16]), vi("c", TensorProto.BOOL, [])],
        [vi("Y", TensorProto.FLOAT, [1, 16])],
    )
    path = tmp_path / "nested.onnx"
    onnx.save_model(model, str(path))
    result = _seal(path, keys, tmp_path / "nested.sealed")
    assert result.coverage is not None and result.coverage.fraction == 1.0 and result.coverage.required_bytes == 2 * w.nbytes
    _check_strict(result.path, path, keys, [{"X": RNG.standard_normal((1, 16)).astype(np.float32), "c": np.array(True)}])
