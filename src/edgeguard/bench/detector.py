"""The detector suite: what edgeguard's extraction detector costs per query.

A bundled workload: a small synthetic classifier (``dim`` inputs, ``classes`` softmax outputs)
and benign inputs drawn from a Gaussian mixture around one centre per class. A profile is built
from benign inputs (its answers from plain onnxruntime), then:

* ``observe``: per-request latency of ``Guard.observe(client_id, inputs, outputs)`` through the
  Python API, requests of 1 and 32 rows from fresh benign inputs, clients in rotation; after a
  warm-up, percentiles over every request. Goal: p99 <= 50 us at one row.
* ``state_bytes_per_client``: the fixed detector state each tracked client holds, before and after
  the workload (goal: unchanged), and ``fleet_state_bytes``, the one fleet view's.
* ``guarded_run``: ``InferenceSession(sealed, hygiene="fast", guard=guard).run`` against the
  same session without a guard, interleaved like the inference suite, one row per query.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeguard.bench.crypto import BenchError, Progress
from edgeguard.bench.runtime import InferenceConfig, interleaved_latencies
from edgeguard.bench.workloads import latency_stats, make_classifier, seal

GOAL_OBSERVE_P99_S = 50e-6


@dataclass
class DetectorConfig:
    """What the detector suite measures."""

    queries: int = 2000  # timed observe calls of one row (a tenth of that with 32 rows)
    warmup: int = 100
    clients: int = 64
    dim: int = 64
    hidden: int = 256
    classes: int = 10
    calibration: int = 1024  # benign inputs for Profile.build
    streams: int = 32  # Profile.build's calibration streams
    stream_length: int = 400
    guarded: InferenceConfig | None = None  # None: InferenceConfig.quick()

    @staticmethod
    def quick() -> DetectorConfig:
        return DetectorConfig()

    @staticmethod
    def full() -> DetectorConfig:
        return DetectorConfig(queries=20000, warmup=1000, streams=100, stream_length=1000,
                              guarded=InferenceConfig(blocks=20, block=50))

    def guarded_config(self) -> InferenceConfig:
        cfg = self.guarded or InferenceConfig.quick()
        return InferenceConfig(cfg.blocks, cfg.block, cfg.warmup, batches=[1])

    def as_json(self) -> dict[str, Any]:
        return {"queries": self.queries, "warmup": self.warmup, "clients": self.clients, "dim": self.dim,
                "hidden": self.hidden, "classes": self.classes, "calibration": self.calibration,
                "streams": self.streams, "stream_length": self.stream_length,
                "guarded_run": self.guarded_config().as_json()}


class _Benign:
    """Benign inputs: a Gaussian mixture with one well-separated centre per class."""

    def __init__(self, dim: int, classes: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.centres = (self.rng.standard_normal((classes, dim)) * 2).astype(np.float32)

    def draw(self, n: int) -> np.ndarray:
        k = self.rng.integers(0, len(self.centres), n)
        return self.centres[k] + self.rng.standard_normal((n, self.centres.shape[1]), dtype=np.float32)


def _observe_latency(guard: Any, x: np.ndarray, y: np.ndarray, rows: int, count: int, warmup: int,
                     clients: int) -> list[float]:
    ids = [f"client-{i}" for i in range(clients)]
    n = len(x) // rows
    out = []
    for i in range(warmup + count):
        j = i % n
        xs, ys = x[j * rows:(j + 1) * rows], y[j * rows:(j + 1) * rows]
        cid = ids[i % clients]
        t0 = time.perf_counter()
        guard.observe(cid, xs, ys)
        dt = time.perf_counter() - t0
        if i >= warmup:
            out.append(dt)
    return out


def run_detector_suite(cfg: DetectorConfig, tmp: Path, progress: bool | None = None) -> dict[str, Any]:
    """Builds the bundled workload in ``tmp`` and measures the detector; returns the ``detector``
    section.

    Raises BenchError for an empty configuration, ImportError without onnx (the classifier is
    generated and sealed at run time).
    """
    import onnxruntime as ort

    from edgeguard.detect import Guard, Profile
    from edgeguard.runtime import InferenceSession

    if cfg.queries < 10 or cfg.clients < 1 or cfg.calibration < 64:
        raise BenchError("the detector suite needs >= 10 queries, >= 1 client and >= 64 calibration inputs")
    t0 = time.monotonic()
    guarded_cfg = cfg.guarded_config()
    bar = Progress(4 + guarded_cfg.blocks, progress)
    try:
        bar.step("detector: classifier and profile")
        model = tmp / "classifier.onnx"
        make_classifier(model, cfg.dim, cfg.hidden, cfg.classes)
        w = seal(model, tmp, "classifier", "synthetic")
        plain = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])

        def predict(x: np.ndarray) -> np.ndarray:
            y: np.ndarray = plain.run(None, {"x": x})[0]  # onnxruntime is untyped
            return y

        benign = _Benign(cfg.dim, cfg.classes, seed=0)
        profile = Profile.build(benign.draw(cfg.calibration), predict=predict, streams=cfg.streams,
                                stream_length=cfg.stream_length, seed=0)
        guard = Guard(profile, max_clients=max(cfg.clients, 1024))
        state_before = guard.state_bytes_per_client
        x = benign.draw(max(cfg.queries, 32 * 64))
        y = predict(x)
        observe = []
        for rows, count in ((1, cfg.queries), (32, max(cfg.queries // 10, 10))):
            bar.step(f"detector: observe {rows} row(s)")
            samples = _observe_latency(guard, x, y, rows, count, cfg.warmup // rows or 1, cfg.clients)
            observe.append({"rows": rows, **latency_stats(samples)})

        bar.step("detector: guarded sessions")
        identity, trust, cpu = str(w.identity), str(w.trust), ["CPUExecutionProvider"]
        run_guard = Guard(profile, max_clients=max(cfg.clients, 1024))
        sessions = {"unguarded": InferenceSession(w.sealed, hygiene="fast", identity=identity, trust=trust, providers=cpu),
                    "guarded": InferenceSession(w.sealed, hygiene="fast", guard=run_guard, identity=identity, trust=trust,
                                                providers=cpu)}
        feeds = [{"x": x[i:i + 1]} for i in range(256)]
        counter = itertools.count()

        def call(s: InferenceSession) -> None:
            i = next(counter)
            s.run(None, feeds[i % len(feeds)], client_id=f"client-{i % cfg.clients}")

        try:
            times = interleaved_latencies({n: (lambda s=s: call(s)) for n, s in sessions.items()}, guarded_cfg, bar,
                                          "detector: run")
        finally:
            for s in sessions.values():
                s.close()
    finally:
        bar.close()
    stats = {n: latency_stats(t) for n, t in times.items()}
    p99 = observe[0]["p99_s"]
    return {
        "config": cfg.as_json(),
        "profile": {"bytes": len(profile.to_bytes()), "dim": profile.dim,
                    "sketch_dim": profile.sketch_dim, "classes": profile.classes},
        "state_bytes_per_client": guard.state_bytes_per_client,
        "fleet_state_bytes": guard.fleet_state_bytes,
        "clients_tracked": guard.clients,
        "observe": observe,
        "guarded_run": {
            "modes": stats,
            "added_p50_s": stats["guarded"]["p50_s"] - stats["unguarded"]["p50_s"],
            "added_p99_s": stats["guarded"]["p99_s"] - stats["unguarded"]["p99_s"],
            "p50_ratio": stats["guarded"]["p50_s"] / stats["unguarded"]["p50_s"],
            "p99_ratio": stats["guarded"]["p99_s"] / stats["unguarded"]["p99_s"],
        },
        "goals": {"observe_p99": {"value": p99, "limit": GOAL_OBSERVE_P99_S, "met": p99 <= GOAL_OBSERVE_P99_S},
                  "state_fixed": {"value": guard.state_bytes_per_client, "limit": state_before,
                                  "met": guard.state_bytes_per_client <= state_before}},
        "duration_s": time.monotonic() - t0,
    }
