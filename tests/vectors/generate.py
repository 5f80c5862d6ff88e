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
    bad("header-version-3.sealed", "header", "version 3", base[:8] + b"\x00\x03" + base[10:], "UnsupportedVersionError", "UnsupportedVersionError")
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
    generate_v2(out / "v2", k)
    return entries


# --- format version 2: artifacts, grants, revocation lists (written into v2/) ----------------------

NOW = 1_800_000_000  # the "now" of the v2 vectors' validity checks


def generate_v2(out: Path, k: dict[str, Any]) -> list[dict[str, Any]]:
    """The version 2 vectors and v2/manifest.json; returns the manifest's entries."""
    from edgeguard.format import Container
    from edgeguard.grants import Unlocked, issue_grant, unlock
    from edgeguard.keys import TrustStore
    from edgeguard.recipients import load_identity
    from edgeguard.revocation import make_revocation

    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        old.unlink()
    signer_ed, signer_p256, untrusted = (SigningKey(k[n]) for n in ("publisher-ed25519", "publisher-p256", "publisher-untrusted"))
    trust = TrustStore([signer_ed.verifying_key, signer_p256.verifying_key])
    rcpt = lambda name: load_recipient(_pem(k[name])[1])  # noqa: E731
    issuer = load_identity(_pem(k["device-other"])[0])  # device-other is the issuer: it opens the embedded grants
    entries: list[dict[str, Any]] = []
    both = ("publisher-ed25519", "publisher-p256")

    def add(file: str, outcome: str, description: str, *, identity: str = "device-x25519", grant: str | None = None,
            revocation: str | None = None, verify_error: str | None = None, open_error: str | None = None,
            trust_names: tuple[str, ...] = both, payload: bytes | None = None) -> None:  # fmt: skip
        entry: dict[str, Any] = {"file": file, "grant": grant, "revocation": revocation, "outcome": outcome, "description": description,
                                 "identity": identity, "trust": list(trust_names), "verify_error": verify_error, "open_error": open_error}  # fmt: skip
        if payload is not None:
            entry["payload_sha256"] = hashlib.sha256(payload).hexdigest()
        entries.append(entry)

    def seal(name: str, payload: Any, signer: SigningKey, recipients: list[Any], cipher: str) -> bytes:
        seal_payload(payload, out / name, kind="raw", signer=signer, recipients=recipients, model=MODEL, cipher=cipher,
                     chunk_size=CHUNK, format_version=2)  # fmt: skip
        return (out / name).read_bytes()

    def write(name: str, data: bytes) -> None:
        (out / name).write_bytes(data)

    def signed(magic: bytes, label: bytes, body: bytes, signer: SigningKey) -> bytes:
        head = magic + struct.pack(">HHI", 2, 0, len(body)) + body
        return head + signer.sign_message(label + hashlib.sha256(head).digest())

    def grant_body(grant: bytes) -> dict[str, Any]:
        return json.loads(grant[16 : 16 + struct.unpack(">I", grant[12:16])[0]])

    canon = lambda obj: json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()  # noqa: E731
    grant_label = b"edgeguard/v2 grant signature\x00"

    # --- an artifact that embeds its grant ----------------------------------------------------
    p = build_payload("raw", [("data", RAW_DATA)])
    a = seal("v2-embedded.sealed", p, signer_ed, [rcpt("device-x25519"), rcpt("device-p256"), rcpt("device-other")], "aes-256-gcm")
    for ident in ("device-x25519", "device-p256"):
        add("v2-embedded.sealed", "success", f"2 chunks, AES-256-GCM, Ed25519, embedded grant, opened by {ident}", identity=ident, payload=bytes(p))
    add("v2-embedded.sealed", "untrusted_signer", "checked against a trust store without the publisher", trust_names=("publisher-p256",),
        verify_error="UntrustedSignerError", open_error="UntrustedSignerError")  # fmt: skip

    # --- an artifact opened through separate grants -------------------------------------------
    p2 = build_payload("raw", [("data", b"granted separately")])
    seal("v2-separate.sealed", p2, signer_p256, [rcpt("device-other")], "chacha20-poly1305")
    add("v2-separate.sealed", "wrong_key", "its embedded grant addresses only the issuer", open_error="NotARecipientError")
    unlocked = unlock(out / "v2-separate.sealed", issuer, trust)
    fleet = issue_grant(unlocked, [rcpt("device-x25519"), rcpt("device-p256")], signer_ed, now=lambda: NOW - 100)
    write("grant-fleet.grant", fleet.to_bytes())
    for ident in ("device-x25519", "device-p256"):
        add("v2-separate.sealed", "success", f"ChaCha20-Poly1305, ECDSA artifact, Ed25519 grant for two devices, opened by {ident}",
            identity=ident, grant="grant-fleet.grant", payload=bytes(p2))  # fmt: skip
    add("v2-separate.sealed", "wrong_key", "a device the grant does not address", identity="device-other", grant="grant-fleet.grant",
        open_error="NotARecipientError")  # fmt: skip
    expiring = issue_grant(unlocked, [rcpt("device-x25519")], signer_p256, not_before=NOW - 1000, not_after=NOW - 1, now=lambda: NOW - 2000)
    write("grant-expired.grant", expiring.to_bytes())
    add("v2-separate.sealed", "expired", f"a grant whose not_after is before now ({NOW})", grant="grant-expired.grant", open_error="ExpiredError")
    write("grant-other-artifact.grant", fleet.to_bytes())
    add("v2-embedded.sealed", "wrong_key", "a valid grant for another artifact", grant="grant-other-artifact.grant", open_error="NotARecipientError")
    container: Container = unlocked.container
    wrong = issue_grant(Unlocked(container, unlocked.artifact_id, hashlib.sha256(b"another key").digest()), [rcpt("device-x25519")], signer_ed, now=lambda: NOW)
    write("grant-wrong-commitment.grant", wrong.to_bytes())
    add("v2-separate.sealed", "payload", "a validly signed grant that wraps a key other than the committed one", grant="grant-wrong-commitment.grant",
        open_error="IntegrityError")  # fmt: skip
    flipped = bytearray(fleet.to_bytes())
    flipped[-10] ^= 1
    write("grant-signature-bit-flip.grant", bytes(flipped))
    add("v2-separate.sealed", "signature", "one bit of the grant signature flipped", grant="grant-signature-bit-flip.grant", open_error="IntegrityError")
    body = grant_body(fleet.to_bytes())
    write("grant-untrusted.grant", signed(b"EDGEGRNT", grant_label, canon({**body, "signer": {"alg": "ed25519", "key_id": untrusted.key_id}}), untrusted))
    add("v2-separate.sealed", "untrusted_signer", "a grant signed by a key outside the trust store", grant="grant-untrusted.grant",
        open_error="UntrustedSignerError")  # fmt: skip
    write("grant-unsorted.grant", signed(b"EDGEGRNT", grant_label, canon({**body, "recipients": body["recipients"][::-1]}), signer_ed))
    add("v2-separate.sealed", "header", "stanzas out of key id order (re-signed)", grant="grant-unsorted.grant", open_error="FormatError")
    write("grant-version-3.grant", fleet.to_bytes()[:8] + b"\x00\x03" + fleet.to_bytes()[10:])
    add("v2-separate.sealed", "header", "grant version 3", grant="grant-version-3.grant", open_error="UnsupportedVersionError")

    # --- edits of the embedded-grant artifact -----------------------------------------------------
    hl = _header_len(a)
    count = max(1, -(-len(p) // CHUNK))
    end = 112 + hl + len(p) + 16 * count
    gl = struct.unpack(">I", a[end : end + 4])[0]

    def bad(name: str, outcome: str, description: str, data: bytes, error: str, verify_ok: bool = False) -> None:
        write(name, data)
        add(name, outcome, description, open_error=error, verify_error=None if verify_ok else error)

    header = json.loads(a[16 : 16 + hl])
    with_recipients = canon({**header, "recipients": []})
    bad("v2-header-with-recipients.sealed", "header", "a payload header with a recipients key",
        a[:12] + struct.pack(">I", len(with_recipients)) + with_recipients + a[16 + hl :], "FormatError")  # fmt: skip
    bad("v2-signature-bit-flip.sealed", "signature", "one bit of the artifact signature flipped", _flip(a, 16 + hl + 40), "IntegrityError")
    digest = hashlib.sha256(a[: 16 + hl]).digest()
    v1_signed = a[: 16 + hl + 32] + signer_ed.sign(digest, a[16 + hl : 48 + hl]) + a[112 + hl :]
    bad("v2-signed-with-the-v1-label.sealed", "signature", "signed over the version 1 signature message instead of the version 2 one",
        v1_signed, "IntegrityError")  # fmt: skip
    bad("v2-grant-len-80.sealed", "header", "grant_len 80 (too short to frame any grant)", a[:end] + struct.pack(">I", 80) + a[end + 4 :], "FormatError")
    bad("v2-grant-len-plus-one.sealed", "signature", "grant_len one more than the grant (the file ends inside it)",
        a[:end] + struct.pack(">I", gl + 1) + a[end + 4 :], "IntegrityError")  # fmt: skip
    bad("v2-trailing-byte.sealed", "signature", "one byte after the embedded grant", a + b"\x00", "IntegrityError")
    bad("v2-chunk-bit-flip.sealed", "payload", "one ciphertext bit flipped", _flip(a, 112 + hl + 3), "IntegrityError")
    bad("v2-embedded-grant-bit-flip.sealed", "signature", "one bit of the embedded grant's signature flipped", _flip(a, len(a) - 7), "IntegrityError")
    bad("v2-grant-stripped.sealed", "wrong_key", "the embedded grant removed (grant_len 0): verifies, opens for nobody",
        a[:end] + bytes(4), "NotARecipientError", verify_ok=True)  # fmt: skip

    # --- revocation lists ---------------------------------------------------------------------------
    device_p256_id = rcpt("device-p256").key_id
    r3 = make_revocation(signer_ed, 3, grants=[expiring.body.grant_id], keys=[device_p256_id], now=lambda: NOW)
    write("revocation-serial-3.revoked", r3)
    add("v2-separate.sealed", "revoked", "device-p256's key is in the revocation list", identity="device-p256", grant="grant-fleet.grant",
        revocation="revocation-serial-3.revoked", open_error="RevokedError")  # fmt: skip
    add("v2-separate.sealed", "success", "device-x25519 is not revoked by the same list", grant="grant-fleet.grant",
        revocation="revocation-serial-3.revoked", payload=bytes(p2))  # fmt: skip
    revocations: list[dict[str, Any]] = [{"file": "revocation-serial-3.revoked", "error": None, "serial": 3, "keys": [device_p256_id],
                                          "description": "serial 3: one grant and one device key"}]  # fmt: skip
    rflip = bytearray(r3)
    rflip[-1] ^= 0x80
    write("revocation-signature-bit-flip.revoked", bytes(rflip))
    revocations.append({"file": "revocation-signature-bit-flip.revoked", "error": "IntegrityError", "description": "one signature bit flipped"})
    rbody = json.loads(r3[16:-64])
    write("revocation-unsorted.revoked", signed(b"EDGEREVK", b"edgeguard/v2 revocation signature\x00",
                                                canon({**rbody, "keys": ["ffffffffffffffff", *rbody["keys"]]}), signer_ed))  # fmt: skip
    revocations.append({"file": "revocation-unsorted.revoked", "error": "FormatError", "description": "key ids out of order (re-signed)"})
    write("revocation-untrusted.revoked", make_revocation(untrusted, 9, now=lambda: NOW))
    revocations.append({"file": "revocation-untrusted.revoked", "error": "UntrustedSignerError", "description": "signed by an untrusted key"})

    manifest = {
        "format": "edgeguard sealed format v2: artifacts, grants, revocation lists",
        "generator": "tests/vectors/generate.py",
        "keys": "../keys/ (the version 1 vectors' keys)",
        "now": NOW,
        "vectors": entries,
        "revocation_lists": revocations,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return entries


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent)
