"""`edgeguard bench` argument parsing and error handling, through add_bench_parser/run_bench."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from edgeguard.cli import EXIT_ERROR, EXIT_USAGE, main
from edgeguard.cli.bench import DEFAULT_SUITES, add_bench_parser, run_bench


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="edgeguard")
    add_bench_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_bench_defaults_to_quick() -> None:
    args = _parse(["bench"])
    assert args.mode == "quick" and args.bench_command is None and args.func is run_bench
    assert args.suites == list(DEFAULT_SUITES) and args.model is None


def test_bench_options() -> None:
    args = _parse(["bench", "--full", "--threads", "4,1,2,2", "--label", "pi5", "-o", "r.json"])
    assert (args.mode, args.threads, args.label, args.output) == ("full", [1, 2, 4], "pi5", "r.json")
    args = _parse(["bench", "--suite", "detector,crypto", "--sizes", "32,8,8"])
    assert args.suites == ["crypto", "detector"] and args.sizes == [8.0, 32.0]


@pytest.mark.parametrize("argv", [["bench", "--quick", "--full"], ["bench", "--threads", "0"],
                                  ["bench", "--threads", "two"], ["bench", "--repetitions", "0"],
                                  ["bench", "--chunk-size", "-1"], ["bench", "report", "a.json"],
                                  ["bench", "--suite", "crypto,gpu"], ["bench", "--suite", ""],
                                  ["bench", "--sizes", "0"]])
def test_bench_rejects_bad_arguments(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        _parse(argv)


def test_report_arguments() -> None:
    args = _parse(["bench", "report", "a.json", "b.json", "--out", "dir", "--no-plots"])
    assert (args.bench_command, args.results, args.report_dir, args.no_plots) == ("report", ["a.json", "b.json"], "dir", True)


def test_missing_openssl_fails_cleanly(capsys, tmp_path) -> None:
    out = tmp_path / "r.json"
    code = main(["bench", "--suite", "crypto", "--openssl", str(tmp_path / "no-openssl"), "--no-progress", "-o", str(out)])
    assert code == EXIT_ERROR
    assert capsys.readouterr().err.startswith("edgeguard: error: openssl command not found")
    assert not out.exists()


def test_oversized_chunk_fails_cleanly(capsys, tmp_path) -> None:
    code = main(["bench", "--suite", "crypto", "--chunk-size", str(1 << 40), "--threads", "1", "--repetitions", "1",
                 "--no-progress", "-o", str(tmp_path / "r.json")])
    assert code == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("edgeguard: error: ") and "chunk_size" in err


def test_report_of_invalid_file_fails_cleanly(capsys, tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    assert main(["bench", "report", str(bad), "--out", str(tmp_path / "r")]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("edgeguard: error: ") and "bad.json" in err


@pytest.mark.parametrize(("argv", "message"), [
    (["--suite", "crypto", "--model", "m.onnx"], "--model applies to the load, inference and residue suites only"),
    (["--suite", "load", "--model", "m.onnx", "--sizes", "8"], "cannot be combined with --model"),
])
def test_model_options_that_do_not_fit_are_usage_errors(capsys, argv, message) -> None:
    assert main(["bench", *argv]) == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_missing_model_file_fails_before_measuring(capsys, tmp_path) -> None:
    assert main(["bench", "--suite", "load", "--model", str(tmp_path / "none.onnx")]) == EXIT_ERROR
    assert "none.onnx is not a file" in capsys.readouterr().err


def test_onnx_suites_say_which_extra_they_need(capsys, monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    assert main(["bench", "--suite", "crypto,detector", "--no-progress"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "edgeguard: error: the detector suite(s) need the onnx package" in err
    assert "edgeguard: hint: pip install 'edgeguard[bench]'" in err


def test_report_without_matplotlib_names_the_extra(capsys, monkeypatch, tmp_path) -> None:
    from edgeguard.bench import report

    def no_matplotlib(*_a: object, **_k: object) -> None:
        raise ImportError("No module named 'matplotlib'")

    monkeypatch.setattr(report, "write_report", no_matplotlib)
    assert main(["bench", "report", "a.json", "--out", str(tmp_path)]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "edgeguard: error: the report's plots need matplotlib" in err and "--no-plots" in err


def test_python_m_bench_reports_errors_like_the_main_cli(tmp_path) -> None:
    out = subprocess.run([sys.executable, "-m", "edgeguard.bench", "--suite", "crypto", "--openssl",
                          str(tmp_path / "none"), "--no-progress"], capture_output=True, text=True, timeout=120)
    assert out.returncode == EXIT_ERROR
    assert out.stderr.startswith("edgeguard: error: openssl command not found")


def test_benchmark_script_uses_the_bench_cli() -> None:
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "crypto_throughput.py"
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--full" in out.stdout and "--output" in out.stdout
