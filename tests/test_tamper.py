"""The tamper matrix: every edit of a sealed file fails with its typed error, integrity failures
are opaque, no output file is ever written, and the reference decoder reaches the same verdict."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import reference_decoder as ref
from edgeguard import errors
from edgeguard.errors import (
    EdgeguardError,
    FormatError,
    IntegrityError,
    NotARecipientError,
    UnsupportedVersionError,
    UntrustedSignerError,
)
from edgeguard.keys import TrustStore
from edgeguard.unseal import decrypt_file, unseal_file, verify_file
from helpers import (
    CHUNK,
    PASSPHRASE,
    Keys,
    canonical,
    passphrase_identity,
    passphrase_recipient,
    raw_payload,
    resign,
    seal_bytes,
    split,
    with_header,
)

DATA = bytes(range(256)) * 33 + b"tail" * 75  # 8748 bytes: payload 12844 = 3 full chunks + 556
REF_CATEGORY = {
    FormatError: "format",
    UnsupportedVersionError: "version",
    UntrustedSignerError: "untrusted",
    NotARecipientError: "not_recipient",
    IntegrityError: "integrity",
}


@dataclass
class Base:
    data: bytes
    other: bytes  # the same payload sealed again to the same keys (another file's signature, stanzas)
    keys: Keys


@pytest.fixture(scope="module", params=["aes-256-gcm", "chacha20-poly1305"])
def base(request: pytest.FixtureRequest, keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Base:
    d = tmp_path_factory.mktemp("tamper")
    rcpts = [keys.x25519_dev.recipient, keys.p256_dev.recipient]
    files = [
        seal_bytes(d / f"{n}.sealed", raw_payload(DATA), signer=keys.ed25519, recipients=rcpts, cipher=request.param).read_bytes()
        for n in ("a", "b")
    ]
    assert len(split(files[0]).chunks) == 4
    return Base(files[0], files[1], keys)


def check(
    base: Base,
    data: bytes,
    tmp_path: Path,
    expected: type[EdgeguardError],
    *,
    verify_expected: type[EdgeguardError] | str | None = "same",
    identities: Sequence[Any] | None = None,
    ref_identities: Sequence[Any] | None = None,
    trust: TrustStore | None = None,
) -> None:
    """open/unseal raise exactly `expected`, verify raises `verify_expected` (default: the same),
    nothing is written, and the reference decoder agrees."""
    k = base.keys
    identities = [k.x25519_dev.identity] if identities is None else identities
    ref_identities = [k.x25519_dev.private] if ref_identities is None else ref_identities
    trust = k.trust if trust is None else trust
    verify_expected = expected if verify_expected == "same" else verify_expected
    assert data != base.data
    d = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
    d.mkdir()
    src = d / "in.sealed"
    src.write_bytes(data)
    with pytest.raises(EdgeguardError) as exc:
        decrypt_file(src, identities, trust)
    assert type(exc.value) is expected, exc.value
    if expected is IntegrityError:
        assert str(exc.value) == IntegrityError.MESSAGE and exc.value.args == (IntegrityError.MESSAGE,)
    with pytest.raises(expected):
        unseal_file(src, d / "out.bin", identities, trust)
    assert sorted(p.name for p in d.iterdir()) == ["in.sealed"], "a failed unseal left a file behind"
    if verify_expected is None:
        verify_file(src, trust)
    else:
        with pytest.raises(EdgeguardError) as vexc:
            verify_file(src, trust)
        assert type(vexc.value) is verify_expected
    ref_trusted = [v._public_key for v in trust._keys.values()]
    with pytest.raises(ref.RefError) as rexc:
        ref.decode(data, ref_trusted, ref_identities)
    assert rexc.value.category == REF_CATEGORY[expected]


# --- the preamble and the header --------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "expected"),
    [(i, FormatError) for i in range(8)] + [(8, UnsupportedVersionError), (9, UnsupportedVersionError)]
    + [(i, FormatError) for i in (10, 11, 12, 13, 14, 15)],
)  # fmt: skip
def test_preamble_bit_flips(base: Base, tmp_path: Path, offset: int, expected: type[EdgeguardError]) -> None:
    for bit in range(8):
        data = bytearray(base.data)
        data[offset] ^= 1 << bit
        check(base, bytes(data), tmp_path, expected)


def test_every_header_byte_bit_flip(base: Base, tmp_path: Path) -> None:
    """Each header byte with one bit flipped: malformed (FormatError), a signer the trust store
    does not hold (UntrustedSignerError), or a well-formed header the signature rejects."""
    hl = len(split(base.data).header)
    seen = set()
    for i in range(16, 16 + hl):
        data = bytearray(base.data)
        data[i] ^= 1 << (i % 8)
        with pytest.raises(ref.RefError) as ref_exc:  # the reference must reject every flip too
            ref.decode(bytes(data), base.keys.ref_trusted(), [base.keys.x25519_dev.private])
        expected = {"format": FormatError, "integrity": IntegrityError, "untrusted": UntrustedSignerError}[ref_exc.value.category]
        seen.add(expected)
        src = tmp_path / "in.sealed"
        src.write_bytes(bytes(data))
        with pytest.raises(EdgeguardError) as exc:
            decrypt_file(src, [base.keys.x25519_dev.identity], base.keys.trust)
        assert type(exc.value) is expected, (i, exc.value)
        with pytest.raises(expected):
            verify_file(src, base.keys.trust)
    # (UntrustedSignerError shows up when a flip keeps the signer key id valid hex; the keys are
    # random per run, so only the two outcomes every run reaches are required here)
    assert {FormatError, IntegrityError} <= seen <= {FormatError, IntegrityError, UntrustedSignerError}


def _edit(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    *parents, last = path.split(".")
    target: Any = obj
    for p in parents:
        target = target[int(p)] if p.isdigit() else target[p]
    if value is _DELETE:
        del target[int(last) if last.isdigit() else last]
    else:
        target[int(last) if last.isdigit() else last] = value
    return obj


_DELETE = object()


def _flip_b64(value: str) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[len(raw) // 2] ^= 1
    return base64.b64encode(bytes(raw)).decode()


HEADER_EDITS: list[tuple[str, Any, type[EdgeguardError]]] = [
    ("cipher", "swap", IntegrityError),
    ("chunk_size", 8192, IntegrityError),  # the file no longer has the size this header implies
    ("payload_length", "+1", IntegrityError),
    ("salt", "flip", IntegrityError),
    ("signer.alg", "ecdsa-p256-sha256", UntrustedSignerError),
    ("signer.key_id", "0000000000000000", UntrustedSignerError),
    ("recipients.0.wrapped", "flip", IntegrityError),
    ("recipients.0.key_id", "0123456789abcdef", IntegrityError),
    ("recipients.1", _DELETE, IntegrityError),
    ("model.name", "other", IntegrityError),
    ("model.version", 4, IntegrityError),
    ("model.created", 0, IntegrityError),
    ("model.labels", {}, IntegrityError),
    ("model.not_after", 2_000_000_000, IntegrityError),
    ("payload.kind", "safetensors", IntegrityError),
]


@pytest.mark.parametrize(("path", "value", "expected"), HEADER_EDITS, ids=[e[0] for e in HEADER_EDITS])
def test_every_header_field_edit(base: Base, tmp_path: Path, path: str, value: Any, expected: type[EdgeguardError]) -> None:
    """A well-formed, canonical edit of each header field: only the signature (or trust) catches it."""
    obj = split(base.data).header_obj
    old: Any = obj
    for p in path.split(".")[:-1]:
        old = old[int(p)] if p.isdigit() else old[p]
    last = path.split(".")[-1]
    current = old[int(last)] if last.isdigit() else old.get(last)
    if value == "swap":
        value = "chacha20-poly1305" if current == "aes-256-gcm" else "aes-256-gcm"
    elif value == "flip":
        value = _flip_b64(current)
    elif value == "+1":
        value = current + 1
    check(base, with_header(base.data, canonical(_edit(obj, path, value))), tmp_path, expected)


# --- the signature block and the chunks ---------------------------------------------------------


def test_signature_block_bit_flips(base: Base, tmp_path: Path) -> None:
    p = split(base.data)
    start = 16 + len(p.header)
    for i in range(start, start + 96, 7):
        data = bytearray(base.data)
        data[i] ^= 0x80 >> (i % 8)
        check(base, bytes(data), tmp_path, IntegrityError)


def test_chunk_bit_flips(base: Base, tmp_path: Path) -> None:
    p = split(base.data)
    offset = 112 + len(p.header)
    for chunk in p.chunks:
        n = len(chunk) - 16
        for where in (0, n // 2, n - 1, n, len(chunk) - 1):  # ciphertext start/middle/end, tag start/end
            data = bytearray(base.data)
            data[offset + where] ^= 1 << (where % 8)
            check(base, bytes(data), tmp_path, IntegrityError)
        offset += len(chunk)


def test_truncation(base: Base, tmp_path: Path) -> None:
    p = split(base.data)
    hl = len(p.header)
    boundaries, off = [], 112 + hl
    for chunk in p.chunks:
        boundaries += [off, off + 1, off + len(chunk) // 2, off + len(chunk) - 16, off + len(chunk) - 1]
        off += len(chunk)
    for n in boundaries:  # at every chunk boundary, mid-chunk, mid-tag
        check(base, base.data[:n], tmp_path, IntegrityError)
    for n in (16 + hl, 16 + hl + 31, 16 + hl + 32, 16 + hl + 95):  # inside the signature block: wrong size
        check(base, base.data[:n], tmp_path, IntegrityError)
    for n in (0, 7, 15, 16, 17, 16 + hl - 1):  # inside the preamble or the header
        check(base, base.data[:n], tmp_path, FormatError)


@pytest.mark.parametrize("extra", [b"\x00", bytes(16), b"EDGESEAL", None], ids=["1", "16", "magic", "chunk"])
def test_appended_bytes(base: Base, tmp_path: Path, extra: bytes | None) -> None:
    tail = split(base.data).chunks[0] if extra is None else extra
    check(base, base.data + tail, tmp_path, IntegrityError)


def _rechunk(base: Base, order: list[int]) -> list[bytes]:
    chunks = split(base.data).chunks
    return [chunks[i] for i in order]


@pytest.mark.parametrize("order", [[1, 0, 2, 3], [0, 2, 1, 3], [0, 0, 2, 3], [0, 1, 1, 3], [2, 1, 0, 3]])
def test_reordered_and_duplicated_chunks(base: Base, tmp_path: Path, order: list[int]) -> None:
    p = split(base.data)
    tampered = p.preamble + p.header + p.root + p.signature + b"".join(_rechunk(base, order))
    check(base, tampered, tmp_path, IntegrityError)
    # Even the publisher's own signature over the reordered chunks does not help: each tag is bound
    # to its index, so verify (signature + digests) passes and open still fails.
    resigned = resign(base.data, base.keys.ed25519, _rechunk(base, order))
    check(base, resigned, tmp_path, IntegrityError, verify_expected=None)


def test_resigned_truncation_at_a_chunk_boundary(base: Base, tmp_path: Path) -> None:
    """Drop the final chunk and shorten payload_length so the sizes match, then re-sign: the new
    last chunk was not sealed as the last one, so its tag fails."""
    p = split(base.data)
    obj = p.header_obj
    obj["payload_length"] = 3 * CHUNK
    data = with_header(base.data, canonical(obj))
    data = resign(data, base.keys.ed25519, p.chunks[:3])
    check(base, data, tmp_path, IntegrityError, verify_expected=None)


def test_resigned_header_edit(base: Base, tmp_path: Path) -> None:
    """The chunks are bound to the header digest: a re-signed header with a new label fails every tag."""
    obj = split(base.data).header_obj
    obj["model"]["labels"]["extra"] = "x"
    data = resign(with_header(base.data, canonical(obj)), base.keys.ed25519)
    check(base, data, tmp_path, IntegrityError, verify_expected=None)


def test_signature_from_another_file(base: Base, tmp_path: Path) -> None:
    p, q = split(base.data), split(base.other)
    check(base, p.preamble + p.header + p.root + q.signature + b"".join(p.chunks), tmp_path, IntegrityError)
    check(base, p.preamble + p.header + q.root + q.signature + b"".join(p.chunks), tmp_path, IntegrityError)
    check(base, p.preamble + p.header + q.root + q.signature + b"".join(q.chunks), tmp_path, IntegrityError)
    check(base, p.preamble + q.header + p.root + p.signature + b"".join(p.chunks), tmp_path, IntegrityError)


def test_stanza_from_another_file(base: Base, tmp_path: Path) -> None:
    """A key wrap is bound to its file's salt: moved into another file (even re-signed) it opens nothing."""
    obj = split(base.data).header_obj
    obj["recipients"] = split(base.other).header_obj["recipients"]
    moved = with_header(base.data, canonical(obj))
    check(base, moved, tmp_path, IntegrityError)
    check(base, resign(moved, base.keys.ed25519), tmp_path, NotARecipientError, verify_expected=None)


