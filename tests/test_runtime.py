"""edgeguard.InferenceSession and open_sealed against real onnxruntime and real sealed files."""

from __future__ import annotations

import gc
import json
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

import edgeguard
from edgeguard.cli.demo import run_runtime_demo
from edgeguard.errors import FormatError, IntegrityError, KeyFileError, NotARecipientError, UntrustedSignerError
from edgeguard.keys import SigningKey, TrustStore
from edgeguard.recipients.scrypt import PassphraseRecipient
from edgeguard.seal import seal_model
from runtime_support import Keys, make_keys, make_mlp, seal

X = np.random.default_rng(7).standard_normal((5, 32)).astype(np.float32)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("runtime")
    model = make_mlp(tmp / "mlp.onnx")
    keys = make_keys(tmp)
    return {"tmp": tmp, "model": model, "keys": keys, "sealed": seal(model, tmp / "mlp.sealed", keys)}


def _plain(model: Path, strict_like: bool, x: np.ndarray = X) -> np.ndarray:
    options = ort.SessionOptions()
    if strict_like:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.add_session_config_entry("session.disable_prepacking", "1")
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("hygiene", ["strict", "fast"])
def test_outputs_equal_plain_onnxruntime(env: dict[str, Any], hygiene: str) -> None:
    keys: Keys = env["keys"]
    with edgeguard.InferenceSession(env["sealed"], identity=keys.identity_path, trust=keys.trust_path, hygiene=hygiene) as sess:
        out = sess.run(None, {"x": X})[0]
        assert [i.name for i in sess.get_inputs()] == ["x"] and [o.name for o in sess.get_outputs()] == ["y"]
        assert sess.get_modelmeta().producer_name == "edgeguard-tests"
        assert sess.get_providers() == ["CPUExecutionProvider"]
        assert sess.metadata.name == "mlp" and sess.metadata.version == 1
    # Same kernels as plain onnxruntime configured the same way: bit-identical outputs.
    np.testing.assert_array_equal(out, _plain(env["model"], strict_like=hygiene == "strict"))
    np.testing.assert_allclose(out, _plain(env["model"], strict_like=False), rtol=1e-5, atol=1e-5)


def test_strict_reads_weights_in_place_and_fast_copies(env: dict[str, Any]) -> None:
    keys: Keys = env["keys"]
    strict = edgeguard.InferenceSession(env["sealed"], identity=keys.identity_path, trust=keys.trust)
    fast = edgeguard.InferenceSession(env["sealed"], identity=keys.identity_path, trust=keys.trust, hygiene="fast")
    before = strict.run(None, {"x": X})[0]
    raw = strict._ort  # hold onnxruntime's session past close() to observe what it reads
    strict.close()  # wipes the secure buffer in place
    after = raw.run(None, {"x": X})[0]
    assert not np.allclose(before, after)  # onnxruntime was reading the (now zero) secure buffer
    # With every weight matrix zero, only the last bias reaches the output.
    np.testing.assert_array_equal(after, np.broadcast_to(after[0], after.shape))
    # Fast mode wiped and released its buffer right after session creation, yet still works.
    np.testing.assert_array_equal(fast.run(None, {"x": X})[0], _plain(env["model"], strict_like=False))
    with pytest.raises(ValueError, match="closed"):
        strict.run(None, {"x": X})
    fast.close()
    fast.close()


_RSS_CHILD = r"""
import re, sys
import edgeguard, edgeguard.runtime  # the baseline includes onnxruntime's own import, as in an app
def peak():  # VmHWM is this address space's peak RSS (ru_maxrss would carry the parent's over exec)
    return int(re.search(r"VmHWM:\s+(\d+) kB", open("/proc/self/status").read()).group(1)) * 1024
sealed, identity, trust, hygiene = sys.argv[1:5]
base = peak()
sess = edgeguard.InferenceSession(sealed, identity=identity, trust=trust, hygiene=hygiene)
print(peak() - base)
"""


