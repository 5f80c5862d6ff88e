"""Exception and object hygiene: no message, repr or formatted traceback carries key bytes,
passphrases or plaintext; key holders cannot be pickled or copied; private key files are created
0600 and refused when group or others can access them."""

from __future__ import annotations

import base64
import copy
import os
import pickle
import stat
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from edgeguard.errors import EdgeguardError, KeyFileError
from edgeguard.keys import SigningKey, export_private_pem, generate_private_key, load_private_key, write_private_key
from edgeguard.recipients import load_identity
from edgeguard.recipients.scrypt import PassphraseIdentity, PassphraseRecipient
from edgeguard.unseal import decrypt_file, unseal_file, verify_file
from helpers import LOG_N, Keys, raw_payload, seal_bytes

SECRET_PASSPHRASE = "hunter2-very-secret-passphrase"
PLAINTEXT = b"PLAINTEXT-MARKER-" * 64


def _secret_forms(raw: bytes) -> list[str]:
    """Ways a secret could leak into text: hex, base64, raw latin-1, repr of bytes."""
    forms = [raw.hex(), raw.hex().upper(), base64.b64encode(raw).decode(), repr(raw)[2:-1]]
    return [f for f in forms if len(f) >= 8]


def _raw_private(key: Any) -> bytes:
    if hasattr(key, "private_numbers"):
        return key.private_numbers().private_value.to_bytes(32, "big")
    return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())


def assert_clean(text: str, secrets: list[bytes | str]) -> None:
    for secret in secrets:
        forms = [secret] if isinstance(secret, str) else _secret_forms(secret) + [secret[:16].decode("latin-1")]
        for form in forms:
            assert form not in text, f"secret leaked: {form[:20]!r}..."


def everything_about(exc: BaseException) -> str:
    return "\n".join([str(exc), repr(exc), *traceback.format_exception(exc), str(exc.__context__), repr(exc.__cause__)])


def failing_calls(keys: Keys, tmp_path: Path) -> list[Callable[[], Any]]:
    pem = export_private_pem(keys.x25519_dev.private)
    bad_perm = tmp_path / "open.pem"
    bad_perm.write_bytes(pem)
    os.chmod(bad_perm, 0o644)
    pw_file = seal_bytes(tmp_path / "pw.sealed", raw_payload(PLAINTEXT), signer=keys.ed25519,
                         recipients=[PassphraseRecipient(SECRET_PASSPHRASE, log_n=LOG_N)])  # fmt: skip
    dev_file = seal_bytes(tmp_path / "dev.sealed", raw_payload(PLAINTEXT), signer=keys.ed25519, recipients=[keys.x25519_dev.recipient])
    tampered = tmp_path / "tampered.sealed"
    data = bytearray(dev_file.read_bytes())
    data[-40] ^= 1
    tampered.write_bytes(bytes(data))
    opaque = seal_bytes(tmp_path / "opaque.sealed", PLAINTEXT, signer=keys.ed25519, recipients=[keys.x25519_dev.recipient])
    return [
        lambda: decrypt_file(pw_file, [PassphraseIdentity(SECRET_PASSPHRASE + "x")], keys.trust),
        lambda: unseal_file(pw_file, tmp_path / "o1", [PassphraseIdentity("wrong " + SECRET_PASSPHRASE)], keys.trust),
        lambda: decrypt_file(tampered, [keys.x25519_dev.identity], keys.trust),
        lambda: verify_file(tampered, keys.trust),
        lambda: decrypt_file(opaque, [keys.x25519_dev.identity], keys.trust),  # inner FormatError after decryption
        lambda: decrypt_file(dev_file, [keys.other_dev.identity], keys.trust),
        lambda: load_private_key(bad_perm),
        lambda: load_private_key(pem[:-30] + b"garbage\n-----END PRIVATE KEY-----\n"),
        lambda: load_private_key(pem.replace(b"PRIVATE KEY", b"PUBLIC KEY")),
        lambda: SigningKey.load(pem),  # an X25519 key cannot sign
        lambda: load_identity(export_private_pem(keys.ed25519._private_key)),
    ]


def test_no_secret_in_any_error(keys: Keys, tmp_path: Path) -> None:
    secrets: list[bytes | str] = [
        SECRET_PASSPHRASE, PLAINTEXT[:32], b"PLAINTEXT-MARKER",
        _raw_private(keys.x25519_dev.private), _raw_private(keys.ed25519._private_key), _raw_private(keys.p256_dev.private),
        export_private_pem(keys.x25519_dev.private).split(b"\n")[1],
    ]  # fmt: skip
    secrets = [s for s in secrets]
    calls = failing_calls(keys, tmp_path)
    for call in calls:
        with pytest.raises(EdgeguardError) as exc:
            call()
        assert_clean(everything_about(exc.value), secrets)


