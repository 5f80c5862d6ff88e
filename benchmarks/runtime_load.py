"""Load-time, memory and latency benchmark of the secure runtime against plain onnxruntime.

Generates synthetic fp32 MLPs (never committed), seals each one, then measures in a fresh
process per run, side by side:

  plain_path   onnxruntime.InferenceSession(path)          (weights embedded in the .onnx)
  plain_bytes  onnxruntime.InferenceSession(file bytes)    (read + parse from memory)
  strict       edgeguard.InferenceSession(sealed, hygiene="strict")
  fast         edgeguard.InferenceSession(sealed, hygiene="fast")

load time (median of --repeats), peak RSS above the process's baseline (VmHWM), first-inference
and steady (median) latency at batch 1 and 32, the latter with all four sessions in one process
run in interleaved rounds so that a busy shared machine slows every mode alike. Writes runtime_load.json and runtime_load.md
into --out (default results/runtime/). `--quick` uses small models for a smoke test.

    python benchmarks/runtime_load.py               # 10, 100, 500 MB
    python benchmarks/runtime_load.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MODES = ("plain_path", "plain_bytes", "strict", "fast")
OPEN_ONLY = "open_only"  # verify + decrypt into secure memory, no onnxruntime: the crypto floor of a load
BATCHES = (1, 32)

_CHILD_PRELUDE = r"""
import json, re, sys, time
import numpy as np
import edgeguard  # imported by every mode so that import costs never count as load time
import onnxruntime as ort

def rss(field):
    return int(re.search(field + r":\s+(\d+) kB", open("/proc/self/status").read()).group(1)) * 1024

def load(mode, model, sealed, identity, trust):
    if mode == "plain_path":
        return ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    if mode == "plain_bytes":
        with open(model, "rb") as f:
            return ort.InferenceSession(f.read(), providers=["CPUExecutionProvider"])
    if mode == "open_only":
        return edgeguard.open_sealed(sealed, identity=identity, trust=trust)
    return edgeguard.InferenceSession(sealed, identity=identity, trust=trust, hygiene=mode, providers=["CPUExecutionProvider"])

model, sealed, identity, trust, width = sys.argv[1:6]
feeds = {b: {"x": np.random.default_rng(b).standard_normal((b, int(width)), dtype=np.float32)} for b in (1, 32)}
"""

# One fresh process per load: load time, peak RSS above the baseline, first inferences.
_LOAD_CHILD = _CHILD_PRELUDE + r"""
mode = sys.argv[6]
base = rss("VmRSS")
t0 = time.perf_counter()
sess = load(mode, model, sealed, identity, trust)
out = {"load_s": time.perf_counter() - t0, "peak_rss_above_baseline": rss("VmHWM") - base}
for b in (1, 32) if mode != "open_only" else ():
    t0 = time.perf_counter(); sess.run(None, feeds[b]); out[f"first_b{b}_s"] = time.perf_counter() - t0
print(json.dumps(out))
"""

# Steady latency: every mode loaded in one process and run in interleaved rounds, so that load
# from other processes on a shared machine hits all modes alike.
_STEADY_CHILD = _CHILD_PRELUDE + r"""
modes, rounds = sys.argv[6].split(","), int(sys.argv[7])
sessions = {m: load(m, model, sealed, identity, trust) for m in modes}
out = {}
for b in (1, 32):
    times = {m: [] for m in modes}
    for m in modes:
        sessions[m].run(None, feeds[b])  # warm-up
    for r in range(rounds):
        for m in (modes if r % 2 == 0 else modes[::-1]):
            t0 = time.perf_counter(); sessions[m].run(None, feeds[b]); times[m].append(time.perf_counter() - t0)
            time.sleep(0.02)  # let this session's spinning thread pool park before the next one runs
    for m in modes:
        out.setdefault(m, {})[f"steady_b{b}_s"] = sorted(times[m])[len(times[m]) // 2]
print(json.dumps(out))
"""


def make_model(path: Path, size_mb: float) -> tuple[int, int]:
    """An fp32 MLP of about `size_mb` MB: n square layers of width w. Returns (width, layers)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    target = size_mb * 1e6
    width = 512 if target < 50e6 else 2048
    layers = max(1, round(target / (4 * width * width)))
    if target < 4 * width * width:  # quick sizes: shrink the width instead
        width = max(64, int((target / 4) ** 0.5) // 64 * 64)
    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "x"
    for i in range(layers):
        w = rng.standard_normal((width, width), dtype=np.float32) / np.float32(np.sqrt(width))
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(np.zeros(width, np.float32), f"b{i}")]
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]), helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"])]
        out = "y" if i == layers - 1 else f"h{i}"
        nodes.append(helper.make_node("Relu", [f"a{i}"], [out]))
        prev = out
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return width, layers


