"""The load, inference and detector suites: a real (tiny) run of each, validated against the result
schema (v1.2, which still accepts 1.0 crypto-only documents) and rendered into a report.

Timing goals are not asserted here (a shared test machine cannot honour them); what is asserted is
that the figures are real measurements, consistent with their samples, and labelled."""

from __future__ import annotations

import copy
import json
import statistics
from pathlib import Path

import numpy as np
import pytest

from edgeguard.bench import workloads
from edgeguard.bench.detector import DetectorConfig, run_detector_suite
from edgeguard.bench.report import markdown, write_report
from edgeguard.bench.results import SCHEMA_VERSION, ResultsError, load, make_document, validate
from edgeguard.bench.runtime import InferenceConfig, LoadConfig, load_modes, run_inference_suite, run_load_suite
from edgeguard.bench.verify import VerifyConfig, run_verify_suite
from edgeguard.cli import main

pytest.importorskip("onnx")

# hardened=False: measuring the hardened mode hardens the measuring process (this one); it is
# measured through the CLI in a child process below.
TINY_INFERENCE = InferenceConfig(blocks=2, block=5, warmup=1, hardened=False)
OLD_DOCUMENT = Path(__file__).parent / "data" / "bench-1.0-crypto-quick.json"


@pytest.fixture(scope="module")
def tiny_doc(tmp_path_factory) -> dict:
    """The three suites on a 1 MB model with 2 repetitions (a few seconds: 11 short child processes)."""
    tmp = tmp_path_factory.mktemp("suites")
    model = workloads.synthetic(1, tmp)
    suites = {
        "load": run_load_suite(LoadConfig(sizes_mb=[1], repetitions=2), [model], workloads.synthetic(0.02, tmp),
                               progress=False),
        "verify": run_verify_suite(VerifyConfig(size_mib=2, repetitions=2), tmp, progress=False),
        "inference": run_inference_suite(TINY_INFERENCE, model, progress=False),
        "detector": run_detector_suite(DetectorConfig(queries=200, warmup=10, calibration=256, streams=8,
                                                      stream_length=100, guarded=TINY_INFERENCE), tmp, progress=False),
    }
    return make_document(suites, "quick")


def test_document_matches_schema(tiny_doc) -> None:
    validate(tiny_doc)
    assert tiny_doc["schema_version"] == SCHEMA_VERSION == "1.2"


def test_verify_figures(tiny_doc) -> None:
    v = tiny_doc["suites"]["verify"]
    assert v["file_bytes"] > 2 * 2**20
    for c in v["commands"].values():
        assert len(c["samples_s"]) == 2 and c["median_s"] == statistics.median(c["samples_s"])
    med = {n: c["median_s"] for n, c in v["commands"].items()}
    assert v["ratios"]["verify_over_openssl"] == pytest.approx(med["edgeguard_verify"] / med["openssl_dgst"])
    assert v["goals"]["verify"]["met"] == (v["goals"]["verify"]["value"] <= 1.3)


def test_schema_1_1_still_accepts_1_0_documents() -> None:
    old = json.loads(OLD_DOCUMENT.read_text())
    assert old["schema_version"] == "1.0" and set(old["suites"]) == {"crypto"}
    validate(old)


def test_load_figures_are_medians_of_fresh_process_samples(tiny_doc) -> None:
    (m,) = tiny_doc["suites"]["load"]["models"]
    assert m["source"] == "synthetic" and m["model_bytes"] == pytest.approx(1e6, rel=0.2)
    assert set(m["modes"]) == set(load_modes())
    if "hardened" in m["modes"]:
        assert m["ratios"]["hardened_load_over_plain"] > 0
    for mode, r in m["modes"].items():
        assert len(r["load_samples_s"]) == 2
        assert r["load_s"] == statistics.median(r["load_samples_s"]) and r["load_min_s"] == min(r["load_samples_s"])
        assert ("first_b1_s" in r) == (mode != "open_only")
    # Strict mode keeps the whole decrypted model in (locked) memory: its peak RSS must show it.
    assert m["modes"]["strict"]["peak_rss_above_baseline_bytes"] >= 0.9 * m["model_bytes"]
    assert m["session_overhead_bytes"] > 0
    plain = m["modes"]["plain_path"]["load_s"]
    assert m["ratios"]["strict_load_over_plain"] == pytest.approx(m["modes"]["strict"]["load_s"] / plain)
    for goal in m["goals"].values():
        assert goal["met"] == (goal["value"] <= goal["limit"])


def test_inference_latencies_are_consistent(tiny_doc) -> None:
    inf = tiny_doc["suites"]["inference"]
    assert [b["batch"] for b in inf["batches"]] == [1, 32]
    for b in inf["batches"]:
        for stats in b["modes"].values():
            assert stats["count"] == 10
            p = stats["percentiles_s"]
            assert p == sorted(p) and p[50] == pytest.approx(stats["p50_s"]) and p[-1] == stats["max_s"]
        assert b["ratios"]["fast_p50_over_plain"] == pytest.approx(b["modes"]["fast"]["p50_s"] / b["modes"]["plain"]["p50_s"])
    worst = max(b["ratios"]["fast_p50_over_plain"] for b in inf["batches"])
    assert inf["goals"]["fast_inference"]["value"] == worst
    assert inf["goals"]["strict_inference"]["value"] == max(b["ratios"]["strict_p50_over_plain"] for b in inf["batches"])
    assert "hardened_inference" not in inf["goals"] and inf["config"]["intra_op_threads"] == 0


