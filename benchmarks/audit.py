#!/usr/bin/env python3
"""What auditing every guarded query costs: batch-1 inference of an MLP through a sealed
InferenceSession with a Guard, without and with an AuditLog recording every decision
(``events="all"``, default fsync policy), in interleaved blocks. Writes JSON.

    python benchmarks/audit.py [-o audit.json] [--blocks 20] [--block 200]

Goal (docs/audit.md): the audited run costs <= 10% more than the unaudited one at p50.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", help="JSON result file (default: stdout)")
    ap.add_argument("--blocks", type=int, default=20)
    ap.add_argument("--block", type=int, default=200)
    ap.add_argument("--widths", default="64,256,256,10", help="MLP layer widths")
    args = ap.parse_args()

    import edgeguard
    from _detect_world import build_profile
    from edgeguard.audit import AuditLog
    from runtime_support import make_keys, make_mlp, seal

    widths = tuple(int(v) for v in args.widths.split(","))
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        keys = make_keys(tmp)
        sealed = seal(make_mlp(tmp / "mlp.onnx", widths=widths), tmp / "mlp.sealed", keys)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((1, widths[0])).astype(np.float32)

        class _World:
            def benign(self, n: int, r: np.random.Generator) -> np.ndarray:
                return r.standard_normal((n, widths[0])).astype(np.float32)

            def predict(self, q: np.ndarray) -> np.ndarray:
                return np.full((len(q) if q.ndim > 1 else 1, widths[-1]), 1.0 / widths[-1], np.float32)

        profile = build_profile(_World())
        log = AuditLog(tmp / "dev.log", mac_key=b"k" * 32, events="all")
        sessions = {}
        for mode in ("guarded", "guarded_audited"):
            guard = edgeguard.Guard(profile, audit=log if mode == "guarded_audited" else None)
            sessions[mode] = edgeguard.InferenceSession(sealed, identity=keys.identity_path, trust=keys.trust_path, guard=guard)
        samples: dict[str, list[float]] = {m: [] for m in sessions}
        for b in range(args.blocks):
            order = list(sessions) if b % 2 == 0 else list(sessions)[::-1]
            for mode in order:
                s = sessions[mode]
                for i in range(args.block):
                    t = time.perf_counter()
                    s.run(None, {"x": x}, client_id=f"c{i % 16}")
                    samples[mode].append(time.perf_counter() - t)
        log.close()
        records = sum(1 for _ in open(tmp / "dev.log", "rb").read().split(b'"guard.decision"')) - 1
    p50 = {m: statistics.median(v) for m, v in samples.items()}
    doc = {
        "model": {"widths": list(widths), "batch": 1},
        "p50_s": p50,
        "p99_s": {m: float(np.percentile(v, 99)) for m, v in samples.items()},
        "audited_over_guarded_p50": p50["guarded_audited"] / p50["guarded"],
        "decision_records_written": records,
        "dropped": log.dropped,
        "goal": 1.10,
    }
    text = json.dumps(doc, indent=2)
    if args.output:
        Path(args.output).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