@pytest.mark.native_process
def test_strict_peak_rss_is_about_one_model_size(tmp_path: Path) -> None:
    model = make_mlp(tmp_path / "big.onnx", widths=(64, 2048, 2048, 2048, 10), seed=1)  # ~34 MB of weights
    keys = make_keys(tmp_path)
    sealed = seal(model, tmp_path / "big.sealed", keys)
    size = model.stat().st_size
    growth = {}
    for hygiene in ("strict", "fast"):
        result = subprocess.run(
            [sys.executable, "-c", _RSS_CHILD, str(sealed), str(keys.identity_path), str(keys.trust_path), hygiene],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        growth[hygiene] = int(result.stdout)
    # One model size, plus a fixed ~13 MB that any onnxruntime session costs here (thread pool, arena).
    assert growth["strict"] <= 1.1 * size + (16 << 20), growth
    # The measurement can tell a copy apart: fast mode holds the decrypted buffer and onnxruntime's copy at once.
    assert growth["fast"] >= 1.6 * size, growth


def test_session_keeps_the_weights_mapped_while_onnxruntime_lives(env: dict[str, Any]) -> None:
    keys: Keys = env["keys"]
    sess = edgeguard.InferenceSession(env["sealed"], identity=keys.identity_path, trust=keys.trust)
    raw = sess._ort
    del sess  # the wrapper is gone, but onnxruntime still points into the buffer
    gc.collect()
    np.testing.assert_array_equal(raw.run(None, {"x": X})[0], _plain(env["model"], strict_like=True))


def test_detector_profile_and_metadata_are_exposed(env: dict[str, Any], tmp_path: Path) -> None:
    keys: Keys = env["keys"]
    sealed = seal(env["model"], tmp_path / "p.sealed", keys, detector_profile=b"profile-bytes", labels={"task": "demo"}, version=3)
    with edgeguard.InferenceSession(sealed, identity=keys.identity_path, trust=keys.trust, hygiene="fast") as sess:
        assert sess.detector_profile == b"profile-bytes"
        assert sess.metadata.version == 3 and dict(sess.metadata.labels) == {"task": "demo"}
    with edgeguard.InferenceSession(env["sealed"], identity=keys.identity_path, trust=keys.trust) as sess:
        assert sess.detector_profile is None


class RecordingGuard:
    """A minimal detector: records what it sees, scales outputs, blocks a named client."""

    class Blocked(Exception):
        pass

    def __init__(self) -> None:
        self.seen: list[tuple[Any, tuple[str, ...], int]] = []

    def observe(self, client_id: Any, inputs: Any, outputs: Any) -> str:
        self.seen.append((client_id, tuple(inputs), len(outputs)))
        return "block" if client_id == "attacker" else "allow"

    def apply(self, decision: str, outputs: list[np.ndarray]) -> list[np.ndarray]:
        if decision == "block":
            raise RecordingGuard.Blocked("query pattern looks like extraction")
        return [np.round(o, 2) for o in outputs]


def test_guard_observes_every_run_and_its_decision_is_applied(env: dict[str, Any]) -> None:
    keys: Keys = env["keys"]
    guard = RecordingGuard()
    with edgeguard.InferenceSession(env["sealed"], identity=keys.identity_path, trust=keys.trust, guard=guard) as sess:
        out = sess.run(["y"], {"x": X}, client_id="app")[0]
        np.testing.assert_array_equal(out, np.round(_plain(env["model"], strict_like=True), 2))
        with pytest.raises(RecordingGuard.Blocked):
            sess.run(None, {"x": X}, client_id="attacker")
    assert guard.seen == [("app", ("x",), 1), ("attacker", ("x",), 1)]


def test_typed_errors_and_no_plaintext_on_failure(env: dict[str, Any], tmp_path: Path) -> None:
    keys: Keys = env["keys"]
    stranger = make_keys(tmp_path)
    with pytest.raises(UntrustedSignerError):
        edgeguard.InferenceSession(env["sealed"], identity=keys.identity_path, trust=stranger.trust)
    with pytest.raises(NotARecipientError):
        edgeguard.InferenceSession(env["sealed"], identity=stranger.identity_path, trust=keys.trust)
    original = env["sealed"].read_bytes()
    (header_len,) = struct.unpack(">I", original[12:16])
    for offset in (16 + header_len + 32 + 5, len(original) - 100):  # a signature byte, a chunk byte
        tampered = tmp_path / f"tampered-{offset}.sealed"
        data = bytearray(original)
        data[offset] ^= 1
        tampered.write_bytes(bytes(data))
        with pytest.raises(IntegrityError):
            edgeguard.InferenceSession(tampered, identity=keys.identity_path, trust=keys.trust)
    with pytest.raises(ValueError, match="hygiene"):
        edgeguard.InferenceSession(env["sealed"], identity=keys.identity_path, trust=keys.trust, hygiene="lax")
    with pytest.raises(ValueError, match="identity"):
        edgeguard.InferenceSession(env["sealed"], trust=keys.trust)
    with pytest.raises(ValueError, match="trust store is empty"):
        edgeguard.InferenceSession(env["sealed"], identity=keys.identity_path, trust=TrustStore())
    with pytest.raises(TypeError, match="identity type"):
        edgeguard.InferenceSession(env["sealed"], identity=42, trust=keys.trust)


def test_options_that_write_to_disk_or_are_reused_are_refused(env: dict[str, Any], tmp_path: Path) -> None:
    keys: Keys = env["keys"]
    kwargs = {"identity": keys.identity_path, "trust": keys.trust}
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "leak.onnx")
    with pytest.raises(ValueError, match="optimized_model_filepath"):
        edgeguard.InferenceSession(env["sealed"], options, **kwargs)
    options = ort.SessionOptions()
    options.enable_profiling = True
    with pytest.raises(ValueError, match="profiling"):
        edgeguard.InferenceSession(env["sealed"], options, **kwargs)
    options = ort.SessionOptions()
    options.add_session_config_entry("ep.context_enable", "1")
    with pytest.raises(ValueError, match=r"ep\.context_enable"):
        edgeguard.InferenceSession(env["sealed"], options, **kwargs)
    options = ort.SessionOptions()
    edgeguard.InferenceSession(env["sealed"], options, **kwargs).close()
    with pytest.raises(ValueError, match="fresh one"):
        edgeguard.InferenceSession(env["sealed"], options, **kwargs)
    with pytest.raises(ValueError, match="trt_engine_cache_enable"):
        edgeguard.InferenceSession(
            env["sealed"], providers=[("TensorrtExecutionProvider", {"trt_engine_cache_enable": "True"})], **kwargs
        )
    assert list(tmp_path.iterdir()) == []


