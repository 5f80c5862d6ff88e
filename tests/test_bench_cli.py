"""`edgeguard bench` argument parsing and error handling, through add_bench_parser/run_bench."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from edgeguard.bench.cli import add_bench_parser, run_bench


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="edgeguard")
    add_bench_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_bench_defaults_to_quick() -> None:
    args = _parse(["bench"])
    assert args.mode == "quick" and args.bench_command is None and args.func is run_bench


def test_bench_options() -> None:
    args = _parse(["bench", "--full", "--threads", "4,1,2,2", "--label", "pi5", "-o", "r.json"])
    assert (args.mode, args.threads, args.label, args.output) == ("full", [1, 2, 4], "pi5", "r.json")


@pytest.mark.parametrize("argv", [["bench", "--quick", "--full"], ["bench", "--threads", "0"],
                                  ["bench", "--threads", "two"], ["bench", "--repetitions", "0"],
                                  ["bench", "--chunk-size", "-1"], ["bench", "report", "a.json"]])
def test_bench_rejects_bad_arguments(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        _parse(argv)


def test_report_arguments() -> None:
    args = _parse(["bench", "report", "a.json", "b.json", "--out", "dir", "--no-plots"])
    assert (args.bench_command, args.results, args.report_dir, args.no_plots) == ("report", ["a.json", "b.json"], "dir", True)


def test_missing_openssl_fails_cleanly(capsys, tmp_path) -> None:
    out = tmp_path / "r.json"
    args = _parse(["bench", "--openssl", str(tmp_path / "no-openssl"), "--no-progress", "-o", str(out)])
    assert run_bench(args) == 1
    assert "openssl command not found" in capsys.readouterr().err
    assert not out.exists()


def test_oversized_chunk_fails_cleanly(capsys, tmp_path) -> None:
    args = _parse(["bench", "--chunk-size", str(1 << 40), "--threads", "1", "--repetitions", "1",
                   "--no-progress", "-o", str(tmp_path / "r.json")])
    assert run_bench(args) == 1
    assert "chunk_size" in capsys.readouterr().err


def test_report_of_invalid_file_fails_cleanly(capsys, tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    assert run_bench(_parse(["bench", "report", str(bad), "--out", str(tmp_path / "r")])) == 1
    assert "bad.json" in capsys.readouterr().err


def test_benchmark_script_uses_the_bench_cli() -> None:
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "crypto_throughput.py"
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--full" in out.stdout and "--output" in out.stdout