def test_stripped_signature(base: Base, tmp_path: Path) -> None:
    p = split(base.data)
    chunks = b"".join(p.chunks)
    check(base, p.preamble + p.header + p.root + chunks, tmp_path, IntegrityError)
    check(base, p.preamble + p.header + chunks, tmp_path, IntegrityError)
    check(base, p.preamble + p.header + p.root + bytes(64) + chunks, tmp_path, IntegrityError)


# --- keys -----------------------------------------------------------------------------------------


def test_wrong_identity(base: Base, tmp_path: Path) -> None:
    k = base.keys
    wrong = bytearray(base.data)
    wrong[-1] ^= 1  # so that check() sees different bytes; the key check comes before the tags
    for identities, ref_ids in (([k.other_dev.identity], [k.other_dev.private]), ([], [])):
        src = tmp_path / "in.sealed"
        src.write_bytes(base.data)
        with pytest.raises(NotARecipientError) as exc:
            decrypt_file(src, identities, k.trust)
        assert "identit" in str(exc.value)
        with pytest.raises(NotARecipientError):
            unseal_file(src, tmp_path / "out", identities, k.trust)
        assert not (tmp_path / "out").exists()
        verify_file(src, k.trust)
        with pytest.raises(ref.RefNotRecipientError):
            ref.decode(base.data, k.ref_trusted(), ref_ids)
        check(base, bytes(wrong), tmp_path, NotARecipientError, verify_expected=IntegrityError,
              identities=identities, ref_identities=ref_ids)  # fmt: skip