def seal_fixture(model: Path, tmp: Path) -> tuple[Path, Path, Path]:
    from edgeguard.keys import SigningKey, generate_private_key, key_id, load_recipient, public_pem, write_private_key
    from edgeguard.seal import seal_model

    signer = SigningKey.generate("ed25519")
    device = generate_private_key("p256")
    identity = tmp / f"device-{key_id(device.public_key())}.pem"
    if not identity.exists():
        write_private_key(identity, device)
    recipient = tmp / "device.pub"
    recipient.write_bytes(public_pem(device.public_key()))
    trust = tmp / "publisher.pub"
    trust.write_bytes(signer.verifying_key.public_pem())
    sealed = model.with_suffix(".sealed")
    seal_model(model, sealed, signer=signer, recipients=[load_recipient(recipient)], overwrite=True)
    return sealed, identity, trust


def run_child(code: str, model: Path, sealed: Path, identity: Path, trust: Path, width: int, *extra: str) -> Any:
    args = [sys.executable, "-c", code, str(model), str(sealed), str(identity), str(trust), str(width), *extra]
    result = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def median_runs(runs: list[dict[str, float]]) -> dict[str, float]:
    out = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    out["load_s_min"] = min(r["load_s"] for r in runs)  # the least disturbed run on a shared machine
    return out


