"""A short, deterministic run of tools/fuzz.py (the structured mutation engine) on each target, and
strict-xfail reproducers of what the fuzzer found behind the publisher's signature. The long,
coverage-guided runs and their numbers are in docs/security-testing.md ("Fuzzing")."""

from __future__ import annotations

import importlib.util
import random
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from edgeguard.errors import FormatError
from edgeguard.payload import build_payload, tensor_entries
from edgeguard.unseal import decrypt_file, unseal_file

FUZZ_PATH = Path(__file__).resolve().parent.parent / "tools" / "fuzz.py"


def _load() -> ModuleType:
    name = "edgeguard_fuzz"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, FUZZ_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


fuzz = _load()


@pytest.fixture(scope="module")
def world() -> Iterator[Any]:
    w = fuzz.World()
    yield w
    w.close()


# (target, iterations, outcomes the run must reach: proof that the harness gets past the signature,
# the key unwrap and the AEAD rather than stopping at the parser)
BOUNDED = [
    ("parse", 300, {"ok", "format", "version"}),
    ("verify", 100, {"ok", "format", "integrity"}),
    ("open", 60, {"ok", "format", "integrity"}),
    ("unwrap", 60, {"ok", "not_recipient", "integrity"}),
    ("inner", 60, {"ok", "format"}),
]


@pytest.mark.parametrize(("target", "iterations", "reached"), BOUNDED, ids=[b[0] for b in BOUNDED])
def test_bounded_fuzz_run(world: Any, tmp_path: Path, target: str, iterations: int, reached: set[str]) -> None:
    stats = fuzz.run_python(world, target, seed=20240601, seconds=None, iterations=iterations, findings=tmp_path)
    assert stats.executions == iterations
    assert stats.new == [], f"new findings (inputs in {tmp_path}): {stats.new}"
    assert reached <= set(stats.outcomes), stats.outcomes


def test_the_python_engine_is_deterministic(world: Any) -> None:
    """Iteration i of (seed, target) makes the same decisions (the sealing itself is randomized, so
    compare what the mutators produce: parsed bytes and inner payloads)."""

    def make(target: str, i: int) -> Any:
        case = fuzz.generate(world, target, fuzz.RandomSource(random.Random(f"7/{target}/{i}")))
        return case.data if target == "parse" else (case.kind, case.payload)

    for target in ("parse", "inner"):
        assert [make(target, i) for i in range(20)] == [make(target, i) for i in range(20)]


def test_a_foreign_exception_is_a_finding() -> None:
    rep: list[Any] = []
    assert fuzz.outcome("x", lambda: {}["missing"], rep)[0] == "crash"
    assert [f.signature for f in rep] == ["x-raised:KeyError@?"]


def test_the_seeds_open(world: Any) -> None:
    for seed in world.seeds:
        rep: list[Any] = []
        assert fuzz.check_open(world, seed.data, True, rep, runtime=True) == "ok"
        assert rep == []


def test_known_findings_name_tests_in_this_module() -> None:
    names = set(globals())
    for test in fuzz.KNOWN.values():
        path, _, name = test.partition("::")
        assert path == "tests/test_fuzz.py" and name in names, test


# --- what the fuzzer found (only reachable with the publisher's signing key) ---------------------


def _sealed(world: Any, tmp_path: Path, payload: bytes, kind: str) -> Path:
    path = tmp_path / "m.sealed"
    path.write_bytes(world.seal(payload, kind))
    return path


def test_inner_format_error_wipes_the_buffer(world: Any, tmp_path: Path) -> None:
    path = _sealed(world, tmp_path, b"secret weights, not an inner layout" * 8, "raw")
    buffers: list[bytearray] = []

    def allocate(n: int) -> bytearray:
        buffers.append(bytearray(n))
        return buffers[-1]

    with pytest.raises(FormatError):
        decrypt_file(path, world.identities, world.trust, allocate=allocate)
    assert not any(buffers[0]), "plaintext left in the buffer after a failed open"


def _onnx_with_graph(world: Any, tmp_path: Path, graph: bytes) -> Path:
    return _sealed(world, tmp_path, bytes(build_payload("onnx", [("graph", graph), ("weights", b"")])), "onnx")


def _graph_with_external(entries: dict[str, str]) -> bytes:
    onnx = pytest.importorskip("onnx")
    t = onnx.TensorProto(name="W", data_type=onnx.TensorProto.FLOAT, dims=[4], data_location=onnx.TensorProto.EXTERNAL)
    for key, value in entries.items():
        t.external_data.add(key=key, value=value)
    model = onnx.ModelProto()
    model.graph.initializer.append(t)
    return bytes(model.SerializeToString())


def test_unseal_malformed_onnx_graph_is_a_format_error(world: Any, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    path = _onnx_with_graph(world, tmp_path, b"\xff\xff\xff")
    with pytest.raises(FormatError):
        unseal_file(path, tmp_path / "out.onnx", world.identities, world.trust)


def test_unseal_onnx_external_data_without_offset_is_a_format_error(world: Any, tmp_path: Path) -> None:
    path = _onnx_with_graph(world, tmp_path, _graph_with_external({"location": "edgeguard.weights", "length": "16"}))
    with pytest.raises(FormatError):
        unseal_file(path, tmp_path / "out.onnx", world.identities, world.trust)


def test_unseal_onnx_external_data_with_bad_offset_is_a_format_error(world: Any, tmp_path: Path) -> None:
    graph = _graph_with_external({"location": "edgeguard.weights", "offset": "abc", "length": "16"})
    path = _onnx_with_graph(world, tmp_path, graph)
    with pytest.raises(FormatError):
        unseal_file(path, tmp_path / "out.onnx", world.identities, world.trust)


def test_deeply_nested_safetensors_header_is_a_format_error(world: Any, tmp_path: Path) -> None:
    from edgeguard.runtime import open_sealed

    header = b"[" * 100_000 + b"]" * 100_000
    path = _sealed(world, tmp_path, bytes(build_payload("safetensors", [("safetensors", struct.pack("<Q", len(header)) + header)])), "safetensors")
    with pytest.raises(FormatError):
        open_sealed(path, identity=world.identities, trust=world.trust)


def test_unseal_onnx_external_data_out_of_range_is_a_format_error(world: Any, tmp_path: Path) -> None:
    graph = _graph_with_external({"location": "edgeguard.weights", "offset": "-4", "length": "4"})
    path = _onnx_with_graph(world, tmp_path, graph)
    with pytest.raises(FormatError):
        unseal_file(path, tmp_path / "out.onnx", world.identities, world.trust)


def test_zero_size_tensor_with_huge_dims_is_a_format_error(world: Any, tmp_path: Path) -> None:
    from edgeguard.runtime import open_sealed

    entries = tensor_entries([("t0", "bool", (2**32, 2**32, 0))])  # 0 elements, length 0
    payload = bytes(build_payload("onnx", [("graph", b"g"), ("weights", b"")], entries))
    path = _sealed(world, tmp_path, payload, "onnx")
    with pytest.raises(FormatError):
        open_sealed(path, identity=world.identities, trust=world.trust)
