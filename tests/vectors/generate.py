#!/usr/bin/env python3
"""Regenerates the committed sealed-file vectors in tests/vectors/ and their manifest.json.

    python tests/vectors/generate.py [OUTPUT_DIR]      # default: the directory of this script

Keys are derived from fixed seeds (so key ids, signers and recipients never change) and written
to keys/*.pem; plaintexts are fixed. Sealing draws a fresh content key, salt and HPKE ephemeral
key (and ECDSA nonce) every time, so the sealed bytes differ between runs while every file's
expected outcome, plaintext and header fields stay the same. The tests read manifest.json.

Valid files are sealed with edgeguard itself; the failing ones are edits of valid files made here
byte by byte (the re-signed ones are signed with the vector publisher key via `cryptography`).
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from edgeguard.format import ModelInfo
from edgeguard.keys import SigningKey
from edgeguard.payload import build_payload
from edgeguard.recipients import load_recipient
from edgeguard.recipients.scrypt import PassphraseRecipient
from edgeguard.seal import seal_payload

CHUNK = 4096
PASSPHRASE = "vector passphrase"
WRONG_PASSPHRASE = "vector passphrase!"
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
MODEL = ModelInfo(name="vector-model", version=7, created=1_750_000_000, labels=(("suite", "vectors"),))
RAW_DATA = b"edgeguard sealed format v1 test vector\n" * 3  # 117 bytes: payload 4213 = 2 chunks
SMALL_OPAQUE = b"opaque payload bytes, not an inner layout: open fails after authentication"[:64]


def _seed(label: str) -> bytes:
    return hashlib.sha256(b"edgeguard test vector key: " + label.encode()).digest()


def vector_keys() -> dict[str, Any]:
    """The fixed private keys: publishers (ed25519, p256), devices (x25519, p256, other)."""
    p256 = lambda label: ec.derive_private_key(int.from_bytes(_seed(label), "big") % (P256_N - 1) + 1, ec.SECP256R1())  # noqa: E731
    return {
        "publisher-ed25519": ed25519.Ed25519PrivateKey.from_private_bytes(_seed("publisher-ed25519")),
        "publisher-p256": p256("publisher-p256"),
        "device-x25519": x25519.X25519PrivateKey.from_private_bytes(_seed("device-x25519")),
        "device-p256": p256("device-p256"),
        "device-other": x25519.X25519PrivateKey.from_private_bytes(_seed("device-other")),
        "publisher-untrusted": ed25519.Ed25519PrivateKey.from_private_bytes(_seed("publisher-untrusted")),
    }


def _pem(key: Any) -> tuple[bytes, bytes]:
    priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return priv, pub


def _header_len(data: bytes) -> int:
    return struct.unpack(">I", data[12:16])[0]


def _resign(data: bytes, signer: Any) -> bytes:
    """Recomputes the chunk root over the stored chunks and signs again (a publisher's own file)."""
    hl = _header_len(data)
    head = json.loads(data[16 : 16 + hl])
    size, length = head["chunk_size"], head["payload_length"]
    count = max(1, -(-length // size))
    off, digests = 112 + hl, b""
    for i in range(count):
        n = min(size, length - i * size) + 16
        digests += hashlib.sha256(data[off : off + n]).digest()
        off += n
    root = hashlib.sha256(b"edgeguard/v1 chunks\x00" + struct.pack(">Q", count) + digests).digest()
    message = b"edgeguard/v1 signature\x00" + hashlib.sha256(data[: 16 + hl]).digest() + root
    if isinstance(signer, ed25519.Ed25519PrivateKey):
        sig = signer.sign(message)
    else:
        r, s = decode_dss_signature(signer.sign(message, ec.ECDSA(hashes.SHA256())))
        s = min(s, P256_N - s)
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return data[: 16 + hl] + root + sig + data[112 + hl :]


def _flip(data: bytes, offset: int, bit: int = 0) -> bytes:
    b = bytearray(data)
    b[offset] ^= 1 << bit
    return bytes(b)


def generate(out: Path) -> list[dict[str, Any]]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "keys").mkdir(exist_ok=True)
    k = vector_keys()
    for name, key in k.items():
        priv, pub = _pem(key)
        (out / "keys" / f"{name}.pem").write_bytes(priv)
        (out / "keys" / f"{name}.pub.pem").write_bytes(pub)
    signer_ed, signer_p256 = SigningKey(k["publisher-ed25519"]), SigningKey(k["publisher-p256"])
    rcpt = lambda name: load_recipient(_pem(k[name])[1])  # noqa: E731
    entries: list[dict[str, Any]] = []

    def seal(name: str, payload: Any, *, signer: SigningKey, recipients: list[Any], cipher: str, kind: str = "raw") -> bytes:
        path = out / name
        path.unlink(missing_ok=True)
        seal_payload(payload, path, kind=kind, signer=signer, recipients=recipients, model=MODEL, cipher=cipher, chunk_size=CHUNK)
        return path.read_bytes()

    def add(name: str, outcome: str, description: str, *, identity: str, open_error: str | None,
            verify_error: str | None, trust: tuple[str, ...] = ("publisher-ed25519", "publisher-p256"),
            payload: bytes | None = None, data: bytes | None = None, content: bytes | None = None) -> None:  # fmt: skip
        if content is not None:
            (out / name).write_bytes(content)
        entry: dict[str, Any] = {
            "file": name, "outcome": outcome, "description": description, "identity": identity,
            "trust": list(trust), "verify_error": verify_error, "open_error": open_error,
        }  # fmt: skip
        if payload is not None:
            entry["payload_sha256"] = hashlib.sha256(payload).hexdigest()
        if data is not None:
            entry["data_sha256"] = hashlib.sha256(data).hexdigest()
        entries.append(entry)

    # --- files that open -------------------------------------------------------------------
    p = build_payload("raw", [("data", RAW_DATA)])
    seal("ok-x25519-p256-aesgcm-ed25519.sealed", p, signer=signer_ed,
         recipients=[rcpt("device-x25519"), rcpt("device-p256")], cipher="aes-256-gcm")  # fmt: skip
    for ident in ("device-x25519", "device-p256"):
        add("ok-x25519-p256-aesgcm-ed25519.sealed", "success",
            f"raw payload in 2 chunks (4096 + 117 bytes), AES-256-GCM, Ed25519, opened by {ident}",
            identity=ident, open_error=None, verify_error=None, payload=bytes(p), data=RAW_DATA)  # fmt: skip
    add("ok-x25519-p256-aesgcm-ed25519.sealed", "wrong_key", "a valid file opened with a device key that is not a recipient",
        identity="device-other", open_error="NotARecipientError", verify_error=None)  # fmt: skip
    add("ok-x25519-p256-aesgcm-ed25519.sealed", "untrusted_signer", "a valid file checked against a trust store without its signer",
        identity="device-x25519", trust=("publisher-p256",), open_error="UntrustedSignerError", verify_error="UntrustedSignerError")  # fmt: skip

    p = build_payload("raw", [("data", b"")])
    seal("ok-p256-chacha-ecdsa.sealed", p, signer=signer_p256, recipients=[rcpt("device-p256")], cipher="chacha20-poly1305")
    add("ok-p256-chacha-ecdsa.sealed", "success",
        "payload of exactly one chunk (4096 bytes, empty data section), ChaCha20-Poly1305, ECDSA P-256",
        identity="device-p256", open_error=None, verify_error=None, payload=bytes(p), data=b"")  # fmt: skip

    data = b"passphrase-sealed data"
    p = build_payload("raw", [("data", data)])
    seal("ok-scrypt-chacha.sealed", p, signer=signer_ed, recipients=[PassphraseRecipient(PASSPHRASE, log_n=10)], cipher="chacha20-poly1305")
    add("ok-scrypt-chacha.sealed", "success", "passphrase (scrypt log_n 10) recipient",
        identity="passphrase:" + PASSPHRASE, open_error=None, verify_error=None, payload=bytes(p), data=data)  # fmt: skip
    add("ok-scrypt-chacha.sealed", "wrong_key", "the passphrase file opened with a wrong passphrase",
        identity="passphrase:" + WRONG_PASSPHRASE, open_error="NotARecipientError", verify_error=None)  # fmt: skip

    st_header = json.dumps({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}, separators=(",", ":")).encode()
    st = struct.pack("<Q", len(st_header)) + st_header + struct.pack("<4f", 1.0, -2.0, 0.5, 3.25)
    p = build_payload("safetensors", [("safetensors", st)])
    seal("ok-safetensors-x25519.sealed", p, signer=signer_ed, recipients=[rcpt("device-x25519")], cipher="aes-256-gcm", kind="safetensors")
    add("ok-safetensors-x25519.sealed", "success", "a safetensors payload (one 2x2 F32 tensor)",
        identity="device-x25519", open_error=None, verify_error=None, payload=bytes(p), data=st)  # fmt: skip

    # --- authentic files whose inner payload is malformed -----------------------------------
    seal("inner-not-a-layout.sealed", SMALL_OPAQUE, signer=signer_ed, recipients=[rcpt("device-x25519")], cipher="aes-256-gcm")
    add("inner-not-a-layout.sealed", "inner_format", "authentic file whose decrypted payload is not an inner layout",
        identity="device-x25519", open_error="FormatError", verify_error=None, payload=SMALL_OPAQUE)  # fmt: skip
    seal("inner-empty-payload.sealed", b"", signer=signer_ed, recipients=[rcpt("device-x25519")], cipher="chacha20-poly1305")
    add("inner-empty-payload.sealed", "inner_format", "authentic file with a 0-byte payload (one empty chunk)",
        identity="device-x25519", open_error="FormatError", verify_error=None, payload=b"")  # fmt: skip

    # --- edits of a small authentic file ------------------------------------------------------
    base = seal("_base.sealed", SMALL_OPAQUE, signer=signer_ed, recipients=[rcpt("device-x25519")], cipher="aes-256-gcm")
    (out / "_base.sealed").unlink()
    hl = _header_len(base)
    pay = 112 + hl
    dev = "device-x25519"

    def bad(name: str, outcome: str, description: str, content: bytes, open_error: str, verify_error: str | None) -> None:
        add(name, outcome, description, identity=dev, open_error=open_error, verify_error=verify_error, content=content)

    bad("header-bad-magic.sealed", "header", "magic EDGESEAL -> FDGESEAL", _flip(base, 0), "FormatError", "FormatError")
    bad("header-version-2.sealed", "header", "version 2", base[:8] + b"\x00\x02" + base[10:], "UnsupportedVersionError", "UnsupportedVersionError")
    bad("header-flags-1.sealed", "header", "reserved flags = 1", base[:10] + b"\x00\x01" + base[12:], "FormatError", "FormatError")
    bad("header-len-over-limit.sealed", "header", "header_len = MAX_HEADER_SIZE + 1",
        base[:12] + struct.pack(">I", (1 << 20) + 1) + base[16:], "FormatError", "FormatError")  # fmt: skip
    spaced = base[:16] + b"{ " + base[17:]
    bad("header-noncanonical-space.sealed", "header", "a space after the opening brace (header_len adjusted)",
        spaced[:12] + struct.pack(">I", hl + 1) + spaced[16:], "FormatError", "FormatError")  # fmt: skip

    header = base[16 : 16 + hl]
    salt_at = 16 + header.index(b'"salt":"') + len('"salt":"')
    other = b"B" if base[salt_at : salt_at + 1] != b"B" else b"C"
    bad("signature-header-salt-edited.sealed", "signature", "one base64 digit of the salt changed (still canonical)",
        base[:salt_at] + other + base[salt_at + 1 :], "IntegrityError", "IntegrityError")  # fmt: skip
    bad("signature-bit-flip.sealed", "signature", "one bit of the signature flipped", _flip(base, 16 + hl + 40), "IntegrityError", "IntegrityError")
    bad("signature-root-bit-flip.sealed", "signature", "one bit of the chunk root flipped", _flip(base, 16 + hl + 5), "IntegrityError", "IntegrityError")
    bad("signature-stripped.sealed", "signature", "the 64-byte signature removed", base[: 16 + hl + 32] + base[pay:], "IntegrityError", "IntegrityError")

    ecdsa = seal("_ecdsa.sealed", SMALL_OPAQUE, signer=signer_p256, recipients=[rcpt(dev)], cipher="aes-256-gcm")
    (out / "_ecdsa.sealed").unlink()
    ehl = _header_len(ecdsa)
    s = int.from_bytes(ecdsa[16 + ehl + 64 : 112 + ehl], "big")
    bad("signature-ecdsa-high-s.sealed", "signature", "ECDSA signature with s replaced by n - s (valid ECDSA, not low-s)",
        ecdsa[: 16 + ehl + 64] + (P256_N - s).to_bytes(32, "big") + ecdsa[112 + ehl :], "IntegrityError", "IntegrityError")  # fmt: skip

    bad("payload-chunk-bit-flip.sealed", "payload", "one ciphertext bit flipped", _flip(base, pay + 3), "IntegrityError", "IntegrityError")
    bad("payload-tag-bit-flip.sealed", "payload", "one tag bit flipped", _flip(base, len(base) - 1, 7), "IntegrityError", "IntegrityError")
    bad("payload-truncated.sealed", "payload", "last byte removed", base[:-1], "IntegrityError", "IntegrityError")
    bad("payload-trailing-byte.sealed", "payload", "one byte appended", base + b"\x00", "IntegrityError", "IntegrityError")
    bad("payload-forged-tag-resigned.sealed", "payload",
        "a ciphertext bit flipped, then the chunk root recomputed and signed by the publisher: verify passes, the tag fails",
        _resign(_flip(base, pay + 3), k["publisher-ed25519"]), "IntegrityError", None)  # fmt: skip
    untrusted_id = hashlib.sha256(
        k["publisher-untrusted"].public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    ).hexdigest()[:16]
    # replace the signer key id in the header with the untrusted key's, then sign with that key
    h2 = base[16 : 16 + hl].replace(SigningKey(k["publisher-ed25519"]).key_id.encode(), untrusted_id.encode())
    untrusted = _resign(base[:16] + h2 + base[16 + hl :], k["publisher-untrusted"])
    bad("untrusted-signer.sealed", "untrusted_signer", "validly signed by a publisher key not in the trust store",
        untrusted, "UntrustedSignerError", "UntrustedSignerError")  # fmt: skip

    manifest = {
        "format": "edgeguard sealed format v1",
        "generator": "tests/vectors/generate.py",
        "chunk_size": CHUNK,
        "identities": "device-*: keys/<name>.pem; passphrase:<text>: a PassphraseIdentity",
        "trust": "publisher keys (keys/<name>.pub.pem) in the trust store",
        "vectors": entries,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return entries


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent)
