import json
import subprocess
import sys
from pathlib import Path

RUN = Path(__file__).resolve().parents[1] / "benchmarks" / "extraction" / "run.py"


def test_harness_smoke_run_produces_valid_results(tmp_path):
    out = subprocess.run([sys.executable, str(RUN), "--smoke", "--no-plots", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads((tmp_path / "results.json").read_text())
    assert {"config", "attacks", "benign", "latency", "state_bytes_per_client", "goals"} <= set(res)
    assert set(res["benign"]) == {"clean", "noisy", "recapture", "resubmit", "skewed", "noisy-0.08-unclipped"}
    assert all(0.0 <= b["edgeguard_fpr"] <= b["edgeguard_fpr_upper95"] <= 1.0 for b in res["benign"].values())
    sybil = res["attacks"]["jbda-sybil20-roundrobin"]
    assert sybil["client_ids"] == 20 and sybil["runs"][0]["edgeguard"]["fleet_alert"] is not None
    for attack in res["attacks"].values():
        for run in attack["runs"]:
            assert {"first_alert", "fidelity_at_alert", "signals"} <= set(run["edgeguard"])
            assert 0.0 <= run["final_fidelity"] <= 1.0
    probe = res["attacks"]["critical-point"]["edgeguard"]
    assert probe["detection_rate"] == 1.0 and probe["median_queries_to_alert"] <= 5
    assert res["latency"]["edgeguard_all"]["n"] > 0
    assert res["state_bytes_per_client"]["edgeguard"] <= 16 * 1024
    assert (tmp_path / "results.md").read_text().startswith("### Extraction harness results")
