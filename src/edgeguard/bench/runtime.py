"""The load and inference suites: edgeguard's runtime against plain onnxruntime, side by side.

load: every mode loads the same model in a fresh process (``_load_child``), repetition after
repetition in alternating order so that no mode always goes first; the median load time and the
median peak RSS above the process's baseline are reported, with every sample.

  plain_path   onnxruntime.InferenceSession(path)          (weights embedded in the .onnx)
  plain_bytes  onnxruntime.InferenceSession(file bytes)    (read + parse from memory)
  strict       edgeguard.InferenceSession(sealed, hygiene="strict")
  fast         edgeguard.InferenceSession(sealed, hygiene="fast")
  open_only    edgeguard.open_sealed(sealed): verify + decrypt alone, the crypto floor of a load
  hardened     edgeguard.InferenceSession(sealed, hygiene="hardened") in a process hardened
               (harden_process(lock_memory=True, wipe_freed=True)) before the clock; only where
               the process may lock all its memory (root, CAP_IPC_LOCK or no RLIMIT_MEMLOCK)

inference: plain, strict, fast (and hardened) sessions of one model in this process, run in
interleaved blocks (alternating order) so that other load on the machine hits every mode alike;
per-query latency percentiles at batch 1 and 32 after a warm-up, with onnxruntime's intra-op
thread count set alike for every mode. For the hardened mode this process is made non-dumpable
and mlockall'd (neither changes the speed of plain queries), and glibc's perturb byte, which
costs every malloc and free, is switched on around each hardened query only.

Goals: strict load <= 0.6x and fast load <= 1.1x the plain path load; strict peak RSS
<= 1.1x the model size above the baseline; fast-mode inference within 3% of plain; strict and
hardened inference within 1.1x of plain (the worst p50 ratio over the batches).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from edgeguard.bench.crypto import BenchError, Progress
from edgeguard.bench.workloads import Workload, latency_stats

LOAD_MODES = ("plain_path", "plain_bytes", "strict", "fast", "open_only")
INFERENCE_MODES = ("plain", "strict", "fast")
HARDENED = "hardened"  # measured in addition where can_harden()
BATCHES = (1, 32)
GOAL_STRICT_LOAD = 0.6
GOAL_FAST_LOAD = 1.1
GOAL_STRICT_PEAK_RSS = 1.1
GOAL_FAST_INFERENCE = 1.03
GOAL_STRICT_INFERENCE = 1.1
GOAL_HARDENED_INFERENCE = 1.1


def can_harden() -> bool:
    """Whether a process here can be hardened for hygiene="hardened": it may mlockall everything
    and glibc's wipe-on-free is available."""
    import os
    import resource

    from edgeguard import _core

    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if not sys.platform.startswith("linux") or not (os.geteuid() == 0 or soft == resource.RLIM_INFINITY):
        return False
    # glibc's perturb byte must be settable (not under another C library, or ASan's malloc):
    # setting it to what it already is changes nothing.
    return _core.set_malloc_perturb(_core.malloc_perturb())


def load_modes(hardened: bool | None = None) -> tuple[str, ...]:
    """The load modes measured; `hardened` None: where can_harden()."""
    return LOAD_MODES + ((HARDENED,) if (can_harden() if hardened is None else hardened) else ())


def inference_modes(hardened: bool | None = None) -> tuple[str, ...]:
    """The inference modes measured; `hardened` None: where can_harden(). Measuring it hardens
    this process (non-dumpable, mlockall)."""
    return INFERENCE_MODES + ((HARDENED,) if (can_harden() if hardened is None else hardened) else ())
# A tiny model's session: what any onnxruntime session costs regardless of weights.
_SESSION_PROBE_MB = 0.02
_BLOCK_PAUSE_S = 0.02  # lets one session's spinning thread pool park before the next block


@dataclass
class LoadConfig:
    """What the load suite measures. ``sizes_mb``: synthetic model sizes (ignored with a user model)."""

    sizes_mb: list[float]
    repetitions: int = 3
    shapes: dict[str, list[int | str]] | None = None  # input shapes for the first inferences
    hardened: bool | None = None  # measure the hardened mode (None: where can_harden())

    @staticmethod
    def quick() -> LoadConfig:
        return LoadConfig(sizes_mb=[8])

    @staticmethod
    def full() -> LoadConfig:
        return LoadConfig(sizes_mb=[8, 32, 128], repetitions=5)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sizes_mb": list(self.sizes_mb), "repetitions": self.repetitions,
                               "modes": list(load_modes(self.hardened))}
        if self.shapes:
            out["shapes"] = {k: list(v) for k, v in self.shapes.items()}
        return out


