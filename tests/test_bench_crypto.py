"""The crypto suite: openssl speed parsing, the derived figures, and a real quick run validated
against the result schema and rendered into a report."""

from __future__ import annotations

import argparse
import copy
import json
import math

import pytest

from edgeguard.bench import crypto
from edgeguard.bench.crypto import BenchError, parse_openssl_speed, summarize
from edgeguard.bench.report import markdown, write_report
from edgeguard.bench.results import SCHEMA_VERSION, ResultsError, load, validate
from edgeguard.cli.bench import add_bench_parser

# `openssl speed -mr -bytes 1048576 -seconds 1 -evp aes-256-gcm` as OpenSSL 3.0 prints it.
SPEED_OUTPUT = """+DT:AES-256-GCM:1:1048576
+R:4321:AES-256-GCM:0.950000
version: 3.0.19
+H:1048576
+F:22:AES-256-GCM:4765987654.32
"""


def test_parse_openssl_speed() -> None:
    assert parse_openssl_speed(SPEED_OUTPUT) == {1048576: pytest.approx(4765987654.32)}
    two = "+H:16:1024\n+F:3:sha256:100.5:2000.25\n"
    assert parse_openssl_speed(two) == {16: 100.5, 1024: 2000.25}
    with pytest.raises(BenchError):
        parse_openssl_speed("Invalid command 'speedy'\n")


def test_openssl_speed_reports_failure() -> None:
    with pytest.raises(BenchError):
        crypto.openssl_speed("/nonexistent/openssl", "sha256", 1024, 1)
    with pytest.raises(BenchError):
        crypto.openssl_speed("openssl", "no-such-cipher-xyz", 1024, 1)


def test_full_payload_sizes_fit_memory() -> None:
    gib = 1 << 30
    assert crypto.full_payload_sizes(64 * gib) == [64 << 20, 256 << 20, 1024 << 20]
    assert crypto.full_payload_sizes(2 * gib) == [64 << 20, 256 << 20]
    assert crypto.full_payload_sizes(1 << 20) == [64 << 20]  # always one size
    assert crypto.full_payload_sizes()[0] == 64 << 20


def _row(cipher: str, op: str, threads: int, bps: float, cpu_bps: float | None = None, size: int = 1 << 24) -> dict:
    cpu_bps = bps if cpu_bps is None else cpu_bps
    return {"cipher": cipher, "operation": op, "payload_bytes": size, "threads": threads, "bytes_per_s": bps,
            "median_s": size / bps, "bytes_per_cpu_s": cpu_bps, "cpu_median_s": size / cpu_bps}


def test_summary_limit_ratio_and_scaling() -> None:
    rows = [_row("aes-256-gcm", "seal", 1, 0.9e9), _row("aes-256-gcm", "open", 1, 0.4e9, cpu_bps=0.8e9),
            _row("aes-256-gcm", "seal", 2, 1.7e9), _row("aes-256-gcm", "open", 2, 0.6e9, cpu_bps=0.72e9),
            # A smaller payload is ignored: the summary uses the largest one.
            _row("aes-256-gcm", "open", 1, 5e9, size=1 << 20)]
    speed = [{"algorithm": "aes-256-gcm", "block_bytes": 1 << 20, "bytes_per_s": 4e9},
             {"algorithm": "sha256", "block_bytes": 1 << 20, "bytes_per_s": 1e9},
             {"algorithm": "sha256", "block_bytes": 16384, "bytes_per_s": 7e9}]
    (s,) = summarize(rows, speed, ["aes-256-gcm"])
    assert s["single_core_limit_bytes_per_s"] == pytest.approx(0.8e9)  # 1 / (1/4 + 1/1) GB/s
    # The one-thread open got half a core: per CPU-second it runs at the limit, per second at half.
    assert s["cpu_share_1t"] == pytest.approx(0.5)
    assert s["open_over_limit"] == pytest.approx(1.0)
    assert s["open_over_limit_wall"] == pytest.approx(0.5)
    assert s["meets_goal"] is True
    assert [r["open_speedup"] for r in s["scaling"]] == [1.0, pytest.approx(1.5)]
    assert s["scaling"][1]["open_efficiency"] == pytest.approx(0.75)
    assert s["scaling"][1]["open_cpu_efficiency"] == pytest.approx(0.9)
    # Without openssl figures for this AEAD there is no limit, and no verdict.
    (n,) = summarize(rows, speed[1:], ["aes-256-gcm"])
    assert n["single_core_limit_bytes_per_s"] is None and n["meets_goal"] is None


@pytest.fixture(scope="module")
def quick_result(tmp_path_factory) -> dict:
    """A real `edgeguard bench --quick --suite crypto` run through the CLI functions (about 5 s natively)."""
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    parser = argparse.ArgumentParser()
    add_bench_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "--quick", "--suite", "crypto", "--no-progress", "--output", str(out)])
    assert args.func(args) == 0
    return json.loads(out.read_text())


