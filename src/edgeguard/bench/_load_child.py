"""One load of one model in one mode, in a fresh interpreter (run by the load suite).

    python -m edgeguard.bench._load_child '{"mode": ..., "model": ..., "sealed": ..., "identity": ..., "trust": ...}'

Prints one JSON line: load_s, peak_rss_above_baseline_bytes and the first inference at batch 1
and 32 (first_b1_s, first_b32_s; absent for open_only or a batch the model's inputs fix otherwise).
Every module a mode needs is imported before the clock starts, so import costs never count.
"""

from __future__ import annotations

import json
import re
import resource
import sys
import time

import onnxruntime as ort

import edgeguard
from edgeguard.bench.workloads import sample_inputs


def _memory() -> tuple[int, int]:
    """(current RSS, peak RSS) in bytes. Without /proc (macOS) both are the peak so far."""
    try:
        with open("/proc/self/status") as f:
            status = f.read()
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS
        return peak, peak
    rss, hwm = (int(re.search(field + r":\s+(\d+) kB", status).group(1)) * 1024 for field in ("VmRSS", "VmHWM"))
    return rss, hwm


def _load(spec: dict) -> object:
    mode = spec["mode"]
    if mode == "plain_path":
        return ort.InferenceSession(spec["model"], providers=["CPUExecutionProvider"])
    if mode == "plain_bytes":
        with open(spec["model"], "rb") as f:
            return ort.InferenceSession(f.read(), providers=["CPUExecutionProvider"])
    if mode == "open_only":  # verify + decrypt into secure memory, no onnxruntime: the crypto floor
        return edgeguard.open_sealed(spec["sealed"], identity=spec["identity"], trust=spec["trust"])
    return edgeguard.InferenceSession(spec["sealed"], identity=spec["identity"], trust=spec["trust"], hygiene=mode,
                                      providers=["CPUExecutionProvider"])


def main() -> None:
    spec = json.loads(sys.argv[1])
    base, _ = _memory()
    t0 = time.perf_counter()
    session = _load(spec)
    out = {"load_s": time.perf_counter() - t0, "peak_rss_above_baseline_bytes": _memory()[1] - base}
    if spec["mode"] != "open_only":
        for batch in (1, 32):
            feeds = sample_inputs(session.get_inputs(), batch)
            if all(v.shape[:1] == (batch,) for v in feeds.values()):
                t0 = time.perf_counter()
                session.run(None, feeds)
                out[f"first_b{batch}_s"] = time.perf_counter() - t0
    print(json.dumps(out))


if __name__ == "__main__":
    main()
