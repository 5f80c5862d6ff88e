"""The committed vectors (tests/vectors/manifest.json): edgeguard and the reference decoder both
give each file's stated outcome, and a failing file never produces an output file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

import reference_decoder as ref
from edgeguard import errors
from edgeguard.keys import TrustStore, VerifyingKey
from edgeguard.recipients import load_identity
from edgeguard.recipients.scrypt import PassphraseIdentity
from edgeguard.unseal import decrypt_file, unseal_file, verify_file

VECTORS = Path(__file__).parent / "vectors"
MANIFEST = json.loads((VECTORS / "manifest.json").read_text())
ENTRIES = MANIFEST["vectors"]
REF_ERRORS = {
    "FormatError": ref.RefFormatError,
    "UnsupportedVersionError": ref.RefVersionError,
    "UntrustedSignerError": ref.RefUntrustedError,
    "NotARecipientError": ref.RefNotRecipientError,
    "IntegrityError": ref.RefIntegrityError,
}
OUTCOMES = {"success", "header", "signature", "payload", "wrong_key", "untrusted_signer", "inner_format"}


def _id(entry: dict[str, Any]) -> str:
    return f"{entry['file']}:{entry['identity']}:{'+'.join(entry['trust'])}"


def _key_bytes(name: str, public: bool = False) -> bytes:
    return (VECTORS / "keys" / f"{name}{'.pub' if public else ''}.pem").read_bytes()


def _identity(entry: dict[str, Any]) -> tuple[Any, Any]:
    """(edgeguard identity, reference decoder identity)."""
    ident = entry["identity"]
    if ident.startswith("passphrase:"):
        text = ident.removeprefix("passphrase:")
        return PassphraseIdentity(text), text
    return load_identity(_key_bytes(ident)), serialization.load_pem_private_key(_key_bytes(ident), None)


def _trust(entry: dict[str, Any]) -> tuple[TrustStore, list[Any]]:
    names = entry["trust"]
    return (
        TrustStore(VerifyingKey.load(_key_bytes(n, True)) for n in names),
        [serialization.load_pem_public_key(_key_bytes(n, True)) for n in names],
    )


def _expect(name: str | None) -> Any:
    return None if name is None else pytest.raises(getattr(errors, name))


def test_manifest_is_well_formed() -> None:
    files = {e["file"] for e in ENTRIES}
    on_disk = {p.name for p in VECTORS.glob("*.sealed")}
    assert files == on_disk
    assert {e["outcome"] for e in ENTRIES} == OUTCOMES
    for e in ENTRIES:
        assert e["outcome"] in OUTCOMES
        assert (e["open_error"] is None) == (e["outcome"] == "success")
        for err in (e["open_error"], e["verify_error"]):
            assert err is None or issubclass(getattr(errors, err), errors.EdgeguardError)
    files = [*VECTORS.glob("*.sealed"), *(VECTORS / "keys").iterdir(), VECTORS / "manifest.json"]
    total = sum(p.stat().st_size for p in files)
    assert total < 50_000, "keep the committed vectors small"


@pytest.mark.parametrize("entry", ENTRIES, ids=_id)
def test_edgeguard_gives_the_stated_outcome(entry: dict[str, Any], tmp_path: Path) -> None:
    path = VECTORS / entry["file"]
    identity, _ = _identity(entry)
    trust, _ = _trust(entry)
    if entry["verify_error"] is None:
        verify_file(path, trust)
    else:
        with _expect(entry["verify_error"]) as exc:
            verify_file(path, trust)
        assert type(exc.value).__name__ == entry["verify_error"]
    out = tmp_path / "model.out"
    if entry["open_error"] is None:
        opened = decrypt_file(path, [identity], trust)
        assert hashlib.sha256(opened.buffer).hexdigest() == entry["payload_sha256"]
        unseal_file(path, out, [identity], trust)
        assert hashlib.sha256(out.read_bytes()).hexdigest() == entry["data_sha256"]
    else:
        with _expect(entry["open_error"]) as exc:
            decrypt_file(path, [identity], trust)
        assert type(exc.value).__name__ == entry["open_error"]
        if exc.type is errors.IntegrityError:
            assert str(exc.value) == errors.IntegrityError.MESSAGE
        with _expect(entry["open_error"]):
            unseal_file(path, out, [identity], trust)
        assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("entry", ENTRIES, ids=_id)
def test_reference_decoder_agrees(entry: dict[str, Any]) -> None:
    data = (VECTORS / entry["file"]).read_bytes()
    _, identity = _identity(entry)
    _, trusted = _trust(entry)
    for verify_only, expected in ((True, entry["verify_error"]), (False, entry["open_error"])):
        if expected is None:
            decoded = ref.decode(data, trusted, [identity], verify_only=verify_only)
            if not verify_only:
                assert hashlib.sha256(decoded.payload).hexdigest() == entry["payload_sha256"]
        else:
            with pytest.raises(REF_ERRORS[expected]) as exc:
                ref.decode(data, trusted, [identity], verify_only=verify_only)
            assert (exc.type is ref.RefInnerFormatError) == (entry["outcome"] == "inner_format" and not verify_only)


def test_generator_reproduces_the_manifest(tmp_path: Path) -> None:
    """The generator still runs and gives the same entries and the same key files."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("vector_generate", VECTORS / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    entries = module.generate(tmp_path)
    assert entries == ENTRIES
    for key in (VECTORS / "keys").iterdir():
        assert (tmp_path / "keys" / key.name).read_bytes() == key.read_bytes()
