"""``edgeguard bench report``: Markdown tables and PNG plots comparing result documents.

Throughputs are shown in decimal GB/s (1e9 bytes/s), sizes in MB (1e6 bytes), latencies in ms or
us. Ratios compare edgeguard with plain onnxruntime measured side by side in the same run. Emulated results are labelled "emulated" in
every table row and every plot title that contains them: they show that the code runs, not how
fast the platform is. matplotlib (the ``bench`` extra) is imported only here, and only for plots.
"""

from __future__ import annotations

import io
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO, Literal

from edgeguard._files import write_file
from edgeguard.bench.results import load

GB = 1e9


def display_label(doc: dict[str, Any]) -> str:
    """The document's label, with "[emulated]" appended when emulated and not already said."""
    label: str = doc["label"]
    if doc["emulated"] and "emulated" not in label.lower():
        label += " [emulated]"
    return label


def _distinct(docs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Shallow copies whose labels are unique: a repeated label gets its mode, then a number."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    labels = [d["label"] for d in docs]
    for d in docs:
        label = d["label"]
        if labels.count(label) > 1:
            label = f"{label}, {d['mode']}"
        base, n = label, 2
        while label in seen:
            label, n = f"{base} #{n}", n + 1
        seen.add(label)
        out.append(dict(d, label=label))
    return out


def _gb(v: float | None) -> str:
    return "n/a" if v is None else f"{v / GB:.3g}"


def _ratio(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}x"


def _crypto(doc: dict[str, Any]) -> dict[str, Any] | None:
    crypto: dict[str, Any] | None = doc["suites"].get("crypto")
    return crypto


def _crypto_of(doc: dict[str, Any]) -> dict[str, Any]:
    """The crypto section of a document already filtered to have one."""
    crypto: dict[str, Any] = doc["suites"]["crypto"]
    return crypto


def _features(fp: dict[str, Any]) -> str:
    isa = fp.get("isa") or {}
    on = [k for k, v in isa.items() if v]
    return ", ".join(on) if on else "none known"


def markdown(docs: Sequence[dict[str, Any]], images: dict[str, str] | None = None) -> str:
    """Renders the comparison report. ``images`` maps plot names to paths relative to the report."""
    docs = _distinct(docs)
    lines = ["# edgeguard bench report", ""]
    if any(d["emulated"] for d in docs):
        lines += ["> Rows marked **emulated** ran under qemu-user: they show that the code works on that "
                  "architecture, not its speed (emulation inverts the ranking of code paths).", ""]
    lines += ["## Platforms", "",
              "| platform | arch | CPU | threads | ISA features | OpenSSL | mode | load avg at start | created |",
              "|---|---|---|---|---|---|---|---|---|"]
    for d in docs:
        fp = d["fingerprint"]
        load = (_crypto(d) or {}).get("load_average")
        lines.append(f"| {display_label(d)} | {fp['arch']} | {fp.get('cpu_model') or 'unknown'} | "
                     f"{fp['hardware_threads']} | {_features(fp)} | {fp['versions']['openssl']} | {d['mode']} | "
                     f"{'n/a' if load is None else f'{load[0]:.2f}'} | {d['created']} |")

    crypto = [(d, c) for d in docs if (c := _crypto(d))]
    if crypto:
        base_doc, base = next(((d, c) for d, c in crypto if not d["emulated"]), crypto[0])
        base_open = {s["cipher"]: s.get("open_1t_bytes_per_cpu_s") for s in base["summary"]}
        lines += ["", "## Crypto: single-thread throughput (GB/s)", "",
                  "seal and open: wall clock, and per CPU-second with the share of a core the run got. "
                  "limit = 1 / (1/AEAD + 1/SHA-256) from `openssl speed` at 1 MiB blocks in the same run, "
                  "which divides by user CPU time, so open/limit compares open per CPU-second with it "
                  "(open/limit wall: wall clock). "
                  f"Goal: open/limit >= {crypto[0][1]['summary'][0]['goal_open_over_limit']}. "
                  f"'open vs base' compares open per CPU-second with {display_label(base_doc)}.", "",
                  "| platform | cipher | payload MiB | seal | open | open per CPU-s | CPU share | openssl AEAD | "
                  "openssl SHA-256 | limit | open/limit | open/limit wall | goal met | open vs base |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for d, c in crypto:
            for s in c["summary"]:
                # The goal and cross-platform ratios are about real hardware, not emulation.
                met = "n/a (emulated)" if d["emulated"] else {True: "yes", False: "no", None: "n/a"}[s["meets_goal"]]
                vs = None if d["emulated"] != base_doc["emulated"] else base_open.get(s["cipher"])
                share = s.get("cpu_share_1t")
                lines.append(
                    f"| {display_label(d)} | {s['cipher']} | {s['payload_bytes'] >> 20} | "
                    f"{_gb(s['seal_1t_bytes_per_s'])} | {_gb(s['open_1t_bytes_per_s'])} | "
                    f"{_gb(s.get('open_1t_bytes_per_cpu_s'))} | {'n/a' if share is None else f'{share:.0%}'} | "
                    f"{_gb(s['openssl_aead_bytes_per_s'])} | {_gb(s['openssl_sha256_bytes_per_s'])} | "
                    f"{_gb(s['single_core_limit_bytes_per_s'])} | {_ratio(s['open_over_limit'])} | "
                    f"{_ratio(s.get('open_over_limit_wall'))} | {met} | "
                    f"{_ratio(s['open_1t_bytes_per_cpu_s'] / vs if vs and s.get('open_1t_bytes_per_cpu_s') else None)} |")
        lines += ["", "## Crypto: thread scaling of open (GB/s, speedup over 1 thread)", "",
                  "efficiency = speedup / threads (wall clock); CPU efficiency = bytes per CPU-second "
                  "against one thread, near 100% when the engine scales even if other jobs share the cores.", "",
                  "| platform | cipher | threads | seal | open | speedup | efficiency | CPU efficiency |",
                  "|---|---|---|---|---|---|---|---|"]
        for d, c in crypto:
            for s in c["summary"]:
                for row in s["scaling"]:
                    cpu_eff = row.get("open_cpu_efficiency")
                    lines.append(f"| {display_label(d)} | {s['cipher']} | {row['threads']} | "
                                 f"{_gb(row['seal_bytes_per_s'])} | {_gb(row['open_bytes_per_s'])} | "
                                 f"{_ratio(row['open_speedup'])} | {row['open_efficiency']:.0%} | "
                                 f"{'n/a' if cpu_eff is None else f'{cpu_eff:.0%}'} |")
        lines += ["", "## Crypto: `openssl speed` (GB/s)", "",
                  "| platform | algorithm | block bytes | GB/s |", "|---|---|---|---|"]
        for d, c in crypto:
            for r in c["openssl"]["speed"]:
                lines.append(f"| {display_label(d)} | {r['algorithm']} | {r['block_bytes']} | {_gb(r['bytes_per_s'])} |")
    lines += _load_tables(docs) + _inference_tables(docs) + _detector_tables(docs)
    for name, path in (images or {}).items():
        lines += ["", f"![{name}]({path})"]
    return "\n".join(lines) + "\n"


def _ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v * 1e3:.3g}"


def _us(v: float | None) -> str:
    return "n/a" if v is None else f"{v * 1e6:.3g}"


def _mb(v: float | None) -> str:
    return "n/a" if v is None else f"{v / 1e6:.3g}"


def _verdict(doc: dict[str, Any], goal: dict[str, Any]) -> str:
    # Goals are about real hardware: emulated timings get no verdict.
    if doc["emulated"]:
        return "n/a (emulated)"
    return {True: "yes", False: "**no**", None: "n/a"}[goal["met"]]


def _load_tables(docs: Sequence[dict[str, Any]]) -> list[str]:
    rows = [(d, m) for d in docs for m in d["suites"].get("load", {}).get("models", [])]
    if not rows:
        return []
    lines = ["", "## Load: sealed vs plain onnxruntime", "",
             "Each mode loads the same model in a fresh process; medians over the repetitions (fastest in "
             "brackets). Peak RSS: the process's peak resident memory above its RSS just before the load. "
             "plain_path: `onnxruntime.InferenceSession(path)`; plain_bytes: from the file's bytes; strict and "
             "fast: `edgeguard.InferenceSession(sealed, hygiene=...)`; open_only: verify + decrypt alone.", "",
             "| platform | model | MB | mode | load ms | vs plain_path | peak RSS MB | RSS / model | first b1 ms |",
             "|---|---|---|---|---|---|---|---|---|"]
    for d, m in rows:
        plain = m["modes"]["plain_path"]["load_s"]
        for mode, r in m["modes"].items():
            lines.append(f"| {display_label(d)} | {m['name']} | {_mb(m['model_bytes'])} | {mode} | "
                         f"{_ms(r['load_s'])} ({_ms(r['load_min_s'])}) | {_ratio(r['load_s'] / plain)} | "
                         f"{_mb(r['peak_rss_above_baseline_bytes'])} | "
                         f"{r['peak_rss_above_baseline_bytes'] / m['model_bytes']:.2f} | {_ms(r.get('first_b1_s'))} |")
    lines += ["", "Goals: strict load <= 0.6x and fast load <= 1.1x plain_path; strict peak RSS <= "
              "1.1x the model size. 'less session' subtracts what a session of a 20 kB model costs (thread "
              "pool, arena, code pages), which dominates small models.", "",
              "| platform | model MB | strict/plain load | met | fast/plain load | met | strict RSS / model | met | "
              "strict RSS less session / model |", "|---|---|---|---|---|---|---|---|---|"]
    for d, m in rows:
        g, r = m["goals"], m["ratios"]
        lines.append(f"| {display_label(d)} | {_mb(m['model_bytes'])} | {_ratio(r['strict_load_over_plain'])} | "
                     f"{_verdict(d, g['strict_load'])} | {_ratio(r['fast_load_over_plain'])} | {_verdict(d, g['fast_load'])} | "
                     f"{_ratio(r['strict_peak_rss_over_model'])} | {_verdict(d, g['strict_peak_rss'])} | "
                     f"{_ratio(r.get('strict_peak_rss_less_session_over_model'))} |")
    return lines


def _inference_tables(docs: Sequence[dict[str, Any]]) -> list[str]:
    runs = [(d, d["suites"]["inference"]) for d in docs if "inference" in d["suites"]]
    if not runs:
        return []
    lines = ["", "## Inference: per-query latency (ms)", "",
             "Plain onnxruntime, edgeguard strict and fast sessions of the same model in one process, timed "
             "in interleaved blocks after a warm-up. Goal: fast within 3% of plain (p50).", "",
             "| platform | model MB | batch | plain p50 | plain p99 | strict p50 | strict p99 | fast p50 | fast p99 | "
             "strict/plain p50 | fast/plain p50 | fast/plain p99 | goal met |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for d, inf in runs:
        for b in inf["batches"]:
            m, r = b["modes"], b["ratios"]
            lines.append(f"| {display_label(d)} | {_mb(inf['model']['model_bytes'])} | {b['batch']} | "
                         f"{_ms(m['plain']['p50_s'])} | {_ms(m['plain']['p99_s'])} | {_ms(m['strict']['p50_s'])} | "
                         f"{_ms(m['strict']['p99_s'])} | {_ms(m['fast']['p50_s'])} | {_ms(m['fast']['p99_s'])} | "
                         f"{_ratio(r['strict_p50_over_plain'])} | {r['fast_p50_over_plain']:.3f}x | "
                         f"{_ratio(r['fast_p99_over_plain'])} | "
                         f"{_verdict(d, {'met': r['fast_p50_over_plain'] <= inf['goals']['fast_inference']['limit']})} |")
    return lines


def _detector_tables(docs: Sequence[dict[str, Any]]) -> list[str]:
    runs = [(d, d["suites"]["detector"]) for d in docs if "detector" in d["suites"]]
    if not runs:
        return []
    lines = ["", "## Detector: `Guard.observe` latency (us)", "",
             "Per request through the Python API, on the bundled synthetic classifier workload (benign "
             "traffic, clients in rotation). Goal: p99 <= 50 us for one row.", "",
             "| platform | rows | requests | p50 | p99 | p99.9 | max | state bytes / client | goal met |",
             "|---|---|---|---|---|---|---|---|---|"]
    for d, det in runs:
        for o in det["observe"]:
            met = _verdict(d, det["goals"]["observe_p99"]) if o["rows"] == 1 else ""
            lines.append(f"| {display_label(d)} | {o['rows']} | {o['count']} | {_us(o['p50_s'])} | {_us(o['p99_s'])} | "
                         f"{_us(o['p999_s'])} | {_us(o['max_s'])} | {det['state_bytes_per_client']} | {met} |")
    lines += ["", "`InferenceSession(sealed, hygiene=\"fast\", guard=guard).run` against the same session without "
              "a guard, one row per query (us):", "",
              "| platform | unguarded p50 | guarded p50 | added p50 | unguarded p99 | guarded p99 | added p99 | "
              "guarded/unguarded p50 |", "|---|---|---|---|---|---|---|---|"]
    for d, det in runs:
        g = det["guarded_run"]
        u, gu = g["modes"]["unguarded"], g["modes"]["guarded"]
        lines.append(f"| {display_label(d)} | {_us(u['p50_s'])} | {_us(gu['p50_s'])} | {_us(g['added_p50_s'])} | "
                     f"{_us(u['p99_s'])} | {_us(gu['p99_s'])} | {_us(g['added_p99_s'])} | {_ratio(g['p50_ratio'])} |")
    return lines


def _plain_log_axis(ax: Any) -> None:
    """Log scale with plain decimal tick labels (0.5, 1, 2) instead of 5x10^-1."""
    from matplotlib.ticker import FuncFormatter

    ax.set_yscale("log")
    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(fmt)
    low, high = ax.get_ylim()
    if high / low < 10:  # within one decade there are too few major ticks to read values
        ax.yaxis.set_minor_formatter(fmt)
        ax.tick_params(axis="y", which="minor", labelsize=7)


def _title(base: str, docs: Sequence[dict[str, Any]]) -> str:
    return base + (" (includes emulated results)" if any(d["emulated"] for d in docs) else "")


def plot_throughput(docs: Sequence[dict[str, Any]], path: Path | BinaryIO) -> None:
    """Grouped bars: single-thread seal/open (per CPU-second) and openssl speed (which divides by
    CPU time too) per algorithm, per platform."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    docs = _distinct([d for d in docs if _crypto(d)])
    series = [("aes-256-gcm", "seal"), ("aes-256-gcm", "open"), ("aes-256-gcm", "openssl"),
              ("chacha20-poly1305", "seal"), ("chacha20-poly1305", "open"), ("chacha20-poly1305", "openssl"),
              ("sha256", "openssl")]
    fig, ax = plt.subplots(figsize=(8, 4.6), dpi=90)
    width = 0.8 / len(series)
    for i, (alg, what) in enumerate(series):
        values = []
        for d in docs:
            c = _crypto_of(d)
            if what == "openssl":
                v = next((r["bytes_per_s"] for r in c["openssl"]["speed"]
                          if r["algorithm"] == alg and r["block_bytes"] == 1 << 20), None)
            else:  # per CPU-second, like openssl speed's figures
                v = next((s[f"{what}_1t_bytes_per_cpu_s"] for s in c["summary"] if s["cipher"] == alg), None)
            values.append((v or 0) / GB)
        ax.bar([j + (i - len(series) / 2 + 0.5) * width for j in range(len(docs))], values, width,
               label=f"{alg} {what}" if what != "openssl" else f"openssl {alg}")
    ax.set_xticks(range(len(docs)), [textwrap.fill(display_label(d), 28) for d in docs], fontsize=8)
    _plain_log_axis(ax)
    ax.set_ylabel("GB per CPU-second, 1 thread (log)")
    ax.set_title(_title("Crypto throughput per platform", docs), fontsize=10)
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def plot_scaling(docs: Sequence[dict[str, Any]], path: Path | BinaryIO) -> None:
    """Open throughput and speedup against thread count, one line per platform and cipher; dotted:
    the speedup implied by CPU efficiency, i.e. with the cores free of other jobs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    docs = _distinct([d for d in docs if _crypto(d)])
    fig, (abs_ax, rel_ax) = plt.subplots(1, 2, figsize=(9, 4), dpi=90)
    top = 1
    for d in docs:
        for s in _crypto_of(d)["summary"]:
            t = [r["threads"] for r in s["scaling"]]
            top = max(top, *t)
            label = f"{display_label(d)}: {s['cipher']}"
            abs_ax.plot(t, [r["open_bytes_per_s"] / GB for r in s["scaling"]], marker="o", label=label)
            line, = rel_ax.plot(t, [r["open_speedup"] for r in s["scaling"]], marker="o", label=label)
            cpu = [r.get("open_cpu_efficiency") for r in s["scaling"]]
            if all(cpu):
                # What free cores would give: CPU efficiency times threads.
                rel_ax.plot(t, [e * n for e, n in zip(cpu, t, strict=True)], linestyle=":", color=line.get_color())
    rel_ax.plot([1, top], [1, top], "k--", linewidth=0.8, label="linear")
    rel_ax.plot([], [], "k:", label="dotted: from CPU time (cores free of other jobs)")
    _plain_log_axis(abs_ax)
    abs_ax.set_xlabel("threads")
    abs_ax.set_ylabel("open GB/s (log scale)")
    rel_ax.set_xlabel("threads")
    rel_ax.set_ylabel("speedup over 1 thread")
    for ax in (abs_ax, rel_ax):
        ax.set_xticks(range(1, top + 1))
    fig.legend(*rel_ax.get_legend_handles_labels(), fontsize=7, ncol=2, loc="lower center")
    fig.suptitle(_title("Thread scaling of open", docs), fontsize=10)
    entries = sum(len(_crypto_of(d)["summary"]) for d in docs) + 2
    fig.tight_layout(rect=(0, 0.04 + 0.04 * ((entries + 1) // 2), 1, 1))
    fig.savefig(path, format="png")
    plt.close(fig)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_load(docs: Sequence[dict[str, Any]], path: Path | BinaryIO) -> None:
    """Load time and peak RSS above baseline against model size: colour per mode, line style per
    platform."""
    plt = _pyplot()
    from matplotlib.lines import Line2D

    docs = _distinct([d for d in docs if "load" in d["suites"]])
    fig, (t_ax, m_ax) = plt.subplots(1, 2, figsize=(9, 4), dpi=90)
    modes = list(docs[0]["suites"]["load"]["models"][0]["modes"]) if docs else []
    colors = {mode: f"C{i}" for i, mode in enumerate(modes)}
    styles: list[Literal["-", "--", ":", "-."]] = ["-", "--", ":", "-."]
    for k, d in enumerate(docs):
        models = sorted(d["suites"]["load"]["models"], key=lambda m: m["model_bytes"])
        x = [m["model_bytes"] / 1e6 for m in models]
        for mode in modes:
            style = {"color": colors[mode], "linestyle": styles[k % len(styles)], "marker": "o"}
            t_ax.plot(x, [m["modes"][mode]["load_s"] * 1e3 for m in models], **style)
            m_ax.plot(x, [m["modes"][mode]["peak_rss_above_baseline_bytes"] / 1e6 for m in models], **style)
    top = max((m["model_bytes"] / 1e6 for d in docs for m in d["suites"]["load"]["models"]), default=1)
    m_ax.plot([0, top], [0, top], color="k", linewidth=0.6)
    m_ax.plot([0, top], [0, 1.1 * top], color="tab:red", linewidth=0.6, linestyle=":")
    t_ax.set_xscale("log")
    t_ax.set_yscale("log")
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for axis in (t_ax.xaxis, t_ax.yaxis):  # plain numbers at 1-2-5 steps rather than 2x10^2
        axis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())
    t_ax.set_ylabel("load time, ms (median, log)")
    m_ax.set_ylabel("peak RSS above baseline, MB")
    t_ax.set_xlabel("model size, MB (log)")
    m_ax.set_xlabel("model size, MB")
    t_ax.legend([Line2D([], [], color=c) for c in colors.values()], list(colors), fontsize=7, title="mode",
                title_fontsize=7)
    m_ax.legend([Line2D([], [], color="k", linewidth=0.6), Line2D([], [], color="tab:red", linestyle=":")],
                ["model size", "goal for strict: 1.1x model"], fontsize=7)
    fig.legend([Line2D([], [], color="k", linestyle=styles[k % len(styles)]) for k in range(len(docs))],
               [display_label(d) for d in docs], fontsize=7, ncol=2, loc="lower center")
    fig.suptitle(_title("Sealed vs plain load against model size", docs), fontsize=10)
    fig.tight_layout(rect=(0, 0.04 + 0.04 * ((len(docs) + 1) // 2), 1, 1))
    fig.savefig(path, format="png")
    plt.close(fig)


def plot_inference(docs: Sequence[dict[str, Any]], path: Path | BinaryIO) -> None:
    """Bars: strict/plain and fast/plain per-query p50 latency, grouped by platform and batch size."""
    plt = _pyplot()
    docs = _distinct([d for d in docs if "inference" in d["suites"]])
    groups = [(d, b) for d in docs for b in d["suites"]["inference"]["batches"]]
    fig, ax = plt.subplots(figsize=(9, 4.2), dpi=90)
    for offset, mode, color in ((-0.2, "strict", "tab:orange"), (0.2, "fast", "tab:blue")):
        drawn = ax.bar([j + offset for j in range(len(groups))], [b["ratios"][f"{mode}_p50_over_plain"] for _, b in groups],
                       0.4, color=color, label=f"{mode} / plain")
        ax.bar_label(drawn, fmt="%.3f", fontsize=6)
    ax.set_xticks(range(len(groups)), [textwrap.fill(f"{display_label(d)}, batch {b['batch']}", 20) for d, b in groups],
                  fontsize=6)
    ax.axhline(1.0, color="k", linewidth=0.8)
    ax.axhline(1.03, color="tab:red", linestyle="--", linewidth=0.8, label="goal for fast: 1.03x")
    ax.set_ylabel("p50 latency / plain onnxruntime p50")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(_title("Inference overhead per query", docs), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def plot_detector(docs: Sequence[dict[str, Any]], path: Path | BinaryIO) -> None:
    """CDF of Guard.observe latency per platform and request size, from the stored percentiles."""
    plt = _pyplot()
    docs = _distinct([d for d in docs if "detector" in d["suites"]])
    fig, ax = plt.subplots(figsize=(8, 4), dpi=90)
    for k, d in enumerate(docs):
        for o in d["suites"]["detector"]["observe"]:
            ax.plot([v * 1e6 for v in o["percentiles_s"]], range(101), linestyle="-" if o["rows"] == 1 else "--",
                    color=f"C{k}", label=f"{display_label(d)}: {o['rows']} row(s)")
    ax.axvline(50, color="tab:red", linestyle=":", linewidth=0.8, label="goal: p99 <= 50 us (1 row)")
    ax.axhline(99, color="grey", linewidth=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("Guard.observe latency per request, us (log)")
    ax.set_ylabel("percentile")
    ax.legend(fontsize=7)
    ax.set_title(_title("Detector latency distribution", docs), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


PLOTS = (
    ("crypto throughput", "crypto-throughput.png", "crypto", plot_throughput),
    ("thread scaling", "crypto-scaling.png", "crypto", plot_scaling),
    ("load time and memory vs model size", "load-vs-size.png", "load", plot_load),
    ("inference overhead", "inference-overhead.png", "inference", plot_inference),
    ("detector latency", "detector-latency.png", "detector", plot_detector),
)


def write_report(paths: Sequence[str | Path], out_dir: str | Path, plots: bool = True, *, overwrite: bool = True) -> Path:
    """Loads and validates result files, writes ``report.md`` (and PNGs) into out_dir.

    Returns the Markdown path. Each file is written atomically, after every plot has been drawn;
    on any failure the files this call wrote are removed again.

    Raises:
        ResultsError: an invalid result file.
        FileExistsError: a file to write exists and `overwrite` is False (nothing is written).
        OSError: I/O.
        ImportError: plots are asked for without matplotlib installed.
    """
    docs = [load(p) for p in paths]
    out = Path(out_dir)
    drawn = [(name, file, fn) for name, file, suite, fn in PLOTS if plots and any(suite in d["suites"] for d in docs)]
    md = out / "report.md"
    if not overwrite:
        for path in [md] + [out / file for _, file, _ in drawn]:
            if os.path.lexists(path):
                raise FileExistsError(f"{path} already exists")
    files: dict[Path, bytes] = {}
    for _, file, fn in drawn:
        png = io.BytesIO()
        fn(docs, png)
        files[out / file] = png.getvalue()
    files[md] = markdown(docs, {name: file for name, file, _ in drawn}).encode()
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    try:
        for path, data in files.items():
            write_file(path, data, overwrite=overwrite)
            written.append(path)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return md