def test_quick_run_matches_schema_and_measured_real_work(quick_result) -> None:
    validate(quick_result)
    assert quick_result["schema_version"] == SCHEMA_VERSION
    c = quick_result["suites"]["crypto"]
    assert c["config"]["payload_sizes"] == [16 << 20]
    assert {r["cipher"] for r in c["throughput"]} == {"aes-256-gcm", "chacha20-poly1305"}
    for r in c["throughput"]:
        assert len(r["samples_s"]) == c["config"]["repetitions"]
        assert r["bytes_per_s"] == pytest.approx(r["payload_bytes"] / r["median_s"])
        assert len(r["cpu_samples_s"]) == len(r["samples_s"])
    for s in c["summary"]:
        limit = s["single_core_limit_bytes_per_s"]
        assert s["open_over_limit"] == pytest.approx(s["open_1t_bytes_per_cpu_s"] / limit)
        assert s["open_over_limit_wall"] == pytest.approx(s["open_1t_bytes_per_s"] / limit)
        assert 0 < s["cpu_share_1t"] <= 1.2  # a single thread cannot use much more than one core
        assert math.isfinite(s["open_over_limit"])
    assert {r["algorithm"] for r in c["openssl"]["speed"]} == {"aes-256-gcm", "chacha20-poly1305", "sha256"}


def test_schema_rejects_broken_documents_and_accepts_future_suites(quick_result) -> None:
    validate(quick_result)
    future = copy.deepcopy(quick_result)
    future["schema_version"] = "1.7"
    future["suites"]["sealed_load"] = {"duration_s": 1.5, "rows": []}  # added by a later minor version
    future["host_note"] = "added optional field"
    validate(future)
    breakages = [
        lambda d: d.pop("fingerprint"),
        lambda d: d.update(schema_version="2.0"),
        lambda d: d.update(mode="medium"),
        lambda d: d["suites"].clear(),
        lambda d: d["suites"]["crypto"]["throughput"][0].update(bytes_per_s=-1.0),
        lambda d: d["suites"]["crypto"]["throughput"][0].update(cipher="rot13"),
        lambda d: d["suites"]["crypto"]["summary"][0].pop("open_over_limit"),
        lambda d: d["suites"].update(detector={"p50_ms": 1}),  # a suite must say its duration
    ]
    for breakage in breakages:
        bad = copy.deepcopy(quick_result)
        breakage(bad)
        with pytest.raises(ResultsError):
            validate(bad)


def test_report_labels_emulated_results(quick_result, tmp_path) -> None:
    native = tmp_path / "native.json"
    native.write_text(json.dumps(quick_result))
    emu = copy.deepcopy(quick_result)
    emu["emulated"] = emu["fingerprint"]["emulated"] = True
    emu["label"] = "aarch64 neoverse-n1"
    (tmp_path / "emu.json").write_text(json.dumps(emu))

    md_path = write_report([native, tmp_path / "emu.json"], tmp_path / "report")
    md = md_path.read_text()
    assert "aarch64 neoverse-n1 [emulated]" in md
    assert quick_result["label"] in md
    emulated_rows = [line for line in md.splitlines() if "| aes-256-gcm |" in line and "neoverse" in line]
    # Its rows in the single-thread, scaling (one per thread count) and openssl speed tables.
    assert len(emulated_rows) == 2 + len(quick_result["suites"]["crypto"]["config"]["threads"])
    assert all("[emulated]" in line for line in emulated_rows)
    assert "n/a (emulated)" in emulated_rows[0]  # no goal verdict for emulated figures
    for png in ("crypto-throughput.png", "crypto-scaling.png"):
        data = (tmp_path / "report" / png).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) < 200_000
        assert f"]({png})" in md
    # Only native results: nothing says emulated.
    native_only = dict(quick_result, emulated=False, label="test box")
    assert "emulated" not in markdown([native_only]).lower()


def test_report_keeps_platform_names_distinct(quick_result) -> None:
    full = dict(quick_result, mode="full")
    md = markdown([quick_result, full, full])
    label = quick_result["label"]
    assert f"| {label}, quick |" in md and f"| {label}, full |" in md and f"| {label}, full #2 |" in md


def test_report_rejects_invalid_file(tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "edgeguard-bench"}')
    with pytest.raises(ResultsError, match=r"bad\.json"):
        load(bad)
    (tmp_path / "notjson.json").write_text("{")
    with pytest.raises(ResultsError):
        load(tmp_path / "notjson.json")


def test_progress_bar_draws_only_when_enabled(capsys) -> None:
    bar = crypto.Progress(2, enabled=True)
    bar.step("aes-256-gcm open")
    bar.step("done")
    bar.close()
    err = capsys.readouterr().err
    assert "1/2 aes-256-gcm open" in err and "2/2 done" in err and "#" * 30 in err and err.endswith("\n")
    quiet = crypto.Progress(2, enabled=False)
    quiet.step("x")
    quiet.close()
    assert capsys.readouterr().err == ""
