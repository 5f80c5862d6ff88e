"""Memory safety at the native boundary: every buffer handed to C++ is owned, contiguous, of the
right length and within range; thread counts are capped; a closed SecureBuffer stays wiped; the
detector's signal names come from the C++ enum. Reproducers of crashes run in a child process so
that a regression fails one test instead of killing the suite."""

from __future__ import annotations

import argparse
import ctypes
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edgeguard import _core
from edgeguard.cli import parse_threads
from edgeguard.detect import events
from edgeguard.seal import MAX_THREADS, check_threads
from edgeguard.secure_memory import SecureBuffer
from edgeguard.unseal import decrypt_file
from helpers import Keys, raw_payload, seal_bytes

CIPHER = "aes-256-gcm"
KEY, PREFIX, DIGEST = bytes(range(32)), bytes(7), bytes(32)
PAGE = os.sysconf("SC_PAGESIZE")


def _run_child(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def _assert_child_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"child died with {result.returncode}:\n{result.stdout}\n{result.stderr[-3000:]}"
    assert result.stdout.strip().endswith("ok"), result.stdout


def _sealed(data: bytes, chunk: int = 64) -> tuple[bytes, bytes]:
    out = bytearray(_core.sealed_len(len(data), chunk))
    root = _core.seal_chunks(CIPHER, KEY, PREFIX, DIGEST, chunk, data, out)
    return bytes(out), root


# ---------------------------------------------------------------- detector bindings

DETECTOR = """
import numpy as np
from edgeguard import _core

def detector(classes, dim=16):
    k = 12
    return _core.Detector(
        dim=dim, input_shape=[dim], pool=[1], sketch_dim=k, classes=classes, mean=np.zeros(dim),
        components=np.eye(k, dim), sketch_center=np.zeros(k), sketch_scale=np.ones(k), lo=-10.0, hi=10.0,
        mahal_ref=1.0, resid_ref=1.0, novelty_slack=1.0, novelty_cap=4.0, repeat_dist=0.0, near_dist=0.1,
        chain_slack=0.05, chain_weight_cap=1.0, low_margin=0.1, margin_slack=0.2, invalid_decay=1 / 32, salt=1,
        thresholds=[float("inf")] * 7, fleet_thresholds=[float("inf")] * 7, memory=320, bloom_bits=8192,
        fleet_memory=2048, fleet_bloom_bits=65536, max_clients=8)
"""


@pytest.mark.parametrize(
    "scores",
    [
        "np.ones((rows, classes), dtype=np.float64)",  # converted to float32
        "np.ones((rows, 2 * classes), dtype=np.float32)[:, ::2]",  # a strided view, made contiguous
        "np.asfortranarray(np.ones((rows, classes), dtype=np.float32))",
    ],
)
def test_observe_batch_reads_converted_scores_only_while_they_exist(scores: str) -> None:
    """The converted copy of the class scores is large enough to be returned to the kernel when
    freed: reading it after the conversion's temporary is gone faults (it did, with 4096 x 4000)."""
    result = _run_child(DETECTOR + textwrap.dedent(f"""
        rows, classes = 4096, 4000
        d = detector(classes)
        x = np.zeros((rows, 16), dtype=np.float32)
        y = {scores}
        for _ in range(3):
            table = d.observe_batch("c", x, y)
        ref = detector(classes).observe_batch("c", x, np.ascontiguousarray(y, dtype=np.float32))
        assert np.array_equal(detector(classes).observe_batch("c", x, y), ref)
        one = d.observe("c", x[0], y[:1])
        print("ok")
    """))
    _assert_child_ok(result)


def test_observe_converts_inputs_and_scores_of_any_layout() -> None:
    ns: dict = {}
    exec(DETECTOR, ns)
    classes = 5
    x = np.linspace(-1, 1, 32, dtype=np.float64).reshape(2, 16)
    y = np.arange(2 * classes * 2, dtype=np.float32).reshape(2, 2 * classes)[:, ::2]
    fast = ns["detector"](classes).observe_batch("c", np.ascontiguousarray(x, np.float32), np.ascontiguousarray(y))
    slow = ns["detector"](classes).observe_batch("c", x, y)
    assert np.array_equal(fast, slow)
    single = ns["detector"](classes)
    assert single.observe("c", x[0][::-1].copy()[::-1], y[:1])[2] == 1
    with pytest.raises(TypeError, match="float32"):
        single.observe("c", x[0], object())
    with pytest.raises(ValueError, match="shape"):
        single.observe_batch("c", x, y[:, :2])


def test_signal_names_come_from_the_native_enum() -> None:
    assert events.SIGNALS is _core.SIGNALS
    assert _core.SIGNALS == ("invalid", "novelty", "chain", "low_margin", "coverage", "volume", "combined")
    ns: dict = {}
    exec(DETECTOR, ns)
    *_, stats = ns["detector"](0).observe("c", np.zeros(16, np.float32), None)
    assert len(stats) == len(events.SIGNALS)


# ------------------------------------------------------------------- AEAD buffers


# Both lie inside a larger array, so that code treating them as contiguous (as the core once did)
# writes into that array, failing the test instead of corrupting the heap.
def _reversed(n: int) -> np.ndarray:
    return np.zeros(3 * n, dtype=np.uint8)[n : 2 * n][::-1]


def _strided(n: int) -> memoryview:
    return memoryview(bytearray(2 * n))[::2]


@pytest.mark.parametrize("make", [_reversed, _strided], ids=["reversed", "strided"])
def test_non_contiguous_buffers_are_refused_everywhere(make) -> None:  # type: ignore[no-untyped-def]
    data = bytes(range(200))
    sealed, root = _sealed(data)
    with pytest.raises(TypeError, match="C-contiguous"):
        _core.open_chunks(CIPHER, KEY, PREFIX, DIGEST, 64, len(data), sealed, 0, make(len(data)), root)
    with pytest.raises(TypeError, match="C-contiguous"):
        _core.open_chunks(CIPHER, KEY, PREFIX, DIGEST, 64, len(data), make(len(sealed)), 0, bytearray(len(data)), root)
    with pytest.raises(TypeError, match="C-contiguous"):
        _core.seal_chunks(CIPHER, KEY, PREFIX, DIGEST, 64, make(len(data)), bytearray(len(sealed)))
    with pytest.raises(TypeError, match="C-contiguous"):
        _core.seal_chunks(CIPHER, KEY, PREFIX, DIGEST, 64, data, make(len(sealed)))
    with pytest.raises(TypeError, match="C-contiguous"):
        _core.digest_chunks(64, len(data), make(len(sealed)), 0)


def test_read_only_and_wrong_length_destinations_are_typed_errors() -> None:
    data = bytes(range(200))
    sealed, root = _sealed(data)
    for bad in (bytes(len(data)), memoryview(bytearray(len(data))).toreadonly()):
        with pytest.raises(TypeError, match="writable"):
            _core.open_chunks(CIPHER, KEY, PREFIX, DIGEST, 64, len(data), sealed, 0, bad, root)
    with pytest.raises(TypeError, match="writable"):
        _core.seal_chunks(CIPHER, KEY, PREFIX, DIGEST, 64, data, bytes(len(sealed)))
    for n in (len(data) - 1, len(data) + 1):
        with pytest.raises(ValueError, match="exactly"):
            _core.open_chunks(CIPHER, KEY, PREFIX, DIGEST, 64, len(data), sealed, 0, bytearray(n), root)
    with pytest.raises(TypeError, match="buffer"):
        _core.digest_chunks(64, len(data), "not a buffer", 0)
    for fd in (-1, 2**31, 2**70):
        with pytest.raises(ValueError, match="file descriptor"):
            _core.digest_chunks(64, len(data), fd, 0)
    # A 2-D C-contiguous array is fine: it is one run of bytes.
    out = np.zeros((10, 20), dtype=np.uint8)
    assert _core.open_chunks(CIPHER, KEY, PREFIX, DIGEST, 64, len(data), np.frombuffer(sealed, np.uint8), 0, out, root)
    assert out.tobytes() == data


def test_decrypt_file_refuses_a_reversed_allocation_without_writing(keys: Keys, tmp_path: Path) -> None:
    """allocate returned a reversed view: the core used to write past its start (heap corruption)."""
    path = seal_bytes(tmp_path / "f.sealed", raw_payload(b"x" * 50_000), signer=keys.ed25519, recipients=[keys.x25519_dev.recipient])
    backing: list[np.ndarray] = []

    def allocate(n: int) -> np.ndarray:
        backing.append(np.full(3 * n, 7, dtype=np.uint8))
        return backing[0][n : 2 * n][::-1]  # see _reversed

    with pytest.raises(TypeError, match="C-contiguous") as exc:
        decrypt_file(path, [keys.x25519_dev.identity], keys.trust, allocate=allocate)
    assert "Invoked with" not in str(exc.value)
    assert (backing[0] == 7).all()


def test_argument_errors_of_keyed_calls_never_list_the_arguments() -> None:
    key = b"SECRET-KEY-BYTES" * 2
    calls = [
        lambda: _core.seal_chunks(CIPHER, key, PREFIX, DIGEST, 64, b"", bytearray(16), "2"),
        lambda: _core.open_chunks(CIPHER, key, PREFIX, DIGEST, -1, 0, b"", 0, bytearray(), bytes(32)),
        lambda: _core.open_chunks(CIPHER, key, PREFIX, DIGEST, 64, 0, b"", 0, bytearray(), bytes(32), 0, None, "extra"),
        lambda: _core.aead_seal(CIPHER, key, bytes(12), b"", "text"),
        lambda: _core.aead_open(CIPHER, key, bytes(12), aad=None, sealed=b""),
    ]
    for call in calls:
        with pytest.raises(TypeError) as exc:
            call()
        text = f"{exc.value}\n{exc.value!r}\n{exc.value.__context__!r}\n{exc.value.__cause__!r}"
        assert "SECRET-KEY" not in text and "Invoked with" not in text
        assert "incompatible function arguments" in text  # the signature is still there to help


@pytest.mark.parametrize("func", ["open", "digest"])
def test_source_offset_near_two_to_the_64_is_refused(func: str) -> None:
    """offset + stored length wrapped around 2**64 and passed the length check (then SIGSEGV)."""
    result = _run_child(textwrap.dedent(f"""
        from edgeguard import _core
        src, n = bytes(4096), 100
        for offset in (2**64 - 16, 2**64 - 1, 2**63, 4097):
            try:
                if "{func}" == "open":
                    _core.open_chunks("aes-256-gcm", bytes(32), bytes(7), bytes(32), 64, n, src, offset, bytearray(n), bytes(32))
                else:
                    _core.digest_chunks(64, n, src, offset)
            except ValueError as e:
                assert "too short" in str(e), e
            else:
                raise AssertionError("accepted offset %d" % offset)
        for offset in (2**64 - 16, 2**63):  # a file descriptor: the range must fit in off_t
            try:
                _core.digest_chunks(64, n, 0, offset)
            except ValueError as e:
                assert "offset" in str(e), e
            else:
                raise AssertionError("accepted fd offset %d" % offset)
        print("ok")
    """))
    _assert_child_ok(result)


def test_payload_lengths_near_two_to_the_64_are_refused() -> None:
    for length in (2**64 - 1, 2**64 - 2**20 + 1, 2**64 - 16):
        with pytest.raises(ValueError):
            _core.digest_chunks(1 << 20, length, 0, 0)
        with pytest.raises(ValueError):
            _core.sealed_len(length, 1 << 20)


# ------------------------------------------------------------------------ threads


def test_thread_limit_is_the_native_one_everywhere() -> None:
    assert MAX_THREADS == _core.MAX_THREADS == 1024
    assert parse_threads(str(MAX_THREADS)) == MAX_THREADS
    with pytest.raises(argparse.ArgumentTypeError, match=str(MAX_THREADS)):
        parse_threads(str(MAX_THREADS + 1))
    assert check_threads(MAX_THREADS) == MAX_THREADS
    for bad in (MAX_THREADS + 1, 1 << 16):
        with pytest.raises(ValueError, match=str(MAX_THREADS)):
            check_threads(bad)
    data = bytes(100)
    sealed, root = _sealed(data)
    with pytest.raises(ValueError, match="threads"):
        _core.open_chunks(CIPHER, KEY, PREFIX, DIGEST, 64, len(data), sealed, 0, bytearray(len(data)), root, MAX_THREADS + 1)
    with pytest.raises(ValueError, match="threads"):
        _core.digest_chunks(64, len(data), sealed, 0, 1 << 16)
    with pytest.raises(ValueError, match="threads"):
        _core.seal_chunks(CIPHER, KEY, PREFIX, DIGEST, 64, data, bytearray(len(sealed)), 1 << 16)


def test_failed_thread_start_degrades_to_fewer_threads_instead_of_aborting() -> None:
    """Under an address-space limit only a few thread stacks fit: std::thread throws part way
    through starting the pool (this used to end in `terminate called`)."""
    result = _run_child(textwrap.dedent(f"""
        import resource
        from edgeguard import _core
        n, chunk = 1 << 20, 1024
        data = bytes(range(256)) * (n // 256)
        out = bytearray(_core.sealed_len(n, chunk))
        back, copy = bytearray(n), bytearray(len(out))
        with open("/proc/self/status") as f:
            vm = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize:"))
        resource.setrlimit(resource.RLIMIT_AS, (vm + (64 << 20), resource.RLIM_INFINITY))
        args = ({CIPHER!r}, {KEY!r}, {PREFIX!r}, {DIGEST!r}, chunk)
        root = _core.seal_chunks(*args, data, out, {MAX_THREADS})
        assert _core.open_chunks(*args, n, out, 0, back, root, {MAX_THREADS})
        assert back == data
        assert _core.digest_chunks(chunk, n, out, 0, {MAX_THREADS}) == root
        print("ok")
    """))
    assert "terminate called" not in result.stderr
    _assert_child_ok(result)


# ------------------------------------------------------------------- SecureBuffer


def _address(buf: SecureBuffer) -> int:
    arr = np.frombuffer(buf, dtype=np.uint8)
    address = arr.ctypes.data
    del arr
    return address


def _read(address: int, n: int) -> bytes:
    return ctypes.string_at(address, n)


def test_write_through_a_view_after_close_is_wiped_when_the_view_goes() -> None:
    n = 8 * PAGE
    buf = SecureBuffer(n)
    address = _address(buf)
    view = memoryview(buf)
    view[:] = b"\x11" * n
    buf.close()
    view[PAGE : 2 * PAGE] = b"\xa5" * PAGE  # a late writer refills a released page
    view.release()
    assert buf.exports == 0
    assert _read(address, n) == bytes(n)
    with pytest.raises(BufferError, match="closed"):
        memoryview(buf)


def test_native_decrypt_racing_close_leaves_nothing_behind() -> None:
    """A progress callback closes the destination while the core is still decrypting into it."""
    data = bytes(range(256)) * 64
    sealed, root = _sealed(data, chunk=256)
    buf = SecureBuffer(len(data))
    address = _address(buf)
    calls = []

    def close_early(done: int, total: int) -> None:
        calls.append(done)
        buf.close()

    _core.open_chunks(CIPHER, KEY, PREFIX, DIGEST, 256, len(data), sealed, 0, buf, root, 1, close_early)
    assert calls and buf.closed and buf.exports == 0
    assert _read(address, len(data)) == bytes(len(data))
    with pytest.raises(TypeError, match="writable"):  # closed: no native path writes into it again
        _core.open_chunks(CIPHER, KEY, PREFIX, DIGEST, 256, len(data), sealed, 0, buf, root)


def test_a_second_close_and_deallocation_wipe_late_writes_too() -> None:
    buf = SecureBuffer(2 * PAGE)
    address = _address(buf)
    arr = np.frombuffer(buf, dtype=np.uint8)
    buf.close()
    arr[:10] = 9
    buf.close()
    assert _read(address, 2 * PAGE) == bytes(2 * PAGE)
    del arr