def test_reprs_hide_key_material_and_plaintext(keys: Keys, tmp_path: Path) -> None:
    pw_r, pw_i = PassphraseRecipient(SECRET_PASSPHRASE, log_n=LOG_N), PassphraseIdentity(SECRET_PASSPHRASE)
    path = seal_bytes(tmp_path / "f.sealed", raw_payload(PLAINTEXT), signer=keys.ed25519, recipients=[keys.x25519_dev.recipient])
    opened = decrypt_file(path, [keys.x25519_dev.identity], keys.trust)
    objects = [keys.ed25519, keys.p256, keys.x25519_dev.identity, keys.p256_dev.identity, pw_r, pw_i, opened, keys.trust]
    secrets: list[bytes | str] = [SECRET_PASSPHRASE, b"PLAINTEXT-MARKER", _raw_private(keys.ed25519._private_key),
                                  _raw_private(keys.p256._private_key), _raw_private(keys.x25519_dev.private)]  # fmt: skip
    for obj in objects:
        assert_clean(repr(obj) + str(obj), secrets)
    assert "PLAINTEXT" not in repr(opened)


@pytest.mark.parametrize("make", [
    lambda k: k.ed25519, lambda k: k.p256, lambda k: k.x25519_dev.identity, lambda k: k.p256_dev.identity,
    lambda k: PassphraseIdentity(SECRET_PASSPHRASE), lambda k: PassphraseRecipient(SECRET_PASSPHRASE, log_n=LOG_N),
], ids=["ed25519-signer", "p256-signer", "x25519-identity", "p256-identity", "passphrase-identity", "passphrase-recipient"])  # fmt: skip
def test_key_holders_cannot_be_pickled_or_copied(keys: Keys, make: Callable[[Keys], Any]) -> None:
    obj = make(keys)
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError) as exc:
            pickle.dumps(obj, protocol=protocol)
        assert SECRET_PASSPHRASE not in str(exc.value)
    with pytest.raises(TypeError):
        copy.copy(obj)
    with pytest.raises(TypeError):
        copy.deepcopy(obj)


def test_private_key_files_are_created_0600_even_with_a_lax_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_private_key(tmp_path / "k.pem", generate_private_key("ed25519"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        write_private_key(tmp_path / "k.pem", generate_private_key("ed25519"))


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o606, 0o610, 0o601, 0o700 | 0o040])
def test_group_or_world_accessible_private_keys_are_refused(tmp_path: Path, mode: int) -> None:
    key = tmp_path / "k.pem"
    write_private_key(key, generate_private_key("x25519"))
    os.chmod(key, mode)
    for load in (load_private_key, load_identity, SigningKey.load):
        with pytest.raises(KeyFileError) as exc:
            load(key)
        assert "chmod 600" in str(exc.value) or load is SigningKey.load
    os.chmod(key, 0o600)
    load_identity(key)
    os.chmod(key, 0o400)
    load_identity(key)


def test_key_file_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError):
        load_private_key(tmp_path)
    with pytest.raises(KeyFileError):
        load_private_key(tmp_path / "missing.pem")


def test_key_file_that_is_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "k.pem"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(KeyFileError):
        load_private_key(fifo)


@pytest.mark.parametrize("threads", [-1, 1 << 40, 1.5, True, "2"])
def test_bad_thread_counts_fail_before_the_native_core(keys: Keys, tmp_path: Path, threads: Any) -> None:
    """pybind11 lists every argument of a call it cannot convert (the payload key included), so a
    bad thread count must be refused in Python first."""
    path = seal_bytes(tmp_path / "f.sealed", raw_payload(PLAINTEXT), signer=keys.ed25519, recipients=[keys.x25519_dev.recipient])
    calls: list[Callable[[], Any]] = [
        lambda: verify_file(path, keys.trust, threads=threads),
        lambda: decrypt_file(path, [keys.x25519_dev.identity], keys.trust, threads=threads),
        lambda: unseal_file(path, tmp_path / "out", [keys.x25519_dev.identity], keys.trust, threads=threads),
        lambda: seal_bytes_threads(keys, tmp_path / "g.sealed", threads),
    ]
    for call in calls:
        with pytest.raises(ValueError) as exc:
            call()
        assert "Invoked with" not in everything_about(exc.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.sealed"]


def seal_bytes_threads(keys: Keys, path: Path, threads: Any) -> None:
    from edgeguard.seal import seal_payload
    from helpers import MODEL

    seal_payload(raw_payload(PLAINTEXT), path, kind="raw", signer=keys.ed25519, recipients=[keys.x25519_dev.recipient], model=MODEL, threads=threads)


def test_allocate_returning_a_non_buffer_does_not_leak_the_key(keys: Keys, tmp_path: Path) -> None:
    path = seal_bytes(tmp_path / "f.sealed", raw_payload(PLAINTEXT), signer=keys.ed25519, recipients=[keys.x25519_dev.recipient])
    for bad in (None, 5, "text"):
        with pytest.raises(TypeError) as exc:
            decrypt_file(path, [keys.x25519_dev.identity], keys.trust, allocate=lambda n, bad=bad: bad)
        assert "Invoked with" not in everything_about(exc.value)
    with pytest.raises(TypeError, match="writable"):  # read-only
        decrypt_file(path, [keys.x25519_dev.identity], keys.trust, allocate=lambda n: bytes(n))
    with pytest.raises(ValueError):  # wrong size
        decrypt_file(path, [keys.x25519_dev.identity], keys.trust, allocate=lambda n: bytearray(n + 1))
