"""Goal checks and the Markdown summary of a harness run."""

from __future__ import annotations

GOALS = {
    "median_queries": 100,          # per attack, client level (fleet level for the Sybil attacks)
    "median_queries_1to4": 300,     # attacks interleaved 1:4 with natural digits
    "median_queries_sybil": 500,    # total attack queries over all ids
    "benign_fpr": 0.01,             # per variant, 1,000-query sessions
    "p99_latency_us": 50.0,
    "state_bytes_per_client": 16 * 1024,
}
HONEST_FLOOR = {"copycat-indist"}  # in-distribution queries: no input signal can exist


def _limit(name: str, res: dict) -> int:
    if res["attacks"][name]["client_ids"] > 1:
        return GOALS["median_queries_sybil"]
    if name.endswith("1to4"):
        return GOALS["median_queries_1to4"]
    return GOALS["median_queries"]


def goals(res: dict) -> dict:
    slow = []
    for name, a in res["attacks"].items():
        m = a["edgeguard"]["median_queries_all_runs"]
        if m is None or m > _limit(name, res):
            slow.append(name)
    fpr = {v: b["edgeguard_fpr"] for v, b in res["benign"].items()}
    p99 = res["latency"]["edgeguard_all"]["p99_us"]
    state = res["state_bytes_per_client"]["edgeguard"]
    return {
        "detection_median_queries": {"target": "<= 100 (1:4 interleaved: 300; Sybil: 500 total)",
                                     "met": not [n for n in slow if n not in HONEST_FLOOR],
                                     "failing": slow, "measured": None},
        "benign_fpr": {"target": GOALS["benign_fpr"], "measured": max(fpr.values()),
                       "met": max(fpr.values()) <= GOALS["benign_fpr"],
                       "failing": [v for v, f in fpr.items() if f > GOALS["benign_fpr"]]},
        "p99_latency_us": {"target": 50.0, "measured": p99, "met": p99 <= GOALS["p99_latency_us"], "failing": []},
        "state_bytes_per_client": {"target": 16384, "measured": state,
                                   "met": state <= GOALS["state_bytes_per_client"], "failing": []},
    }


def _fmt(v, digits=2):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def markdown(res: dict) -> str:
    cfg = res["config"]
    lines = [
        f"### Extraction harness results ({cfg['mode']} mode: {cfg['seeds']} seeds, "
        f"{cfg['budget']} queries per attack, {cfg['benign_clients']} benign clients of "
        f"{cfg['benign_len']} queries per variant and seed, each seed with its own calibration)",
        "",
        "Victims: " + ", ".join(f"digits {k} accuracy {v['accuracy']:.3f}" for k, v in res["victims"].items())
        + f" (served through onnxruntime {res['environment']['onnxruntime']}). Declared sensor noise: "
        f"sigma {res['declared_noise']['main']['sigma']}, clipped to [0, 1].",
        "",
        "| attack | ids | edgeguard detected | median queries to alert (edgeguard) | per run | fidelity at alert "
        "| natural-seed floor at alert | signals | PRADA detected | median queries (PRADA) | PRADA fidelity at alert "
        "| final fidelity (undefended) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, a in res["attacks"].items():
        e, p = a["edgeguard"], a["prada"]
        signals = sorted({s for r in a["runs"] for s in r["edgeguard"]["signals"]})
        per_run = ", ".join(_fmt(r["edgeguard"]["first_alert"]) for r in a["runs"])
        ids = str(a["client_ids"]) + ("" if a["client_ids"] == 1 else f" ({a['assignment']})")
        lines.append(
            f"| {name} | {ids} | {_fmt(e['detection_rate'])} | {_fmt(e['median_queries_all_runs'], 0)} | {per_run} | "
            f"{_fmt(e['median_fidelity_at_alert'])} | {_fmt(e['median_natural_fidelity_at_alert'])} | "
            f"{', '.join(signals) or '–'} | {_fmt(p['detection_rate'])} | "
            f"{_fmt(p['median_queries_all_runs'], 0)} | {_fmt(p['median_fidelity_at_alert'])} | "
            f"{_fmt(a['median_final_fidelity'])} |")
    lines += ["", "| benign variant | clients | queries each | edgeguard FPR (95% upper) | signals | "
                  "fleet alerts (runs) | PRADA FPR (95% upper) |", "|---|---|---|---|---|---|---|"]
    for v, b in res["benign"].items():
        sig = ", ".join(f"{k} {n}" for k, n in sorted(b["signals"].items())) or "–"
        lines.append(f"| {v} | {b['clients']} | {b['queries_per_client']} | {_fmt(b['edgeguard_fpr'], 3)} "
                     f"({_fmt(b['edgeguard_fpr_upper95'], 3)}) | {sig} | {b['fleet_alerts']} ({b['fleet_runs']} of "
                     f"{b['fleet_queries_per_run']} queries) | {_fmt(b['prada_fpr'], 3)} "
                     f"({_fmt(b['prada_fpr_upper95'], 3)}) |")
    lat, st = res["latency"], res["state_bytes_per_client"]
    lines += [
        "",
        f"Latency per query through the Python API (`Guard.observe`, fleet view on): p50 "
        f"{lat['edgeguard_all']['p50_us']:.1f} µs, p99 {lat['edgeguard_all']['p99_us']:.1f} µs over "
        f"{lat['edgeguard_all']['n']} queries (PRADA in Python: p50 {lat['prada']['p50_us']:.1f} µs, p99 "
        f"{lat['prada']['p99_us']:.1f} µs). State: edgeguard {st['edgeguard']} B per client, fixed, plus "
        f"{st['edgeguard_fleet']} B for the fleet view; PRADA up to {st['prada_max_benign']} B after one benign "
        f"client, growing with every kept query. Calibration: {res['calibration_seconds_per_profile']} s per profile.",
    ]
    floor = res.get("copycat_floor")
    if floor:
        lines += ["", f"Copycat floor: an undetected thief with in-distribution digits reaches "
                      f"{floor['fidelity_goal']:.0%} fidelity after a median of "
                      f"{_fmt(floor['median_queries_needed'], 0)} queries (per seed: {floor['queries_needed_per_seed']})."]
    lines += ["", "| goal | target | measured | met | failing |", "|---|---|---|---|---|"]
    for g, v in res["goals"].items():
        lines.append(f"| {g} | {v['target']} | {_fmt(v['measured'])} | {'yes' if v['met'] else 'no'} | "
                     f"{', '.join(v['failing']) or '–'} |")
    lines += ["", f"Run took {res['seconds']} s."]
    return "\n".join(lines) + "\n"
