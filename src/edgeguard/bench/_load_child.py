"""One load of one model in one mode, in a fresh interpreter (run by the load suite).

    python -m edgeguard.bench._load_child '{"mode": ..., "model": ..., "sealed": ..., "identity": ..., "trust": ...}'

Prints one JSON line: load_s, peak_rss_above_baseline_bytes and the first inference at batch 1
and 32 (first_b1_s, first_b32_s; absent for open_only or a batch the model's inputs fix otherwise).
Every module any mode needs is imported before the clock starts (numpy, onnxruntime, and for
every mode alike edgeguard.runtime with the key and recipient modules a load touches), so import
costs never count; ``import_s`` reports what importing edgeguard's part took. "hardened" calls
``edgeguard.harden_process(lock_memory=True, wipe_freed=True)`` before the clock too (a process
setting, not a load cost). The spec's optional "shapes" gives input shapes (see
``workloads.sample_inputs``).
"""

from __future__ import annotations

import json
import re
import resource
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import onnxruntime as ort

from edgeguard.bench.workloads import sample_inputs

_t_import = time.perf_counter()
import edgeguard  # noqa: E402 (timed: what a device app pays once per process)
import edgeguard.recipients.p256  # noqa: E402
import edgeguard.recipients.scrypt  # noqa: E402
import edgeguard.recipients.x25519  # noqa: E402
from edgeguard.runtime import InferenceSession, open_sealed  # noqa: E402

_IMPORT_S = time.perf_counter() - _t_import

if TYPE_CHECKING:
    from edgeguard.runtime import SealedTensors


@runtime_checkable
class _Session(Protocol):
    """What the child runs: an onnxruntime or edgeguard InferenceSession."""

    def get_inputs(self) -> list[Any]: ...

    def run(self, output_names: Sequence[str] | None, input_feed: Mapping[str, Any]) -> list[Any]: ...


def _memory() -> tuple[int, int]:
    """(current RSS, peak RSS) in bytes. Without /proc (macOS) both are the peak so far."""
    try:
        with open("/proc/self/status") as f:
            status = f.read()
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS
        return peak, peak
    rss, hwm = (_status_kb(status, field) * 1024 for field in ("VmRSS", "VmHWM"))
    return rss, hwm


def _status_kb(status: str, field: str) -> int:
    match = re.search(field + r":\s+(\d+) kB", status)
    if match is None:
        raise RuntimeError(f"no {field} in /proc/self/status")
    return int(match.group(1))


def _load(spec: dict[str, Any]) -> _Session | SealedTensors:
    mode = spec["mode"]
    plain: _Session  # onnxruntime is untyped
    if mode == "plain_path":
        plain = ort.InferenceSession(spec["model"], providers=["CPUExecutionProvider"])
        return plain
    if mode == "plain_bytes":
        with open(spec["model"], "rb") as f:
            plain = ort.InferenceSession(f.read(), providers=["CPUExecutionProvider"])
        return plain
    if mode == "open_only":  # verify + decrypt into secure memory, no onnxruntime: the crypto floor
        return open_sealed(spec["sealed"], identity=spec["identity"], trust=spec["trust"])
    return InferenceSession(spec["sealed"], identity=spec["identity"], trust=spec["trust"], hygiene=mode,
                                      providers=["CPUExecutionProvider"])


def main() -> None:
    spec = json.loads(sys.argv[1])
    if spec["mode"] == "hardened":
        edgeguard.harden_process(lock_memory=True, wipe_freed=True)
    base, _ = _memory()
    t0 = time.perf_counter()
    session = _load(spec)
    out: dict[str, float] = {"load_s": time.perf_counter() - t0, "peak_rss_above_baseline_bytes": _memory()[1] - base,
                             "import_s": _IMPORT_S}
    if isinstance(session, _Session):  # every mode but open_only, whose SealedTensors has nothing to run
        for batch in (1, 32):
            feeds = sample_inputs(session.get_inputs(), batch, shapes=spec.get("shapes"))
            if all(v.shape[:1] == (batch,) for v in feeds.values()):
                t0 = time.perf_counter()
                session.run(None, feeds)
                out[f"first_b{batch}_s"] = time.perf_counter() - t0
    print(json.dumps(out))


if __name__ == "__main__":
    main()
