"""The fleet commands: seal --format-version 2, grant (a file, or --per-device a folder), rewrap,
revoke, unseal --grant/--revocation, and how verify and inspect describe a version 2 file; exit
codes, `edgeguard: error:`/`hint:` lines, --json, and no output on failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgeguard.cli import EXIT_ERROR, EXIT_FORMAT, EXIT_KEY, EXIT_OK, EXIT_POLICY, EXIT_USAGE
from edgeguard.keys import key_id, load_public_key
from test_cli import CliFiles, cli, failed, make_world
from v2_helpers import split_v2


@pytest.fixture
def w(tmp_path: Path) -> CliFiles:
    world = make_world(tmp_path)
    for i in range(3):
        assert cli("keygen", "--type", "x25519", "-o", tmp_path / f"fleet{i}.key").code == 0
    assert cli("keygen", "--type", "x25519", "-o", tmp_path / "issuer.key").code == 0
    return world


def _seal_v2(w: CliFiles, out: str = "v2.sealed", *extra: str | Path) -> Path:
    r = cli("seal", w.model, "-o", w.d / out, "--sign", w.pub, "--recipient", w.d / "issuer.key.pub", "--recipient", w.dev_pub,
            "--chunk-size", "4K", "--format-version", "2", "--json", *extra)  # fmt: skip
    assert r.code == EXIT_OK, r.err
    info = r.json()
    assert info["format_version"] == 2 and len(info["artifact_id"]) == 64 and len(info["key_commitment"]) == 64
    assert info["embedded_grant"]["devices"] == 2
    return w.d / out


def _unseal(w: CliFiles, sealed: Path, key: Path, out: str, *extra: str | Path) -> object:
    return cli("unseal", sealed, "-o", w.d / out, "--identity", key, "--trust", w.pub_key, *extra)


def test_seal_v2_verify_inspect_unseal(w: CliFiles) -> None:
    sealed = _seal_v2(w)
    v = cli("verify", sealed, "--trust", w.pub_key, "--json")
    assert v.code == EXIT_OK and v.json()["verified"] is True and v.json()["format_version"] == 2
    text = cli("inspect", sealed).out
    assert "artifact    " in text and "commitment  " in text and "grant       " in text and "for 2 device(s)" in text
    r = _unseal(w, sealed, w.dev, "out.bin")
    assert r.code == EXIT_OK, r.err  # type: ignore[attr-defined]
    assert (w.d / "out.bin").read_bytes() == w.model.read_bytes()
    failed(cli("seal", w.model, "-o", w.d / "p.sealed", "--sign", w.pub, "--passphrase", "--format-version", "2"), EXIT_USAGE, "--format-version 2")
    failed(cli("seal", w.model, "-o", w.d / "p.sealed", "--sign", w.pub, "--recipient", w.dev_pub, "--format-version", "3"), EXIT_USAGE)


def test_grant_file_and_per_device_folder(w: CliFiles) -> None:
    sealed = _seal_v2(w)
    listing = w.d / "fleet.txt"
    listing.write_text("# device keys\nfleet0.key.pub\n\nfleet1.key.pub\n")
    r = cli("grant", sealed, "--identity", w.d / "issuer.key", "--sign", w.pub, "--recipients-file", listing,
            "--recipient", w.p256_dev_pub, "-o", w.d / "g.grant", "--not-after", "2099-01-01", "--json")  # fmt: skip
    assert r.code == EXIT_OK, r.err
    info = r.json()
    assert info["devices"] == 3 and info["not_after"] == "2099-01-01T00:00:00Z" and info["artifact_id"] == cli("inspect", sealed, "--json").json()["artifact_id"]
    assert _unseal(w, sealed, w.d / "fleet1.key", "o1", "--grant", w.d / "g.grant").code == EXIT_OK  # type: ignore[attr-defined]
    assert _unseal(w, sealed, w.p256_dev, "o2", "--grant", w.d / "g.grant").code == EXIT_OK  # type: ignore[attr-defined]
    failed(_unseal(w, sealed, w.d / "fleet2.key", "o3", "--grant", w.d / "g.grant"), EXIT_KEY, "no stanza")  # type: ignore[arg-type]
    assert not (w.d / "o3").exists()

    pems = w.d / "fleet.pem"
    pems.write_bytes(b"".join((w.d / f"fleet{i}.key.pub").read_bytes() for i in range(3)))
    r = cli("grant", sealed, "--identity", w.d / "issuer.key", "--sign", w.pub, "--recipients-file", pems, "-o", w.d / "grants", "--per-device", "--json")
    assert r.code == EXIT_OK, r.err
    assert len(os.listdir(w.d / "grants")) == 3 == r.json()["devices"]
    assert _unseal(w, sealed, w.d / "fleet2.key", "o4", "--grant", w.d / "grants").code == EXIT_OK  # type: ignore[attr-defined]
    failed(_unseal(w, sealed, w.p256_dev, "o5", "--grant", w.d / "grants"), EXIT_KEY, "no grant for this device")  # type: ignore[arg-type]
    failed(cli("grant", sealed, "--identity", w.d / "issuer.key", "--sign", w.pub, "--recipients-file", pems, "-o", w.d / "grants", "--per-device"),
           EXIT_ERROR, "already exists")  # fmt: skip
    assert cli("grant", sealed, "--identity", w.d / "issuer.key", "--sign", w.pub, "--recipient", w.p256_dev_pub, "-o", w.d / "grants",
               "--per-device", "--force").code == EXIT_OK  # fmt: skip
    assert os.listdir(w.d / "grants") == [f"{key_id(load_public_key(w.p256_dev_pub))}.grant"]  # replaced as a whole


def test_grant_errors(w: CliFiles) -> None:
    sealed = _seal_v2(w)
    base = ("grant", sealed, "--sign", w.pub, "-o", w.d / "g.grant")
    failed(cli(*base, "--identity", w.d / "issuer.key"), EXIT_USAGE, "no device given")
    failed(cli(*base, "--identity", w.d / "fleet0.key", "--recipient", w.p256_dev_pub), EXIT_KEY, "no stanza")  # not an issuer
    failed(cli(*base, "--identity", w.d / "issuer.key", "--recipient", w.p256_dev_pub, "--recipient", w.p256_dev_pub), EXIT_USAGE, "twice")
    failed(cli(*base, "--identity", w.d / "issuer.key", "--recipient", w.pub_key), EXIT_KEY)  # a signing key is no device key
    failed(cli(*base, "--identity", w.d / "issuer.key", "--recipient", w.p256_dev_pub, "--not-before", "2030-01-01", "--not-after", "2029-01-01"), EXIT_USAGE)
    failed(cli(*base, "--identity", w.d / "issuer.key", "--recipient", w.p256_dev_pub, "--trust", w.other_pub), EXIT_KEY, "not trusted")
    failed(cli("grant", sealed, "--sign", w.pub, "-o", sealed, "--identity", w.d / "issuer.key", "--recipient", w.p256_dev_pub), EXIT_USAGE, "same file")
    v1 = w.d / "v1.sealed"
    assert cli("seal", w.model, "-o", v1, "--sign", w.pub, "--recipient", w.d / "issuer.key.pub").code == EXIT_OK
    failed(cli("grant", v1, "--sign", w.pub, "-o", w.d / "g.grant", "--identity", w.d / "issuer.key", "--recipient", w.p256_dev_pub), EXIT_FORMAT, "version 1")
    assert not (w.d / "g.grant").exists()


def test_rewrap_changes_only_the_grant(w: CliFiles) -> None:
    sealed = _seal_v2(w)
    r = cli("rewrap", sealed, "-o", w.d / "r.sealed", "--identity", w.d / "issuer.key", "--sign", w.pub,
            "--add", w.d / "fleet0.key.pub", "--remove", w.dev_pub, "--json")  # fmt: skip
    assert r.code == EXIT_OK, r.err
    assert r.json()["devices"] == 2 and len(r.json()["removed"]) == 1
    a, b = split_v2(sealed.read_bytes()), split_v2((w.d / "r.sealed").read_bytes())
    assert (a.preamble, a.header, a.root, a.signature, a.chunks) == (b.preamble, b.header, b.root, b.signature, b.chunks)
    assert a.grant != b.grant
    assert _unseal(w, w.d / "r.sealed", w.d / "fleet0.key", "o1").code == EXIT_OK  # type: ignore[attr-defined]
    failed(_unseal(w, w.d / "r.sealed", w.dev, "o2"), EXIT_KEY)  # type: ignore[arg-type]
    failed(cli("rewrap", sealed, "-o", w.d / "x.sealed", "--identity", w.d / "issuer.key", "--sign", w.pub), EXIT_USAGE, "nothing to change")
    failed(cli("rewrap", sealed, "-o", w.d / "x.sealed", "--identity", w.d / "issuer.key", "--sign", w.pub, "--remove", "0123456789abcdef"),
           EXIT_USAGE, "no device 0123456789abcdef")  # fmt: skip
    failed(cli("rewrap", sealed, "-o", w.d / "x.sealed", "--identity", w.d / "issuer.key", "--sign", w.pub, "--remove", "nonsense"), EXIT_USAGE)
    failed(cli("rewrap", sealed, "-o", sealed, "--identity", w.d / "issuer.key", "--sign", w.pub, "--add", w.p256_dev_pub), EXIT_USAGE, "same file")
    assert not (w.d / "x.sealed").exists()


def test_revoke_and_unseal_with_revocation(w: CliFiles) -> None:
    sealed = _seal_v2(w)
    grant_id = cli("inspect", sealed, "--json").json()["embedded_grant"]["grant_id"]
    r = cli("revoke", "-o", w.d / "r1", "--sign", w.pub, "--serial", "1", "--key", w.dev_pub, "--json")
    assert r.code == EXIT_OK and len(r.json()["keys"]) == 1, r.err
    failed(_unseal(w, sealed, w.dev, "o1", "--revocation", w.d / "r1"), EXIT_POLICY, "revoked")  # type: ignore[arg-type]
    assert not (w.d / "o1").exists()
    assert cli("revoke", "-o", w.d / "r2", "--sign", w.pub, "--serial", "2", "--grant-id", grant_id).code == EXIT_OK
    failed(_unseal(w, sealed, w.d / "issuer.key", "o2", "--revocation", w.d / "r2"), EXIT_POLICY, grant_id)  # type: ignore[arg-type]
    assert cli("revoke", "-o", w.d / "r3", "--sign", w.other_pub.with_suffix(""), "--serial", "2").code == EXIT_OK  # warns: revokes nothing
    failed(_unseal(w, sealed, w.dev, "o3", "--revocation", w.d / "r3"), EXIT_KEY, "not trusted")  # type: ignore[arg-type]
    failed(cli("revoke", "-o", w.d / "r4", "--sign", w.pub, "--serial", "0"), EXIT_USAGE, "--serial")
    failed(cli("revoke", "-o", w.d / "r4", "--sign", w.pub, "--serial", "1", "--grant-id", "xyz"), EXIT_USAGE, "--grant-id")
    failed(cli("revoke", "-o", w.d / "r1", "--sign", w.pub, "--serial", "1"), EXIT_ERROR, "already exists")


def test_grant_window_refused_with_exit_6(w: CliFiles) -> None:
    sealed = _seal_v2(w)
    assert cli("grant", sealed, "--identity", w.d / "issuer.key", "--sign", w.pub, "--recipient", w.p256_dev_pub,
               "-o", w.d / "old.grant", "--not-after", "@1000").code == EXIT_OK  # fmt: skip
    failed(_unseal(w, sealed, w.p256_dev, "o", "--grant", w.d / "old.grant"), EXIT_POLICY, "expired")  # type: ignore[arg-type]
    r = _unseal(w, sealed, w.p256_dev, "o", "--grant", w.d / "old.grant", "--ignore-validity")
    assert r.code == EXIT_OK and "warning" in r.err  # type: ignore[attr-defined]
