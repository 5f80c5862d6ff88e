"""The native SecureBuffer: kernel-visible protections, wiping, lifetime, and process hardening."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edgeguard import _core
from edgeguard.secure_memory import SecureBuffer, harden_process, is_dumpable, memory_report
from runtime_support import make_keys, make_mlp, seal

PAGE = os.sysconf("SC_PAGESIZE")


def _address(buf: SecureBuffer) -> int:
    return np.frombuffer(buf, dtype=np.uint8).ctypes.data


def _smaps_field(address: int, field: str) -> list[str]:
    """The values of `field` (e.g. "VmFlags:") for the mapping containing `address`, from /proc/self/smaps."""
    with open("/proc/self/smaps") as f:
        inside = False
        for line in f:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                start, end = (int(x, 16) for x in head.split("-"))
                inside = start <= address < end
            elif inside and line.startswith(field):
                return line.split()[1:]
    raise AssertionError("mapping not found")


def _vm_flags(address: int) -> set[str]:
    return set(_smaps_field(address, "VmFlags:"))


def _run_child(code: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60, **kwargs  # type: ignore[call-overload]
    )


@pytest.mark.native_process
def test_mapping_is_page_aligned_locked_undumpable_and_wiped_on_fork() -> None:
    buf = SecureBuffer(3 * PAGE + 5)
    assert len(buf) == 3 * PAGE + 5
    assert _address(buf) % PAGE == 0
    flags = _vm_flags(_address(buf))
    assert "dd" in flags  # MADV_DONTDUMP
    assert "wf" in flags or "dc" in flags  # MADV_WIPEONFORK or MADV_DONTFORK
    assert buf.dontdump and buf.fork_protection in ("wipeonfork", "dontfork")
    if os.geteuid() == 0:  # root has CAP_IPC_LOCK here, so locking must have worked
        assert buf.locked and buf.lock_error is None and "lo" in flags
    report = memory_report(buf)
    assert report.size == len(buf) and report.locked == buf.locked


def test_close_wipes_in_place_and_outstanding_views_read_zeros() -> None:
    buf = SecureBuffer(10_000)
    view = memoryview(buf)
    view[:] = b"\xa5" * len(view)
    arr = np.frombuffer(buf, dtype=np.uint8)
    assert buf.exports == 2
    buf.close()
    assert buf.closed and not buf.locked
    assert not arr.any() and not any(view)  # still mapped, now zero: no fault, no plaintext
    with pytest.raises(BufferError, match="closed"):
        memoryview(buf)
    buf.close()  # idempotent
    view.release()
    del arr
    assert buf.exports == 0


def test_wiped_pages_are_released() -> None:
    buf = SecureBuffer(32 << 20)
    np.frombuffer(buf, dtype=np.uint8)[:] = 1
    addr = _address(buf)

    def rss_of_mapping() -> int:
        return int(_smaps_field(addr, "Rss:")[0]) * 1024

    assert rss_of_mapping() >= 32 << 20
    buf.close()
    assert rss_of_mapping() == 0


def test_readonly_refuses_writes_and_needs_no_outstanding_views() -> None:
    buf = SecureBuffer(PAGE)
    view = memoryview(buf)
    with pytest.raises(BufferError, match="outstanding"):
        buf.make_readonly()
    view.release()
    buf.make_readonly()
    assert buf.readonly
    assert not np.frombuffer(buf, dtype=np.uint8).flags.writeable
    with pytest.raises(TypeError, match="read-only"):
        memoryview(buf).cast("B")[0] = 1
    with pytest.raises(TypeError, match="read-write"):
        io.BytesIO(b"x").readinto(buf)  # asks for a writable export, which is refused
    buf.close()  # wiping a read-only buffer makes it writable first


@pytest.mark.parametrize(
    "where",
    ["len(buf)", "-1"],  # first byte after the data page (guard page) / last byte before the data
)
def test_guard_pages_fault(where: str) -> None:
    result = _run_child(f"""
        import ctypes, numpy as np
        from edgeguard import _core
        buf = _core.SecureBuffer(4096)
        addr = np.frombuffer(buf, dtype=np.uint8).ctypes.data
        print("mapped", flush=True)
        ctypes.c_char.from_address(addr + {where}).value
        print("survived", flush=True)
    """)
    assert "mapped" in result.stdout and "survived" not in result.stdout
    assert result.returncode == -signal.SIGSEGV


def test_write_to_readonly_buffer_faults() -> None:
    result = _run_child("""
        import ctypes, numpy as np
        from edgeguard import _core
        buf = _core.SecureBuffer(4096)
        addr = np.frombuffer(buf, dtype=np.uint8).ctypes.data
        buf.make_readonly()
        ctypes.memset(addr, 1, 1)
        print("survived", flush=True)
    """)
    assert "survived" not in result.stdout
    assert result.returncode == -signal.SIGSEGV


@pytest.mark.native_process
def test_forked_child_sees_zeros() -> None:
    result = _run_child("""
        import os, numpy as np
        from edgeguard import _core
        buf = _core.SecureBuffer(8192)
        np.frombuffer(buf, dtype=np.uint8)[:] = 7
        pid = os.fork()
        if pid == 0:
            if buf.fork_protection == "wipeonfork":
                os._exit(0 if not np.frombuffer(buf, dtype=np.uint8).any() else 1)
            os._exit(0)  # DONTFORK: the child has no mapping at all (touching it would fault)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), int(np.frombuffer(buf, dtype=np.uint8).min()))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "7"]  # the child read zeros; the parent keeps its data


