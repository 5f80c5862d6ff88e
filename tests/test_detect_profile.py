import math
import signal
import stat
import struct
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _detect_world import World, build_profile
from edgeguard import Profile
from edgeguard.detect.profile import MAGIC
from edgeguard.errors import EdgeguardError, ProfileError


@pytest.fixture(scope="module")
def world():
    return World()


@pytest.fixture(scope="module")
def profile(world):
    return build_profile(world)


def test_round_trip_is_exact_and_canonical(profile):
    data = profile.to_bytes()
    again = Profile.from_bytes(data)
    assert again.to_bytes() == data
    assert again.thresholds == profile.thresholds
    np.testing.assert_array_equal(again.components, profile.components)
    assert data.startswith(MAGIC)


def test_save_and_load(profile, tmp_path):
    path = tmp_path / "p.egprofile"
    profile.save(path)
    assert Profile.load(path).to_bytes() == profile.to_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.egprofile"]  # no temporary file left


def test_save_never_silently_replaces_a_file(profile, tmp_path):
    path = tmp_path / "p.egprofile"
    path.write_bytes(b"someone else's file")
    with pytest.raises(FileExistsError):
        profile.save(path)
    assert path.read_bytes() == b"someone else's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.egprofile"]


def test_save_with_overwrite_replaces_atomically(profile, tmp_path):
    path = tmp_path / "p.egprofile"
    path.write_bytes(b"old")
    held = path.open("rb")  # a reader of the old file keeps the old contents: a rename, not a rewrite
    profile.save(path, overwrite=True)
    assert held.read() == b"old"
    held.close()
    assert path.read_bytes() == profile.to_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.egprofile"]


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE")
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_failed_save_leaves_no_partial_file(profile, tmp_path, overwrite):
    src, dst = tmp_path / "src.egprofile", tmp_path / "out" / "p.egprofile"
    profile.save(src)
    dst.parent.mkdir()
    if overwrite:
        dst.write_bytes(b"old")
    # A file-size limit below the profile's size makes the write itself fail half-way (EFBIG), as a
    # full disk would.
    code = ("import resource, signal, sys; from edgeguard import Profile; "
            "p = Profile.load(sys.argv[1]); signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (1024, resource.RLIM_INFINITY)); "
            "p.save(sys.argv[2], overwrite=sys.argv[3] == 'True')")
    out = subprocess.run([sys.executable, "-c", code, str(src), str(dst), str(overwrite)],
                         capture_output=True, text=True)
    assert out.returncode != 0 and "File too large" in out.stderr, out.stderr
    assert len(profile.to_bytes()) > 1024
    assert sorted(p.name for p in dst.parent.iterdir()) == (["p.egprofile"] if overwrite else [])
    if overwrite:
        assert dst.read_bytes() == b"old"


def _header_span(data):
    (n,) = struct.unpack_from("<I", data, len(MAGIC) + 2)
    return len(MAGIC) + 6, len(MAGIC) + 6 + n


def _rewrite_header(data, fn):
    start, end = _header_span(data)
    header = fn(data[start:end].decode())
    return data[: len(MAGIC) + 2] + struct.pack("<I", len(header)) + header.encode() + data[end:]


@pytest.mark.parametrize("mutate, message", [
    (lambda d: b"NOTAPROF" + d[8:], "not an edgeguard"),
    (lambda d: d[:8] + struct.pack("<H", 3) + d[10:], "version"),
    (lambda d: d[:8] + struct.pack("<H", 1) + d[10:], "version 1 .*rebuild"),
    (lambda d: d[:-1], "wrong length"),
    (lambda d: d + b"\0", "wrong length"),
    (lambda d: d[:12], "not an edgeguard|malformed"),
    (lambda d: _rewrite_header(d, lambda h: h.replace(",", ", ", 1)), "canonical"),
    (lambda d: _rewrite_header(d, lambda h: h.replace('"memory":320', '"memory":"320"')), "wrong type|integer"),
    (lambda d: _rewrite_header(d, lambda h: h.replace('"dim":32,', "")), "missing or unknown"),
    (lambda d: _rewrite_header(d, lambda h: h.replace('"memory":320', '"memory":1')), "inconsistent"),
    (lambda d: _rewrite_header(d, lambda h: h[:-1]), "malformed"),
])
def test_from_bytes_rejects_malformed(profile, mutate, message):
    with pytest.raises(ProfileError, match=message):
        Profile.from_bytes(mutate(profile.to_bytes()))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_corruption_is_rejected_or_harmless(profile, data):
    blob = bytearray(profile.to_bytes())
    i = data.draw(st.integers(0, len(blob) - 1))
    blob[i] ^= data.draw(st.integers(1, 255))
    try:
        parsed = Profile.from_bytes(bytes(blob))
    except ProfileError:
        return
    assert parsed.to_bytes() == bytes(blob)  # accepted only as another valid, canonical profile


@pytest.mark.parametrize("kwargs, message", [
    (dict(benign=np.zeros((100, 32), np.complex64)), "real numbers"),
    (dict(benign=np.zeros((10, 32), np.float32)), "at least 64"),
    (dict(benign=np.full((100, 32), np.nan, np.float32)), "finite"),
    (dict(target_fpr=0.0), "target_fpr"),
    (dict(sketch_dim=4), "sketch_dim"),
    (dict(domain=(1.0, 0.0)), "domain"),
    (dict(volume_budget=0), "volume_budget"),
    (dict(predict=lambda x: np.zeros(len(x))), "predict"),
])
def test_build_rejects_bad_arguments(world, kwargs, message):
    args = dict(benign=world.benign(100, np.random.default_rng(0)), streams=8, stream_length=64)
    args.update(kwargs)
    with pytest.raises(ProfileError, match=message):
        Profile.build(**args)


def test_stricter_target_fpr_never_lowers_a_threshold(world):
    loose = build_profile(world, target_fpr=0.5)
    strict = build_profile(world, target_fpr=0.001)
    assert all(s >= lo for s, lo in zip(strict.thresholds, loose.thresholds, strict=True))


def test_signals_without_evidence_stay_disarmed(world):
    p = build_profile(world, predict=None)
    named = dict(zip(("invalid", "novelty", "chain", "low_margin", "coverage", "volume", "combined"), p.thresholds, strict=True))
    assert p.classes == 0 and math.isinf(named["low_margin"])
    assert math.isinf(named["volume"])  # no budget given
    assert math.isinf(named["coverage"])  # 200 held-out inputs cannot represent 300-query clients
    assert build_profile(world, volume_budget=500).thresholds[5] == 500


def test_profile_error_is_an_edgeguard_error():
    assert issubclass(ProfileError, EdgeguardError)


def test_runtime_package_imports_no_harness_dependencies():
    code = ("import sys, edgeguard, edgeguard.detect, edgeguard.cli.profile; "
            "bad = [m for m in ('sklearn', 'onnx', 'matplotlib', 'scipy') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_profile_arrays_are_read_only(profile):
    with pytest.raises(ValueError):
        profile.mean[0] = 1.0
