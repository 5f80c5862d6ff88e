"""Extraction-detection harness: edgeguard's detector and the PRADA baseline, side by side.

    python benchmarks/extraction/run.py --quick            # about 3 minutes on two cores
    python benchmarks/extraction/run.py                    # full: 5 seeds, more clients, queries (4-9 min)
    python benchmarks/extraction/run.py --smoke --out DIR  # seconds; used by the test suite

Writes results.json and results.md into --out.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import onnxruntime
from scipy.stats import beta
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

sys.path.insert(0, str(Path(__file__).resolve().parent))

import attacks as atk
import report
import victims as vic
from prada import Prada

from edgeguard import Guard, Profile
from edgeguard.detect import SIGNALS

NOISE_SIGMA = 0.02      # the declared sensor noise (clipped to [0, 1]) of the main profile
WIDE_NOISE = 0.08       # the unclipped-noise variant's declared noise
RESUBMIT_RATE = 0.05
SKEW_SHARE = 0.7
RECAPTURE_SHARE = 0.5
FIDELITY_GOAL = 0.85
# Benign clients; "noisy-0.08-unclipped" runs under its own profile declaring that noise.
BENIGN_VARIANTS = ("clean", "noisy", "recapture", "resubmit", "skewed", "noisy-0.08-unclipped")
SYBIL_BENIGN_CLIENTS = 10


@dataclass(frozen=True)
class Config:
    mode: str
    seeds: int
    budget: int  # queries per attack run
    copycat_budget: int
    benign_clients: int  # per variant and seed
    benign_len: int
    volume_budget: int | None
    calibration_streams: int
    calibration_len: int
    attacks: tuple[str, ...]


ALL_ATTACKS = tuple(atk.ATTACKS) + tuple(atk.SYBIL_ATTACKS)
MODES = {
    "smoke": Config("smoke", 1, 80, 80, 2, 60, None, 16, 300,
                    ("critical-point", "knockoff-random", "jbda-sybil20-roundrobin")),
    "quick": Config("quick", 2, 400, 600, 15, 1000, None, 100, 1000, ALL_ATTACKS),
    "full": Config("full", 5, 600, 1000, 60, 1000, None, 200, 1000, ALL_ATTACKS),
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
            clf = MLPClassifier((64,), max_iter=150, random_state=self.seed).fit(x, y)
        return float((clf.predict(self.eval_x) == self.truth).mean())

    def _solve(self, x: np.ndarray, p: np.ndarray) -> np.ndarray:
        """Tramer's equation solving: log p_k - log p_0 is linear in x; least squares (minimum
        norm while under-determined) recovers the weight differences."""
        a = np.hstack([x, np.ones((len(x), 1))]).astype(np.float64)
        logp = np.log(np.maximum(p, 1e-30)).astype(np.float64)
        w, *_ = np.linalg.lstsq(a, logp - logp[:, :1], rcond=None)
        e = np.hstack([self.eval_x, np.ones((len(self.eval_x), 1))])
        return (e @ w).argmax(axis=1)


def run_attack(name, victim, profile, splits, natural, seed, budget, timings):
    rng = np.random.default_rng(1000 + seed)
    guard = Guard(profile)
    factory, ids, assign = atk.SYBIL_ATTACKS.get(name, (atk.ATTACKS.get(name), 1, "single"))
    pradas = [Prada() for _ in range(ids)]
    gen = factory(atk.Context(rng, splits.attacker, natural))
    benign = _noisy_stream(np.random.default_rng([seed, 99]), splits.benign, budget, NOISE_SIGMA) if ids > 1 else None
    x = next(gen)
    xs, ps = [], []
    eg_at = fleet_at = prada_at = None
    reasons: list = []
    fleet_reasons: list = []
    for q in range(budget):
        client = f"thief-{q % ids if assign == 'round-robin' else int(rng.integers(ids))}"
        p = victim.run(x[None])
        t0 = time.perf_counter_ns()
        decision = guard.observe(client, x[None], [p])
        timings.append(time.perf_counter_ns() - t0)
        if decision.alert is not None and eg_at is None:
            eg_at, reasons = q + 1, [r.signal for r in decision.alert.reasons]
        if decision.fleet_alert is not None and fleet_at is None:
            fleet_at, fleet_reasons = q + 1, [r.signal for r in decision.fleet_alert.reasons]
        if benign is not None:  # other clients' ordinary traffic on the same guard, 1:1
            b = benign[q]
            d = guard.observe(f"user-{q % SYBIL_BENIGN_CLIENTS}", b[None], [victim.run(b[None])])
            if d.fleet_alert is not None and fleet_at is None:
                fleet_at, fleet_reasons = q + 1, [r.signal for r in d.fleet_alert.reasons]
        if pradas[int(client.split("-")[1])].observe(x, int(p.argmax())) and prada_at is None:
            prada_at = q + 1
        xs.append(x)
        ps.append(p[0])
        x = gen.send(p[0])
    xs, ps = np.array(xs), np.array(ps)
    thief = Thief(victim, splits.benign, seed, equation_solving=name in atk.LOGREG_ATTACKS)
    cache: dict[int, float] = {}

    def fid(n):
        if n is None:
            return None
        if n not in cache:
            cache[n] = thief.fidelity(xs[:n], ps[:n])
        return cache[n]

    # What the thief's ordinary digits alone teach it: no detector can take that back.
    pool = {row.tobytes() for row in splits.attacker}
    is_natural = np.array([x.tobytes() in pool for x in xs])

    def natural_fid(n):
        if n is None or not is_natural[:n].any():
            return None
        return thief.fidelity(xs[:n][is_natural[:n]], ps[:n][is_natural[:n]])

    detected = eg_at if ids == 1 else min((a for a in (eg_at, fleet_at) if a is not None), default=None)
    return {
        "seed": seed, "queries": budget, "client_ids": ids, "assignment": assign,
        "final_fidelity": fid(budget),
        "edgeguard": {"first_alert": detected, "client_alert": eg_at, "fleet_alert": fleet_at,
                      "fidelity_at_alert": fid(detected), "natural_fidelity_at_alert": natural_fid(detected),
                      "natural_queries_at_alert": None if detected is None else int(is_natural[:detected].sum()),
                      "signals": reasons if detected == eg_at else ["fleet:" + r for r in fleet_reasons]},
        "prada": {"first_alert": prada_at, "fidelity_at_alert": fid(prada_at)},
    }


def _noisy_stream(rng, pool, length, sigma, clip=True, recapture=0.0):
    """New captures of the pool's objects (re-captures of earlier ones with probability
    ``recapture``), each under fresh Gaussian noise ``sigma``."""
    walk = np.concatenate([rng.permutation(len(pool)) for _ in range(-(-length // len(pool)))])[:length]
    seen: list[int] = []
    for t in range(length):
        if seen and rng.random() < recapture:
            walk[t] = seen[int(rng.integers(len(seen)))]
        else:
            seen.append(int(walk[t]))
    x = pool[walk] + rng.normal(0, sigma, (length, pool.shape[1])).astype(np.float32)
    return (np.clip(x, 0, 1) if clip else x).astype(np.float32)


def benign_stream(variant: str, rng, pool, labels, length) -> np.ndarray:
    n = len(pool)
    if variant == "noisy":
        return _noisy_stream(rng, pool, length, NOISE_SIGMA)
    if variant == "recapture":
        return _noisy_stream(rng, pool, length, NOISE_SIGMA, recapture=RECAPTURE_SHARE)
    if variant == "noisy-0.08-unclipped":
        return _noisy_stream(rng, pool, length, WIDE_NOISE, clip=False)
    if variant == "skewed":
        fav = np.flatnonzero(np.isin(labels, rng.choice(10, 2, replace=False)))
        idx = np.where(rng.random(length) < SKEW_SHARE, rng.choice(fav, length), rng.integers(n, size=length))
    else:  # a user sending new inputs; a session longer than the pool sees inputs again
        idx = np.concatenate([rng.permutation(n) for _ in range(-(-length // n))])[:length]
    x = pool[idx].copy()
    if variant == "resubmit":
        again = np.flatnonzero(rng.random(length) < RESUBMIT_RATE)
        again = again[again > 0]
        x[again] = x[rng.integers(0, again)]
    return x


def run_benign(cfg, victim, profiles, splits, seed, timings, group: int = 10):
    """Every variant's clients, ``group`` at a time interleaved query by query on one guard per
    variant (so the fleet view sees concurrent benign traffic)."""
    out = {}
    for v, variant in enumerate(BENIGN_VARIANTS):
        profile = profiles["wide" if variant == "noisy-0.08-unclipped" else "main"]
        guard = Guard(profile, max_clients=4 * group)
        eg = pr = 0
        fleet_alerts = 0
        prada_bytes = 0
        signals: dict[str, int] = {}
        for g0 in range(0, cfg.benign_clients, group):
            members = range(g0, min(cfg.benign_clients, g0 + group))
            streams = {c: benign_stream(variant, np.random.default_rng([seed, v, c]), splits.benign,
                                        splits.benign_y, cfg.benign_len) for c in members}
            answers = {c: victim.run(xs) for c, xs in streams.items()}
            pradas = {c: Prada() for c in members}
            alerted = dict.fromkeys(members, False)
            prada_alerted = dict.fromkeys(members, False)
            for i in range(cfg.benign_len):
                for c in members:
                    t0 = time.perf_counter_ns()
                    d = guard.observe(f"{variant}-{c}", streams[c][i : i + 1], [answers[c][i : i + 1]])
                    timings.append(time.perf_counter_ns() - t0)
                    if d.alert is not None:
                        alerted[c] = True
                        for r in d.alert.reasons:
                            signals[r.signal] = signals.get(r.signal, 0) + 1
                    fleet_alerts += d.fleet_alert is not None
                    if not prada_alerted[c]:
                        prada_alerted[c] = pradas[c].observe(streams[c][i], int(answers[c][i].argmax()))
            eg += sum(alerted.values())
            pr += sum(prada_alerted.values())
            prada_bytes = max([prada_bytes] + [p.state_bytes() for p in pradas.values()])
            for c in members:
                guard.forget(f"{variant}-{c}")
        out[variant] = {"clients": cfg.benign_clients, "queries_per_client": cfg.benign_len,
                        "edgeguard_alerted": eg, "prada_alerted": pr, "signals": signals,
                        "fleet_alerts": fleet_alerts, "fleet_queries": cfg.benign_clients * cfg.benign_len,
                        "prada_state_bytes_max": prada_bytes}
    return out


def _upper95(k: int, n: int) -> float:
    """Clopper-Pearson 95% upper bound of a rate observed k times in n."""
    return 1.0 if k >= n else float(beta.ppf(0.975, k + 1, n - k))


def _merge_benign(per_seed: list[dict]) -> dict:
    """Pools each variant's clients over the seeds (each seed with its own calibration)."""
    out = {}
    for variant in per_seed[0]:
        rows = [r[variant] for r in per_seed]
        clients = sum(r["clients"] for r in rows)
        eg, pr = sum(r["edgeguard_alerted"] for r in rows), sum(r["prada_alerted"] for r in rows)
        signals: dict[str, int] = {}
        for r in rows:
            for k, v in r["signals"].items():
                signals[k] = signals.get(k, 0) + v
        out[variant] = {"clients": clients, "queries_per_client": rows[0]["queries_per_client"],
                        "edgeguard_alerted": eg, "prada_alerted": pr, "edgeguard_fpr": eg / clients,
                        "edgeguard_fpr_upper95": _upper95(eg, clients), "prada_fpr": pr / clients,
                        "prada_fpr_upper95": _upper95(pr, clients), "signals": signals,
                        "fleet_alerts": sum(r["fleet_alerts"] for r in rows),
                        "fleet_runs": len(rows), "fleet_queries_per_run": rows[0]["fleet_queries"],
                        "prada_state_bytes_max": max(r["prada_state_bytes_max"] for r in rows)}
    return out