@pytest.mark.skipif(shutil.which("setpriv") is None or os.geteuid() != 0, reason="needs root and util-linux setpriv")
def test_mlock_failure_is_reported_not_fatal_without_cap_ipc_lock() -> None:
    # Drop CAP_IPC_LOCK so RLIMIT_MEMLOCK (8 MiB here) applies, as for an unprivileged app.
    code = """
        import resource
        from edgeguard import _core
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (8 << 20, 8 << 20))
        big, small = _core.SecureBuffer(64 << 20), _core.SecureBuffer(1 << 20)
        print(big.locked, big.lock_error is not None, small.locked)
    """
    result = subprocess.run(
        ["setpriv", "--inh-caps=-ipc_lock", "--bounding-set=-ipc_lock", sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", "True"]


def test_harden_process_makes_the_process_non_dumpable() -> None:
    result = _run_child("""
        from edgeguard.secure_memory import harden_process, is_dumpable
        before = is_dumpable()
        harden_process()
        print(before, is_dumpable())
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False"]
    assert is_dumpable()  # the test process itself is untouched
    assert callable(harden_process)


def test_secure_buffer_cannot_be_pickled_or_misused() -> None:
    buf = SecureBuffer(16)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(buf)
    with pytest.raises(ValueError):
        SecureBuffer(-1)
    assert "SecureBuffer(size=16" in repr(buf)
    with pytest.raises(TypeError):

        class Sub(_core.SecureBuffer):  # type: ignore[misc, name-defined]
            pass

    empty = SecureBuffer(0)
    assert len(empty) == 0 and bytes(memoryview(empty)) == b""


_UNLOCKED_LOAD = """
import logging, resource, sys
import numpy as np
import edgeguard
logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
resource.setrlimit(resource.RLIMIT_MEMLOCK, (8 << 20, 8 << 20))
sealed, identity, trust = sys.argv[1:4]
with edgeguard.InferenceSession(sealed, identity=identity, trust=trust) as session:
    y = session.run(None, {"x": np.ones((1, 64), np.float32)})[0]
    print(session.memory.locked, session.memory.lock_error, session.memory.memlock_limit, y.shape)
"""


@pytest.mark.skipif(shutil.which("setpriv") is None or os.geteuid() != 0, reason="needs root and util-linux setpriv")
def test_unprivileged_load_of_a_model_above_the_mlock_limit_works_and_says_so(tmp_path: Path) -> None:
    keys = make_keys(tmp_path)
    sealed = seal(make_mlp(tmp_path / "m.onnx", widths=(64, 1024, 1024, 10)), tmp_path / "m.sealed", keys)  # ~4.5 MB
    sealed_big = seal(make_mlp(tmp_path / "b.onnx", widths=(64, 2048, 1024, 10)), tmp_path / "b.sealed", keys)  # ~9 MB
    results = []
    for path in (sealed, sealed_big):
        result = subprocess.run(
            ["setpriv", "--inh-caps=-ipc_lock", "--bounding-set=-ipc_lock", sys.executable, "-c", _UNLOCKED_LOAD,
             str(path), str(keys.identity_path), str(keys.trust_path)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        results.append(result)
    assert results[0].stdout.split() == ["True", "None", str(8 << 20), "(1,", "10)"]
    assert "could not lock" not in results[0].stderr
    assert results[1].stdout.split()[0] == "False" and "(1, 10)" in results[1].stdout
    assert "edgeguard.runtime: could not lock" in results[1].stderr and "RLIMIT_MEMLOCK 8388608 bytes" in results[1].stderr


def test_hardened_mode_needs_a_hardened_process_and_harden_process_reports_it() -> None:
    code = r"""
import json, sys
import edgeguard
from edgeguard.secure_memory import process_hardening
before = process_hardening()
try:
    edgeguard.InferenceSession(sys.argv[1], identity="x", trust="y", hygiene="hardened")
except ValueError as e:
    refused = "harden_process" in str(e)
state = edgeguard.harden_process(wipe_freed=True)
print(json.dumps([before.complete, before.non_dumpable, refused, state.non_dumpable, state.wipes_freed_memory,
                  state.memory_locked, state.complete]))
"""
    out = subprocess.run([sys.executable, "-c", code, "missing.sealed"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [False, False, True, True, True, False, False]
