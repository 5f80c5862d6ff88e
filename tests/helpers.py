"""Shared helpers for the sealed-format tests: small keys, 4 KiB chunks, cheap scrypt."""

from __future__ import annotations

import hashlib as _hashlib
import json as _json
import os
import struct as _struct
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgeguard.format import ModelInfo
from edgeguard.keys import SigningKey, TrustStore, export_private_pem, generate_private_key, public_pem, write_private_key
from edgeguard.payload import build_payload
from edgeguard.recipients import load_identity, load_recipient
from edgeguard.recipients.scrypt import PassphraseIdentity, PassphraseRecipient
from edgeguard.seal import seal_payload
from edgeguard.unseal import _decrypt_payload

CHUNK = 4096
LOG_N = 10  # scrypt work factor for tests: the minimum the format accepts
PASSPHRASE = "correct horse battery staple"
MODEL = ModelInfo(name="tiny", version=3, created=1_700_000_000, labels=(("team", "edge"),))


@dataclass
class Device:
    """A device key pair: the raw private key (for the reference decoder) and edgeguard's views of it."""

    private: Any
    identity: Any
    recipient: Any


def make_device(kind: str) -> Device:
    priv = generate_private_key(kind)
    return Device(priv, load_identity(export_private_pem(priv)), load_recipient(public_pem(priv.public_key())))


@dataclass
class Keys:
    """Every test's keys: two publishers, three devices; :meth:`with_files` also writes PEM files.

    ``signer`` is the Ed25519 publisher; ``trust`` trusts both publishers.
    """

    ed25519: SigningKey
    p256: SigningKey
    x25519_dev: Device
    p256_dev: Device
    other_dev: Device  # never a recipient of anything: the wrong identity
    trust_path: Path = Path("/nonexistent")  # the files below exist once with_files wrote them
    identity_path: Path = Path("/nonexistent")
    recipient_path: Path = Path("/nonexistent")

    @property
    def signer(self) -> SigningKey:
        return self.ed25519

    @property
    def trust(self) -> TrustStore:
        return TrustStore([self.ed25519.verifying_key, self.p256.verifying_key])

    def with_files(self, folder: Path, device: str = "p256") -> Keys:
        """These keys with the Ed25519 publisher's public key and one device's key pair (``x25519``
        or ``p256``) written to `folder` as the CLI and the runtime read them (private key 0600)."""
        dev = self.p256_dev if device == "p256" else self.x25519_dev
        identity_path = folder / f"device-{dev.recipient.key_id}.pem"
        write_private_key(identity_path, dev.private)
        recipient_path = folder / f"{identity_path.stem}.pub"
        recipient_path.write_bytes(public_pem(dev.private.public_key()))
        trust_path = folder / f"publisher-{self.ed25519.key_id}.pub"
        trust_path.write_bytes(self.ed25519.verifying_key.public_pem())
        return replace(self, trust_path=trust_path, identity_path=identity_path, recipient_path=recipient_path)

    def ref_trusted(self) -> list[Any]:
        return [k._private_key.public_key() for k in (self.ed25519, self.p256)]


def new_keys() -> Keys:
    return Keys(
        SigningKey.generate("ed25519"),
        SigningKey.generate("p256"),
        make_device("x25519"),
        make_device("p256"),
        make_device("x25519"),
    )


def raw_payload(data: bytes) -> bytearray:
    return build_payload("raw", [("data", data)])


def seal_bytes(
    path: Path,
    payload: Any,
    *,
    signer: SigningKey,
    recipients: Sequence[Any],
    cipher: str = "aes-256-gcm",
    kind: str = "raw",
    chunk_size: int = CHUNK,
    model: ModelInfo = MODEL,
) -> Path:
    seal_payload(payload, path, kind=kind, signer=signer, recipients=recipients, model=model, cipher=cipher, chunk_size=chunk_size)
    return path


def open_opaque(path: Path, identities: Sequence[Any], trust: TrustStore) -> bytes:
    """Decrypts a file whose payload is opaque bytes (not an inner layout) through the same
    verification and native chunk engine as decrypt_file, stopping before the inner-layout check
    (which would reject it and zero the buffer)."""
    _container, buffer = _decrypt_payload(path, identities, trust, bytearray, 0, None, None)
    return bytes(buffer)


def scratch_dir() -> tempfile.TemporaryDirectory[str]:
    """A temporary directory usable inside Hypothesis examples (function fixtures are not reset there)."""
    return tempfile.TemporaryDirectory()


def passphrase_recipient() -> PassphraseRecipient:
    return PassphraseRecipient(PASSPHRASE, log_n=LOG_N)


def passphrase_identity(p: str = PASSPHRASE) -> PassphraseIdentity:
    return PassphraseIdentity(p)


def listing(d: Path) -> list[str]:
    return sorted(os.listdir(d))



# --- byte-level surgery on sealed files (FORMAT.md "Layout"), for tamper tests -------------------



@dataclass
class Parts:
    preamble: bytes
    header: bytes
    root: bytes
    signature: bytes
    chunks: list[bytes]

    @property
    def header_obj(self) -> dict[str, Any]:
        return _json.loads(self.header)

    def join(self) -> bytes:
        return self.preamble + self.header + self.root + self.signature + b"".join(self.chunks)


def split(data: bytes) -> Parts:
    (hl,) = _struct.unpack(">I", data[12:16])
    header = _json.loads(data[16 : 16 + hl])
    size, length = header["chunk_size"], header["payload_length"]
    chunks, off = [], 112 + hl
    for i in range(max(1, -(-length // size))):
        n = min(size, length - i * size) + 16
        chunks.append(data[off : off + n])
        off += n
    assert off == len(data)
    return Parts(data[:16], data[16 : 16 + hl], data[16 + hl : 48 + hl], data[48 + hl : 112 + hl], chunks)


def canonical(obj: Any) -> bytes:
    return _json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def with_header(data: bytes, header: bytes) -> bytes:
    """Replaces the header bytes (fixing header_len); root and signature are left as they were."""
    p = split(data)
    return p.preamble[:12] + _struct.pack(">I", len(header)) + header + p.root + p.signature + b"".join(p.chunks)


def resign(data: bytes, signer: SigningKey, chunks: list[bytes] | None = None) -> bytes:
    """What a publisher would produce: the given header and chunks with a fresh root and signature."""
    hl = _struct.unpack(">I", data[12:16])[0]
    head = data[: 16 + hl]
    if chunks is None:
        chunks = split_chunks_loose(data)
    root = _hashlib.sha256(
        b"edgeguard/v1 chunks\x00" + _struct.pack(">Q", len(chunks)) + b"".join(_hashlib.sha256(c).digest() for c in chunks)
    ).digest()
    return head + root + signer.sign(_hashlib.sha256(head).digest(), root) + b"".join(chunks)


def split_chunks_loose(data: bytes) -> list[bytes]:
    """The chunks after the signature block cut at the header's chunk size (the file may be any size)."""
    hl = _struct.unpack(">I", data[12:16])[0]
    size = _json.loads(data[16 : 16 + hl])["chunk_size"] + 16
    body = data[112 + hl :]
    return [body[i : i + size] for i in range(0, len(body), size)] or [b""]


class Blob(bytes):
    """Bytes with a short repr, for Hypothesis-generated files: Hypothesis warns (an error here)
    when it builds a repr of more than 30 kB for an example."""

    def __repr__(self) -> str:
        return f"Blob(<{len(self)} bytes, sha256 {_hashlib.sha256(self).hexdigest()[:16]}>)"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))
