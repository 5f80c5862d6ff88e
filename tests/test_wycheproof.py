"""Project Wycheproof AEAD vectors (tests/vectors/wycheproof/) against the C++ core's AEAD call,
and a check that the chunk path uses that very call with the nonces and AAD FORMAT.md defines."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import pytest

from edgeguard import _core

HERE = Path(__file__).parent / "vectors" / "wycheproof"
FILES = {"aes-256-gcm": "aes_gcm_test.json", "chacha20-poly1305": "chacha20_poly1305_test.json"}


def _cases() -> list[Any]:
    out = []
    for cipher, name in FILES.items():
        data = json.loads((HERE / name).read_text())
        for group in data["testGroups"]:
            if (group["keySize"], group["ivSize"], group["tagSize"]) != (256, 96, 128):
                continue  # only 12-byte nonces and 16-byte tags apply to the core
            for t in group["tests"]:
                out.append(pytest.param(cipher, t, id=f"{cipher}-{t['tcId']}"))
    return out


CASES = _cases()


def test_vector_counts() -> None:
    counts = {c: sum(1 for p in CASES if p.values[0] == c) for c in FILES}
    assert counts == {"aes-256-gcm": 66, "chacha20-poly1305": 316}


@pytest.mark.parametrize(("cipher", "t"), CASES)
def test_wycheproof(cipher: str, t: dict[str, Any]) -> None:
    key, nonce, aad, msg, ct, tag = (bytes.fromhex(t[f]) for f in ("key", "iv", "aad", "msg", "ct", "tag"))
    assert t["result"] in ("valid", "invalid")
    opened = _core.aead_open(cipher, key, nonce, aad, ct + tag)
    if t["result"] == "valid":
        assert opened == msg
        assert _core.aead_seal(cipher, key, nonce, aad, msg) == ct + tag
    else:
        assert opened is None
        assert _core.aead_seal(cipher, key, nonce, aad, msg) != ct + tag


@pytest.mark.parametrize("cipher", sorted(FILES))
def test_bad_parameters_are_refused(cipher: str) -> None:
    with pytest.raises(ValueError):
        _core.aead_seal(cipher, bytes(31), bytes(12), b"", b"")
    with pytest.raises(ValueError):
        _core.aead_seal(cipher, bytes(32), bytes(8), b"", b"")
    with pytest.raises(ValueError):
        _core.aead_open(cipher, bytes(32), bytes(12), b"", bytes(15))
    with pytest.raises(ValueError):
        _core.aead_open("aes-128-gcm", bytes(32), bytes(12), b"", bytes(16))


@pytest.mark.parametrize("cipher", sorted(FILES))
@pytest.mark.parametrize("length", [0, 1, 4095, 4096, 4097, 3 * 4096 + 5])
def test_chunk_path_is_the_same_aead(cipher: str, length: int) -> None:
    """seal_chunks' stored chunk i equals aead_seal(nonce_prefix || be32(i) || last, digest || be64(i))."""
    key, prefix, digest = bytes(range(32)), b"\x07" * 7, hashlib.sha256(b"header").digest()
    plaintext = bytes(i * 7 % 251 for i in range(length))
    chunk = 4096
    count = max(1, -(-length // chunk))
    out = bytearray(_core.sealed_len(length, chunk))
    root = _core.seal_chunks(cipher, key, prefix, digest, chunk, plaintext, out)
    expected, digests = b"", b""
    for i in range(count):
        nonce = prefix + struct.pack(">I", i) + (b"\x01" if i == count - 1 else b"\x00")
        stored = _core.aead_seal(cipher, key, nonce, digest + struct.pack(">Q", i), plaintext[i * chunk : (i + 1) * chunk])
        expected += stored
        digests += hashlib.sha256(stored).digest()
    assert bytes(out) == expected
    assert root == hashlib.sha256(b"edgeguard/v1 chunks\x00" + struct.pack(">Q", count) + digests).digest()
    back = bytearray(length)
    assert _core.open_chunks(cipher, key, prefix, digest, chunk, length, bytes(out), 0, back, root)
    assert bytes(back) == plaintext