def test_detector_figures(tiny_doc) -> None:
    det = tiny_doc["suites"]["detector"]
    assert [o["rows"] for o in det["observe"]] == [1, 32]
    assert det["observe"][0]["count"] == 200 and det["observe"][1]["count"] == 20
    assert det["state_bytes_per_client"] > 0 and det["clients_tracked"] == det["config"]["clients"]
    g = det["guarded_run"]
    assert g["modes"]["guarded"]["count"] == g["modes"]["unguarded"]["count"] == 10
    assert g["added_p50_s"] == pytest.approx(g["modes"]["guarded"]["p50_s"] - g["modes"]["unguarded"]["p50_s"])


@pytest.mark.parametrize("breakage", [
    lambda d: d["suites"]["load"]["models"][0]["modes"].pop("strict"),
    lambda d: d["suites"]["load"]["models"][0]["goals"]["fast_load"].pop("met"),
    lambda d: d["suites"]["inference"]["batches"][0]["ratios"].update(fast_p50_over_plain=-1.0),
    lambda d: d["suites"]["detector"]["observe"][0]["percentiles_s"].pop(),
    lambda d: d["suites"]["detector"].pop("state_bytes_per_client"),
])
def test_schema_rejects_broken_suites(tiny_doc, breakage) -> None:
    bad = copy.deepcopy(tiny_doc)
    breakage(bad)
    with pytest.raises(ResultsError):
        validate(bad)


def test_report_tables_plots_and_emulated_labels(tiny_doc, tmp_path) -> None:
    (tmp_path / "native.json").write_text(json.dumps(tiny_doc))
    emu = copy.deepcopy(tiny_doc)
    emu["emulated"] = emu["fingerprint"]["emulated"] = True
    emu["label"] = "aarch64 neoverse-n1"
    (tmp_path / "emu.json").write_text(json.dumps(emu))
    md = write_report([tmp_path / "native.json", tmp_path / "emu.json"], tmp_path / "report").read_text()
    for heading in ("## Load: sealed vs plain onnxruntime", "## Inference: per-query latency", "## Detector:"):
        assert heading in md
    emulated_rows = [line for line in md.splitlines() if line.startswith("| aarch64 neoverse-n1")]
    # platforms: 1; load: every mode + 1 goal row; inference: 2 batches; detector: 2 observe rows + 1 guarded row.
    assert len(emulated_rows) == 1 + len(load_modes()) + 1 + 2 + 3 and all("[emulated]" in line for line in emulated_rows)
    assert all("yes" not in line and "**no**" not in line for line in emulated_rows)  # no goal verdicts
    for png in ("load-vs-size.png", "inference-overhead.png", "detector-latency.png"):
        data = (tmp_path / "report" / png).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) < 200_000 and f"]({png})" in md
    assert "crypto-throughput.png" not in md  # no crypto suite, no crypto plots
    native_only = dict(tiny_doc, emulated=False, label="test box")  # this test may itself run under qemu
    assert "emulated" not in markdown([native_only]).lower()


def test_user_model_through_the_cli(tmp_path, capsys) -> None:
    model = tmp_path / "mine.onnx"
    workloads.make_classifier(model, dim=16, hidden=32, classes=4)
    out = tmp_path / "r.json"
    assert main(["bench", "--suite", "inference", "--model", str(model), "--no-progress", "--no-hardened",
                 "-o", str(out)]) == 0
    doc = load(out)
    inf = doc["suites"]["inference"]
    assert set(doc["suites"]) == {"inference"}
    assert inf["model"]["source"] == "user" and inf["model"]["model_bytes"] == model.stat().st_size
    assert "hardened" not in inf["config"]["modes"]
    assert "inference b1" in capsys.readouterr().err


def test_real_shaped_model_and_hardened_mode_in_a_child_process(tmp_path) -> None:
    """--shape fills dynamic spatial dims; the inference suite runs in a child because measuring
    the hardened mode (where this machine allows it) hardens the measuring process."""
    import subprocess
    import sys

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "conv",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(tmp_path / "conv.onnx"))
    out = tmp_path / "r.json"
    cmd = [sys.executable, "-m", "edgeguard.cli", "bench", "--suite", "inference,load", "--model",
           str(tmp_path / "conv.onnx"), "--shape", "x=Nx3x16x24", "--repetitions", "1", "--intra-threads", "1",
           "--no-progress", "-o", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    doc = load(out)
    inf = doc["suites"]["inference"]
    assert inf["config"]["shapes"] == {"x": ["N", 3, 16, 24]} and inf["config"]["intra_op_threads"] == 1
    assert [b["batch"] for b in inf["batches"]] == [1, 32]
    assert ("hardened_inference" in inf["goals"]) == ("hardened" in inf["config"]["modes"])
    assert "first_b32_s" in doc["suites"]["load"]["models"][0]["modes"]["strict"]
