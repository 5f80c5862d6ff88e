"""The payload-kind and recipient-type registries: one table each, agreeing with the format and
the spec, and the device-side scrypt ceiling."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgeguard import format as fmt
from edgeguard import kinds, recipients
from edgeguard.errors import FormatError, NotARecipientError
from edgeguard.recipients import scrypt
from edgeguard.recipients.scrypt import PassphraseIdentity, PassphraseRecipient
from edgeguard.unseal import decrypt_file
from helpers import MODEL, PASSPHRASE, Keys, raw_payload, seal_bytes

SPEC = (Path(__file__).parent.parent / "docs" / "FORMAT.md").read_text()


def _spec_rows(heading: str) -> dict[str, str]:
    """First column -> second column of the first table after `heading` in docs/FORMAT.md."""
    lines = SPEC[SPEC.index(heading) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    table = lines[start : next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))]
    rows = [re.match(r"\| `([a-z0-9-]+)` \| ([^|]+) \|", line) for line in table[2:]]  # past the heading row
    return {m.group(1): m.group(2) for m in rows if m}


def test_the_format_reads_exactly_the_registered_kinds() -> None:
    assert fmt.PAYLOAD_KINDS == kinds.NAMES == ("onnx", "safetensors", "raw")


def test_each_kind_has_the_sections_the_spec_lists() -> None:
    table = _spec_rows("Sections by payload")
    assert set(table) == set(kinds.NAMES)
    for name in kinds.NAMES:
        listed = [s for s in re.findall(r"`([a-z_]+)`", table[name]) if s != "edgeguard"]
        assert tuple(listed) == kinds.get(name).sections, name


def test_kind_lookup_and_detection() -> None:
    with pytest.raises(ValueError, match="unknown payload kind 'gguf'"):
        kinds.get("gguf")
    assert kinds.detect(Path("m.ONNX")) == "onnx"
    assert kinds.detect(Path("w.safetensors")) == "safetensors"
    assert kinds.detect(Path("weights.bin")) == "raw"


def test_each_recipient_type_declares_the_stanza_fields_the_spec_lists() -> None:
    table = _spec_rows("## Recipients")
    assert set(table) == set(recipients.STANZA_TYPES) == {"hpke-x25519", "hpke-p256", "scrypt"}
    for stanza_type in recipients.STANZA_TYPES:
        spec = recipients.stanza_spec(stanza_type)
        assert spec.type == stanza_type
        assert set(re.findall(r"`([a-z_]+)`", table[stanza_type])) == set(spec.fields)
    assert [t for t in recipients.STANZA_TYPES if recipients.stanza_spec(t).only_recipient] == ["scrypt"]


def test_an_unregistered_stanza_type_is_a_format_error() -> None:
    with pytest.raises(FormatError, match="stanza type"):
        fmt.Stanza.from_json({"type": "tpm2", "key_id": "0" * 16, "wrapped": ""})


def test_stanzas_round_trip_through_their_declared_fields(keys: Keys) -> None:
    salt = bytes(range(32))
    for recipient in (keys.x25519_dev.recipient, keys.p256_dev.recipient, PassphraseRecipient(PASSPHRASE, log_n=10)):
        stanza = recipient.wrap(bytes(32), salt)
        assert fmt.Stanza.from_json(stanza.to_json()) == stanza


def test_the_device_refuses_a_work_factor_above_its_ceiling_before_deriving(keys: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert scrypt.DEFAULT_MAX_LOG_N < scrypt.LOG_N_RANGE[1]
    path = seal_bytes(tmp_path / "pw.sealed", raw_payload(b"secret"), signer=keys.ed25519,
                      recipients=[PassphraseRecipient(PASSPHRASE, log_n=11)], model=MODEL)  # fmt: skip
    derived = []
    real = scrypt._derive
    monkeypatch.setattr(scrypt, "_derive", lambda *a: derived.append(a) or real(*a))
    with pytest.raises(NotARecipientError, match=r"log_n 11 .*max_log_n 10") as info:
        decrypt_file(path, [PassphraseIdentity(PASSPHRASE, max_log_n=10)], keys.trust)
    assert derived == [] and PASSPHRASE not in str(info.value)
    assert bytes(decrypt_file(path, [PassphraseIdentity(PASSPHRASE, max_log_n=11)], keys.trust).buffer).find(b"secret") > 0
    for bad in (9, 23, "19"):
        with pytest.raises(ValueError, match="max_log_n"):
            PassphraseIdentity(PASSPHRASE, max_log_n=bad)  # type: ignore[arg-type]