def bench_size(size_mb: float, tmp: Path, repeats: int, steady: int) -> dict[str, Any]:
    model = tmp / f"mlp-{size_mb:g}mb.onnx"
    width, layers = make_model(model, size_mb)
    sealed, identity, trust = seal_fixture(model, tmp)
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in (*MODES, OPEN_ONLY)}
    for r in range(repeats):
        order = (*MODES, OPEN_ONLY)
        for mode in order if r % 2 == 0 else order[::-1]:  # alternate order: no mode always goes first
            runs[mode].append(run_child(_LOAD_CHILD, model, sealed, identity, trust, width, mode))
    results = {mode: median_runs(rs) for mode, rs in runs.items()}
    for mode, latencies in run_child(_STEADY_CHILD, model, sealed, identity, trust, width, ",".join(MODES), str(steady)).items():
        results[mode].update(latencies)
    model_bytes = model.stat().st_size
    # What any onnxruntime session costs here regardless of weights (thread pool, arena, code pages).
    tiny = tmp / "tiny.onnx"
    make_model(tiny, 0.02)
    overhead = run_child(_LOAD_CHILD, tiny, sealed, identity, trust, 64, "plain_path")["peak_rss_above_baseline"]
    plain, strict, fast = results["plain_path"], results["strict"], results["fast"]
    ratios = {
        "strict_load_over_plain": strict["load_s"] / plain["load_s"],
        "fast_load_over_plain": fast["load_s"] / plain["load_s"],
        "strict_load_over_plain_best_of_n": strict["load_s_min"] / plain["load_s_min"],
        "fast_load_over_plain_best_of_n": fast["load_s_min"] / plain["load_s_min"],
        "open_only_load_over_plain": results[OPEN_ONLY]["load_s"] / plain["load_s"],
        "strict_peak_rss_over_model": strict["peak_rss_above_baseline"] / model_bytes,
        "strict_peak_rss_minus_session_overhead_over_model": (strict["peak_rss_above_baseline"] - overhead) / model_bytes,
        "fast_steady_b1_over_plain": fast["steady_b1_s"] / plain["steady_b1_s"],
        "fast_steady_b32_over_plain": fast["steady_b32_s"] / plain["steady_b32_s"],
        "strict_steady_b1_over_plain": strict["steady_b1_s"] / plain["steady_b1_s"],
        "strict_steady_b32_over_plain": strict["steady_b32_s"] / plain["steady_b32_s"],
    }
    goals = {
        "strict_load_le_0.6x": ratios["strict_load_over_plain"] <= 0.6,
        "fast_load_le_1.1x": ratios["fast_load_over_plain"] <= 1.1,
        "strict_peak_rss_le_model_plus_10pct": ratios["strict_peak_rss_over_model"] <= 1.1,
        "same_minus_session_overhead": ratios["strict_peak_rss_minus_session_overhead_over_model"] <= 1.1,
        "fast_inference_within_3pct": max(ratios["fast_steady_b1_over_plain"], ratios["fast_steady_b32_over_plain"]) <= 1.03,
    }
    for path in (model, sealed, tiny):
        path.unlink()
    return {"size_mb": size_mb, "model_bytes": model_bytes, "width": width, "layers": layers, "session_overhead_bytes": overhead,
            "modes": results, "ratios": ratios, "goals": goals}  # fmt: skip


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Runtime load benchmark ({report['machine']}, onnxruntime {report['onnxruntime']})",
        "",
        f"{report['repeats']} fresh-process load(s) per mode, medians; steady latency = median of {report['steady']} interleaved rounds in one process.",
        "",
        "| model | mode | load s, median (best) | peak RSS above baseline MB | first b1 ms | steady b1 ms | first b32 ms | steady b32 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for size in report["sizes"]:
        for mode in (*MODES, OPEN_ONLY):
            m = size["modes"][mode]
            ms = [f"{m[k] * 1e3:.2f}" if k in m else "-" for k in ("first_b1_s", "steady_b1_s", "first_b32_s", "steady_b32_s")]
            lines.append(
                f"| {size['model_bytes'] / 1e6:.0f} MB | {mode} | {m['load_s']:.3f} ({m['load_s_min']:.3f}) | "
                f"{m['peak_rss_above_baseline'] / 1e6:.0f} | {' | '.join(ms)} |"
            )
    lines += ["", "Peak RSS ratios: strict's peak RSS above the process baseline over the model file size; "
              "the second subtracts what a session of a tiny model costs (thread pool, arena, code pages).", "",
              "Load ratios are of medians, best-of-N in parentheses; open_only is verify + decrypt alone.", "",
              "| model | strict/plain load | fast/plain load | open_only/plain load | strict peak RSS / model | same, less session overhead | fast/plain steady b1 | fast/plain steady b32 | strict/plain steady b1 | strict/plain steady b32 | goals met (medians) |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for size in report["sizes"]:
        r, g = size["ratios"], size["goals"]
        met = ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in g.items())
        lines.append(
            f"| {size['model_bytes'] / 1e6:.0f} MB | {r['strict_load_over_plain']:.2f} ({r['strict_load_over_plain_best_of_n']:.2f}) | "
            f"{r['fast_load_over_plain']:.2f} ({r['fast_load_over_plain_best_of_n']:.2f}) | {r['open_only_load_over_plain']:.2f} | "
            f"{r['strict_peak_rss_over_model']:.2f} | {r['strict_peak_rss_minus_session_overhead_over_model']:.2f} | {r['fast_steady_b1_over_plain']:.3f} | {r['fast_steady_b32_over_plain']:.3f} | "
            f"{r['strict_steady_b1_over_plain']:.2f} | {r['strict_steady_b32_over_plain']:.2f} | {met} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/runtime"))
    parser.add_argument("--sizes", type=float, nargs="+", default=[10, 100, 500], help="model sizes in MB")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steady", type=int, default=30, help="interleaved inference rounds for the steady latency")
    parser.add_argument("--quick", action="store_true", help="small models, one run each (smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats, args.steady = [2, 8], 1, 3
    import onnxruntime

    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "onnxruntime": onnxruntime.__version__,
        "repeats": args.repeats,
        "steady": args.steady,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sizes": [],
    }
    with tempfile.TemporaryDirectory(prefix="edgeguard-bench-") as tmp:
        for size in args.sizes:
            report["sizes"].append(bench_size(size, Path(tmp), args.repeats, args.steady))
            print(f"{size:g} MB: {json.dumps(report['sizes'][-1]['ratios'])}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "runtime_load.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "runtime_load.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