def test_untrusted_signer(base: Base, tmp_path: Path) -> None:
    wrong = bytearray(base.data)
    wrong[-1] ^= 1
    for trust in (TrustStore(), TrustStore([base.keys.p256.verifying_key])):
        check(base, bytes(wrong), tmp_path, UntrustedSignerError, trust=trust)


def test_wrong_passphrase(keys: Keys, tmp_path: Path) -> None:
    src = seal_bytes(tmp_path / "p.sealed", raw_payload(b"secret"), signer=keys.ed25519, recipients=[passphrase_recipient()])
    opened = decrypt_file(src, [passphrase_identity()], keys.trust)
    assert bytes(opened.layout.section(opened.buffer, "data")) == b"secret"
    for wrong in (PASSPHRASE + " ", PASSPHRASE.upper(), "x"):
        with pytest.raises(NotARecipientError):
            decrypt_file(src, [passphrase_identity(wrong)], keys.trust)
        with pytest.raises(NotARecipientError):
            unseal_file(src, tmp_path / "out", [passphrase_identity(wrong)], keys.trust)
        with pytest.raises(ref.RefNotRecipientError):
            ref.decode(src.read_bytes(), keys.ref_trusted(), [wrong])
    # a device key does not open a passphrase file, and a passphrase does not open a device file
    with pytest.raises(NotARecipientError):
        decrypt_file(src, [keys.x25519_dev.identity], keys.trust)
    dev = seal_bytes(tmp_path / "d.sealed", raw_payload(b"x"), signer=keys.ed25519, recipients=[keys.x25519_dev.recipient])
    with pytest.raises(NotARecipientError):
        decrypt_file(dev, [passphrase_identity()], keys.trust)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.sealed", "p.sealed"]


