"""Extraction-detection harness: edgeguard's detector and the PRADA baseline, side by side.

    python benchmarks/extraction/run.py --quick            # CI-sized, under two minutes
    python benchmarks/extraction/run.py                    # full: more seeds, clients, queries
    python benchmarks/extraction/run.py --smoke --out DIR  # seconds; used by the test suite

Writes results.json, results.md, fidelity.png and latency.png into --out.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

sys.path.insert(0, str(Path(__file__).resolve().parent))

import attacks as atk
import report
import victims as vic
from prada import Prada

from edgeguard import Guard, Profile
from edgeguard.detect import SIGNALS

BENIGN_VARIANTS = ("clean", "noise", "resubmit", "skewed", "long")
NOISE_SIGMA = 0.05
RESUBMIT_RATE = 0.05
SKEW_SHARE = 0.7
FIDELITY_GOAL = 0.85


@dataclass(frozen=True)
class Config:
    mode: str
    seeds: int
    budget: int  # queries per attack run
    copycat_budget: int
    benign_clients: int  # per variant
    benign_len: int
    long_len: int
    volume_budget: int
    calibration_streams: int
    calibration_len: int
    attacks: tuple[str, ...]
    checkpoints: tuple[int, ...]


ALL_ATTACKS = tuple(atk.ATTACKS) + tuple(atk.SYBIL_ATTACKS)
MODES = {
    "smoke": Config("smoke", 1, 60, 60, 2, 40, 80, 1500, 16, 300, ("critical-point", "knockoff-random"), (20, 60)),
    "quick": Config("quick", 2, 300, 1600, 20, 150, 1200, 1500, 200, 2000, ALL_ATTACKS,
                    (10, 25, 50, 100, 200, 300, 400, 600, 800, 1200, 1600)),
    "full": Config("full", 5, 1000, 2000, 50, 300, 1500, 2000, 200, 2500, ALL_ATTACKS,
                   (10, 25, 50, 75, 100, 150, 200, 300, 400, 600, 800, 1000, 1200, 1600, 2000)),
}


class Thief:
    """Trains a surrogate on the answers collected so far and measures its fidelity."""

    def __init__(self, victim: vic.Victim, eval_x: np.ndarray, seed: int, equation_solving: bool):
        self.victim, self.eval_x, self.seed = victim, eval_x, seed
        self.truth = victim.labels(eval_x)
        self.equation_solving = equation_solving

    def fidelity(self, x: np.ndarray, p: np.ndarray) -> float:
        if len(x) == 0:
            return 0.0
        if self.equation_solving:
            return float((self._solve(x, p) == self.truth).mean())
        y = p.argmax(axis=1)
        if len(np.unique(y)) < 2:
            return float((self.truth == y[0]).mean())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf = MLPClassifier((64,), max_iter=300, random_state=self.seed).fit(x, y)
        return float((clf.predict(self.eval_x) == self.truth).mean())

    def _solve(self, x: np.ndarray, p: np.ndarray) -> np.ndarray:
        """Tramer's equation solving: log p_k - log p_0 is linear in x; least squares (minimum
        norm while under-determined) recovers the weight differences."""
        a = np.hstack([x, np.ones((len(x), 1))]).astype(np.float64)
        logp = np.log(np.maximum(p, 1e-30)).astype(np.float64)
        w, *_ = np.linalg.lstsq(a, logp - logp[:, :1], rcond=None)
        e = np.hstack([self.eval_x, np.ones((len(self.eval_x), 1))])
        return (e @ w).argmax(axis=1)


def run_attack(name, factory, ids, victim, profile, splits, natural, seed, budget, checkpoints, timings):
    rng = np.random.default_rng(1000 + seed)
    guard = Guard(profile)
    pradas = [Prada() for _ in range(ids)]
    gen = factory(atk.Context(rng, splits.attacker, natural))
    x = next(gen)
    xs, ps = [], []
    eg_at = prada_at = None
    reasons: list = []
    for q in range(budget):
        client = f"thief-{q % ids}"
        p = victim.run(x[None])
        t0 = time.perf_counter_ns()
        decision = guard.observe(client, x[None], [p])
        timings.append(time.perf_counter_ns() - t0)
        if decision.alert is not None and eg_at is None:
            eg_at, reasons = q + 1, [r.signal for r in decision.alert.reasons if r.ratio >= 1]
        if pradas[q % ids].observe(x, int(p.argmax())) and prada_at is None:
            prada_at = q + 1
        xs.append(x)
        ps.append(p[0])
        x = gen.send(p[0])
    xs, ps = np.array(xs), np.array(ps)
    thief = Thief(victim, splits.benign, seed, equation_solving=name in atk.LOGREG_ATTACKS)
    curve = [(n, thief.fidelity(xs[:n], ps[:n])) for n in checkpoints if n <= budget]
    if not curve or curve[-1][0] != budget:
        curve.append((budget, thief.fidelity(xs, ps)))
    at = {n: f for n, f in curve}

    def fid(n):
        return None if n is None else at.get(n, thief.fidelity(xs[:n], ps[:n]))

    # What the thief's ordinary digits alone teach it: no detector can take that back.
    pool = {row.tobytes() for row in splits.attacker}
    natural = np.array([x.tobytes() in pool for x in xs])

    def natural_fid(n):
        if n is None or not natural[:n].any():
            return None
        return thief.fidelity(xs[:n][natural[:n]], ps[:n][natural[:n]])

    return {
        "seed": seed, "queries": budget, "final_fidelity": curve[-1][1], "curve": curve,
        "edgeguard": {"first_alert": eg_at, "fidelity_at_alert": fid(eg_at),
                      "natural_fidelity_at_alert": natural_fid(eg_at), "signals": reasons},
        "prada": {"first_alert": prada_at, "fidelity_at_alert": fid(prada_at)},
    }


def benign_stream(variant: str, rng, pool, labels, length) -> np.ndarray:
    n = len(pool)
    if variant == "skewed":
        fav = np.flatnonzero(np.isin(labels, rng.choice(10, 2, replace=False)))
        idx = np.where(rng.random(length) < SKEW_SHARE, rng.choice(fav, length), rng.integers(n, size=length))
    else:  # a user sending new inputs; a client longer than the pool sees inputs again
        idx = rng.choice(n, length, replace=length > n)
    x = pool[idx].copy()
    if variant == "noise":
        x += rng.normal(0, NOISE_SIGMA, x.shape).astype(np.float32)
    if variant == "resubmit":
        again = np.flatnonzero(rng.random(length) < RESUBMIT_RATE)
        again = again[again > 0]
        x[again] = x[rng.integers(0, again)]
    return x


def run_benign(cfg, victim, profile, splits, seed, timings):
    out = {}
    for v, variant in enumerate(BENIGN_VARIANTS):
        length = cfg.long_len if variant == "long" else cfg.benign_len
        guard = Guard(profile)
        eg = pr = 0
        prada_bytes = 0
        for c in range(cfg.benign_clients):
            rng = np.random.default_rng([seed, v, c])
            xs = benign_stream(variant, rng, splits.benign, splits.benign_y, length)
            ps = victim.run(xs)
            prada = Prada()
            eg_alert = pr_alert = False
            for i in range(length):
                t0 = time.perf_counter_ns()
                d = guard.observe(f"{variant}-{c}", xs[i : i + 1], [ps[i : i + 1]])
                timings.append(time.perf_counter_ns() - t0)
                eg_alert |= d.alert is not None
                pr_alert |= prada.observe(xs[i], int(ps[i].argmax()))
            eg += eg_alert
            pr += pr_alert
            prada_bytes = max(prada_bytes, prada.state_bytes())
        out[variant] = {"clients": cfg.benign_clients, "queries_per_client": length,
                        "edgeguard_alerted": eg, "prada_alerted": pr,
                        "edgeguard_fpr": eg / cfg.benign_clients, "prada_fpr": pr / cfg.benign_clients,
                        "prada_state_bytes_max": prada_bytes}
    return out


def _merge_benign(per_seed: list[dict]) -> dict:
    """Pools each variant's clients over the seeds (each seed with its own calibration)."""
    out = {}
    for variant in per_seed[0]:
        rows = [r[variant] for r in per_seed]
        clients = sum(r["clients"] for r in rows)
        eg, pr = sum(r["edgeguard_alerted"] for r in rows), sum(r["prada_alerted"] for r in rows)
        out[variant] = {"clients": clients, "queries_per_client": rows[0]["queries_per_client"],
                        "edgeguard_alerted": eg, "prada_alerted": pr, "edgeguard_fpr": eg / clients,
                        "prada_fpr": pr / clients,
                        "prada_state_bytes_max": max(r["prada_state_bytes_max"] for r in rows)}
    return out


