"""Sealing: encrypt a payload in chunks, wrap its key for each recipient, and sign it.

Security property: the output reveals nothing about the payload but its length to anyone without
a recipient's identity, and any change to any byte is detected by every reader (tags for the
DEK holders, the publisher's signature over the header and every chunk digest for everyone).
"""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from . import _core, kinds
from ._files import atomic_output, write_fd
from .format import (
    DEFAULT_CHUNK_SIZE,
    SALT_LEN,
    Header,
    ModelInfo,
    validate_chunk_size,
)
from .keys import SigningKey
from .payload import build_payload
from .recipients import DEK_LEN, Recipient

DEFAULT_CIPHER = "aes-256-gcm"
ProgressFn = Callable[[int, int], None]


def derive_payload_key(dek: bytes, salt: bytes, cipher: str) -> tuple[bytes, bytes]:
    """(payload_key, nonce_prefix) per docs/FORMAT.md "Keys"."""
    okm = HKDF(algorithm=hashes.SHA256(), length=39, salt=salt, info=b"edgeguard/v1 payload\x00" + cipher.encode()).derive(dek)
    return okm[:32], okm[32:]


@dataclass(frozen=True)
class SealResult:
    header: Header
    path: Path
    size: int


def _check_recipients(recipients: Sequence[Recipient]) -> None:
    if not recipients:
        raise ValueError("at least one recipient is needed")


# The native core caps its worker threads (more buys nothing and risks failing to start them).
MAX_THREADS: int = _core.MAX_THREADS


def check_threads(threads: Any) -> int:
    """Raises ValueError unless `threads` is an int in 0..MAX_THREADS (0: every hardware thread).

    Checked before the native core sees it: a value pybind11 cannot convert raises a TypeError whose
    message lists every argument of the call, the content key included.
    """
    if type(threads) is not int or not 0 <= threads <= MAX_THREADS:
        raise ValueError(f"threads must be an integer in 0..{MAX_THREADS} (0: all cores)")
    return threads


def seal_payload(
    payload: Any,
    out_path: str | os.PathLike[str],
    *,
    kind: str,
    signer: SigningKey,
    recipients: Sequence[Recipient],
    model: ModelInfo,
    cipher: str = DEFAULT_CIPHER,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    threads: int = 0,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> SealResult:
    """Seals an already laid-out payload (see :mod:`edgeguard.payload`) into `out_path`, atomically.

    Raises:
        ValueError: no recipients, or `threads` out of range.
        FormatError: a header limit is exceeded (chunk size, labels, too many recipients, ...).
        FileExistsError: `out_path` exists and `overwrite` is False.
        OSError: the output cannot be written.
    """
    _check_recipients(recipients)
    validate_chunk_size(chunk_size)
    check_threads(threads)
    # Released on every path: a view left in a traceback frame would pin the caller's buffer
    # (seal_model wipes it in a finally, which raised BufferError and hid the real error).
    with memoryview(payload) as raw, raw.cast("B") as view:
        dek, salt = os.urandom(DEK_LEN), os.urandom(SALT_LEN)
        stanzas = tuple(r.wrap(dek, salt) for r in recipients)
        header = Header(
            cipher=cipher,
            chunk_size=chunk_size,
            payload_length=len(view),
            salt=salt,
            signer_alg=signer.alg,
            signer_key_id=signer.key_id,
            recipients=stanzas,
            model=model,
            payload_kind=kind,
        )
        head = header.encode()
        header_digest = hashlib.sha256(head).digest()
        key, nonce_prefix = derive_payload_key(dek, salt, cipher)
        payload_offset = len(head) + 96
        total = payload_offset + header.sealed_payload_len

        def fill(out: Any) -> None:
            out[: len(head)] = head
            chunks = memoryview(out)[payload_offset:]
            try:
                root = _core.seal_chunks(cipher, key, nonce_prefix, header_digest, chunk_size, view, chunks, threads, progress)
            finally:
                chunks.release()
            out[len(head) : payload_offset] = root + signer.sign(header_digest, root)

        with atomic_output(out_path, overwrite=overwrite) as (fd, _tmp):
            if _preallocate(fd, total):
                with mmap.mmap(fd, total) as out:
                    fill(out)
                    out.flush()
            else:
                buffer = bytearray(total)
                fill(buffer)
                write_fd(fd, buffer)
        return SealResult(header=header, path=Path(out_path), size=total)


def _preallocate(fd: int, size: int) -> bool:
    """Reserves `size` bytes of disk for `fd`, so that a full disk is an ENOSPC here rather than a
    SIGBUS when the mmap of a sparse file is written. False where the file system (or the OS, as
    macOS) cannot: the caller then writes the file with write(), which reports ENOSPC itself.

    Raises:
        OSError: ENOSPC, EFBIG, EIO, ...
    """
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is None:
        return False
    try:
        fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL):  # EINVAL: not supported here (POSIX)
            return False
        raise
    return True


