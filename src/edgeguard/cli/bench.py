"""The ``edgeguard bench`` subcommand, for the main CLI to mount with ``add_bench_parser``.

    edgeguard bench [--quick | --full] [--suite crypto,load,inference,detector,verify]
                    [--model MODEL.onnx [--shape NAME=Nx3x64x96 ...]] [--intra-threads N]
                    [--threads 1,2,4] [--output FILE [--force]] [--json] [--label NAME]
    edgeguard bench report RESULTS.json ... --out DIR [--no-plots] [--force] [--json]

Without ``--output``, or with ``--json``, the JSON result document goes to stdout; a short
summary always goes to stderr. Errors are raised as :class:`CliError` for the main CLI to print.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..format import MAGIC
from ._common import EXIT_FORMAT, EXIT_USAGE, CliError, check_outputs, say

MIB = 1 << 20
SUITES = ("crypto", "load", "inference", "detector", "verify", "residue")
# verify writes and reads a 64-256 MiB file; residue reads child processes' memory (Linux, ptrace rights)
DEFAULT_SUITES = ("crypto", "load", "inference", "detector")
# They generate (or take the user's) ONNX models and seal them at run time: that needs onnx.
ONNX_SUITES = ("load", "inference", "detector", "residue")


def _thread_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("thread counts must be >= 1")
    return sorted(set(values))


def _suite_list(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = sorted(set(names) - set(SUITES))
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"suites are a comma-separated subset of {','.join(SUITES)}, got {text!r}")
    return [s for s in SUITES if s in names]


def _size_list(text: str) -> list[float]:
    try:
        values = sorted({float(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of sizes in MB: {text!r}") from None
    if not values or values[0] <= 0:
        raise argparse.ArgumentTypeError("model sizes must be > 0 MB")
    return values


def _shape(text: str) -> tuple[str, list[int | str]]:
    from ..bench.workloads import parse_shape

    try:
        return parse_shape(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def add_bench_parser(subparsers: argparse._SubParsersAction[Any]) -> argparse.ArgumentParser:
    """Adds ``bench`` (and its ``report`` subcommand) to an argparse subparsers object.

    The parser's default ``func`` is ``run_bench``; returns the new parser.
    """
    p: argparse.ArgumentParser = subparsers.add_parser(
        "bench", help="measure edgeguard's overhead on this machine",
        description="Measure edgeguard's overhead: crypto throughput next to `openssl speed`, sealed load "
                    "against plain onnxruntime, inference and detector latency; write a JSON result document "
                    "(schema: edgeguard/bench/schema.json). The load, inference and detector suites need onnx "
                    "(pip install 'edgeguard[bench]').")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const="quick",
                      help="the default: 16 MiB crypto payloads, one 8 MB model, 3 repetitions")
    mode.add_argument("--full", dest="mode", action="store_const", const="full",
                      help="64 MiB up to 1 GiB crypto payloads as free memory allows, 8/32/128 MB models, "
                           "5 repetitions, longer latency runs")
    p.set_defaults(mode="quick", func=run_bench, bench_command=None)
    p.add_argument("--suite", dest="suites", type=_suite_list, default=list(DEFAULT_SUITES),
                   help=f"comma-separated suites to run, of {','.join(SUITES)} (default: {','.join(DEFAULT_SUITES)})")
    p.add_argument("--model", help="your ONNX model for the load and inference suites, instead of synthetic MLPs")
    p.add_argument("--shape", action="append", type=_shape, default=[], metavar="NAME=DIMS",
                   help="an input's whole shape for the sample inputs, N for the batch dim, e.g. x=Nx3x64x96 "
                        "(repeatable; default: symbolic dims are the batch first, then 1)")
    p.add_argument("--intra-threads", type=int, default=0, metavar="N",
                   help="onnxruntime intra-op threads of every session in the inference suite (default 0: its own default)")
    p.add_argument("--seal-optimize", action="store_true",
                   help="seal onnxruntime's basic offline optimization of the model (edgeguard seal --optimize); "
                        "plain onnxruntime still loads the original")
    p.add_argument("--no-hardened", action="store_true",
                   help="skip the hardened mode (measuring its inference hardens this process: non-dumpable, "
                        "mlockall; by default it is measured where the process may lock all its memory)")
    p.add_argument("--verify-mib", type=_positive_int, help="payload size of the verify suite (default: quick 64, full 256)")
    p.add_argument("--sizes", type=_size_list, help="synthetic model sizes in MB for the load suite (inference uses the middle one), e.g. 8,32,128")
    p.add_argument("--threads", type=_thread_list, help="thread counts to measure, e.g. 1,2,4; 1 is "
                   "always added (default: 1, 2, ... every hardware thread)")
    p.add_argument("--chunk-size", type=_positive_int, default=MIB, help="chunk size in bytes (default 1 MiB)")
    p.add_argument("--repetitions", type=_positive_int, help="timed repetitions of each crypto measurement and "
                   "fresh-process loads per mode (the median is kept)")
    p.add_argument("--openssl", default=os.environ.get("EDGEGUARD_OPENSSL", "openssl"),
                   help="openssl command for `openssl speed` (default: $EDGEGUARD_OPENSSL or openssl)")
    p.add_argument("--label", help="platform name for reports (default: arch, native/emulated, CPU model)")
    p.add_argument("-o", "--output", help="write the JSON result document here instead of stdout")
    p.add_argument("--force", action="store_true", help="replace OUTPUT if it exists (never when OUTPUT is --model)")
    p.add_argument("--json", action="store_true", help="print the JSON result document on stdout, also with --output")
    p.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")

    sub = p.add_subparsers(dest="bench_command", metavar="{report}")
    r = sub.add_parser("report", help="Markdown tables and PNG plots comparing result files",
                       description="Render result JSON files into DIR/report.md and PNG plots.")
    r.add_argument("results", nargs="+", help="result JSON files (one per platform)")
    r.add_argument("--out", dest="report_dir", metavar="DIR", required=True, help="output directory")
    r.add_argument("--no-plots", action="store_true", help="tables only (no matplotlib needed)")
    r.add_argument("--force", action="store_true", help="replace report.md and the plots if they exist")
    r.add_argument("--json", action="store_true", help='print {"report": PATH} on stdout')
    return p


def _ms(v: float) -> str:
    return f"{v * 1e3:.3g} ms"


def _summary_lines(doc: dict[str, Any]) -> list[str]:
    suites = doc["suites"]
    lines = [f"edgeguard bench ({doc['mode']}) on {doc['label']}" + (" [EMULATED]" if doc["emulated"] else "")]

    def gb(v: float | None) -> str:
        return "  n/a" if v is None else f"{v / 1e9:5.2f}"

    for s in suites.get("crypto", {}).get("summary", []):
        ratio, share = s["open_over_limit"], s["cpu_share_1t"]
        scaling = ", ".join(f"{r['threads']}t {r['open_speedup']:.2f}x" for r in s["scaling"])
        lines.append(
            f"  {s['cipher']:<18} seal {gb(s['seal_1t_bytes_per_s'])}  open {gb(s['open_1t_bytes_per_s'])} GB/s"
            f" ({gb(s['open_1t_bytes_per_cpu_s'])} per CPU-s, {'n/a' if share is None else f'{share:.0%}'} of a core)"
            f"  open/limit {'n/a' if ratio is None else f'{ratio:.2f}'}  scaling {scaling}")
    for m in suites.get("load", {}).get("models", []):
        r = m["ratios"]
        lines.append(f"  load {m['name']} ({m['model_bytes'] / 1e6:.0f} MB): plain {_ms(m['modes']['plain_path']['load_s'])}"
                     f", strict {r['strict_load_over_plain']:.2f}x, fast {r['fast_load_over_plain']:.2f}x"
                     f", strict peak RSS {r['strict_peak_rss_over_model']:.2f}x model")
    for b in suites.get("inference", {}).get("batches", []):
        r = b["ratios"]
        hardened = f", hardened {r['hardened_p50_over_plain']:.2f}x" if "hardened_p50_over_plain" in r else ""
        lines.append(f"  inference b{b['batch']}: plain p50 {_ms(b['modes']['plain']['p50_s'])}"
                     f", strict {r['strict_p50_over_plain']:.2f}x, fast {r['fast_p50_over_plain']:.3f}x{hardened}")
    inf = suites.get("inference", {})
    for name, g in inf.get("goals", {}).items():
        lines.append(f"  goal {name}: {g['value']:.2f} (limit {g['limit']}) {'met' if g['met'] else 'MISSED'}")
    ver = suites.get("verify")
    if ver:
        c = ver["commands"]
        lines.append(f"  verify {ver['file_bytes'] / 2**20:.0f} MiB: edgeguard {_ms(c['edgeguard_verify']['median_s'])}"
                     f", openssl dgst {_ms(c['openssl_dgst']['median_s'])}: {ver['ratios']['verify_over_openssl']:.2f}x"
                     f" (CLI start-up {_ms(c['edgeguard_startup']['median_s'])})")
    res = suites.get("residue")
    if res:
        after = ", ".join(f"{r['mode']} {r['intra_op_threads']}t {r['runs']} runs"
                          f"{'' if r['variant'] == 'default' else ' ' + r['variant']}: {r['found_after_close']}"
                          for r in res["results"])
        lines.append(f"  residue after close (of {res['needles']} slices): {after}")
    det = suites.get("detector")
    if det:
        o, g = det["observe"][0], det["guarded_run"]
        lines.append(f"  detector observe p50 {o['p50_s'] * 1e6:.1f} us, p99 {o['p99_s'] * 1e6:.1f} us"
                     f", {det['state_bytes_per_client']} B/client; guarded run +{g['added_p50_s'] * 1e6:.1f} us p50")
    return lines


def _measure(args: argparse.Namespace) -> dict[str, Any]:
    """Runs the chosen suites with the mode's presets and returns the result document."""
    from edgeguard.bench import workloads

    from ..bench.crypto import CryptoConfig, run_crypto_suite
    from ..bench.detector import DetectorConfig, run_detector_suite
    from ..bench.results import make_document
    from ..bench.runtime import InferenceConfig, LoadConfig, run_inference_suite, run_load_suite
    from ..bench.verify import VerifyConfig, run_verify_suite

    full = args.mode == "full"
    shapes = dict(args.shape) or None
    progress = False if args.no_progress else None
    out: dict[str, Any] = {}
    if "crypto" in args.suites:
        cfg = (CryptoConfig.full if full else CryptoConfig.quick)(threads=args.threads)
        cfg.chunk_size = args.chunk_size
        cfg.openssl = args.openssl
        if args.repetitions:
            cfg.repetitions = args.repetitions
        out["crypto"] = run_crypto_suite(cfg, progress=progress)
    runtime = [s for s in ("load", "inference", "residue") if s in args.suites]
    with tempfile.TemporaryDirectory(prefix="edgeguard-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if runtime:
            load = LoadConfig.full() if full else LoadConfig.quick()
            load.sizes_mb = args.sizes or load.sizes_mb
            load.shapes = shapes
            load.hardened = False if args.no_hardened else None
            if args.repetitions:
                load.repetitions = args.repetitions
            models = ([workloads.user_model(args.model, tmp, args.seal_optimize)] if args.model else
                      [workloads.synthetic(size, tmp, args.seal_optimize) for size in load.sizes_mb])
            if "load" in runtime:
                probe = workloads.synthetic(0.02, tmp)  # what a session costs without weights
                out["load"] = run_load_suite(load, models, probe, progress=progress)
            if "residue" in runtime:
                from ..bench.residue import run_residue_suite

                out["residue"] = run_residue_suite(models[len(models) // 2], shapes,
                                                   hardened=False if args.no_hardened else None, progress=progress)
            if "inference" in runtime:
                # One model: the user's, else the middle synthetic size.
                inference = InferenceConfig.full() if full else InferenceConfig.quick()
                inference.shapes, inference.intra_op_threads = shapes, args.intra_threads
                inference.hardened = False if args.no_hardened else None
                out["inference"] = run_inference_suite(inference, models[len(models) // 2], progress=progress)
        if "detector" in args.suites:
            out["detector"] = run_detector_suite(DetectorConfig.full() if full else DetectorConfig.quick(), tmp,
                                                 progress=progress)
        if "verify" in args.suites:
            verify = VerifyConfig.full() if full else VerifyConfig.quick()
            verify.openssl = args.openssl
            if args.verify_mib:
                verify.size_mib = args.verify_mib
            if args.repetitions:
                verify.repetitions = args.repetitions
            out["verify"] = run_verify_suite(verify, tmp, progress=progress)
    return make_document(out, args.mode, label=args.label)


def _check_model(path: str) -> None:
    """Refuses a --model that onnxruntime cannot load, before any measurement (the suites would
    otherwise fail deep inside with onnxruntime's own exception)."""
    if not os.path.isfile(path):
        raise CliError(f"{path} is not a file")
    with open(path, "rb") as f:
        head = f.read(len(MAGIC))
    if not head:
        raise CliError(f"{path} is empty: not an ONNX model", code=EXIT_FORMAT)
    if head == MAGIC:
        raise CliError(f"{path} is a sealed file", hint="--model takes the plain ONNX model; the bench seals it itself",
                       code=EXIT_FORMAT)
    import onnxruntime as ort

    try:
        ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime's errors have no common public base class
        raise CliError(f"onnxruntime cannot load {path}: not an ONNX model ({type(e).__name__})", code=EXIT_FORMAT) from None


def _report(args: argparse.Namespace) -> int:
    from ..bench.report import PLOTS, write_report

    out = Path(args.report_dir)
    if out.exists() and not out.is_dir():
        raise CliError(f"{out} is not a directory")
    if out.is_dir():  # none of the files it may write (which depends on the results) may be an input
        check_outputs([out / "report.md", *(out / file for _, file, _, _ in PLOTS)], args.results, force=True)
    try:
        md = write_report(args.results, out, plots=not args.no_plots, overwrite=args.force)
    except ImportError as e:
        raise CliError(f"the report's plots need matplotlib ({e})",
                       hint="pip install 'edgeguard[bench]', or pass --no-plots") from None
    except FileExistsError as e:
        raise CliError(str(e), hint="pass --force to replace the report") from None
    if args.json:
        print(json.dumps({"report": str(md)}, indent=2))
    say(f"report written to {md}", file=sys.stderr)
    return 0


def run_bench(args: argparse.Namespace) -> int:
    """Runs ``bench`` or ``bench report`` from parsed arguments; returns 0.

    Raises:
        CliError: a measurement or a result file failed, a needed package is missing, the
            arguments do not fit together (exit code EXIT_USAGE), an output cannot or must not
            be written, or ``--model`` is not an ONNX model (EXIT_FORMAT).
    """
    from ..bench.crypto import BenchError
    from ..bench.results import ResultsError, dump

    try:
        if args.bench_command == "report":
            return _report(args)
        onnx_suites = [s for s in args.suites if s in ONNX_SUITES]
        if onnx_suites and importlib.util.find_spec("onnx") is None:
            raise CliError(f"the {', '.join(onnx_suites)} suite(s) need the onnx package to generate and seal models",
                           hint="pip install 'edgeguard[bench]', or run --suite crypto alone")
        if args.model and not {"load", "inference", "residue"} & set(args.suites):
            raise CliError("--model applies to the load, inference and residue suites only", code=EXIT_USAGE)
        if args.shape and not {"load", "inference", "residue"} & set(args.suites):
            raise CliError("--shape applies to the load, inference and residue suites only", code=EXIT_USAGE)
        if args.model and args.sizes:
            raise CliError("--sizes sizes synthetic models; it cannot be combined with --model", code=EXIT_USAGE)
        if args.output:
            check_outputs([args.output], [args.model], force=args.force)
        if args.model:
            _check_model(args.model)
        doc = _measure(args)
        if args.output:
            dump(doc, args.output, overwrite=args.force)
        if args.json or not args.output:
            sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    except (BenchError, ResultsError) as e:
        raise CliError(str(e)) from None
    say("\n".join(_summary_lines(doc)), file=sys.stderr)  # the label and CPU model come from the system
    return 0