def summarise(runs: list[dict], who: str) -> dict:
    alerts = [r[who]["first_alert"] for r in runs]
    hit = [a for a in alerts if a is not None]
    fids = [r[who]["fidelity_at_alert"] for r in runs if r[who]["first_alert"] is not None]
    natural = [r[who]["natural_fidelity_at_alert"] for r in runs
               if r[who].get("natural_fidelity_at_alert") is not None]
    # Misses count as never detected: the median over all runs is finite only if most were caught.
    everything = np.median([np.inf if a is None else a for a in alerts])
    return {
        "median_queries_all_runs": None if np.isinf(everything) else float(everything),
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


def build_profiles(cfg, victim, splits, seed):
    common = dict(predict=victim.run, volume_budget=cfg.volume_budget, streams=cfg.calibration_streams,
                  stream_length=cfg.calibration_len, seed=seed, domain=(0.0, 1.0))
    return {"main": Profile.build(splits.calibration, noise_sigma=NOISE_SIGMA, **common),
            "wide": Profile.build(splits.calibration, noise_sigma=WIDE_NOISE, noise_clip=False, **common)}


def run(cfg: Config) -> dict:
    started = time.time()
    splits = vic.digit_splits(0)
    natural = vic.natural_patches(2000, np.random.default_rng(7))
    victims = {"mlp": vic.mlp_victim(splits)}
    if atk.LOGREG_ATTACKS & set(cfg.attacks):
        victims["logreg"] = vic.logreg_victim(splits)
    # Every seed recalibrates: threshold variation across calibrations is part of the result.
    t0 = time.time()
    profiles = {(k, seed): build_profiles(cfg, v, splits, seed) for k, v in victims.items() for seed in range(cfg.seeds)}
    calibration_s = (time.time() - t0) / (2 * len(profiles))
    timings: list[int] = []
    attack_results = {}
    for name in cfg.attacks:
        kind = "logreg" if name in atk.LOGREG_ATTACKS else "mlp"
        budget = cfg.copycat_budget if name == "copycat-indist" else cfg.budget
        runs = [run_attack(name, victims[kind], profiles[kind, s]["main"], splits, natural, s, budget, timings)
                for s in range(cfg.seeds)]
        attack_results[name] = {"victim": kind, "client_ids": runs[0]["client_ids"],
                                "assignment": runs[0]["assignment"], "runs": runs,
                                "edgeguard": summarise(runs, "edgeguard"), "prada": summarise(runs, "prada"),
                                "median_final_fidelity": float(np.median([r["final_fidelity"] for r in runs]))}
        print(f"{name}: edgeguard {attack_results[name]['edgeguard']['median_queries_to_alert']} "
              f"prada {attack_results[name]['prada']['median_queries_to_alert']}", file=sys.stderr, flush=True)
    benign_timings: list[int] = []
    benign = _merge_benign([run_benign(cfg, victims["mlp"], profiles["mlp", s], splits, s, benign_timings)
                            for s in range(cfg.seeds)])
    guard = Guard(profiles["mlp", 0]["main"])
    prada_timings = _prada_latency(splits, victims["mlp"])
    main = [p["main"] for (kind, _), p in profiles.items() if kind == "mlp"]
    results = {
        "config": asdict(cfg),
        "environment": {"python": platform.python_version(), "numpy": np.__version__,
                        "onnxruntime": onnxruntime.__version__, "machine": platform.machine(),
                        "processor": platform.processor() or platform.machine()},
        "victims": {k: {"accuracy": float((v.labels(splits.benign) == splits.benign_y).mean())}
                    for k, v in victims.items()},
        "declared_noise": {"main": {"sigma": NOISE_SIGMA, "clip": True},
                           "noisy-0.08-unclipped": {"sigma": WIDE_NOISE, "clip": False}},
        "profiles": [{"seed": seed, "bytes": len(p.to_bytes()), "near_dist": p.near_dist,
                      "repeat_dist": p.repeat_dist, "chain_slack": p.chain_slack,
                      "novelty_slack": p.novelty_slack, "chain_blind": p.calibration["chain_blind"],
                      "thresholds": dict(zip(SIGNALS, [None if np.isinf(t) else t for t in p.thresholds], strict=True)),
                      "fleet_thresholds": dict(zip(SIGNALS, [None if np.isinf(t) else t for t in p.fleet_thresholds], strict=True))}
                     for seed, p in enumerate(main)],
        "wide_profile_chain_blind": [p["wide"].calibration["chain_blind"] for (k, _), p in profiles.items() if k == "mlp"],
        "calibration_seconds_per_profile": round(calibration_s, 2),
        "attacks": attack_results,
        "benign": benign,
        "latency": {"edgeguard_benign": latency(benign_timings), "edgeguard_all": latency(benign_timings + timings),
                    "prada": latency(prada_timings)},
        "state_bytes_per_client": {"edgeguard": guard.state_bytes_per_client,
                                   "edgeguard_fleet": guard.fleet_state_bytes,
                                   "prada_max_benign": max(b["prada_state_bytes_max"] for b in benign.values())},
        "copycat_floor": _copycat_floor(attack_results.get("copycat-indist"), splits, victims["mlp"]),
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


def _copycat_floor(res, splits, victim) -> dict | None:
    """How many in-distribution queries an undetected thief needs for 85% fidelity."""
    if res is None:
        return None
    needed = []
    for r in res["runs"]:
        thief = Thief(victim, splits.benign, r["seed"], equation_solving=False)
        rng = np.random.default_rng(1000 + r["seed"])
        order = rng.permutation(len(splits.attacker))
        xs = splits.attacker[order]
        ps = victim.run(xs)
        reach = next((n for n in (25, 50, 75, 100, 150, 200, 297) if thief.fidelity(xs[:n], ps[:n]) >= FIDELITY_GOAL), None)
        needed.append(reach)
    hit = [n for n in needed if n is not None]
    return {"fidelity_goal": FIDELITY_GOAL, "queries_needed_per_seed": needed,
            "median_queries_needed": float(np.median(hit)) if hit else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="CI-sized run")
    mode.add_argument("--smoke", action="store_true", help="seconds-long structural check")
    ap.add_argument("--out", default="results/extraction", help="results directory")
    ap.add_argument("--attacks", help="comma-separated attack names (default: the mode's)")
    ap.add_argument("--no-plots", action="store_true", help="accepted for compatibility; no plots are drawn")
    args = ap.parse_args(argv)
    cfg = MODES["smoke" if args.smoke else "quick" if args.quick else "full"]
    if args.attacks:
        names = tuple(a for a in args.attacks.split(",") if a)
        unknown = [a for a in names if a not in ALL_ATTACKS]
        if unknown:
            ap.error(f"unknown attacks: {', '.join(unknown)} (known: {', '.join(ALL_ATTACKS)})")
        cfg = replace(cfg, attacks=names)
    results = run(cfg)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(report.markdown(results))
    print(report.markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
