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
from .coverage import Coverage, payload_coverage
from .errors import FormatError
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


def derive_payload_key(dek: bytes, salt: bytes, cipher: str, version: int = 1) -> tuple[bytes, bytes]:
    """(payload_key, nonce_prefix) per docs/FORMAT.md "Keys" (and its version 2 label)."""
    label = b"edgeguard/v2 payload\x00" if version == 2 else b"edgeguard/v1 payload\x00"
    okm = HKDF(algorithm=hashes.SHA256(), length=39, salt=salt, info=label + cipher.encode()).derive(dek)
    return okm[:32], okm[32:]


@dataclass(frozen=True)
class SealResult:
    """``coverage``: for an ONNX payload, how much of its weights a strict device reads from the
    secure buffer (:func:`edgeguard.coverage.payload_coverage`); None for other kinds. Version 2
    adds the artifact id (hex) and the embedded grant."""

    header: Any  # Header, or format_v2.PayloadHeader for format_version=2
    path: Path
    size: int
    coverage: Coverage | None = None
    artifact_id: str | None = None  # version 2: the artifact id (hex)
    grant: Any = None  # version 2: the embedded grant (format_v2.GrantFile)


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
    format_version: int = 1,
) -> SealResult:
    """Seals an already laid-out payload (see :mod:`edgeguard.payload`) into `out_path`, atomically.

    ``format_version=2`` writes a version 2 artifact (docs/FORMAT.md): no recipients in the header,
    a key commitment, and an embedded grant, signed by `signer`, for `recipients` (device keys; keep
    an issuer key among them to grant more devices later, see :mod:`edgeguard.grants`).

    Raises:
        ValueError: no recipients, `threads` or `format_version` out of range, or a passphrase
            recipient for version 2.
        FormatError: a header limit is exceeded (chunk size, labels, too many recipients, ...).
        FileExistsError: `out_path` exists and `overwrite` is False.
        OSError: the output cannot be written.
    """
    _check_recipients(recipients)
    validate_chunk_size(chunk_size)
    check_threads(threads)
    if format_version not in (1, 2):
        raise ValueError("format_version must be 1 or 2")
    if format_version == 2:
        from .grants import sorted_recipients

        recipients = sorted_recipients(recipients)  # device keys only, none twice: before any work
    # Released on every path: a view left in a traceback frame would pin the caller's buffer
    # (seal_model wipes it in a finally, which raised BufferError and hid the real error).
    with memoryview(payload) as raw, raw.cast("B") as view:
        dek, salt = os.urandom(DEK_LEN), os.urandom(SALT_LEN)
        header: Any
        if format_version == 2:
            from .format_v2 import PayloadHeader
            from .grants import artifact_signature_message, key_commitment

            header = PayloadHeader(
                cipher=cipher, chunk_size=chunk_size, payload_length=len(view), salt=salt, signer_alg=signer.alg,
                signer_key_id=signer.key_id, model=model, payload_kind=kind, key_commitment=key_commitment(salt, dek),
            )  # fmt: skip
            def sign(digest: bytes, root: bytes) -> bytes:
                return signer.sign_message(artifact_signature_message(digest, root))

        else:
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
            sign = signer.sign  # type: ignore[assignment]  # the same signature: (header digest, chunk root) -> bytes
        head = header.encode()
        header_digest = hashlib.sha256(head).digest()
        key, nonce_prefix = derive_payload_key(dek, salt, cipher, format_version)
        payload_offset = len(head) + 96
        total = payload_offset + header.sealed_payload_len
        signature_block = bytearray()

        def fill(out: Any) -> None:
            out[: len(head)] = head
            chunks = memoryview(out)[payload_offset:]
            try:
                root = _core.seal_chunks(cipher, key, nonce_prefix, header_digest, chunk_size, view, chunks, threads, progress)
            finally:
                chunks.release()
            signature_block[:] = root + sign(header_digest, root)
            out[len(head) : payload_offset] = signature_block

        with atomic_output(out_path, overwrite=overwrite) as (fd, _tmp):
            if _preallocate(fd, total):
                with mmap.mmap(fd, total) as out:
                    fill(out)
                    out.flush()
            else:
                buffer = bytearray(total)
                fill(buffer)
                write_fd(fd, buffer)
            if format_version == 2:
                # The embedded grant follows the chunks; it names the artifact id, which hashes
                # the signature, so it is made last (and written with write(): ENOSPC, no SIGBUS).
                from .format import Container
                from .grants import Unlocked, artifact_id, issue_grant

                container = Container(header, head, bytes(signature_block[:32]), bytes(signature_block[32:]), payload_offset, version=2)
                artifact = artifact_id(container)
                grant = issue_grant(Unlocked(container, artifact, dek), recipients, signer, now=lambda: model.created)
                trailer = grant.to_bytes()
                os.lseek(fd, total, os.SEEK_SET)
                write_fd(fd, len(trailer).to_bytes(4, "big") + trailer)
        try:
            coverage = payload_coverage(view, kind)
        except FormatError:  # a hand-built payload the device will refuse anyway
            coverage = None
        if format_version == 1:
            return SealResult(header=header, path=Path(out_path), size=total, coverage=coverage)
        return SealResult(header=header, path=Path(out_path), size=total + 4 + len(trailer), coverage=coverage, artifact_id=artifact.hex(), grant=grant)


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
    format_version: int = 1,
    ml_bom: Any = None,
) -> SealResult:
    """Seals a model file (ONNX, safetensors or any raw file) for the given recipients.
    `format_version` is as for :func:`seal_payload`.

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
            format_version=format_version,
        )  # fmt: skip
    finally:
        payload[:] = b""  # drop our plaintext copy promptly


__all__ = ["SealResult", "build_model_payload", "derive_payload_key", "seal_model", "seal_payload"]