def summarise(runs: list[dict], who: str) -> dict:
    alerts = [r[who]["first_alert"] for r in runs]
    hit = [a for a in alerts if a is not None]
    fids = [r[who]["fidelity_at_alert"] for r in runs if r[who]["first_alert"] is not None]
    natural = [r[who]["natural_fidelity_at_alert"] for r in runs
               if r[who].get("natural_fidelity_at_alert") is not None]
    return {
        "median_natural_fidelity_at_alert": float(np.median(natural)) if natural else None,
        "detection_rate": len(hit) / len(runs),
        "median_queries_to_alert": float(np.median(hit)) if hit else None,
        "max_queries_to_alert": max(hit) if hit else None,
        "median_fidelity_at_alert": float(np.median(fids)) if fids else None,
        "max_fidelity_at_alert": max(fids) if fids else None,
    }


def latency(ns: list[int]) -> dict:
    us = np.asarray(ns) / 1e3
    pct = (1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9)
    return {"n": len(us), "p50_us": float(np.percentile(us, 50)), "p99_us": float(np.percentile(us, 99)),
            "max_us": float(us.max()), "percentiles": {str(q): float(np.percentile(us, q)) for q in pct}}


def run(cfg: Config) -> dict:
    started = time.time()
    splits = vic.digit_splits(0)
    natural = vic.natural_patches(2000, np.random.default_rng(7))
    victims = {"mlp": vic.mlp_victim(splits)}
    if atk.LOGREG_ATTACKS & set(cfg.attacks):
        victims["logreg"] = vic.logreg_victim(splits)
    # Every seed recalibrates: threshold variation across calibrations is part of the result.
    profiles = {
        (k, seed): Profile.build(splits.calibration, predict=v.run, volume_budget=cfg.volume_budget,
                                 streams=cfg.calibration_streams, stream_length=cfg.calibration_len, seed=seed)
        for k, v in victims.items() for seed in range(cfg.seeds)
    }
    timings: list[int] = []
    attack_results = {}
    for name in cfg.attacks:
        factory = atk.ATTACKS.get(name) or atk.SYBIL_ATTACKS[name]
        ids = atk.SYBIL_IDS if name in atk.SYBIL_ATTACKS else 1
        kind = "logreg" if name in atk.LOGREG_ATTACKS else "mlp"
        budget = cfg.copycat_budget if name == "copycat-indist" else cfg.budget
        runs = [run_attack(name, factory, ids, victims[kind], profiles[kind, s], splits, natural, s, budget,
                           cfg.checkpoints, timings) for s in range(cfg.seeds)]
        attack_results[name] = {"victim": kind, "client_ids": ids, "runs": runs,
                                "edgeguard": summarise(runs, "edgeguard"), "prada": summarise(runs, "prada"),
                                "median_final_fidelity": float(np.median([r["final_fidelity"] for r in runs]))}
    benign_timings: list[int] = []
    benign = _merge_benign([run_benign(cfg, victims["mlp"], profiles["mlp", s], splits, s, benign_timings)
                            for s in range(cfg.seeds)])
    guard = Guard(profiles["mlp", 0])
    prada_timings = _prada_latency(splits, victims["mlp"])
    results = {
        "config": asdict(cfg),
        "environment": {"python": platform.python_version(), "numpy": np.__version__,
                        "onnxruntime": onnxruntime.__version__, "machine": platform.machine(),
                        "processor": platform.processor() or platform.machine()},
        "victims": {k: {"accuracy": float((v.labels(splits.benign) == splits.benign_y).mean())}
                    for k, v in victims.items()},
        "profiles": [{"seed": seed, "bytes": len(p.to_bytes()), "near_dist": p.near_dist,
                      "novelty_slack": p.novelty_slack,
                      "thresholds": dict(zip(SIGNALS, [None if np.isinf(t) else t for t in p.thresholds], strict=True))}
                     for (kind, seed), p in profiles.items() if kind == "mlp"],
        "attacks": attack_results,
        "benign": benign,
        "latency": {"edgeguard_benign": latency(benign_timings), "edgeguard_all": latency(benign_timings + timings),
                    "prada": latency(prada_timings)},
        "state_bytes_per_client": {"edgeguard": guard.state_bytes_per_client,
                                   "prada_max_benign": max(b["prada_state_bytes_max"] for b in benign.values())},
        "copycat_floor": _copycat_floor(attack_results.get("copycat-indist")),
        "seconds": round(time.time() - started, 1),
    }
    results["goals"] = report.goals(results)
    return results


