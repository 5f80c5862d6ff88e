"""The ``edgeguard bench`` subcommand, for the main CLI to mount with ``add_bench_parser``.

    edgeguard bench [--quick | --full] [--threads 1,2,4] [--output FILE] [--label NAME]
    edgeguard bench report RESULTS.json ... --out DIR [--no-plots]

Without ``--output`` the JSON result document goes to stdout; a short summary always goes to
stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from edgeguard.bench.crypto import MIB, BenchError, CryptoConfig, run_crypto_suite
from edgeguard.bench.results import ResultsError, dump, make_document


def _thread_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("thread counts must be >= 1")
    return sorted(set(values))


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def add_bench_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Adds ``bench`` (and its ``report`` subcommand) to an argparse subparsers object.

    The parser's default ``func`` is ``run_bench``; returns the new parser.
    """
    p = subparsers.add_parser(
        "bench", help="measure edgeguard's overhead on this machine",
        description="Measure the crypto throughput of the native core next to `openssl speed` and write "
                    "a JSON result document (schema: edgeguard/bench/schema.json).")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const="quick",
                      help="16 MiB payloads, 3 repetitions (the default)")
    mode.add_argument("--full", dest="mode", action="store_const", const="full",
                      help="64 MiB up to 1 GiB payloads as free memory allows, 5 repetitions")
    p.set_defaults(mode="quick", func=run_bench, bench_command=None)
    p.add_argument("--threads", type=_thread_list, help="thread counts to measure, e.g. 1,2,4; 1 is "
                   "always added (default: 1, 2, ... every hardware thread)")
    p.add_argument("--chunk-size", type=_positive_int, default=MIB, help="chunk size in bytes (default 1 MiB)")
    p.add_argument("--repetitions", type=_positive_int, help="timed repetitions per measurement (median is kept)")
    p.add_argument("--openssl", default=os.environ.get("EDGEGUARD_OPENSSL", "openssl"),
                   help="openssl command for `openssl speed` (default: $EDGEGUARD_OPENSSL or openssl)")
    p.add_argument("--label", help="platform name for reports (default: arch, native/emulated, CPU model)")
    p.add_argument("-o", "--output", help="write the JSON here instead of stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")

    sub = p.add_subparsers(dest="bench_command", metavar="{report}")
    r = sub.add_parser("report", help="Markdown tables and PNG plots comparing result files",
                       description="Render result JSON files into DIR/report.md and PNG plots.")
    r.add_argument("results", nargs="+", help="result JSON files (one per platform)")
    r.add_argument("--out", dest="report_dir", metavar="DIR", required=True, help="output directory")
    r.add_argument("--no-plots", action="store_true", help="tables only (no matplotlib needed)")
    return p


def _summary_lines(doc: dict[str, Any]) -> list[str]:
    crypto = doc["suites"]["crypto"]
    lines = [f"edgeguard bench ({doc['mode']}) on {doc['label']}" + (" [EMULATED]" if doc["emulated"] else "")]

    def gb(v: float | None) -> str:
        return "  n/a" if v is None else f"{v / 1e9:5.2f}"

    for s in crypto["summary"]:
        ratio, share = s["open_over_limit"], s["cpu_share_1t"]
        scaling = ", ".join(f"{r['threads']}t {r['open_speedup']:.2f}x" for r in s["scaling"])
        lines.append(
            f"  {s['cipher']:<18} seal {gb(s['seal_1t_bytes_per_s'])}  open {gb(s['open_1t_bytes_per_s'])} GB/s"
            f" ({gb(s['open_1t_bytes_per_cpu_s'])} per CPU-s, {'n/a' if share is None else f'{share:.0%}'} of a core)"
            f"  open/limit {'n/a' if ratio is None else f'{ratio:.2f}'}  scaling {scaling}")
    return lines


def run_bench(args: argparse.Namespace) -> int:
    """Runs ``bench`` or ``bench report`` from parsed arguments; returns the exit status
    (0 on success, 1 when a measurement or a result file failed; the reason goes to stderr)."""
    try:
        if args.bench_command == "report":
            from edgeguard.bench.report import write_report

            try:
                md = write_report(args.results, args.report_dir, plots=not args.no_plots)
            except ImportError as e:
                print(f"edgeguard bench report: {e} (pip install 'edgeguard[bench]', or --no-plots)", file=sys.stderr)
                return 1
            print(f"report written to {md}", file=sys.stderr)
            return 0
        make = CryptoConfig.full if args.mode == "full" else CryptoConfig.quick
        cfg = make(threads=args.threads)
        cfg.chunk_size = args.chunk_size
        cfg.openssl = args.openssl
        if args.repetitions:
            cfg.repetitions = args.repetitions
        crypto = run_crypto_suite(cfg, progress=False if args.no_progress else None)
        doc = make_document({"crypto": crypto}, args.mode, label=args.label)
        if args.output:
            dump(doc, args.output)
        else:
            sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    except (BenchError, ResultsError, OSError, ValueError) as e:
        print(f"edgeguard bench: {e}", file=sys.stderr)
        return 1
    print("\n".join(_summary_lines(doc)), file=sys.stderr)
    return 0
