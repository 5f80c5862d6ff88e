"""A device that holds the content key can forge AEAD tags; the publisher's signature over every
chunk digest must still reject its forgeries (docs/FORMAT.md, "Payload")."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edgeguard.errors import IntegrityError
from edgeguard.format import TAG_LEN, ModelInfo
from edgeguard.payload import build_payload
from edgeguard.seal import derive_payload_key, seal_payload
from edgeguard.unseal import decrypt_file, inspect_file, verify_file

CHUNK = 4096


@pytest.fixture
def sealed(tmp: Path, signer, device) -> Path:
    recipient, _ = device
    out = tmp / "m.sealed"
    payload = build_payload("raw", [("data", os.urandom(3 * CHUNK))])
    seal_payload(payload, out, kind="raw", signer=signer, recipients=[recipient], model=ModelInfo("m", 1, 0), chunk_size=CHUNK)
    return out


def forge_chunk(path: Path, identity, index: int, plaintext: bytes) -> None:
    """What an insider can do: re-encrypt one chunk under the real key with a valid tag."""
    container = inspect_file(path)
    header = container.header
    dek = identity.unwrap(header.recipients, header.salt)
    key, prefix = derive_payload_key(dek, header.salt, header.cipher)
    header_digest = hashlib.sha256(container.preamble_and_header).digest()
    last = index == header.chunk_count - 1
    nonce = prefix + index.to_bytes(4, "big") + bytes([last])
    aad = header_digest + index.to_bytes(8, "big")
    forged = AESGCM(key).encrypt(nonce, plaintext, aad)
    # The forgery is a perfectly valid AEAD chunk: tags alone cannot tell it from the real one.
    assert AESGCM(key).decrypt(nonce, forged, aad) == plaintext
    data = bytearray(path.read_bytes())
    start = container.payload_offset + index * (header.chunk_size + TAG_LEN)
    data[start : start + len(forged)] = forged
    path.write_bytes(bytes(data))


def test_insider_forged_chunk_is_rejected_on_open(sealed: Path, device, trust) -> None:
    _, identity = device
    size = inspect_file(sealed).header.payload_length
    forge_chunk(sealed, identity, 1, b"\x00" * CHUNK)
    dest = bytearray(size)
    with pytest.raises(IntegrityError):
        decrypt_file(sealed, [identity], trust, allocate=lambda n: dest)
    assert not any(dest), "no plaintext may be left in the destination after a failed open"


def test_insider_forged_chunk_is_rejected_by_verify(sealed: Path, device, trust) -> None:
    forge_chunk(sealed, device[1], 2, b"evil")
    with pytest.raises(IntegrityError):
        verify_file(sealed, trust)


def test_insider_cannot_fix_up_the_chunk_root(sealed: Path, device, trust) -> None:
    """Recomputing the chunk root over the forged chunks breaks the publisher signature instead."""
    forge_chunk(sealed, device[1], 0, b"\x01" * CHUNK)
    from edgeguard import _core

    container = inspect_file(sealed)
    h = container.header
    with open(sealed, "rb") as f:
        root = _core.digest_chunks(h.chunk_size, h.payload_length, f.fileno(), container.payload_offset)
    data = bytearray(sealed.read_bytes())
    root_at = container.payload_offset - 96
    data[root_at : root_at + 32] = root
    sealed.write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        decrypt_file(sealed, [device[1]], trust)
    with pytest.raises(IntegrityError):
        verify_file(sealed, trust)
