#!/usr/bin/env python3
"""The load-time, memory and latency benchmark of the secure runtime against plain
onnxruntime: the load and inference suites of `edgeguard bench` (edgeguard.bench.runtime), with
this script's own defaults.

    python benchmarks/runtime_load.py                      # 10, 100 and 500 MB synthetic MLPs
    python benchmarks/runtime_load.py --quick              # one 8 MB model
    python benchmarks/runtime_load.py --model my.onnx --out results/mine

Every option of `edgeguard bench` is accepted (--sizes, --model, --repetitions, --full, ...).
Writes OUT/runtime_load.json (a bench result document, schema src/edgeguard/bench/schema.json)
and OUT/runtime_load.md (the report's tables); OUT defaults to results/runtime.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgeguard.bench.__main__ import main as bench
from edgeguard.bench.report import write_report

DEFAULT_SIZES = "10,100,500"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    parser.add_argument("--out", type=Path, default=Path("results/runtime"))
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if not {"--sizes", "--model", "--quick", "-h", "--help"} & {a.split("=")[0] for a in rest}:
        rest += ["--sizes", DEFAULT_SIZES]
    result = args.out / "runtime_load.json"
    code = bench(["--suite", "load,inference", *rest, "--output", str(result)])
    if code == 0:
        write_report([result], args.out, plots=False).replace(args.out / "runtime_load.md")
    return code


if __name__ == "__main__":
    sys.exit(main())
