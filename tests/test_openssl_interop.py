"""Key interop with the `openssl` command line: keys from `edgeguard keygen` are read by
`openssl pkey`, keys from `openssl genpkey` load in edgeguard and seal/open, key ids are SHA-256
over the DER SubjectPublicKeyInfo openssl prints, and openssl verifies edgeguard's signatures."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from edgeguard.cli import main
from edgeguard.errors import KeyFileError
from edgeguard.keys import SigningKey, TrustStore, VerifyingKey
from edgeguard.recipients import load_identity, load_recipient
from edgeguard.unseal import decrypt_file, inspect_file, verify_file
from helpers import raw_payload, seal_bytes

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="the openssl command line is not installed (tools/test installs it)")
GENPKEY = {
    "ed25519": ["-algorithm", "ed25519"],
    "x25519": ["-algorithm", "x25519"],
    "p256": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-pkeyopt", "ec_param_enc:named_curve"],
}


def openssl(*args: str, input: bytes | None = None) -> bytes:
    result = subprocess.run([OPENSSL or "openssl", *args], input=input, capture_output=True, check=False)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def openssl_fails(*args: str) -> bool:
    return subprocess.run([OPENSSL or "openssl", *args], capture_output=True, check=False).returncode != 0


def genpkey(tmp_path: Path, kind: str, name: str) -> tuple[Path, Path]:
    key, pub = tmp_path / f"{name}.pem", tmp_path / f"{name}.pub.pem"
    openssl("genpkey", *GENPKEY[kind], "-out", str(key))
    os.chmod(key, 0o600)
    openssl("pkey", "-in", str(key), "-pubout", "-out", str(pub))
    return key, pub


def spki_key_id(pub: Path) -> str:
    return hashlib.sha256(openssl("pkey", "-pubin", "-in", str(pub), "-outform", "DER")).hexdigest()[:16]


@pytest.mark.parametrize("kind", ["ed25519", "x25519", "p256"])
def test_keygen_output_is_read_by_openssl(tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    key, pub = tmp_path / "k.pem", tmp_path / "k.pub.pem"
    assert main(["keygen", "--type", kind, "-o", str(key), "--public", str(pub), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert key.stat().st_mode & 0o777 == 0o600
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")  # PKCS#8, unencrypted
    assert pub.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----\n")  # SubjectPublicKeyInfo
    text = openssl("pkey", "-in", str(key), "-noout", "-text").decode()
    assert {"ed25519": "ED25519 Private-Key", "x25519": "X25519 Private-Key", "p256": "NIST CURVE: P-256"}[kind] in text
    # openssl derives the same public key from the private key as edgeguard wrote
    assert openssl("pkey", "-in", str(key), "-pubout") == pub.read_bytes()
    openssl("pkey", "-pubin", "-in", str(pub), "-noout")
    assert info["key_id"] == spki_key_id(pub)


@pytest.mark.parametrize(("signer_kind", "device_kind", "cipher"), [
    ("ed25519", "x25519", "aes-256-gcm"), ("p256", "p256", "chacha20-poly1305"), ("ed25519", "p256", "chacha20-poly1305"),
])  # fmt: skip
def test_openssl_keys_seal_and_open(tmp_path: Path, signer_kind: str, device_kind: str, cipher: str) -> None:
    skey, spub = genpkey(tmp_path, signer_kind, "publisher")
    dkey, dpub = genpkey(tmp_path, device_kind, "device")
    signer = SigningKey.load(skey)
    recipient, identity = load_recipient(dpub), load_identity(dkey)
    assert signer.key_id == spki_key_id(spub) and VerifyingKey.load(spub).key_id == signer.key_id
    assert recipient.key_id == identity.key_id == spki_key_id(dpub)
    trust = TrustStore.load([spub])
    path = seal_bytes(tmp_path / "m.sealed", raw_payload(b"openssl keys"), signer=signer, recipients=[recipient], cipher=cipher)
    verify_file(path, trust)
    opened = decrypt_file(path, [identity], trust)
    assert bytes(opened.layout.section(opened.buffer, "data")) == b"openssl keys"
    assert inspect_file(path).header.recipients[0].key_id == spki_key_id(dpub)


@pytest.mark.parametrize("signer_kind", ["ed25519", "p256"])
def test_openssl_verifies_the_publisher_signature(tmp_path: Path, signer_kind: str) -> None:
    """The signature in a sealed file is a plain Ed25519 / ECDSA-P256-SHA256 signature over the
    message FORMAT.md defines: openssl verifies it with nothing but the public key."""
    skey, spub = genpkey(tmp_path, signer_kind, "publisher")
    _dkey, dpub = genpkey(tmp_path, "x25519", "device")
    path = seal_bytes(tmp_path / "m.sealed", raw_payload(b"m"), signer=SigningKey.load(skey), recipients=[load_recipient(dpub)])
    data = path.read_bytes()
    hl = int.from_bytes(data[12:16], "big")
    message = b"edgeguard/v1 signature\x00" + hashlib.sha256(data[: 16 + hl]).digest() + data[16 + hl : 48 + hl]
    signature = data[48 + hl : 112 + hl]
    msg, sig = tmp_path / "msg", tmp_path / "sig"
    msg.write_bytes(message)
    if signer_kind == "ed25519":
        sig.write_bytes(signature)
        openssl("pkeyutl", "-verify", "-pubin", "-inkey", str(spub), "-rawin", "-in", str(msg), "-sigfile", str(sig))
        sig.write_bytes(bytes([signature[0] ^ 1]) + signature[1:])
        assert openssl_fails("pkeyutl", "-verify", "-pubin", "-inkey", str(spub), "-rawin", "-in", str(msg), "-sigfile", str(sig))
    else:
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        assert s <= 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551 // 2  # low-s
        sig.write_bytes(encode_dss_signature(r, s))
        openssl("dgst", "-sha256", "-verify", str(spub), "-signature", str(sig), str(msg))
        msg.write_bytes(message[:-1] + bytes([message[-1] ^ 1]))
        assert openssl_fails("dgst", "-sha256", "-verify", str(spub), "-signature", str(sig), str(msg))


def test_openssl_keys_edgeguard_refuses(tmp_path: Path) -> None:
    rsa = tmp_path / "rsa.pem"
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out", str(rsa))
    p384 = tmp_path / "p384.pem"
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", str(p384))
    enc = tmp_path / "enc.pem"
    openssl("genpkey", "-algorithm", "ed25519", "-aes-256-cbc", "-pass", "pass:secret", "-out", str(enc))
    for key in (rsa, p384, enc):
        os.chmod(key, 0o600)
        with pytest.raises(KeyFileError):
            SigningKey.load(key)
        with pytest.raises(KeyFileError):
            load_identity(key)
    # an X25519 key cannot sign, an Ed25519 key is no device key
    xkey, xpub = genpkey(tmp_path, "x25519", "x")
    ekey, epub = genpkey(tmp_path, "ed25519", "e")
    with pytest.raises(KeyFileError):
        SigningKey.load(xkey)
    with pytest.raises(KeyFileError):
        load_identity(ekey)
    with pytest.raises(KeyFileError):
        load_recipient(epub)
    with pytest.raises(KeyFileError):
        VerifyingKey.load(xpub)
