"""The ML-BOM in the signed payload: `seal --model-card` builds a CycloneDX 1.6 ML-BOM that
validates against the official schema (from cyclonedx-python-lib), `--bom` seals an existing
document, `edgeguard bom` reads it back only after verification and decryption, the reference
decoder accepts the new section."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime_support import make_mlp
from test_cli import cli, failed, make_world


def _validator():  # type: ignore[no-untyped-def]
    jsonschema = pytest.importorskip("jsonschema")
    referencing = pytest.importorskip("referencing")
    import cyclonedx.schema

    res = Path(cyclonedx.schema.__file__).parent / "_res"
    registry = referencing.Registry()
    for name in ("spdx.SNAPSHOT.schema.json", "jsf-0.82.SNAPSHOT.schema.json"):
        registry = registry.with_resource(name, referencing.Resource.from_contents(json.loads((res / name).read_text())))
    schema = json.loads((res / "bom-1.6.SNAPSHOT.schema.json").read_text())
    return jsonschema.Draft7Validator(schema, registry=registry)


def test_sealed_ml_bom_validates_against_cyclonedx_1_6(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    model = make_mlp(tmp_path / "mlp.onnx", widths=(8, 16, 3))
    card = tmp_path / "card.yaml"
    card.write_text("license: Apache-2.0\npublisher: Example Corp\ntask: classification\napproach: supervised\n"
                    "datasets: [{name: digits, url: 'https://example.org/digits'}, plain-name]\nlimitations: [small inputs]\n"
                    "ethical_considerations: [{name: misuse, mitigation: rate limits}]\nmetrics: [{type: accuracy, value: 0.97}]\n")
    r = cli("seal", model, "-o", tmp_path / "m.sealed", "--sign", w.pub, "--recipient", w.dev_pub, "--model-card", card)
    assert r.code == 0, r.err
    r = cli("bom", tmp_path / "m.sealed", "--identity", w.dev, "--trust", w.pub_key, "--json")
    assert r.code == 0, r.err
    doc = r.json()
    errors = sorted(_validator().iter_errors(doc), key=str)
    assert not errors, errors[:3]
    comp = doc["components"][0]
    props = {p["name"]: p["value"] for p in comp["properties"]}
    import hashlib

    assert comp["type"] == "machine-learning-model" and comp["name"] == "mlp" and comp["version"] == "1"
    assert comp["hashes"][0] == {"alg": "SHA-256", "content": hashlib.sha256(model.read_bytes()).hexdigest()}
    assert props["onnx:operators"] == "Gemm,Relu" or "MatMul" in props["onnx:operators"]
    assert int(props["edgeguard:parameters"]) == 8 * 16 + 16 + 16 * 3 + 3 and "edgeguard:section:weights:sha256" in props
    assert comp["licenses"] == [{"expression": "Apache-2.0", "acknowledgement": "declared"}]
    assert [d["name"] for d in comp["modelCard"]["modelParameters"]["datasets"]] == ["digits", "plain-name"]
    # Inside the encryption: the architecture never shows in the public header or the file's bytes.
    assert b"Relu" not in (tmp_path / "m.sealed").read_bytes() and b"Example Corp" not in (tmp_path / "m.sealed").read_bytes()
    r = cli("bom", tmp_path / "m.sealed", "--identity", w.dev, "--trust", w.pub_key)
    assert r.code == 0 and "Apache-2.0" in r.out and "verified and decrypted" in r.out
    failed(cli("bom", tmp_path / "m.sealed", "--identity", w.dev, "--trust", w.other_pub), 5)


def test_attached_bom_no_bom_and_bad_inputs(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    sbom = tmp_path / "sbom.json"
    sbom.write_text(json.dumps({"spdxVersion": "SPDX-2.3", "name": "vendor model", "SPDXID": "SPDXRef-DOCUMENT"}))
    assert cli("seal", w.model, "-o", tmp_path / "a.sealed", "--sign", w.pub, "--recipient", w.dev_pub, "--bom", sbom).code == 0
    r = cli("bom", tmp_path / "a.sealed", "--identity", w.dev, "--trust", w.pub_key, "-o", tmp_path / "back.json")
    assert r.code == 0 and (tmp_path / "back.json").read_bytes() == sbom.read_bytes()
    assert cli("seal", w.model, "-o", tmp_path / "n.sealed", "--sign", w.pub, "--recipient", w.dev_pub, "--no-bom").code == 0
    failed(cli("bom", tmp_path / "n.sealed", "--identity", w.dev, "--trust", w.pub_key), 4, "carries no ML-BOM")
    (tmp_path / "bad.json").write_text("[1, 2]")
    failed(cli("seal", w.model, "-o", tmp_path / "x.sealed", "--sign", w.pub, "--recipient", w.dev_pub, "--bom", tmp_path / "bad.json"), 4)
    (tmp_path / "big.json").write_text(json.dumps({"bomFormat": "CycloneDX", "x": "y" * (5 << 20)}))
    failed(cli("seal", w.model, "-o", tmp_path / "x.sealed", "--sign", w.pub, "--recipient", w.dev_pub, "--bom", tmp_path / "big.json"), 4, "at most 4 MiB")
    (tmp_path / "card.json").write_text(json.dumps({"licence": "MIT"}))
    failed(cli("seal", w.model, "-o", tmp_path / "x.sealed", "--sign", w.pub, "--recipient", w.dev_pub, "--model-card", tmp_path / "card.json"), 4, "unknown model card field")
    failed(cli("seal", w.model, "-o", tmp_path / "x.sealed", "--sign", w.pub, "--recipient", w.dev_pub, "--bom", sbom, "--no-bom"), 2)
    assert not (tmp_path / "x.sealed").exists()


def test_reference_decoder_accepts_the_ml_bom_section() -> None:
    from edgeguard.errors import FormatError
    from edgeguard.payload import build_payload, parse_payload
    from reference_decoder import check_inner_payload

    for extra in ([("ml_bom", b"{}")], [("ml_bom", b"{}"), ("detector_profile", b"p")], [("detector_profile", b"p"), ("ml_bom", b"{}")]):
        payload = bytes(build_payload("raw", [("data", b"d" * 100), *extra]))
        assert set(parse_payload(payload, "raw").sections) == {"data", *(n for n, _ in extra)}
        assert set(check_inner_payload(payload, "raw")) >= {"data", *(n for n, _ in extra)}
    with pytest.raises(FormatError):
        build_payload("raw", [("data", b"d"), ("ml_bom", b"{}"), ("ml_bom", b"{}")])
