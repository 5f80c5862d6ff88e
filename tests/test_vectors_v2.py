"""The committed version 2 vectors (tests/vectors/v2/manifest.json): artifacts, grants and revocation
lists. edgeguard and the reference decoder both give each stated outcome; the generator reproduces
the manifest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

import reference_decoder as ref
from edgeguard import errors
from edgeguard.grants import check_grant_validity
from edgeguard.keys import TrustStore, VerifyingKey
from edgeguard.recipients import load_identity
from edgeguard.revocation import RevocationList
from edgeguard.unseal import decrypt_file, verify_file
from v2_helpers import category

VECTORS = Path(__file__).parent / "vectors"
V2 = VECTORS / "v2"
MANIFEST = json.loads((V2 / "manifest.json").read_text())
ENTRIES = MANIFEST["vectors"]
NOW = MANIFEST["now"]


def _key(name: str, public: bool = False) -> bytes:
    return (VECTORS / "keys" / f"{name}{'.pub' if public else ''}.pem").read_bytes()


def _trust(names: list[str]) -> tuple[TrustStore, list[Any]]:
    return TrustStore(VerifyingKey.load(_key(n, True)) for n in names), [serialization.load_pem_public_key(_key(n, True)) for n in names]


def _id(e: dict[str, Any]) -> str:
    return f"{e['file']}:{e['grant']}:{e['revocation']}:{e['identity']}:{'+'.join(e['trust'])}"


def _category_of(name: str | None) -> str:
    return "ok" if name is None else category(getattr(errors, name).__new__(getattr(errors, name)))


def test_manifest_is_well_formed() -> None:
    named = {e["file"] for e in ENTRIES} | {e["grant"] for e in ENTRIES if e["grant"]} | {r["file"] for r in MANIFEST["revocation_lists"]}
    assert named == {p.name for p in V2.iterdir()} - {"manifest.json"}
    for e in ENTRIES:
        assert (e["open_error"] is None) == (e["outcome"] == "success") == ("payload_sha256" in e)
    assert sum(p.stat().st_size for p in V2.iterdir()) < 100_000, "keep the committed vectors small"


def _outcome(fn: Any) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except (errors.EdgeguardError, ref.RefError) as exc:
        return category(exc), exc


@pytest.mark.parametrize("entry", ENTRIES, ids=_id)
def test_edgeguard_and_the_reference_give_the_stated_outcome(entry: dict[str, Any]) -> None:
    path = V2 / entry["file"]
    data = path.read_bytes()
    trust, trusted = _trust(entry["trust"])
    identity = load_identity(_key(entry["identity"]))
    private = serialization.load_pem_private_key(_key(entry["identity"]), None)
    grant = (V2 / entry["grant"]).read_bytes() if entry["grant"] else None
    revoked = RevocationList.load(V2 / entry["revocation"], trust) if entry["revocation"] else None
    ref_revoked = ref.parse_revocation((V2 / entry["revocation"]).read_bytes(), trusted) if entry["revocation"] else None

    def admit(body: Any, key_id: str) -> None:
        check_grant_validity(body, NOW)
        if revoked is not None:
            revoked.check(body.grant_id, key_id)

    mine, result = _outcome(lambda: decrypt_file(path, [identity], trust, grant=grant, admit_grant=admit))
    theirs, decoded = _outcome(lambda: ref.decode_v2(data, trusted, [private], grant=grant, now=NOW, revocation=ref_revoked))
    want = _category_of(entry["open_error"])
    assert mine == theirs == want, (mine, theirs, want)
    if want == "ok":
        assert hashlib.sha256(result.buffer).hexdigest() == hashlib.sha256(decoded.payload).hexdigest() == entry["payload_sha256"]
    else:
        assert type(result).__name__ == entry["open_error"]
        if isinstance(result, errors.IntegrityError):
            assert str(result) == errors.IntegrityError.MESSAGE
    v_mine, _ = _outcome(lambda: verify_file(path, trust))
    v_theirs, _ = _outcome(lambda: ref.decode(data, trusted, verify_only=True))
    assert v_mine == v_theirs == _category_of(entry["verify_error"]), (v_mine, v_theirs)


@pytest.mark.parametrize("entry", MANIFEST["revocation_lists"], ids=lambda e: e["file"])
def test_revocation_lists(entry: dict[str, Any]) -> None:
    data = (V2 / entry["file"]).read_bytes()
    trust, trusted = _trust(["publisher-ed25519", "publisher-p256"])
    mine, rl = _outcome(lambda: RevocationList.load(data, trust))
    theirs, ref_rl = _outcome(lambda: ref.parse_revocation(data, trusted))
    assert mine == theirs == _category_of(entry["error"])
    if entry["error"] is None:
        assert rl.serial == ref_rl.serial == entry["serial"] and list(rl.body.keys) == sorted(ref_rl.keys) == entry["keys"]


def test_generator_reproduces_the_manifest(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("vector_generate", VECTORS / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.generate(tmp_path)
    assert json.loads((tmp_path / "v2" / "manifest.json").read_text()) == MANIFEST