def _prada_latency(splits, victim) -> list[int]:
    prada, out = Prada(), []
    ps = victim.run(splits.benign)
    for x, p in zip(splits.benign, ps, strict=True):
        t0 = time.perf_counter_ns()
        prada.observe(x, int(p.argmax()))
        out.append(time.perf_counter_ns() - t0)
    return out


def _copycat_floor(res) -> dict | None:
    """How many in-distribution queries an undetected thief needs for 85% fidelity."""
    if res is None:
        return None
    needed = []
    for r in res["runs"]:
        reach = [n for n, f in r["curve"] if f >= FIDELITY_GOAL]
        needed.append(reach[0] if reach else None)
    hit = [n for n in needed if n is not None]
    return {"fidelity_goal": FIDELITY_GOAL, "queries_needed_per_seed": needed,
            "median_queries_needed": float(np.median(hit)) if hit else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="CI-sized run")
    mode.add_argument("--smoke", action="store_true", help="seconds-long structural check")
    ap.add_argument("--out", default="results/extraction", help="results directory")
    ap.add_argument("--no-plots", action="store_true")
    args = ap.parse_args(argv)
    cfg = MODES["smoke" if args.smoke else "quick" if args.quick else "full"]
    results = run(cfg)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(report.markdown(results))
    if not args.no_plots:
        report.plots(results, out)
    print(report.markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