def test_every_error_is_in_the_hierarchy() -> None:
    for name in dir(errors):
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, Exception) and obj.__module__ == errors.__name__:
            assert issubclass(obj, errors.EdgeguardError)
    assert issubclass(errors.UnsupportedVersionError, errors.FormatError)


P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def test_degenerate_and_high_s_ecdsa_signatures(keys: Keys, tmp_path: Path) -> None:
    """r or s zero or out of range, and the high-s twin of a valid signature: all IntegrityError."""
    src = seal_bytes(tmp_path / "e.sealed", raw_payload(DATA), signer=keys.p256, recipients=[keys.x25519_dev.recipient])
    data = src.read_bytes()
    src.unlink()
    p = split(data)
    r, s = int.from_bytes(p.signature[:32], "big"), int.from_bytes(p.signature[32:], "big")
    assert s <= P256_N // 2
    base = Base(data, data, keys)
    for rr, ss in ((0, s), (r, 0), (0, 0), (r, P256_N - s), (P256_N, s), (P256_N + 1, s), (r, P256_N),
                   (2**256 - 1, 2**256 - 1), (r, P256_N // 2 + 1)):  # fmt: skip
        sig = rr.to_bytes(32, "big") + ss.to_bytes(32, "big")
        check(base, p.preamble + p.header + p.root + sig + b"".join(p.chunks), tmp_path, IntegrityError)
