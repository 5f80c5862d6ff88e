"""Round trips (Hypothesis) around chunk boundaries, both ciphers, both signature algorithms,
several recipients and a passphrase; each file is also decoded by the reference decoder
(differential test on generated files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reference_decoder as ref
from edgeguard.errors import FormatError, IntegrityError
from edgeguard.format import ModelInfo
from edgeguard.seal import seal_model
from edgeguard.unseal import decrypt_file, inspect_file, unseal_file, verify_file
from helpers import (
    CHUNK,
    PASSPHRASE,
    Keys,
    make_device,
    open_opaque,
    passphrase_identity,
    passphrase_recipient,
    raw_payload,
    scratch_dir,
    seal_bytes,
)

CIPHERS = ["aes-256-gcm", "chacha20-poly1305"]
BOUNDARY_SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK - 1, 2 * CHUNK, 2 * CHUNK + 1, 7 * CHUNK + 13]
EXTRA_DEVICES = [make_device("x25519"), make_device("p256"), make_device("x25519")]
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def sizes() -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from(BOUNDARY_SIZES), st.integers(0, 6 * CHUNK))


@st.composite
def addressing(draw: st.DrawFn, keys: Keys) -> tuple[list[Any], Any, Any]:
    """(recipients, an edgeguard identity that is one of them, the same key for the reference)."""
    if draw(st.integers(0, 5)) == 0:
        return [passphrase_recipient()], passphrase_identity(), PASSPHRASE
    devices = [keys.x25519_dev, keys.p256_dev, *EXTRA_DEVICES]
    chosen = draw(st.lists(st.sampled_from(devices), min_size=1, max_size=len(devices), unique_by=id))
    opener = draw(st.sampled_from(chosen))
    return [d.recipient for d in chosen], opener.identity, opener.private


def _payload(size: int, seed: int) -> bytes:
    return bytes((i * 131 + seed) % 256 for i in range(size))


@SETTINGS
@given(data=st.data(), size=sizes(), seed=st.integers(0, 255), cipher=st.sampled_from(CIPHERS), p256=st.booleans())
def test_opaque_payload_round_trip(keys: Keys, data: st.DataObject, size: int, seed: int, cipher: str, p256: bool) -> None:
    """Any payload length, down to 0 bytes, through the native chunk engine (the inner layout is
    checked after decryption, so opaque bytes come back in the buffer, then FormatError)."""
    recipients, identity, ref_identity = data.draw(addressing(keys))
    signer = keys.p256 if p256 else keys.ed25519
    payload = _payload(size, seed)
    with scratch_dir() as d:
        path = seal_bytes(Path(d) / "f.sealed", payload, signer=signer, recipients=recipients, cipher=cipher)
        container = inspect_file(path)
        header = container.header
        assert (header.payload_length, header.cipher, header.chunk_count) == (size, cipher, max(1, -(-size // CHUNK)))
        assert path.stat().st_size == container.payload_offset + size + 16 * header.chunk_count
        verify_file(path, keys.trust)
        assert open_opaque(path, [identity], keys.trust) == payload
        decoded = ref.decode(path.read_bytes(), keys.ref_trusted(), [ref_identity], check_inner=False)
        assert decoded.payload == payload
        with pytest.raises(ref.RefInnerFormatError):  # same verdict as edgeguard on the inner layout
            ref.decode(path.read_bytes(), keys.ref_trusted(), [ref_identity])


@SETTINGS
@given(data=st.data(), size=sizes(), seed=st.integers(0, 255), cipher=st.sampled_from(CIPHERS), threads=st.sampled_from([0, 1, 2, 3]))
def test_raw_model_round_trip(keys: Keys, data: st.DataObject, size: int, seed: int, cipher: str, threads: int) -> None:
    """seal_model / open / unseal_file of a raw model file: the payload is 4096 + size bytes, so this
    walks the chunk boundaries of a real inner layout; the reference decoder yields the same bytes."""
    recipients, identity, ref_identity = data.draw(addressing(keys))
    content = _payload(size, seed)
    with scratch_dir() as d:
        src, sealed, out = Path(d) / "model.bin", Path(d) / "model.sealed", Path(d) / "model.out"
        src.write_bytes(content)
        seal_model(src, sealed, signer=keys.ed25519, recipients=recipients, cipher=cipher, chunk_size=CHUNK,
                   threads=threads, labels={"k": "v"}, now=lambda: 1_700_000_000)  # fmt: skip
        opened = decrypt_file(sealed, [identity], keys.trust, threads=threads)
        assert bytes(opened.layout.section(opened.buffer, "data")) == content
        assert opened.container.header.model == ModelInfo("model", 1, 1_700_000_000, labels=(("k", "v"),))
        decoded = ref.decode(sealed.read_bytes(), keys.ref_trusted(), [ref_identity])
        assert decoded.payload == bytes(opened.buffer)
        assert ref.check_inner_payload(decoded.payload, "raw")["data"] == content
        unseal_file(sealed, out, [identity], keys.trust, threads=threads)
        assert out.read_bytes() == content
        assert out.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("cipher", CIPHERS)
def test_every_recipient_opens(keys: Keys, cipher: str, tmp_path: Path) -> None:
    devices = [keys.x25519_dev, keys.p256_dev, *EXTRA_DEVICES]
    path = seal_bytes(tmp_path / "f.sealed", raw_payload(b"shared"), signer=keys.p256, recipients=[d.recipient for d in devices], cipher=cipher)
    for dev in devices:
        opened = decrypt_file(path, [keys.other_dev.identity, dev.identity], keys.trust)
        assert bytes(opened.layout.section(opened.buffer, "data")) == b"shared"
        assert ref.decode(path.read_bytes(), keys.ref_trusted(), [dev.private]).payload == bytes(opened.buffer)


def test_progress_reports_every_chunk(keys: Keys, tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    path = seal_bytes(tmp_path / "f.sealed", raw_payload(bytes(5 * CHUNK)), signer=keys.ed25519, recipients=[keys.x25519_dev.recipient])
    decrypt_file(path, [keys.x25519_dev.identity], keys.trust, threads=1, progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1] == (6, 6) and all(t == 6 for _, t in calls)


def test_empty_payload_is_one_empty_chunk(keys: Keys, tmp_path: Path) -> None:
    path = seal_bytes(tmp_path / "f.sealed", b"", signer=keys.ed25519, recipients=[keys.x25519_dev.recipient])
    container = inspect_file(path)
    assert container.header.chunk_count == 1 and path.stat().st_size == container.payload_offset + 16
    with pytest.raises(FormatError):
        decrypt_file(path, [keys.x25519_dev.identity], keys.trust)


@pytest.mark.parametrize("cipher", CIPHERS)
@pytest.mark.parametrize("size", BOUNDARY_SIZES)
def test_every_boundary_size(keys: Keys, tmp_path: Path, cipher: str, size: int) -> None:
    """Each boundary size explicitly (Hypothesis above samples them): both device key types open,
    the reference decoder gives the same bytes, and a 1-byte truncation fails."""
    payload = _payload(size, size % 256)
    path = seal_bytes(tmp_path / "f.sealed", payload, signer=keys.p256, cipher=cipher,
                      recipients=[keys.x25519_dev.recipient, keys.p256_dev.recipient])  # fmt: skip
    assert inspect_file(path).header.chunk_count == max(1, -(-size // CHUNK))
    for dev in (keys.x25519_dev, keys.p256_dev):
        assert open_opaque(path, [dev.identity], keys.trust) == payload
        assert ref.decode(path.read_bytes(), keys.ref_trusted(), [dev.private], check_inner=False).payload == payload
    truncated = tmp_path / "t.sealed"
    truncated.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(IntegrityError):
        decrypt_file(truncated, [keys.x25519_dev.identity], keys.trust)