def test_identity_forms_pem_bytes_permissions_passphrase(env: dict[str, Any], tmp_path: Path) -> None:
    keys: Keys = env["keys"]
    pem = keys.identity_path.read_bytes()
    with edgeguard.InferenceSession(env["sealed"], identity=pem, trust=[keys.trust_path]) as sess:
        assert sess.run(None, {"x": X})[0].shape == (5, 10)
    loose = tmp_path / "loose.pem"
    loose.write_bytes(pem)
    loose.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        edgeguard.InferenceSession(env["sealed"], identity=loose, trust=keys.trust)
    by_pass = tmp_path / "pass.sealed"
    seal_model(env["model"], by_pass, signer=keys.signer, recipients=[PassphraseRecipient("correct horse", log_n=10)])
    with edgeguard.InferenceSession(by_pass, passphrase="correct horse", trust=keys.trust) as sess:
        np.testing.assert_array_equal(sess.run(None, {"x": X})[0], _plain(env["model"], strict_like=True))
    with pytest.raises(NotARecipientError):
        edgeguard.InferenceSession(by_pass, identity=edgeguard.PassphraseIdentity("wrong"), trust=keys.trust)


def test_sessions_and_tensors_cannot_be_pickled_and_hide_secrets(env: dict[str, Any]) -> None:
    keys: Keys = env["keys"]
    with edgeguard.InferenceSession(env["sealed"], identity=keys.identity_path, trust=keys.trust) as sess:
        with pytest.raises(TypeError, match="pickled"):
            pickle.dumps(sess)
        assert repr(sess) == "edgeguard.InferenceSession('mlp' v1, strict)"
        assert sess.memory.dontdump and sess.memory.size > 0
        assert sess.memory.coverage is sess.coverage and sess.coverage.fraction == 1.0  # every weight read in place
    assert "closed" in repr(sess)
    with edgeguard.open_sealed(env["sealed"], identity=keys.identity_path, trust=keys.trust) as tensors:
        with pytest.raises(TypeError, match="pickled"):
            pickle.dumps(tensors)


