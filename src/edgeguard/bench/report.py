"""``edgeguard bench report``: Markdown tables and PNG plots comparing result documents.

Throughputs are shown in decimal GB/s (1e9 bytes/s). Emulated results are labelled "emulated" in
every table row and every plot title that contains them: they show that the code runs, not how
fast the platform is. matplotlib (the ``bench`` extra) is imported only here, and only for plots.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeguard.bench.results import load

GB = 1e9


def display_label(doc: dict[str, Any]) -> str:
    """The document's label, with "[emulated]" appended when emulated and not already said."""
    label = doc["label"]
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
    return doc["suites"].get("crypto")


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

    crypto = [(d, _crypto(d)) for d in docs if _crypto(d)]
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
    for name, path in (images or {}).items():
        lines += ["", f"![{name}]({path})"]
    return "\n".join(lines) + "\n"


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


def plot_throughput(docs: Sequence[dict[str, Any]], path: Path) -> None:
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
            c = _crypto(d)
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
    fig.savefig(path)
    plt.close(fig)


def plot_scaling(docs: Sequence[dict[str, Any]], path: Path) -> None:
    """Open throughput and speedup against thread count, one line per platform and cipher; dotted:
    the speedup implied by CPU efficiency, i.e. with the cores free of other jobs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    docs = _distinct([d for d in docs if _crypto(d)])
    fig, (abs_ax, rel_ax) = plt.subplots(1, 2, figsize=(9, 4), dpi=90)
    top = 1
    for d in docs:
        for s in _crypto(d)["summary"]:
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
    entries = sum(len(_crypto(d)["summary"]) for d in docs) + 2
    fig.tight_layout(rect=(0, 0.04 + 0.04 * ((entries + 1) // 2), 1, 1))
    fig.savefig(path)
    plt.close(fig)


def write_report(paths: Sequence[str | Path], out_dir: str | Path, plots: bool = True) -> Path:
    """Loads and validates result files, writes ``report.md`` (and PNGs) into out_dir.

    Returns the Markdown path. Raises ResultsError for an invalid file, OSError for I/O, and
    ImportError when plots are asked for without matplotlib installed.
    """
    docs = [load(p) for p in paths]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = {}
    if plots and any(_crypto(d) for d in docs):
        plot_throughput(docs, out / "crypto-throughput.png")
        plot_scaling(docs, out / "crypto-scaling.png")
        images = {"crypto throughput": "crypto-throughput.png", "thread scaling": "crypto-scaling.png"}
    md = out / "report.md"
    md.write_text(markdown(docs, images))
    return md
