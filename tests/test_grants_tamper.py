"""The version 2 tamper matrix: every byte of the preamble, payload header, signature block and
embedded grant, the grant framing, chunks, truncation and appends, standalone grants and revocation
lists. edgeguard and the independent reference decoder must give the same outcome (the same error
category) on each, integrity failures stay opaque, and nothing opens that should not."""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import reference_decoder as ref
from edgeguard import errors
from edgeguard.grants import issue_grant, unlock
from edgeguard.revocation import RevocationList, make_revocation
from edgeguard.unseal import decrypt_file, verify_file
from helpers import Keys, make_device
from v2_helpers import category, grant_body, resign_artifact, seal_v2, sign_grant, split_v2


def _outcome(fn: Callable[[], Any]) -> str:
    try:
        fn()
    except (errors.EdgeguardError, ref.RefError) as exc:
        if isinstance(exc, errors.IntegrityError):
            assert str(exc) == errors.IntegrityError.MESSAGE
        return category(exc)
    return "ok"


class Both:
    """Opens and verifies bytes with edgeguard (through a file) and with the reference decoder."""

    def __init__(self, keys: Keys, tmp: Path) -> None:
        self.keys, self.path = keys, tmp / "t.sealed"

    def open(self, data: bytes, grant: bytes | None = None) -> tuple[str, str]:
        self.path.write_bytes(data)
        k = self.keys
        mine = _outcome(lambda: decrypt_file(self.path, [k.x25519_dev.identity], k.trust, grant=grant))
        theirs = _outcome(lambda: ref.decode(data, k.ref_trusted(), [k.x25519_dev.private]) if grant is None
                          else ref.decode_v2(data, k.ref_trusted(), [k.x25519_dev.private], grant=grant))  # fmt: skip
        return mine, theirs

    def verify(self, data: bytes) -> tuple[str, str]:
        self.path.write_bytes(data)
        k = self.keys
        return (_outcome(lambda: verify_file(self.path, k.trust)),
                _outcome(lambda: ref.decode(data, k.ref_trusted(), verify_only=True)))  # fmt: skip


@pytest.fixture
def base(keys: Keys, tmp_path: Path) -> bytes:
    return seal_v2(tmp_path / "base.sealed", keys, [keys.x25519_dev.recipient]).read_bytes()


def test_every_head_and_grant_byte_flipped(keys: Keys, tmp_path: Path, base: bytes) -> None:
    both = Both(keys, tmp_path)
    p = split_v2(base)
    head_end = len(p.preamble) + len(p.header) + 96
    grant_start = len(base) - len(p.grant)
    seen: dict[str, int] = {}
    for offset in [*range(head_end), *range(grant_start - 4, len(base))]:
        data = bytearray(base)
        data[offset] ^= 0x01
        mine, theirs = both.open(bytes(data))
        assert mine == theirs, (offset, mine, theirs)
        assert mine != "ok", offset
        v_mine, v_theirs = both.verify(bytes(data))
        assert v_mine == v_theirs, (offset, v_mine, v_theirs)
        seen[mine] = seen.get(mine, 0) + 1
    assert {"format", "integrity"} <= set(seen), seen


def test_chunks_framing_truncation_and_appends(keys: Keys, tmp_path: Path, base: bytes) -> None:
    both = Both(keys, tmp_path)
    p = split_v2(base)
    chunk_at = len(p.preamble) + len(p.header) + 96
    cases = {
        "chunk bit": base[:chunk_at + 7] + bytes([base[chunk_at + 7] ^ 0x80]) + base[chunk_at + 8 :],
        "last tag bit": p.preamble + p.header + p.root + p.signature + p.chunks[:-1] + bytes([p.chunks[-1] ^ 1]) + struct.pack(">I", len(p.grant)) + p.grant,
        "truncated by one": base[:-1],
        "one byte appended": base + b"\x00",
        "grant_len + 1": p.join(len(p.grant) + 1),
        "grant_len - 1": p.join(len(p.grant) - 1),
        "grant_len 80": p.join(80),
        "grant_len huge": p.join(0xFFFFFFFF),
        "no grant_len at all": p.preamble + p.header + p.root + p.signature + p.chunks,
        "grant stripped": p.preamble + p.header + p.root + p.signature + p.chunks + bytes(4),
        "chunks swapped": p.preamble + p.header + p.root + p.signature + p.chunks[4112:] + p.chunks[:4112] + struct.pack(">I", len(p.grant)) + p.grant,
        "grant doubled": p.join(len(p.grant)) + p.grant,
    }
    expected_open = {"grant_len 80": "format", "grant_len huge": "format", "grant stripped": "not_recipient"}
    for name, data in cases.items():
        mine, theirs = both.open(data)
        assert mine == theirs == expected_open.get(name, "integrity"), (name, mine, theirs)
        v_mine, v_theirs = both.verify(data)
        assert v_mine == v_theirs, (name, v_mine, v_theirs)