def _write_safetensors(path: Path, arrays: dict[str, np.ndarray]) -> None:
    header, offset, blobs = {}, 0, []
    for name, arr in arrays.items():
        raw = arr.tobytes()
        header[name] = {"dtype": {"float32": "F32", "int64": "I64"}[arr.dtype.name], "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))


def test_open_sealed_gives_read_only_views_that_zero_on_close(env: dict[str, Any], tmp_path: Path) -> None:
    keys: Keys = env["keys"]
    arrays = {"embed": np.arange(24, dtype=np.float32).reshape(4, 6), "ids": np.arange(5, dtype=np.int64)}
    _write_safetensors(tmp_path / "w.safetensors", arrays)
    sealed = seal(tmp_path / "w.safetensors", tmp_path / "w.sealed", keys)
    with edgeguard.open_sealed(sealed, identity=keys.identity_path, trust=keys.trust) as opened:
        assert opened.kind == "safetensors" and set(opened.keys()) == set(arrays)
        for name, arr in arrays.items():
            np.testing.assert_array_equal(opened[name], arr)
            assert not opened[name].flags.writeable
            with pytest.raises(ValueError):
                opened[name][...] = 0
        kept = opened["embed"]
    assert opened.closed and not kept.any()  # wiped, still mapped: reading it is safe
    raw = tmp_path / "blob.bin"
    raw.write_bytes(os.urandom(5000))
    sealed_raw = seal(raw, tmp_path / "blob.sealed", keys)
    with edgeguard.open_sealed(sealed_raw, identity=keys.identity_path, trust=keys.trust) as opened:
        assert opened["data"].tobytes() == raw.read_bytes()
    with pytest.raises(FormatError, match="open_sealed"):
        edgeguard.InferenceSession(sealed_raw, identity=keys.identity_path, trust=keys.trust)
    with edgeguard.open_sealed(env["sealed"], identity=keys.identity_path, trust=keys.trust) as opened:
        assert opened["w0"].shape == (32, 256)


def test_runtime_import_does_not_import_onnx() -> None:
    code = "import sys, edgeguard, edgeguard.runtime; print('onnx' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_runtime_demo_prints_predictions_next_to_onnxruntime(env: dict[str, Any]) -> None:
    keys: Keys = env["keys"]
    lines: list[str] = []
    diff = run_runtime_demo(env["sealed"], keys.identity_path, keys.trust_path, env["model"], lines.append)
    assert diff < 1e-4
    assert len([line for line in lines if "sample" in line]) == 4
    assert all("edgeguard class" in line and "onnxruntime class" in line for line in lines if "sample" in line)
    lines.clear()
    run_runtime_demo(env["sealed"], keys.identity_path, keys.trust_path, env["model"], lines.append, inputs={"x": X})
    assert len([line for line in lines if "sample" in line]) == len(X)


def test_optimize_onnx_output_seals_and_loads_strict(env: dict[str, Any], tmp_path: Path) -> None:
    from edgeguard.optimize import optimize_onnx

    keys: Keys = env["keys"]
    optimized = optimize_onnx(env["model"], tmp_path / "opt.onnx")
    with pytest.raises(FileExistsError):
        optimize_onnx(env["model"], optimized)
    sealed = seal(optimized, tmp_path / "opt.sealed", keys)
    with edgeguard.InferenceSession(sealed, identity=keys.identity_path, trust=keys.trust) as sess:
        np.testing.assert_allclose(sess.run(None, {"x": X})[0], _plain(env["model"], strict_like=False), rtol=1e-5, atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["opt.onnx", "opt.sealed"]


def test_signing_key_type_does_not_matter(env: dict[str, Any], tmp_path: Path) -> None:
    keys: Keys = env["keys"]
    p256_signer = SigningKey.generate("p256")
    sealed = tmp_path / "p256.sealed"
    from edgeguard.recipients import load_recipient

    seal_model(env["model"], sealed, signer=p256_signer, recipients=[load_recipient(keys.recipient_path)])
    with edgeguard.InferenceSession(sealed, identity=keys.identity_path, trust=p256_signer.verifying_key) as sess:
        assert sess.run(None, {"x": X})[0].shape == (5, 10)


def test_real_detector_guard_wraps_runs(env: dict[str, Any]) -> None:
    keys: Keys = env["keys"]
    benign = np.random.default_rng(3).standard_normal((128, 32)).astype(np.float32)
    profile = edgeguard.Profile.build(benign, streams=8, stream_length=100, seed=1)
    guard = edgeguard.Guard(profile, seed=1)
    with edgeguard.InferenceSession(env["sealed"], identity=keys.identity_path, trust=keys.trust, guard=guard) as sess:
        out = sess.run(None, {"x": benign[:3]}, client_id="camera-1")
    np.testing.assert_array_equal(out[0], _plain(env["model"], strict_like=True, x=benign[:3]))
    assert guard.tracked("camera-1") and not guard.tracked("camera-2")



_HARDENED_CHILD = r"""
import sys
import numpy as np, onnxruntime as ort
import edgeguard
edgeguard.harden_process(lock_memory=True, wipe_freed=True)
sealed, identity, trust, model = sys.argv[1:5]
x = np.random.default_rng(7).standard_normal((5, 32)).astype(np.float32)
with edgeguard.InferenceSession(sealed, identity=identity, trust=trust, hygiene="hardened") as s:
    out = s.run(None, {"x": x})[0]
plain = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
np.testing.assert_allclose(out, plain, rtol=1e-5, atol=1e-5)
print("ok")
"""


@pytest.mark.native_process
@pytest.mark.skipif(os.geteuid() != 0, reason="harden_process(lock_memory=True) needs root or CAP_IPC_LOCK here")
def test_hardened_mode_matches_plain_onnxruntime(env: dict[str, Any]) -> None:
    keys: Keys = env["keys"]
    result = subprocess.run([sys.executable, "-c", _HARDENED_CHILD, str(env["sealed"]), str(keys.identity_path),
                             str(keys.trust_path), str(env["model"])], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
