"""No weight residue after close: a child process loads a sealed model, runs it, closes it, and this
process reads every readable mapping of the child (/proc/PID/mem) for every 64-byte slice of every
protected weight tensor (edgeguard.bench.residue).

Strict mode: nothing may be left, with and without inference, with one intra-op thread and two
(onnxruntime's worker threads exit with the session and leave their stacks in glibc's cache).
The negative controls show the scan finds what the wipes remove: without the stack wipes, the
GEMM panels MLAS packed from the last layer are still on the stacks.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from edgeguard.bench.residue import Needles, load_weights, run_child
from edgeguard.bench.runtime import can_harden
from runtime_support import make_keys, make_mlp, seal

pytestmark = [
    pytest.mark.native_process,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/mem"),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("residue")
    keys = make_keys(tmp)
    model = make_mlp(tmp / "mlp.onnx", widths=(64, 512, 512, 512, 16))
    sealed = seal(model, tmp / "mlp.sealed", keys)
    ident, trust = str(keys.identity_path), str(keys.trust_path)
    needles = Needles.from_tensors(load_weights(str(sealed), ident, trust))
    assert len(needles.slices) > 8000 and needles.skipped < len(needles.slices) // 50
    return {"needles": needles, "spec": {"sealed": str(sealed), "identity": ident, "trust": trust}}


def _scan(world: dict[str, Any], stages: tuple[str, ...] = ("closed",), **spec: Any) -> dict[str, Any]:
    return run_child({**world["spec"], **spec}, world["needles"], stages)


def test_scan_finds_every_slice_in_the_open_secure_buffer(world: dict[str, Any]) -> None:
    result = _scan(world, ("open", "closed"), hygiene="strict", runs=0, threads=1)
    assert result["open"]["found_slices"] == result["open"]["needles"]  # the scanner sees the buffer
    assert result["closed"]["found_slices"] == 0


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("runs", [0, 3])
def test_strict_leaves_no_slice_of_any_weight_after_close(world: dict[str, Any], threads: int, runs: int) -> None:
    result = _scan(world, hygiene="strict", runs=runs, batch=32, threads=threads)
    assert result["closed"]["found_slices"] == 0, result["closed"]


def test_strict_run_from_another_python_thread_leaves_nothing(world: dict[str, Any]) -> None:
    result = _scan(world, hygiene="strict", runs=1, batch=4, threads=2, thread_runs=True)
    assert result["closed"]["found_slices"] == 0, result["closed"]


def test_without_the_stack_wipes_inference_leaves_weight_panels(world: dict[str, Any]) -> None:
    """Negative control: the residue is real, on the stacks, and what the wipes remove."""
    result = _scan(world, hygiene="strict", runs=1, batch=4, threads=2, stack_wipe_bytes=0)
    closed = result["closed"]
    assert closed["found_slices"] > 50
    assert set(closed["hits_by_kind"]) <= {"stack", "anonymous"}  # main stack, worker thread stacks


def test_fast_mode_copies_stay_in_the_heap_unless_freed_memory_is_wiped(world: dict[str, Any]) -> None:
    plain = _scan(world, hygiene="fast", runs=1, batch=4, threads=1)["closed"]
    assert plain["found_slices"] > plain["needles"] // 2  # onnxruntime's freed copies, not wiped
    wiped = _scan(world, hygiene="fast", runs=1, batch=4, threads=1, mallopt_perturb=165)["closed"]
    assert wiped["found_slices"] == 0, wiped


def test_needles_skip_constant_slices_and_find_unaligned_copies() -> None:
    import numpy as np

    rng = np.random.default_rng(1)
    w = rng.standard_normal(1024).astype(np.float32)
    needles = Needles.from_tensors({"w": w, "zeros": np.zeros(256, np.float32)})
    assert len(needles.slices) == 64 and needles.skipped == 16
    memory = bytearray(rng.integers(0, 256, 20000, dtype=np.uint8).tobytes())
    memory[1002 : 1002 + 640] = w[16:176].tobytes()  # 10 slices at a 2-byte (not 8-byte) aligned address
    found = {k for _, k in needles.find(bytes(memory))}
    assert len(found) == 10 and {needles.owners[k][1] for k in found} == {64 * i for i in range(1, 11)}


def test_residue_cli_runs(world: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from edgeguard.bench.residue import main

    spec = world["spec"]
    assert main([spec["sealed"], "--identity", spec["identity"], "--trust", spec["trust"], "--runs", "1",
                 "--stage", "open", "--stage", "closed"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["open"]["found_slices"] == out["open"]["needles"] and out["closed"]["found_slices"] == 0


@pytest.mark.slow
def test_strict_real_recognizer_leaves_nothing(tmp_path: Path) -> None:
    """PP-OCRv4 rec (conv + attention; its MatMul weights are packed on the stack like the MLP's)."""
    from real_models import extract

    keys = make_keys(tmp_path)
    sealed = seal(extract(["ppocrv4-rec"], tmp_path)["ppocrv4-rec"], tmp_path / "rec.sealed", keys)
    ident, trust = str(keys.identity_path), str(keys.trust_path)
    needles = Needles.from_tensors(load_weights(str(sealed), ident, trust))
    spec = {"sealed": str(sealed), "identity": ident, "trust": trust, "hygiene": "strict", "runs": 2, "batch": 4,
            "threads": 2, "shapes": {"x": ["N", 3, 48, 160]}}
    assert run_child(spec, needles)["closed"]["found_slices"] == 0
    assert run_child({**spec, "stack_wipe_bytes": 0}, needles)["closed"]["found_slices"] > 0


@pytest.mark.skipif(not can_harden(), reason="needs root or no RLIMIT_MEMLOCK (mlockall), and glibc's malloc")
@pytest.mark.parametrize("hygiene", ["hardened", "fast"])
def test_hardened_process_leaves_nothing_in_either_mode(world: dict[str, Any], hygiene: str) -> None:
    """harden_process(lock_memory=True, wipe_freed=True): onnxruntime's heap copies (a prepacked and
    an optimized copy in hardened mode, everything in fast mode) are overwritten when freed."""
    result = _scan(world, ("open", "closed"), hygiene=hygiene, runs=3, batch=32, threads=2,
                   harden={"lock_memory": True, "wipe_freed": True})
    if hygiene == "hardened":
        assert result["open"]["hits_by_kind"].get("heap", 0) > 0  # copies exist while open, in the heap
    assert result["closed"]["found_slices"] == 0, result["closed"]


def test_residue_suite_document(world: dict[str, Any], tmp_path: Path) -> None:
    from edgeguard.bench import workloads
    from edgeguard.bench.residue import run_residue_suite
    from edgeguard.bench.results import make_document, validate

    w = workloads.synthetic(1, tmp_path)
    section = run_residue_suite(w, runs=1, batch=4, hardened=False, progress=False)
    validate(make_document({"residue": section}, "quick"))
    modes = [(r["mode"], r["intra_op_threads"], r["variant"]) for r in section["results"]]
    assert modes == [("strict", 1, "default"), ("strict", 1, "default"), ("strict", 2, "default"),
                     ("fast", 2, "default"), ("fast", 2, "wipe_freed")]
    assert section["goals"]["strict_residue"] == {"value": 0, "limit": 0, "met": True}
    assert all(r["found_open"] > 0 for r in section["results"])
    assert section["results"][3]["found_after_close"] > 0 and section["results"][4]["found_after_close"] == 0


def test_while_open_only_the_buffer_and_the_workers_last_panels_hold_weights(world: dict[str, Any]) -> None:
    """The bound documented for an open strict session: besides the secure buffer, only the
    onnxruntime worker threads' stacks (at most ~96 KiB of GEMM panels each); the calling thread's
    stack is wiped after every run."""
    result = _scan(world, ("open",), hygiene="strict", runs=3, batch=32, threads=2)
    regions = result["open"]["hits_by_region"]
    buffer = max(regions, key=regions.get)  # the secure buffer holds every slice
    assert regions[buffer] == result["open"]["needles"]
    others = {r: n for r, n in regions.items() if r != buffer}
    assert not any(r.endswith(("stack", "heap")) for r in others), others  # main stack wiped, no heap copies
    assert len(others) <= 1 and sum(others.values()) <= 96 * 1024 // 64, others  # one worker (2 threads)
