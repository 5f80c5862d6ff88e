"""``python -m edgeguard.bench ...``: the same as ``edgeguard bench ...``."""

from __future__ import annotations

import argparse
import sys

from edgeguard.bench.cli import add_bench_parser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edgeguard")  # usage reads like the main CLI
    add_bench_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