def test_resigned_header_edits(keys: Keys, tmp_path: Path, base: bytes) -> None:
    """A publisher's own edits (re-signed): each changes the artifact id, so the embedded grant no
    longer names the artifact (and its stanzas' HPKE info names the old one). Given a grant that
    wraps the genuine DEK for the edited artifact, the key commitment, the chunk AAD or the key
    derivation refuses it."""
    import json

    from edgeguard.format import Stanza
    from edgeguard.recipients import wrap_context_v2
    from v2_helpers import artifact_id

    both = Both(keys, tmp_path)
    (tmp_path / "base.sealed").write_bytes(base)
    dek = unlock(tmp_path / "base.sealed", keys.x25519_dev.identity, keys.trust).dek
    p = split_v2(base)
    h = p.header_obj
    body = grant_body(p.grant)
    edits = {
        "salt": {**h, "salt": "A" * 43 + "="},
        "key_commitment": {**h, "key_commitment": base64.b64encode(bytes([7]) * 32).decode()},
        "model version": {**h, "model": {**h["model"], "version": 99}},
        "cipher": {**h, "cipher": "chacha20-poly1305"},
    }
    for name, edit in edits.items():
        q = resign_artifact(p, keys.signer, json.dumps(edit, sort_keys=True, separators=(",", ":")).encode())
        assert both.open(q.join()) == ("not_recipient", "not_recipient"), name
        assert both.verify(q.join()) == ("not_recipient", "not_recipient"), name  # the embedded grant names another artifact
        q.grant = sign_grant({**body, "artifact": artifact_id(q).hex()}, keys.signer)  # re-pointed, old stanza
        assert both.open(q.join()) == ("not_recipient", "not_recipient"), name
        salt = base64.b64decode(edit["salt"])
        stanza: Stanza = keys.x25519_dev.recipient.wrap(dek, salt, context=wrap_context_v2(salt, artifact_id(q)))
        q.grant = sign_grant({**body, "artifact": artifact_id(q).hex(), "recipients": [stanza.to_json()]}, keys.signer)
        assert both.open(q.join()) == ("integrity", "integrity"), name


def test_standalone_grant_bytes_flipped(keys: Keys, tmp_path: Path) -> None:
    issuer = make_device("x25519")
    path = seal_v2(tmp_path / "a.sealed", keys, [issuer.recipient])
    grant = issue_grant(unlock(path, issuer.identity, keys.trust), [keys.x25519_dev.recipient], keys.signer).to_bytes()
    both = Both(keys, tmp_path)
    data = path.read_bytes()
    assert both.open(data, grant) == ("ok", "ok")
    for offset in range(len(grant)):
        bad = bytearray(grant)
        bad[offset] ^= 0x01
        mine, theirs = both.open(data, bytes(bad))
        assert mine == theirs != "ok", (offset, mine, theirs)
    for name, bad_grant in {"truncated": grant[:-1], "appended": grant + b"\x00", "empty": b"", "version 3": grant[:8] + b"\x00\x03" + grant[10:]}.items():
        mine, theirs = both.open(data, bad_grant)
        assert mine == theirs != "ok", (name, mine, theirs)


def test_revocation_list_bytes_flipped(keys: Keys) -> None:
    data = make_revocation(keys.signer, 7, grants=["ab" * 16], keys=["cd" * 8])
    assert RevocationList.load(data, keys.trust).serial == ref.parse_revocation(data, keys.ref_trusted()).serial == 7
    for offset in range(len(data)):
        bad = bytearray(data)
        bad[offset] ^= 0x01
        mine = _outcome(lambda bad=bad: RevocationList.load(bytes(bad), keys.trust))
        theirs = _outcome(lambda bad=bad: ref.parse_revocation(bytes(bad), keys.ref_trusted()))
        assert mine == theirs != "ok", (offset, mine, theirs)
