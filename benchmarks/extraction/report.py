"""Goal checks, the Markdown summary and the plots of a harness run."""

from __future__ import annotations

from pathlib import Path

GOALS = {
    "detection_rate": 1.0,
    "median_queries_to_alert": 50,
    "fidelity_at_alert": 0.5,
    "benign_fpr": 0.01,
    "p99_latency_us": 50.0,
    "state_bytes_per_client": 16 * 1024,
}


def goals(res: dict) -> dict:
    eg = {name: a["edgeguard"] for name, a in res["attacks"].items()}
    missed = [n for n, s in eg.items() if s["detection_rate"] < GOALS["detection_rate"]]
    slow = [n for n, s in eg.items()
            if s["median_queries_to_alert"] is None or s["median_queries_to_alert"] > GOALS["median_queries_to_alert"]]
    leaky = [n for n, s in eg.items()
             if s["median_fidelity_at_alert"] is not None and s["median_fidelity_at_alert"] > GOALS["fidelity_at_alert"]]
    fpr = {v: b["edgeguard_fpr"] for v, b in res["benign"].items()}
    p99 = res["latency"]["edgeguard_all"]["p99_us"]
    state = res["state_bytes_per_client"]["edgeguard"]

    def worst(key):
        vals = [s[key] for s in eg.values() if s[key] is not None]
        return max(vals) if vals else None

    return {
        "detection_rate": {"target": 1.0, "measured": min((s["detection_rate"] for s in eg.values()), default=None),
                           "met": not missed, "failing": missed},
        "median_queries_to_alert": {"target": 50, "measured": worst("median_queries_to_alert"),
                                    "met": not slow, "failing": slow},
        "fidelity_at_alert": {"target": 0.5, "measured": worst("median_fidelity_at_alert"),
                              "met": not leaky, "failing": leaky},
        "benign_fpr": {"target": 0.01, "measured": max(fpr.values()),
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
        f"{cfg['budget']} queries per attack, {cfg['benign_clients']} benign clients per variant and seed, "
        "each seed with its own calibration)",
        "",
        "Victims: " + ", ".join(f"digits {k} accuracy {v['accuracy']:.3f}" for k, v in res["victims"].items())
        + f" (served through onnxruntime {res['environment']['onnxruntime']}).",
        "",
        "| attack | edgeguard detected | edgeguard median queries to alert | edgeguard fidelity at alert "
        "(median) | of which from natural digits alone | signals | PRADA detected | PRADA median queries "
        "to alert | PRADA fidelity at alert | final fidelity (undefended) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, a in res["attacks"].items():
        e, p = a["edgeguard"], a["prada"]
        signals = sorted({s for r in a["runs"] for s in r["edgeguard"]["signals"]})
        lines.append(
            f"| {name} | {_fmt(e['detection_rate'])} | {_fmt(e['median_queries_to_alert'], 0)} | "
            f"{_fmt(e['median_fidelity_at_alert'])} | {_fmt(e['median_natural_fidelity_at_alert'])} | "
            f"{', '.join(signals) or '–'} | {_fmt(p['detection_rate'])} | "
            f"{_fmt(p['median_queries_to_alert'], 0)} | {_fmt(p['median_fidelity_at_alert'])} | "
            f"{_fmt(a['median_final_fidelity'])} |")
    lines += ["", "| benign variant | clients | queries each | edgeguard FPR | PRADA FPR |", "|---|---|---|---|---|"]
    for v, b in res["benign"].items():
        lines.append(f"| {v} | {b['clients']} | {b['queries_per_client']} | {_fmt(b['edgeguard_fpr'])} | "
                     f"{_fmt(b['prada_fpr'])} |")
    lat, st = res["latency"], res["state_bytes_per_client"]
    lines += [
        "",
        f"Latency per query through the Python API (`Guard.observe`): p50 {lat['edgeguard_all']['p50_us']:.1f} µs, "
        f"p99 {lat['edgeguard_all']['p99_us']:.1f} µs over {lat['edgeguard_all']['n']} queries "
        f"(PRADA in Python: p50 {lat['prada']['p50_us']:.1f} µs, p99 {lat['prada']['p99_us']:.1f} µs). "
        f"State per client: edgeguard {st['edgeguard']} B, fixed; PRADA up to {st['prada_max_benign']} B "
        "after one benign client, growing with every kept query.",
    ]
    floor = res.get("copycat_floor")
    if floor:
        lines += ["", f"Copycat floor: an undetected thief with in-distribution digits reaches "
                      f"{floor['fidelity_goal']:.0%} fidelity after a median of "
                      f"{_fmt(floor['median_queries_needed'], 0)} queries (per seed: {floor['queries_needed_per_seed']}); "
                      f"only the volume budget ({cfg['volume_budget']} queries) stops it."]
    lines += ["", "| goal | target | measured | met | failing |", "|---|---|---|---|---|"]
    for g, v in res["goals"].items():
        lines.append(f"| {g} | {v['target']} | {_fmt(v['measured'])} | {'yes' if v['met'] else 'no'} | "
                     f"{', '.join(v['failing']) or '–'} |")
    lines += ["", f"Run took {res['seconds']} s."]
    return "\n".join(lines) + "\n"


def plots(res: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(res["attacks"])
    cols = 4
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, name in zip(axes.ravel(), names, strict=True):
        a = res["attacks"][name]
        for r in a["runs"]:
            n, f = zip(*r["curve"], strict=True)
            ax.plot(n, f, color="0.6", lw=1)
            for who, color, marker in (("edgeguard", "tab:red", "o"), ("prada", "tab:blue", "s")):
                q, fa = r[who]["first_alert"], r[who]["fidelity_at_alert"]
                if q is not None:
                    ax.plot([q], [fa], marker, color=color, label=who)
        ax.set_xscale("log")
        ax.set_ylim(0, 1)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("queries")
        ax.set_ylabel("surrogate fidelity")
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    uniq = dict(zip(labels, handles, strict=True))
    fig.legend(uniq.values(), [f"{k} first alert" for k in uniq], loc="upper center", ncol=2)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(out / "fidelity.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key, color in (("edgeguard_all", "tab:red"), ("prada", "tab:blue")):
        pct = res["latency"][key]["percentiles"]
        ax.plot([float(v) for v in pct.values()], [float(q) for q in pct], marker=".", color=color, label=key)
    ax.axvline(GOALS["p99_latency_us"], color="0.5", ls="--", label="50 µs goal")
    ax.set_xscale("log")
    ax.set_xlabel("µs per query (Python API)")
    ax.set_ylabel("percentile")
    ax.set_title("per-query detector latency")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)
    plt.close(fig)