@dataclass
class InferenceConfig:
    """Per batch size and mode: ``blocks`` interleaved blocks of ``block`` timed queries."""

    blocks: int = 10
    block: int = 20
    warmup: int = 3
    batches: list[int] = field(default_factory=lambda: list(BATCHES))
    intra_op_threads: int = 0  # onnxruntime's intra_op_num_threads for every mode (0: its default)
    shapes: dict[str, list[int | str]] | None = None  # input shapes (see workloads.sample_inputs)
    hardened: bool | None = None  # measure the hardened mode, hardening this process (None: where can_harden())

    @staticmethod
    def quick() -> InferenceConfig:
        return InferenceConfig()

    @staticmethod
    def full() -> InferenceConfig:
        return InferenceConfig(blocks=20, block=50)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"blocks": self.blocks, "block": self.block, "warmup": self.warmup,
                               "batches": list(self.batches), "modes": list(inference_modes(self.hardened)),
                               "intra_op_threads": self.intra_op_threads}
        if self.shapes:
            out["shapes"] = {k: list(v) for k, v in self.shapes.items()}
        return out


def _child(spec: dict[str, Any]) -> dict[str, float]:
    cmd = [sys.executable, "-m", "edgeguard.bench._load_child", json.dumps(spec)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise BenchError(f"{spec['mode']} load of {spec['model']} failed: {out.stderr.strip()[-500:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _spec(w: Workload, mode: str, shapes: dict[str, list[int | str]] | None = None) -> dict[str, Any]:
    return {"mode": mode, "model": str(w.model), "sealed": str(w.sealed), "identity": str(w.identity),
            "trust": str(w.trust), "shapes": shapes}


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _load_model(cfg: LoadConfig, w: Workload, probe: Workload, bar: Progress) -> dict[str, Any]:
    modes_here = load_modes(cfg.hardened)
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in modes_here}
    for r in range(cfg.repetitions):
        for mode in modes_here if r % 2 == 0 else modes_here[::-1]:
            bar.step(f"load {w.name} {mode} #{r + 1}")
            runs[mode].append(_child(_spec(w, mode, cfg.shapes)))
    bar.step(f"load {probe.name} (session probe)")
    session_bytes = _child(_spec(probe, "plain_path"))["peak_rss_above_baseline_bytes"]
    modes: dict[str, dict[str, Any]] = {}
    for mode, rs in runs.items():
        m: dict[str, Any] = {"load_samples_s": [r["load_s"] for r in rs],
             "peak_rss_samples_bytes": [r["peak_rss_above_baseline_bytes"] for r in rs]}
        m["load_s"] = statistics.median(m["load_samples_s"])
        m["load_min_s"] = min(m["load_samples_s"])  # the least disturbed run on a shared machine
        m["peak_rss_above_baseline_bytes"] = int(statistics.median(m["peak_rss_samples_bytes"]))
        for key in ("first_b1_s", "first_b32_s", "import_s"):
            if all(key in r for r in rs):
                m[key] = statistics.median(r[key] for r in rs)
        modes[mode] = m
    size = w.model_bytes
    plain, strict, fast = modes["plain_path"], modes["strict"], modes["fast"]
    ratios: dict[str, float | None] = {
        "strict_load_over_plain": _ratio(strict["load_s"], plain["load_s"]),
        "fast_load_over_plain": _ratio(fast["load_s"], plain["load_s"]),
        "plain_bytes_load_over_plain": _ratio(modes["plain_bytes"]["load_s"], plain["load_s"]),
        "open_only_load_over_plain": _ratio(modes["open_only"]["load_s"], plain["load_s"]),
        "strict_load_over_plain_best": _ratio(strict["load_min_s"], plain["load_min_s"]),
        "fast_load_over_plain_best": _ratio(fast["load_min_s"], plain["load_min_s"]),
        **{f"{mode}_peak_rss_over_model": modes[mode]["peak_rss_above_baseline_bytes"] / size for mode in modes_here},
        "strict_peak_rss_less_session_over_model": (strict["peak_rss_above_baseline_bytes"] - session_bytes) / size,
    }
    if HARDENED in modes:
        ratios["hardened_load_over_plain"] = _ratio(modes[HARDENED]["load_s"], plain["load_s"])
    goals: dict[str, dict[str, Any]] = {}
    for goal, value, limit in (("strict_load", ratios["strict_load_over_plain"], GOAL_STRICT_LOAD),
                               ("fast_load", ratios["fast_load_over_plain"], GOAL_FAST_LOAD),
                               ("strict_peak_rss", ratios["strict_peak_rss_over_model"], GOAL_STRICT_PEAK_RSS)):
        goals[goal] = {"value": value, "limit": limit, "met": None if value is None else value <= limit}
    return {**w.as_json(), "session_overhead_bytes": session_bytes, "modes": modes, "ratios": ratios, "goals": goals}


def run_load_suite(cfg: LoadConfig, workloads: list[Workload], probe: Workload,
                   progress: bool | None = None) -> dict[str, Any]:
    """Times fresh-process loads of every workload in every mode; returns the ``load`` section.

    ``probe`` is a tiny model whose plain load gives the session overhead. ``progress``: None
    draws a bar only on a terminal.

    Raises BenchError if a load fails or the configuration is empty.
    """
    if cfg.repetitions < 1 or not workloads:
        raise BenchError("the load suite needs a model and at least one repetition")
    bar = Progress(len(workloads) * (cfg.repetitions * len(load_modes(cfg.hardened)) + 1), progress)
    t0 = time.monotonic()
    try:
        models = [_load_model(cfg, w, probe, bar) for w in workloads]
    finally:
        bar.close()
    return {"config": cfg.as_json(), "models": models, "duration_s": time.monotonic() - t0}


def _sessions(w: Workload, threads: int, modes: tuple[str, ...]) -> dict[str, Any]:
    import onnxruntime as ort

    from edgeguard import _core
    from edgeguard.runtime import InferenceSession
    from edgeguard.secure_memory import harden_process

    cpu = ["CPUExecutionProvider"]
    identity, trust = str(w.identity), str(w.trust)

    def options() -> Any:
        o = ort.SessionOptions()
        o.intra_op_num_threads = threads
        return o

    out = {"plain": ort.InferenceSession(str(w.model), options(), providers=cpu)}
    for mode in modes:
        if mode == HARDENED:
            harden_process(lock_memory=True, wipe_freed=True)
        if mode != "plain":
            out[mode] = InferenceSession(w.sealed, options(), hygiene=mode, identity=identity, trust=trust, providers=cpu)
    if HARDENED in modes:
        _core.set_malloc_perturb(0)  # on only around hardened queries (see the module doc)
    return out


def _hardened_call(session: Any, feeds: dict[str, Any]) -> Any:
    from edgeguard import _core
    from edgeguard.secure_memory import WIPE_BYTE

    _core.set_malloc_perturb(WIPE_BYTE)
    try:
        return session.run(None, feeds)
    finally:
        _core.set_malloc_perturb(0)


def interleaved_latencies(runs: dict[str, Any], cfg: InferenceConfig, bar: Progress, label: str) -> dict[str, list[float]]:
    """Per-call seconds of each zero-argument callable in ``runs``, in interleaved blocks of
    ``cfg.block`` timed calls (order alternating per block), each after a pause and one untimed call."""
    names = list(runs)
    for name in names:
        for _ in range(cfg.warmup):
            runs[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for b in range(cfg.blocks):
        bar.step(f"{label} block {b + 1}")
        for name in names if b % 2 == 0 else names[::-1]:
            fn, out = runs[name], times[name]
            time.sleep(_BLOCK_PAUSE_S)
            fn()  # untimed: the first call after the pause wakes the parked thread pool
            for _ in range(cfg.block):
                t0 = time.perf_counter()
                fn()
                out.append(time.perf_counter() - t0)
    return times


def run_inference_suite(cfg: InferenceConfig, w: Workload, progress: bool | None = None) -> dict[str, Any]:
    """Steady per-query latency of plain onnxruntime, strict and fast on one model; returns the
    ``inference`` section. Batches the model's inputs fix otherwise are skipped.

    Raises BenchError if no batch size fits the model or the configuration is empty, and
    whatever loading the model raises.
    """
    from edgeguard.bench.workloads import sample_inputs

    if cfg.blocks < 1 or cfg.block < 1:
        raise BenchError("the inference suite needs at least one block of one query")
    t0 = time.monotonic()
    modes = inference_modes(cfg.hardened)
    sessions = _sessions(w, cfg.intra_op_threads, modes)
    rows: list[dict[str, Any]] = []
    bar = Progress(len(cfg.batches) * cfg.blocks, progress)
    try:
        for batch in cfg.batches:
            feeds = sample_inputs(sessions["plain"].get_inputs(), batch, shapes=cfg.shapes)
            if not all(v.shape[:1] == (batch,) for v in feeds.values()):
                continue
            runs = {m: (lambda s=s, feeds=feeds: s.run(None, feeds)) for m, s in sessions.items()}
            if HARDENED in runs:
                runs[HARDENED] = lambda s=sessions[HARDENED], feeds=feeds: _hardened_call(s, feeds)
            times = interleaved_latencies(runs, cfg, bar, f"inference b{batch}")
            stats = {m: latency_stats(t) for m, t in times.items()}
            p = {m: (s["p50_s"], s["p99_s"]) for m, s in stats.items()}
            ratios = {f"{m}_{q}_over_plain": p[m][i] / p["plain"][i]
                      for m in stats if m != "plain" for i, q in enumerate(("p50", "p99"))}
            rows.append({"batch": batch, "modes": stats, "ratios": ratios})
    finally:
        bar.close()
        for s in sessions.values():
            if hasattr(s, "close"):
                s.close()
    if not rows:
        raise BenchError(f"no batch size of {cfg.batches} fits the inputs of {w.model}")
    goals: dict[str, dict[str, Any]] = {}
    for goal, mode, limit in (("fast_inference", "fast", GOAL_FAST_INFERENCE),
                              ("strict_inference", "strict", GOAL_STRICT_INFERENCE),
                              ("hardened_inference", HARDENED, GOAL_HARDENED_INFERENCE)):
        if mode in modes:
            worst = max(r["ratios"][f"{mode}_p50_over_plain"] for r in rows)
            goals[goal] = {"value": worst, "limit": limit, "met": worst <= limit}
    return {"config": cfg.as_json(), "model": w.as_json(), "batches": rows, "goals": goals,
            "duration_s": time.monotonic() - t0}
