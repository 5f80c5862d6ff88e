"""Helpers for the version 2 tests: sealing artifacts, byte surgery on artifacts, grants and
revocation lists (docs/FORMAT.md, "Version 2"), and the error categories both decoders share."""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import reference_decoder as ref
from edgeguard import errors
from edgeguard.keys import SigningKey
from edgeguard.seal import seal_payload
from helpers import CHUNK, MODEL, Keys, raw_payload

DATA = b"version 2 artifact payload; " * 200  # 5600 bytes: two 4 KiB chunks once laid out


def seal_v2(path: Path, keys: Keys, recipients: Sequence[Any] | None = None, *, data: bytes = DATA,
            signer: SigningKey | None = None, cipher: str = "aes-256-gcm") -> Path:  # fmt: skip
    seal_payload(raw_payload(data), path, kind="raw", signer=signer or keys.signer,
                 recipients=list(recipients) if recipients is not None else [keys.x25519_dev.recipient, keys.p256_dev.recipient],
                 model=MODEL, cipher=cipher, chunk_size=CHUNK, format_version=2)  # fmt: skip
    return path


@dataclass
class V2Parts:
    preamble: bytes
    header: bytes
    root: bytes
    signature: bytes
    chunks: bytes
    grant: bytes

    @property
    def header_obj(self) -> dict[str, Any]:
        return json.loads(self.header)

    def join(self, grant_len: int | None = None) -> bytes:
        n = len(self.grant) if grant_len is None else grant_len
        return self.preamble + self.header + self.root + self.signature + self.chunks + struct.pack(">I", n) + self.grant


def split_v2(data: bytes) -> V2Parts:
    (hl,) = struct.unpack(">I", data[12:16])
    h = json.loads(data[16 : 16 + hl])
    count = max(1, -(-h["payload_length"] // h["chunk_size"]))
    end = 112 + hl + h["payload_length"] + 16 * count
    (gl,) = struct.unpack(">I", data[end : end + 4])
    assert len(data) == end + 4 + gl
    return V2Parts(data[:16], data[16 : 16 + hl], data[16 + hl : 48 + hl], data[48 + hl : 112 + hl], data[112 + hl : end], data[end + 4 :])


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def resign_artifact(p: V2Parts, signer: SigningKey, header: bytes | None = None) -> V2Parts:
    """A publisher's artifact with `header` (default: the same), a fresh signature (root unchanged)."""
    body = p.header if header is None else header
    preamble = p.preamble[:12] + struct.pack(">I", len(body))
    digest = hashlib.sha256(preamble + body).digest()
    sig = signer.sign_message(b"edgeguard/v2 artifact signature\x00" + digest + p.root)
    return V2Parts(preamble, body, p.root, sig, p.chunks, p.grant)


def artifact_id(p: V2Parts) -> bytes:
    return hashlib.sha256(b"edgeguard/v2 artifact id\x00" + p.preamble + p.header + p.root + p.signature).digest()


def grant_body(grant: bytes) -> dict[str, Any]:
    (n,) = struct.unpack(">I", grant[12:16])
    return json.loads(grant[16 : 16 + n])


def sign_grant(body: dict[str, Any] | bytes, signer: SigningKey, magic: bytes = b"EDGEGRNT",
               label: bytes = b"edgeguard/v2 grant signature\x00") -> bytes:  # fmt: skip
    raw = body if isinstance(body, bytes) else canonical(body)
    signed = magic + struct.pack(">HHI", 2, 0, len(raw)) + raw
    return signed + signer.sign_message(label + hashlib.sha256(signed).digest())


def sign_revocation(body: dict[str, Any] | bytes, signer: SigningKey) -> bytes:
    return sign_grant(body, signer, b"EDGEREVK", b"edgeguard/v2 revocation signature\x00")


# --- error categories, shared by edgeguard's exceptions and the reference decoder's ---------------

CATEGORIES = [
    (errors.RevokedError, "revoked"),
    (errors.NotYetValidError, "not_yet_valid"),
    (errors.ExpiredError, "expired"),
    (errors.UnsupportedVersionError, "version"),
    (errors.FormatError, "format"),
    (errors.UntrustedSignerError, "untrusted"),
    (errors.NotARecipientError, "not_recipient"),
    (errors.IntegrityError, "integrity"),
]


def category(exc: BaseException) -> str:
    if isinstance(exc, ref.RefError):
        return "format" if exc.category == "inner_format" else exc.category
    return next(c for t, c in CATEGORIES if isinstance(exc, t))