def build_model_payload(path: Path, kind: str, detector_profile: bytes | None = None, ml_bom: Any = None,
                        model: ModelInfo | None = None) -> bytearray:
    """Lays out a model file as a sealed payload of `kind` (see :mod:`edgeguard.kinds`).

    `ml_bom`: the ``ml_bom`` section's bytes, or a callable ``(path, kind, sections, model) -> bytes``
    that builds it from the kind's sections (:class:`edgeguard.bom.MlBom`).

    Raises:
        ValueError: `kind` is not a payload kind.
        FormatError: the file is not a valid model of that kind.
        OSError: the file cannot be read.
    """
    sections, tensors = kinds.get(kind).build(path)
    extra = [("detector_profile", detector_profile)] if detector_profile is not None else []
    if ml_bom is not None:
        extra.append(("ml_bom", ml_bom(path, kind, sections, model) if callable(ml_bom) else ml_bom))
    return build_payload(kind, sections + extra, tensors)


def seal_model(
    model_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    signer: SigningKey,
    recipients: Sequence[Recipient],
    name: str | None = None,
    version: int = 1,
    not_before: int | None = None,
    not_after: int | None = None,
    labels: Mapping[str, str] | None = None,
    kind: str | None = None,
    detector_profile: bytes | None = None,
    cipher: str = DEFAULT_CIPHER,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    threads: int = 0,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    now: Callable[[], float] = time.time,
    ml_bom: Any = None,
) -> SealResult:
    """Seals a model file (ONNX, safetensors or any raw file) for the given recipients.

    `ml_bom` adds the signed ``ml_bom`` section: a document's bytes, or an
    :class:`edgeguard.bom.MlBom` that builds a CycloneDX ML-BOM of the model.

    Raises:
        ValueError: no recipients, or an unknown `kind`.
        FormatError: the model is malformed for its kind, or metadata breaks a header limit.
        FileExistsError: `out_path` exists and `overwrite` is False.
        OSError: a file cannot be read or written.
    """
    path = Path(model_path)
    _check_recipients(recipients)
    kind = kind or kinds.detect(path)
    model = ModelInfo(
        name=name or path.stem,
        version=version,
        created=int(now()),
        not_before=not_before,
        not_after=not_after,
        labels=tuple(sorted((labels or {}).items())),
    )
    payload = build_model_payload(path, kind, detector_profile, ml_bom=ml_bom, model=model)
    try:
        return seal_payload(
            payload, out_path, kind=kind, signer=signer, recipients=recipients, model=model,
            cipher=cipher, chunk_size=chunk_size, threads=threads, overwrite=overwrite, progress=progress,
        )  # fmt: skip
    finally:
        payload[:] = b""  # drop our plaintext copy promptly


__all__ = ["SealResult", "build_model_payload", "derive_payload_key", "seal_model", "seal_payload"]
