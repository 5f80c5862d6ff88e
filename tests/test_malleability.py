"""An age-style malleability fuzzer: Hypothesis mutations of valid sealed files (bit flips, byte
insertions and deletions, splices with another file) never open unless the bytes are those of a
valid file, always fail with an EdgeguardError subclass (open, unseal and verify alike), and the
reference decoder reaches the same verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import reference_decoder as ref
from edgeguard.errors import (
    EdgeguardError,
    FormatError,
    IntegrityError,
    NotARecipientError,
    UnsupportedVersionError,
    UntrustedSignerError,
)
from edgeguard.recipients.scrypt import PassphraseIdentity
from edgeguard.unseal import decrypt_file, unseal_file, verify_file
from helpers import (
    CHUNK,
    PASSPHRASE,
    Blob,
    new_keys,
    passphrase_recipient,
    raw_payload,
    scratch_dir,
    seal_bytes,
)

CATEGORY = {
    FormatError: "format",
    UnsupportedVersionError: "version",
    UntrustedSignerError: "untrusted",
    NotARecipientError: "not_recipient",
    IntegrityError: "integrity",
}


class Corpus:
    """Valid sealed files (two independent seals of each configuration, for splicing)."""

    def __init__(self) -> None:
        self.keys = new_keys()
        k = self.keys
        self.files: list[bytes] = []
        configs: list[tuple[Any, list[Any], str, bytes]] = [
            (k.ed25519, [k.x25519_dev.recipient, k.p256_dev.recipient], "aes-256-gcm", b"m" * (CHUNK + 100)),
            (k.p256, [k.x25519_dev.recipient], "chacha20-poly1305", b"small model"),
            (k.ed25519, [passphrase_recipient()], "chacha20-poly1305", b"passphrase model"),
        ]
        with scratch_dir() as d:
            for i, (signer, recipients, cipher, content) in enumerate(configs):
                for j in range(2):
                    path = Path(d) / f"{i}-{j}.sealed"
                    seal_bytes(path, raw_payload(content), signer=signer, recipients=recipients, cipher=cipher)
                    self.files.append(path.read_bytes())
        # A re-signed edit may raise the scrypt work factor to 2^22 (4 GiB): cap it for the tests,
        # on both sides (above the cap a passphrase identity opens nothing).
        self.identities = [k.x25519_dev.identity, PassphraseIdentity(PASSPHRASE, max_log_n=12)]
        self.ref_identities = [k.x25519_dev.private, ref.Passphrase(PASSPHRASE, max_log_n=12)]


CORPUS = Corpus()
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def files() -> st.SearchStrategy[bytes]:
    return st.sampled_from(CORPUS.files)


@st.composite
def bit_flips(draw: st.DrawFn) -> Blob:
    data = bytearray(draw(files()))
    # bias towards the preamble, header and signature block, where the parser does its work
    head = len(data) - len(data) // 2
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.one_of(st.integers(0, min(head, len(data) - 1)), st.integers(0, len(data) - 1)))
        data[pos] ^= 1 << draw(st.integers(0, 7))
    return Blob(data)


@st.composite
def insertions(draw: st.DrawFn) -> Blob:
    data = draw(files())
    pos = draw(st.integers(0, len(data)))
    return Blob(data[:pos] + draw(st.binary(min_size=1, max_size=40)) + data[pos:])


@st.composite
def deletions(draw: st.DrawFn) -> Blob:
    data = draw(files())
    pos = draw(st.integers(0, len(data) - 1))
    return Blob(data[:pos] + data[pos + draw(st.integers(1, 64)) :])


@st.composite
def splices(draw: st.DrawFn) -> Blob:
    a, b = draw(files()), draw(files())
    i, j = draw(st.integers(0, len(a))), draw(st.integers(0, len(b)))
    return Blob(a[:i] + b[j:])


@st.composite
def header_byte_edits(draw: st.DrawFn) -> Blob:
    """Replace a byte of the JSON header with a JSON-significant character."""
    data = bytearray(draw(files()))
    hl = int.from_bytes(data[12:16], "big")
    pos = draw(st.integers(16, 15 + hl))
    data[pos] = draw(st.sampled_from(b'{}[]",:0123456789 \\-eEtfn'))
    return Blob(data)


def check(mutated: bytes) -> None:
    k = CORPUS.keys
    with scratch_dir() as d:
        path = Path(d) / "m.sealed"
        path.write_bytes(mutated)
        outcome: Any
        try:
            opened = decrypt_file(path, CORPUS.identities, k.trust)
            outcome = bytes(opened.buffer)
        except EdgeguardError as exc:
            outcome = type(exc)
        except Exception as exc:  # pragma: no cover - the property under test
            pytest.fail(f"open raised {type(exc).__name__} (not an EdgeguardError): {exc}")
        try:
            verify_file(path, k.trust)
            verified: Any = None
        except EdgeguardError as exc:
            verified = type(exc)
        except Exception as exc:  # pragma: no cover
            pytest.fail(f"verify raised {type(exc).__name__} (not an EdgeguardError): {exc}")
        try:
            unseal_file(path, Path(d) / "out", CORPUS.identities, k.trust)
            unsealed = True
        except EdgeguardError:
            unsealed = False
        assert unsealed == isinstance(outcome, bytes)
        if not unsealed:
            assert sorted(p.name for p in Path(d).iterdir()) == ["m.sealed"]
    try:
        reference: Any = ref.decode(mutated, k.ref_trusted(), CORPUS.ref_identities).payload
    except ref.RefError as exc:
        reference = exc.category
    if mutated in CORPUS.files:
        assert isinstance(outcome, bytes) and outcome == reference and verified is None
        return
    assert not isinstance(outcome, bytes), "a modified file opened"
    assert CATEGORY[outcome] == reference, (outcome, reference)
    if verified is not None:
        assert outcome in (verified, NotARecipientError)
    else:
        # verify accepted it, so the publisher signature and every chunk digest matched: only
        # possible for the unchanged file, which was handled above
        pytest.fail(f"verify accepted a modified file; open said {outcome.__name__}")


@SETTINGS
@given(bit_flips())
def test_bit_flips(mutated: bytes) -> None:
    check(mutated)


@SETTINGS
@given(insertions())
def test_insertions(mutated: bytes) -> None:
    check(mutated)


@SETTINGS
@given(deletions())
def test_deletions(mutated: bytes) -> None:
    check(mutated)


@SETTINGS
@given(splices())
def test_splices(mutated: bytes) -> None:
    check(mutated)


@SETTINGS
@given(header_byte_edits())
def test_header_byte_edits(mutated: bytes) -> None:
    check(mutated)


def test_corpus_opens() -> None:
    for data in CORPUS.files:
        check(data)


@st.composite
def resigned_header_edits(draw: st.DrawFn) -> Blob:
    """A header edit the publisher then signs (chunks untouched): the file may be authentic now, so
    only the agreement between edgeguard and the reference decoder is asserted."""
    from helpers import resign, split

    data = bytearray(CORPUS.files[draw(st.sampled_from([0, 1, 4, 5]))])  # the Ed25519-signed ones
    hl = int.from_bytes(data[12:16], "big")
    header = bytearray(data[16 : 16 + hl])
    for _ in range(draw(st.integers(1, 3))):
        pos = draw(st.integers(0, len(header) - 1))
        header[pos] = draw(st.sampled_from(b'{}[]",:0123456789 abcdefxyzABC=+/\\-'))
    edited = bytes(data[:12]) + len(header).to_bytes(4, "big") + bytes(header) + bytes(data[16 + hl :])
    return Blob(resign(edited, CORPUS.keys.ed25519, split(bytes(data)).chunks))


@SETTINGS
@given(resigned_header_edits())
def test_resigned_header_edits_agree_with_the_reference(mutated: bytes) -> None:
    agree(mutated)


def agree(mutated: bytes) -> None:
    """edgeguard and the reference decoder reach the same verdict (or the same plaintext)."""
    k = CORPUS.keys
    with scratch_dir() as d:
        path = Path(d) / "m.sealed"
        path.write_bytes(mutated)
        try:
            outcome: Any = bytes(decrypt_file(path, CORPUS.identities, k.trust).buffer)
        except EdgeguardError as exc:
            outcome = CATEGORY[type(exc)]
    try:
        reference: Any = ref.decode(mutated, k.ref_trusted(), CORPUS.ref_identities).payload
    except ref.RefError as exc:
        reference = "format" if exc.category == "inner_format" else exc.category
    event(outcome if isinstance(outcome, str) else "opened")
    assert outcome == reference


json_values = st.one_of(
    st.integers(-1, 5000), st.sampled_from([0, 9, 10, 22, 23, 4096, 8192, 2**53 - 1, 2**53, 2**32 * 4096 + 1]),
    st.booleans(), st.none(), st.text(max_size=5), st.text("0123456789abcdef", min_size=16, max_size=16),
    st.sampled_from(["aes-256-gcm", "chacha20-poly1305", "ed25519", "ecdsa-p256-sha256", "raw", "onnx", "scrypt",
                     "hpke-x25519", "hpke-p256", "AAAA", "A" * 43 + "=", "\ud800"]),
    st.lists(st.integers(0, 3), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(0, 3), max_size=2),
)  # fmt: skip


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, prefix + (i,))
    return out


@st.composite
def resigned_field_edits(draw: st.DrawFn) -> Blob:
    """Set, delete or add one JSON value anywhere in the header (kept canonical), then re-sign."""
    import json

    from helpers import canonical, resign, split

    data = CORPUS.files[draw(st.sampled_from([0, 1, 4, 5]))]
    parts = split(data)
    obj = parts.header_obj
    path = draw(st.sampled_from(_paths(obj)))
    parent: Any = obj
    for key in path[:-1]:
        parent = parent[key]
    action = draw(st.sampled_from(["set", "set", "delete", "add"]))
    if action == "set":
        parent[path[-1]] = draw(json_values)
    elif action == "delete":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[draw(st.sampled_from(["extra", "key_id", "salt", "log_n", "not_before", "labels"]))] = draw(json_values)
    else:
        parent.append(draw(json_values))
    header = canonical(obj)
    edited = parts.preamble[:12] + len(header).to_bytes(4, "big") + header + parts.root + parts.signature + b"".join(parts.chunks)
    assert json.loads(header) == obj
    return Blob(resign(edited, CORPUS.keys.ed25519, parts.chunks))


@SETTINGS
@given(resigned_field_edits())
def test_resigned_field_edits_agree_with_the_reference(mutated: bytes) -> None:
    agree(mutated)
