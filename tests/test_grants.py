"""Format version 2: artifacts opened through grants (embedded, a file, a folder indexed by key id),
the key commitment, rewrap, revocation lists and their anti-rollback; the reference decoder agrees."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path
from typing import Any

import pytest

import reference_decoder as ref
from edgeguard import errors
from edgeguard.format_v2 import GRANT_SUFFIX, parse_grant
from edgeguard.grants import issue_device_grants, issue_grant, rewrap, unlock, write_grant_folder
from edgeguard.keys import SigningKey, TrustStore
from edgeguard.revocation import RevocationList, RevocationStore, make_revocation
from edgeguard.runtime import open_sealed
from edgeguard.unseal import decrypt_file, inspect_file, verify_file
from helpers import Keys, make_device, raw_payload
from v2_helpers import DATA, artifact_id, canonical, grant_body, resign_artifact, seal_v2, sign_grant, sign_revocation, split_v2


def _open(path: Path, device: Any, keys: Keys, **kw: Any) -> bytes:
    return bytes(decrypt_file(path, [device.identity], keys.trust, **kw).buffer)


@pytest.mark.parametrize("cipher", ["aes-256-gcm", "chacha20-poly1305"])
@pytest.mark.parametrize("publisher", ["ed25519", "p256"])
def test_v2_round_trip_both_device_types_and_the_reference_agrees(keys: Keys, tmp_path: Path, cipher: str, publisher: str) -> None:
    path = seal_v2(tmp_path / "a.sealed", keys, signer=getattr(keys, publisher), cipher=cipher)
    want = bytes(raw_payload(DATA))
    for dev in (keys.x25519_dev, keys.p256_dev):
        assert _open(path, dev, keys) == want
        assert ref.decode(path.read_bytes(), keys.ref_trusted(), [dev.private]).payload == want
    with pytest.raises(errors.NotARecipientError):
        _open(path, keys.other_dev, keys)
    with pytest.raises(ref.RefNotRecipientError):
        ref.decode(path.read_bytes(), keys.ref_trusted(), [keys.other_dev.private])
    verified = verify_file(path, keys.trust)
    assert verified.container.version == 2 and verified.artifact_id is not None
    ref.decode(path.read_bytes(), keys.ref_trusted(), verify_only=True)


def test_v1_files_still_seal_and_open_beside_v2(keys: Keys, tmp_path: Path) -> None:
    from helpers import seal_bytes

    path = seal_bytes(tmp_path / "v1.sealed", raw_payload(b"v1"), signer=keys.signer, recipients=[keys.x25519_dev.recipient])
    assert inspect_file(path).version == 1
    assert _open(path, keys.x25519_dev, keys) == bytes(raw_payload(b"v1"))


def test_grant_file_bytes_path_and_folder(keys: Keys, tmp_path: Path) -> None:
    issuer = make_device("x25519")
    path = seal_v2(tmp_path / "a.sealed", keys, [issuer.recipient])
    unlocked = unlock(path, issuer.identity, keys.trust)
    assert "dek" not in repr(unlocked) and unlocked.dek.hex() not in repr(unlocked)
    with pytest.raises(TypeError):
        pickle.dumps(unlocked)
    grant = issue_grant(unlocked, [keys.x25519_dev.recipient, keys.p256_dev.recipient], keys.signer)
    (tmp_path / "g.grant").write_bytes(grant.to_bytes())
    want = bytes(raw_payload(DATA))
    for source in (grant.to_bytes(), tmp_path / "g.grant", str(tmp_path / "g.grant"), grant):
        assert _open(path, keys.p256_dev, keys, grant=source) == want
    assert ref.decode_v2(path.read_bytes(), keys.ref_trusted(), [keys.p256_dev.private], grant=grant.to_bytes()).payload == want
    # the embedded grant does not address the devices
    with pytest.raises(errors.NotARecipientError):
        _open(path, keys.p256_dev, keys)

    folder = write_grant_folder(issue_device_grants(unlocked, [keys.x25519_dev.recipient, keys.p256_dev.recipient], keys.signer), tmp_path / "grants")
    assert sorted(os.listdir(folder)) == sorted(f"{d.recipient.key_id}{GRANT_SUFFIX}" for d in (keys.x25519_dev, keys.p256_dev))
    assert _open(path, keys.x25519_dev, keys, grant=folder) == want
    with pytest.raises(errors.NotARecipientError, match="no grant for this device"):
        _open(path, keys.other_dev, keys, grant=folder)
    with pytest.raises(FileExistsError):
        write_grant_folder({}, folder)

    class Sneaky:
        key_id = "../g"  # names a file outside the folder (g.grant): never followed

        def unwrap(self, *a: Any, **kw: Any) -> None:
            return None

    with pytest.raises(errors.NotARecipientError):
        decrypt_file(path, [Sneaky()], keys.trust, grant=folder)


def test_folder_lookup_reads_only_the_devices_own_grant(keys: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    issuer = make_device("x25519")
    path = seal_v2(tmp_path / "a.sealed", keys, [issuer.recipient])
    grants = issue_device_grants(unlock(path, issuer.identity, keys.trust), [keys.x25519_dev.recipient], keys.signer)
    folder = write_grant_folder(grants, tmp_path / "grants")
    for i in range(50):  # other devices' grants, unreadable: a scan would trip over them
        p = folder / f"{i:016x}{GRANT_SUFFIX}"
        p.write_bytes(b"junk")
        p.chmod(0)
    opened: list[str] = []
    real_open = open

    def spy(file: Any, *a: Any, **kw: Any) -> Any:
        opened.append(os.fspath(file) if isinstance(file, (str, os.PathLike)) else str(file))
        return real_open(file, *a, **kw)

    def no_listing(*a: Any, **kw: Any) -> Any:
        raise AssertionError("the grant folder was listed")

    monkeypatch.setattr("builtins.open", spy)
    monkeypatch.setattr(os, "listdir", no_listing)
    monkeypatch.setattr(os, "scandir", no_listing)
    monkeypatch.setattr(Path, "iterdir", no_listing)
    assert _open(path, keys.x25519_dev, keys, grant=folder) == bytes(raw_payload(DATA))
    assert [p for p in opened if p.startswith(str(folder))] == [str(folder / f"{keys.x25519_dev.recipient.key_id}{GRANT_SUFFIX}")]


def test_a_sealer_that_wraps_another_key_for_some_devices_is_refused(keys: Keys, tmp_path: Path) -> None:
    """The malicious sealer: the artifact commits to DEK A, a validly signed grant wraps DEK B for
    one device (which would decrypt to garbage or, with a second payload, to another plaintext)."""
    from edgeguard.grants import Unlocked

    issuer = make_device("x25519")
    path = seal_v2(tmp_path / "a.sealed", keys, [issuer.recipient])
    real = unlock(path, issuer.identity, keys.trust)
    forged = issue_grant(Unlocked(real.container, real.artifact_id, os.urandom(32)), [keys.x25519_dev.recipient], keys.signer)
    with pytest.raises(errors.IntegrityError) as exc:
        _open(path, keys.x25519_dev, keys, grant=forged)
    assert str(exc.value) == errors.IntegrityError.MESSAGE
    with pytest.raises(ref.RefIntegrityError, match="commitment"):
        ref.decode_v2(path.read_bytes(), keys.ref_trusted(), [keys.x25519_dev.private], grant=forged.to_bytes())
    # and the same sealer embedding the forged grant in the artifact itself
    p = split_v2(path.read_bytes())
    p.grant = forged.to_bytes()
    bad = tmp_path / "bad.sealed"
    bad.write_bytes(p.join())
    verify_file(bad, keys.trust)  # keyless: every signature verifies ...
    with pytest.raises(errors.IntegrityError):
        _open(bad, keys.x25519_dev, keys)  # ... and the device still refuses the other key


def test_a_grant_or_stanza_cannot_move_to_another_artifact(keys: Keys, tmp_path: Path) -> None:
    issuer = make_device("x25519")
    a = seal_v2(tmp_path / "a.sealed", keys, [issuer.recipient, keys.x25519_dev.recipient])
    b = seal_v2(tmp_path / "b.sealed", keys, [issuer.recipient])
    grant_a = split_v2(a.read_bytes()).grant
    with pytest.raises(errors.NotARecipientError, match="for artifact"):
        _open(b, keys.x25519_dev, keys, grant=grant_a)
    with pytest.raises(ref.RefNotRecipientError):
        ref.decode_v2(b.read_bytes(), keys.ref_trusted(), [keys.x25519_dev.private], grant=grant_a)
    # re-pointed at b and re-signed by a trusted key: the stanza's HPKE info names a's salt and id
    body = grant_body(grant_a)
    body["artifact"] = artifact_id(split_v2(b.read_bytes())).hex()
    moved = sign_grant(body, keys.signer)
    with pytest.raises(errors.NotARecipientError, match="no stanza that opens"):
        _open(b, keys.x25519_dev, keys, grant=moved)
    with pytest.raises(ref.RefNotRecipientError):
        ref.decode_v2(b.read_bytes(), keys.ref_trusted(), [keys.x25519_dev.private], grant=moved)
    # the same header and chunks signed again (ECDSA: another signature) is another artifact
    pa = split_v2(a.read_bytes())
    again = tmp_path / "again.sealed"
    again.write_bytes(resign_artifact(pa, keys.signer).join())  # Ed25519 is deterministic: same id
    assert verify_file(again, keys.trust).artifact_id == artifact_id(pa)
    resigned = resign_artifact(pa, keys.p256, pa.header.replace(keys.signer.key_id.encode(), keys.p256.key_id.encode()).replace(b'"ed25519"', b'"ecdsa-p256-sha256"'))
    again.write_bytes(resigned.join())
    with pytest.raises(errors.NotARecipientError):
        _open(again, keys.x25519_dev, keys)


def test_grant_signers_are_checked_against_the_trust_store(keys: Keys, tmp_path: Path) -> None:
    issuer = make_device("x25519")
    path = seal_v2(tmp_path / "a.sealed", keys, [issuer.recipient])
    unlocked = unlock(path, issuer.identity, keys.trust)
    fleet = SigningKey.generate("p256")
    grant = issue_grant(unlocked, [keys.x25519_dev.recipient], fleet)
    with pytest.raises(errors.UntrustedSignerError):
        _open(path, keys.x25519_dev, keys, grant=grant)
    trust = TrustStore([keys.ed25519.verifying_key, fleet.verifying_key])
    assert bytes(decrypt_file(path, [keys.x25519_dev.identity], trust, grant=grant).buffer) == bytes(raw_payload(DATA))
    flipped = bytearray(grant.to_bytes())
    flipped[-5] ^= 1
    with pytest.raises(errors.IntegrityError):
        decrypt_file(path, [keys.x25519_dev.identity], trust, grant=bytes(flipped))


def test_grant_validity_window_is_a_per_device_licence(keys: Keys, tmp_path: Path) -> None:
    issuer = make_device("x25519")
    path = seal_v2(tmp_path / "a.sealed", keys, [issuer.recipient])
    unlocked = unlock(path, issuer.identity, keys.trust)
    grant = issue_grant(unlocked, [keys.x25519_dev.recipient], keys.signer, not_before=1000, not_after=2000)
    kw = dict(identity=keys.x25519_dev.identity, trust=keys.trust, grant=grant.to_bytes())
    with open_sealed(path, clock=lambda: 1500, **kw) as t:
        assert bytes(t["data"]) == DATA
    with pytest.raises(errors.NotYetValidError, match="grant"):
        open_sealed(path, clock=lambda: 999, **kw)
    with pytest.raises(errors.ExpiredError, match="grant"):
        open_sealed(path, clock=lambda: 2001, **kw)
    with pytest.raises(ref.RefExpiredError):
        ref.decode_v2(path.read_bytes(), keys.ref_trusted(), [keys.x25519_dev.private], grant=grant.to_bytes(), now=2001)


def test_rewrap_keeps_every_chunk_and_the_artifact_id(keys: Keys, tmp_path: Path) -> None:
    issuer = make_device("x25519")
    path = seal_v2(tmp_path / "a.sealed", keys, [issuer.recipient, keys.x25519_dev.recipient])
    before = split_v2(path.read_bytes())
    new = rewrap(path, tmp_path / "b.sealed", issuer.identity, keys.trust, keys.signer,
                 add=[keys.p256_dev.recipient], remove=[keys.x25519_dev.recipient.key_id])  # fmt: skip
    after = split_v2((tmp_path / "b.sealed").read_bytes())
    assert (after.preamble, after.header, after.root, after.signature, after.chunks) == (
        before.preamble, before.header, before.root, before.signature, before.chunks)  # fmt: skip
    assert after.grant == new.to_bytes() != before.grant
    assert grant_body(after.grant)["grant_id"] != grant_body(before.grant)["grant_id"]
    issuer_stanza = [s for s in grant_body(before.grant)["recipients"] if s["key_id"] == issuer.recipient.key_id]
    assert issuer_stanza == [s for s in grant_body(after.grant)["recipients"] if s["key_id"] == issuer.recipient.key_id]
    assert _open(tmp_path / "b.sealed", keys.p256_dev, keys) == bytes(raw_payload(DATA))
    with pytest.raises(errors.NotARecipientError):
        _open(tmp_path / "b.sealed", keys.x25519_dev, keys)
    with pytest.raises(ValueError, match="no device"):
        rewrap(path, tmp_path / "c.sealed", issuer.identity, keys.trust, keys.signer, remove=["0" * 16])
    with pytest.raises(ValueError, match="already"):
        rewrap(path, tmp_path / "c.sealed", issuer.identity, keys.trust, keys.signer, add=[keys.x25519_dev.recipient])
    with pytest.raises(FileExistsError):
        rewrap(path, tmp_path / "b.sealed", issuer.identity, keys.trust, keys.signer, add=[keys.other_dev.recipient])
    assert not (tmp_path / "c.sealed").exists()


def test_keyless_verify_of_v2_checks_chunks_and_the_embedded_grant(keys: Keys, tmp_path: Path) -> None:
    path = seal_v2(tmp_path / "a.sealed", keys)
    p = split_v2(path.read_bytes())
    cases = {
        "chunk": p.preamble + p.header + p.root + p.signature + bytes([p.chunks[0] ^ 1]) + p.chunks[1:] + struct.pack(">I", len(p.grant)) + p.grant,
        "grant signature": p.join()[:-1] + bytes([p.join()[-1] ^ 1]),
        "stripped grant": p.preamble + p.header + p.root + p.signature + p.chunks + bytes(4),
    }
    for name, data in cases.items():
        bad = tmp_path / f"{name}.sealed"
        bad.write_bytes(data)
        if name == "stripped grant":
            verify_file(bad, keys.trust)
            ref.decode(data, keys.ref_trusted(), verify_only=True)
            with pytest.raises(errors.NotARecipientError, match="embeds no grant"):
                _open(bad, keys.x25519_dev, keys)
            continue
        with pytest.raises(errors.IntegrityError):
            verify_file(bad, keys.trust)
        with pytest.raises(ref.RefIntegrityError):
            ref.decode(data, keys.ref_trusted(), verify_only=True)


# --- revocation ---------------------------------------------------------------------------------


def test_revoked_grant_and_revoked_device_key_are_refused_with_revoked_error(keys: Keys, tmp_path: Path) -> None:
    path = seal_v2(tmp_path / "a.sealed", keys)
    grant_id = grant_body(split_v2(path.read_bytes()).grant)["grant_id"]
    kw: dict[str, Any] = dict(identity=keys.x25519_dev.identity, trust=keys.trust)
    by_grant = make_revocation(keys.signer, 1, grants=[grant_id])
    with pytest.raises(errors.RevokedError, match=grant_id):
        open_sealed(path, revocation=by_grant, **kw)
    by_key = make_revocation(keys.signer, 2, keys=[keys.x25519_dev.recipient.key_id])
    with pytest.raises(errors.RevokedError, match=keys.x25519_dev.recipient.key_id) as exc:
        open_sealed(path, revocation=by_key, **kw)
    assert isinstance(exc.value, errors.LoadRefusedError)
    with open_sealed(path, revocation=by_key, identity=keys.p256_dev.identity, trust=keys.trust) as t:  # another device
        assert bytes(t["data"]) == DATA
    rl = ref.parse_revocation(by_key, keys.ref_trusted())
    with pytest.raises(ref.RefRevokedError):
        ref.decode_v2(path.read_bytes(), keys.ref_trusted(), [keys.x25519_dev.private], revocation=rl)
    # a version 1 file: a revoked device key opens nothing either
    from helpers import seal_bytes

    v1 = seal_bytes(tmp_path / "v1.sealed", raw_payload(b"x"), signer=keys.signer, recipients=[keys.x25519_dev.recipient])
    with pytest.raises(errors.RevokedError):
        open_sealed(v1, revocation=by_key, **kw)


def test_revocation_lists_are_authenticated_and_never_rolled_back(keys: Keys, tmp_path: Path) -> None:
    path = seal_v2(tmp_path / "a.sealed", keys)
    store = tmp_path / "revocation.json"
    kw: dict[str, Any] = dict(identity=keys.x25519_dev.identity, trust=keys.trust, revocation_store=store)
    (tmp_path / "r5").write_bytes(make_revocation(keys.signer, 5))
    open_sealed(path, revocation=tmp_path / "r5", **kw).close()
    assert RevocationStore(store).highest(keys.signer.key_id) == 5
    open_sealed(path, revocation=make_revocation(keys.signer, 5), **kw).close()  # the same serial again
    with pytest.raises(errors.RevocationRollbackError) as exc:
        open_sealed(path, revocation=make_revocation(keys.signer, 4), **kw)
    assert isinstance(exc.value, errors.RollbackError)
    open_sealed(path, revocation=make_revocation(keys.p256, 1), **kw).close()  # serials are per signer
    with pytest.raises(errors.UntrustedSignerError):
        open_sealed(path, revocation=make_revocation(SigningKey.generate(), 9), **kw)
    tampered = bytearray(make_revocation(keys.signer, 9, keys=["0123456789abcdef"]))
    tampered[-1] ^= 1
    with pytest.raises(errors.IntegrityError):
        open_sealed(path, revocation=bytes(tampered), **kw)
    assert RevocationStore(store).highest(keys.signer.key_id) == 5  # nothing recorded from a bad list
    with pytest.raises(FileNotFoundError):
        open_sealed(path, revocation=tmp_path / "missing", **kw)  # a configured list that vanished is no "nothing revoked"
    store.write_text("{not json")
    with pytest.raises(errors.LoadRefusedError, match="corrupt"):
        open_sealed(path, revocation=make_revocation(keys.signer, 6), **kw)
    assert "RevocationList(" in repr(RevocationList.load(make_revocation(keys.signer, 7), keys.trust))


def test_revocation_list_format_rules(keys: Keys) -> None:
    good = {"signer": {"alg": "ed25519", "key_id": keys.signer.key_id}, "serial": 3, "issued": 1, "grants": ["0" * 32, "1" * 32], "keys": ["a" * 16]}
    assert RevocationList.load(sign_revocation(good, keys.signer), keys.trust).serial == 3
    for edit in ({"grants": ["1" * 32, "0" * 32]}, {"grants": ["0" * 32, "0" * 32]}, {"keys": ["A" * 16]}, {"serial": 0},
                 {"serial": 1.5}, {"extra": 1}, {"grants": "0" * 32}):  # fmt: skip
        body = canonical({**good, **edit}) if edit != {"serial": 1.5} else canonical(good).replace(b'"serial":3', b'"serial":1.5')
        data = sign_revocation(body, keys.signer)
        with pytest.raises(errors.FormatError):
            RevocationList.load(data, keys.trust)
        with pytest.raises(ref.RefFormatError):
            ref.parse_revocation(data, keys.ref_trusted())


def test_grant_format_rules(keys: Keys, tmp_path: Path) -> None:
    issuer = make_device("x25519")
    path = seal_v2(tmp_path / "a.sealed", keys, [issuer.recipient])
    unlocked = unlock(path, issuer.identity, keys.trust)
    grant = issue_grant(unlocked, [keys.x25519_dev.recipient, keys.p256_dev.recipient, keys.other_dev.recipient], keys.signer)
    body = grant_body(grant.to_bytes())
    stanzas = body["recipients"]
    assert [s["key_id"] for s in stanzas] == sorted(s["key_id"] for s in stanzas)
    scrypt = {"type": "scrypt", "salt": "A" * 22 + "==", "log_n": 10, "wrapped": "A" * 64}
    for edit in ({"recipients": stanzas[::-1]}, {"recipients": [stanzas[0], stanzas[0]]}, {"recipients": []},
                 {"recipients": [scrypt]}, {"grant_id": "0" * 31}, {"artifact": "A" * 64}, {"not_before": 5, "not_after": 5},
                 {"unknown": 1}):  # fmt: skip
        data = sign_grant({**body, **edit}, keys.signer)
        with pytest.raises(errors.FormatError):
            parse_grant(data)
        with pytest.raises(ref.RefFormatError):
            ref.parse_grant(data)
    with pytest.raises(ValueError, match="twice"):
        issue_grant(unlocked, [keys.x25519_dev.recipient, keys.x25519_dev.recipient], keys.signer)
    from edgeguard.recipients.scrypt import PassphraseRecipient

    with pytest.raises(ValueError, match="passphrase"):
        issue_grant(unlocked, [PassphraseRecipient("pw", log_n=10)], keys.signer)
    with pytest.raises(ValueError, match="passphrase"):
        seal_v2(tmp_path / "p.sealed", keys, [PassphraseRecipient("pw", log_n=10)])
    assert not (tmp_path / "p.sealed").exists()


def test_grant_recipient_limit(keys: Keys, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import edgeguard.format_v2 as f2
    import edgeguard.grants as g

    issuer = make_device("x25519")
    path = seal_v2(tmp_path / "a.sealed", keys, [issuer.recipient])
    unlocked = unlock(path, issuer.identity, keys.trust)
    grant = issue_grant(unlocked, [keys.x25519_dev.recipient, keys.p256_dev.recipient], keys.signer)
    monkeypatch.setattr(f2, "MAX_GRANT_RECIPIENTS", 1)
    monkeypatch.setattr(g, "MAX_GRANT_RECIPIENTS", 1)
    with pytest.raises(errors.FormatError, match=r"1\.\.1"):
        parse_grant(grant.to_bytes())
    with pytest.raises(ValueError, match=r"1\.\.1"):
        issue_grant(unlocked, [keys.x25519_dev.recipient, keys.p256_dev.recipient], keys.signer)


def test_v2_header_rules(keys: Keys, tmp_path: Path) -> None:
    """A payload header with recipients, or without its commitment, is malformed (both decoders)."""
    path = seal_v2(tmp_path / "a.sealed", keys)
    p = split_v2(path.read_bytes())
    h = p.header_obj
    for edit in ({**h, "recipients": []}, {k: v for k, v in h.items() if k != "key_commitment"}, {**h, "key_commitment": "AAAA"}):
        data = resign_artifact(p, keys.signer, canonical(edit)).join()
        bad = tmp_path / "bad.sealed"
        bad.write_bytes(data)
        with pytest.raises(errors.FormatError):
            verify_file(bad, keys.trust)
        with pytest.raises(ref.RefFormatError):
            ref.decode(data, keys.ref_trusted(), verify_only=True)
    # a re-signed commitment to another key: the device refuses its (genuine) DEK
    data = resign_artifact(p, keys.signer, canonical({**h, "key_commitment": "A" * 43 + "="})).join()
    bad = tmp_path / "bad.sealed"
    bad.write_bytes(data)
    with pytest.raises(errors.NotARecipientError):  # the artifact id changed, so the embedded grant no longer names it
        _open(bad, keys.x25519_dev, keys)


@pytest.mark.parametrize("length", [0, 1, 4095, 4096, 4097, 3 * 4096 + 5])
def test_v2_at_every_chunk_boundary_and_the_reference_agrees(keys: Keys, tmp_path: Path, length: int) -> None:
    """Opaque payloads (no inner layout): the native core decrypts, only the final layout check
    refuses, so the buffer is the plaintext (as helpers.open_opaque does for version 1)."""
    from edgeguard.seal import seal_payload
    from helpers import CHUNK, MODEL, open_opaque

    data = os.urandom(length)
    path = tmp_path / "o.sealed"
    seal_payload(data, path, kind="raw", signer=keys.p256, recipients=[keys.x25519_dev.recipient], model=MODEL,
                 cipher="chacha20-poly1305", chunk_size=CHUNK, format_version=2)  # fmt: skip
    assert open_opaque(path, [keys.x25519_dev.identity], keys.trust) == data
    assert ref.decode(path.read_bytes(), keys.ref_trusted(), [keys.x25519_dev.private], check_inner=False).payload == data
    verify_file(path, keys.trust)
