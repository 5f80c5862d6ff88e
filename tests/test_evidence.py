"""`edgeguard evidence`: only verified facts, each mapped to controls it supports; a tampered
artifact or a tampered audit log is reported as such (and exits 3), never as a verified fact."""

from __future__ import annotations

import json
from pathlib import Path

from edgeguard.evidence import CONTROLS
from test_cli import cli, make_world


def _world(tmp_path: Path):  # type: ignore[no-untyped-def]
    w = make_world(tmp_path)
    assert cli("seal", w.model, "-o", tmp_path / "m.sealed", "--sign", w.pub, "--recipient", w.dev_pub, "--chunk-size", "4K").code == 0
    assert cli("keygen", "--type", "p256", "-o", tmp_path / "audit.key").code == 0
    r = cli("unseal", tmp_path / "m.sealed", "-o", tmp_path / "out.bin", "--identity", w.dev, "--trust", w.pub_key,
            "--audit", tmp_path / "dev.log", "--audit-key", tmp_path / "audit.key")
    assert r.code == 0, r.err
    return w


def _evidence(tmp_path: Path, w, out: str, sealed: Path | None = None) -> tuple[int, dict]:  # type: ignore[no-untyped-def,type-arg]
    r = cli("evidence", sealed or tmp_path / "m.sealed", "--trust", w.pub_key, "--identity", w.dev, "--audit", tmp_path / "dev.log",
            "--audit-key", tmp_path / "audit.key.pub", "-o", tmp_path / out, "--json")
    assert (tmp_path / out / "evidence.md").exists()
    return r.code, json.loads((tmp_path / out / "evidence.json").read_text())


def test_report_lists_verified_facts_and_their_controls(tmp_path: Path) -> None:
    w = _world(tmp_path)
    code, doc = _evidence(tmp_path, w, "ev")
    assert code == 0 and doc["ok"] and not doc["failed_checks"]
    facts = {f["id"]: f for f in doc["verified_facts"]}
    assert {"artifact.signature", "artifact.integrity", "artifact.encryption", "artifact.aead", "artifact.ml_bom", "audit.log"} <= set(facts)
    assert "SI-7" in facts["artifact.signature"]["supports"] and "AU-9" in facts["audit.log"]["supports"]
    assert "EU AI Act Art. 12" in facts["audit.log"]["supports"] and "AML.M0023" in facts["artifact.ml_bom"]["supports"]
    assert all(c in CONTROLS for f in doc["verified_facts"] for c in f["supports"])
    assert any("Membership inference" in t for t in doc["not_covered"])
    md = (tmp_path / "ev" / "evidence.md").read_text()
    assert "supports (does not by itself satisfy)" in md and "all checks passed" in md
    assert "the verified log records 0 load(s) of this artifact" in facts["audit.artifact_loads"]["statement"]


def test_tampered_artifact_and_log_are_reported(tmp_path: Path) -> None:
    w = _world(tmp_path)
    data = bytearray((tmp_path / "m.sealed").read_bytes())
    data[-20] ^= 1
    (tmp_path / "bad.sealed").write_bytes(data)
    code, doc = _evidence(tmp_path, w, "ev1", tmp_path / "bad.sealed")
    assert code == 3 and not doc["ok"]
    assert [f["id"] for f in doc["failed_checks"]] == ["artifact.signature"]
    assert not [f for f in doc["verified_facts"] if f["id"].startswith("artifact.")]  # nothing unverified is stated
    assert "did NOT verify" in (tmp_path / "ev1" / "evidence.md").read_text()

    log = bytearray((tmp_path / "dev.log").read_bytes())
    at = log.index(b'"model.unseal"')
    log[at + 3] ^= 1
    (tmp_path / "dev.log").write_bytes(log)
    code, doc = _evidence(tmp_path, w, "ev2")
    assert code == 3 and [f["id"] for f in doc["failed_checks"]] == ["audit.log"]
    assert "NOT intact" in doc["failed_checks"][0]["statement"]
    assert not [f for f in doc["verified_facts"] if f["id"].startswith("audit.")]
    assert [f for f in doc["verified_facts"] if f["id"] == "artifact.signature"]
