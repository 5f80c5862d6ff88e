"""ONNX and safetensors payloads: seal, open and unseal give an equivalent model (same
initializers / tensors, same onnxruntime outputs); the tensor table follows FORMAT.md; a malformed
safetensors file is refused at seal time."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import reference_decoder as ref
from edgeguard.errors import FormatError
from edgeguard.kinds.onnx import EXTERNALIZE_MIN_BYTES, WEIGHTS_LOCATION
from edgeguard.seal import seal_model
from edgeguard.unseal import decrypt_file, unseal_file
from helpers import CHUNK, Keys

RNG = np.random.default_rng(7)


def small_model() -> Any:
    """MatMul/Add/Relu with initializers above and below the 1 KiB externalisation threshold
    (float32, float16, exactly 1 KiB, a small int64 shape) -> Y[1, 1]."""
    inits = {
        "W1": RNG.standard_normal((32, 64)).astype(np.float32),  # 8192 B: externalised
        "b1": RNG.standard_normal(64).astype(np.float32),  # 256 B: stays inline
        "W2": RNG.standard_normal((64, 8)).astype(np.float32),  # 2048 B: externalised
        "b2": RNG.standard_normal(8).astype(np.float32),  # 32 B: inline
        "W3": RNG.standard_normal((8, 256)).astype(np.float16),  # 4096 B, float16: externalised
        "exact": np.arange(256, dtype=np.float32).reshape(256, 1),  # exactly 1 KiB: externalised
        "shape": np.array([1, 256], dtype=np.int64),  # 16 B int64: inline
    }
    nodes = [
        helper.make_node("MatMul", ["X", "W1"], ["h1"]),
        helper.make_node("Add", ["h1", "b1"], ["h2"]),
        helper.make_node("Relu", ["h2"], ["h3"]),
        helper.make_node("MatMul", ["h3", "W2"], ["h4"]),
        helper.make_node("Add", ["h4", "b2"], ["h5"]),
        helper.make_node("Cast", ["W3"], ["W3f"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["h5", "W3f"], ["h6"]),
        helper.make_node("Reshape", ["h6", "shape"], ["h7"]),
        helper.make_node("MatMul", ["h7", "exact"], ["Y"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 32])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 1])],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def run(path_or_bytes: Any, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(path_or_bytes, providers=["CPUExecutionProvider"])
    return session.run(None, {"X": x})[0]


def initializers(model: Any) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("onnx")
    model = small_model()
    inline = d / "inline.onnx"
    onnx.save_model(model, str(inline))
    ext_dir = d / "ext"
    ext_dir.mkdir()
    external = ext_dir / "external.onnx"
    onnx.save_model(small_model(), str(external), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="external.onnx.data", size_threshold=0)  # fmt: skip
    assert (ext_dir / "external.onnx.data").stat().st_size > 0
    return {"inline": inline, "external": external}


@pytest.mark.parametrize("which", ["inline", "external"])
@pytest.mark.parametrize("cipher", ["aes-256-gcm", "chacha20-poly1305"])
def test_onnx_round_trip(keys: Keys, onnx_models: dict[str, Path], tmp_path: Path, which: str, cipher: str) -> None:
    src = onnx_models[which]
    original = onnx.load(str(src), load_external_data=True)
    sealed, out = tmp_path / "m.sealed", tmp_path / "m.onnx"
    seal_model(src, sealed, signer=keys.ed25519, recipients=[keys.x25519_dev.recipient], cipher=cipher, chunk_size=CHUNK)
    assert b"MatMul" not in sealed.read_bytes()  # the architecture is inside the encryption

    opened = decrypt_file(sealed, [keys.x25519_dev.identity], keys.trust)
    assert opened.container.header.payload_kind == "onnx"
    expected = {n: a for n, a in initializers(original).items() if a.nbytes >= EXTERNALIZE_MIN_BYTES}
    assert [t.name for t in opened.layout.tensors] == [n for n in initializers(original) if n in expected]
    weights = opened.layout.section(opened.buffer, "weights")
    for t in opened.layout.tensors:
        assert t.offset % 64 == 0
        arr = np.frombuffer(weights[t.offset : t.offset + t.length], dtype=expected[t.name].dtype).reshape(t.shape)
        np.testing.assert_array_equal(arr, expected[t.name])
    graph = onnx.ModelProto()
    graph.ParseFromString(bytes(opened.layout.section(opened.buffer, "graph")))
    for t in graph.graph.initializer:
        ext = {e.key: e.value for e in t.external_data}
        assert (t.data_location == TensorProto.EXTERNAL) == (t.name in expected)
        if t.name in expected:
            assert ext["location"] == WEIGHTS_LOCATION

    # the reference decoder accepts the same payload and its tensor table
    decoded = ref.decode(sealed.read_bytes(), keys.ref_trusted(), [keys.x25519_dev.private])
    assert decoded.payload == bytes(opened.buffer)
    assert set(ref.check_inner_payload(decoded.payload, "onnx")) == {"graph", "weights"}

    unseal_file(sealed, out, [keys.x25519_dev.identity], keys.trust)
    restored = onnx.load(str(out))
    onnx.checker.check_model(restored)
    assert not any(t.data_location == TensorProto.EXTERNAL for t in restored.graph.initializer)
    got, want = initializers(restored), initializers(original)
    assert list(got) == list(want)
    for name in want:
        assert got[name].dtype == want[name].dtype
        np.testing.assert_array_equal(got[name], want[name])
    x = RNG.standard_normal((1, 32)).astype(np.float32)
    # (onnxruntime cannot read a Reshape shape from external data, so the reference run uses the
    # original model with its external data loaded)
    np.testing.assert_array_equal(run(str(out), x), run(original.SerializeToString(), x))


def test_onnx_unloadable_model_is_refused(keys: Keys, tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not a protobuf model\xff\xff")
    with pytest.raises(FormatError):
        seal_model(bad, tmp_path / "bad.sealed", signer=keys.ed25519, recipients=[keys.x25519_dev.recipient], chunk_size=CHUNK)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx"]


# --- safetensors (written here from the safetensors spec; no safetensors package needed) ---------

ST_DTYPES = {np.dtype("float32"): "F32", np.dtype("float16"): "F16", np.dtype("int64"): "I64", np.dtype("uint8"): "U8",
             np.dtype("bool"): "BOOL", np.dtype("int8"): "I8", np.dtype("float64"): "F64"}  # fmt: skip


def write_safetensors(tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> bytes:
    header: dict[str, Any] = {"__metadata__": metadata} if metadata else {}
    blobs, offset = [], 0
    for name, arr in tensors.items():
        raw = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": ST_DTYPES[arr.dtype], "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)  # the reference writer pads the header to 8 bytes with spaces
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def read_safetensors(data: bytes) -> dict[str, np.ndarray]:
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    header.pop("__metadata__", None)
    inverse = {v: k for k, v in ST_DTYPES.items()}
    out = {}
    for name, e in header.items():
        a, b = e["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + a : 8 + n + b], dtype=inverse[e["dtype"]].newbyteorder("<")).reshape(e["shape"])
    return out


TENSORS = {
    "embed.weight": RNG.standard_normal((16, 8)).astype(np.float32),
    "half": RNG.standard_normal((3, 5)).astype(np.float16),
    "ids": np.arange(7, dtype=np.int64),
    "mask": np.array([True, False, True]),
    "bytes": np.arange(10, dtype=np.uint8),
    "scalar": np.array(2.5, dtype=np.float64),
    "empty": np.zeros((0, 4), dtype=np.int8),
}


@pytest.mark.parametrize("cipher", ["aes-256-gcm", "chacha20-poly1305"])
def test_safetensors_round_trip(keys: Keys, tmp_path: Path, cipher: str) -> None:
    data = write_safetensors(TENSORS, {"format": "pt"})
    src, sealed, out = tmp_path / "m.safetensors", tmp_path / "m.sealed", tmp_path / "back.safetensors"
    src.write_bytes(data)
    seal_model(src, sealed, signer=keys.p256, recipients=[keys.p256_dev.recipient], cipher=cipher, chunk_size=CHUNK)
    opened = decrypt_file(sealed, [keys.p256_dev.identity], keys.trust)
    assert opened.container.header.payload_kind == "safetensors" and opened.layout.tensors == ()
    section = bytes(opened.layout.section(opened.buffer, "safetensors"))
    assert section == data
    from edgeguard.kinds.safetensors import safetensors_views

    views = safetensors_views(opened.layout.section(opened.buffer, "safetensors"))
    for name, arr in read_safetensors(section).items():
        np.testing.assert_array_equal(arr, TENSORS[name])
        np.testing.assert_array_equal(views[name], TENSORS[name])
    assert ref.check_inner_payload(ref.decode(sealed.read_bytes(), keys.ref_trusted(), [keys.p256_dev.private]).payload, "safetensors")["safetensors"] == data
    unseal_file(sealed, out, [keys.p256_dev.identity], keys.trust)
    assert out.read_bytes() == data


def _st(header: Any, body: bytes = b"", raw_header: bytes | None = None, length: int | None = None) -> bytes:
    text = json.dumps(header).encode() if raw_header is None else raw_header
    return struct.pack("<Q", len(text) if length is None else length) + text + body


F = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
MALFORMED = {
    "too short": b"\x01\x00\x00",
    "header length past the end": _st({}, length=1000),
    "header length over 100 MB": _st({}, length=100_000_001),
    "header not JSON": _st(None, raw_header=b"{not json}"),
    "header not UTF-8": _st(None, raw_header=b'{"\xff": 1}'),
    "header not an object": _st([1, 2]),
    "entry not an object": _st({"t": 5}),
    "missing data_offsets": _st({"t": {"dtype": "F32", "shape": [2]}}, bytes(8)),
    "extra field": _st({"t": {**F, "x": 1}}, bytes(8)),
    "unknown dtype": _st({"t": {**F, "dtype": "F128"}}, bytes(8)),
    "dtype not a string": _st({"t": {**F, "dtype": ["F32"]}}, bytes(8)),
    "negative dim": _st({"t": {**F, "shape": [-2]}}, bytes(8)),
    "float dim": _st({"t": {**F, "shape": [2.0]}}, bytes(8)),
    "size does not match shape": _st({"t": {**F, "shape": [3]}}, bytes(8)),
    "offsets reversed": _st({"t": {**F, "data_offsets": [8, 0]}}, bytes(8)),
    "hole before a tensor": _st({"t": {**F, "data_offsets": [4, 12]}}, bytes(12)),
    "overlapping tensors": _st({"a": F, "b": F}, bytes(8)),
    "trailing bytes": _st({"t": F}, bytes(9)),
    "data area too short": _st({"t": F}, bytes(7)),
    "shape product overflows int64": _st({"t": {"dtype": "F32", "shape": [2**32, 2**32, 2], "data_offsets": [0, 0]}}),
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_safetensors_is_refused_at_seal_time(keys: Keys, tmp_path: Path, data: bytes) -> None:
    src = tmp_path / "bad.safetensors"
    src.write_bytes(data)
    with pytest.raises(FormatError):
        seal_model(src, tmp_path / "bad.sealed", signer=keys.ed25519, recipients=[keys.x25519_dev.recipient], chunk_size=CHUNK)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.safetensors"]


def test_a_valid_safetensors_edge_case_is_accepted(keys: Keys, tmp_path: Path) -> None:
    """No tensors at all, only metadata: still a valid safetensors file."""
    src = tmp_path / "meta.safetensors"
    src.write_bytes(write_safetensors({}, {"k": "v"}))
    seal_model(src, tmp_path / "m.sealed", signer=keys.ed25519, recipients=[keys.x25519_dev.recipient], chunk_size=CHUNK)
