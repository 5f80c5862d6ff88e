"""Verifying and decrypting sealed files: the raw file operations, with no load-time rules or secure
memory of their own (the device runtime, :mod:`edgeguard.runtime`, adds those).

Security property: :func:`decrypt_file` releases plaintext only after the publisher's signature
over the header and chunk root, every chunk digest and every AEAD tag have verified. Any failure
wipes the destination and raises one opaque :class:`IntegrityError`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _core, kinds
from .errors import IntegrityError, NotARecipientError
from .format import VERSION_2, Container, Header, read_container
from .keys import TrustStore
from .payload import Layout, parse_payload
from .recipients import Identity
from .seal import ProgressFn, check_threads, derive_payload_key


@dataclass(frozen=True)
class Verified:
    """A sealed file whose signature and chunk digests verified against a trusted publisher key.
    `artifact_id` is a version 2 artifact's id (None for version 1)."""

    container: Container
    header_digest: bytes
    artifact_id: bytes | None = None


def _authenticate_header(f: Any, trust: TrustStore) -> Verified:
    """Parses the container, checks its size and the publisher signature (not the chunks yet)."""
    container = read_container(f)
    if os.fstat(f.fileno()).st_size != container.total_len:
        raise IntegrityError()
    header = container.header
    key = trust.find(header.signer_alg, header.signer_key_id)
    header_digest = hashlib.sha256(container.preamble_and_header).digest()
    if container.version == VERSION_2:
        from .grants import artifact_id, artifact_signature_message

        if not key.verify_message(artifact_signature_message(header_digest, container.chunk_root), container.signature):
            raise IntegrityError()
        return Verified(container, header_digest, artifact_id(container))
    if not key.verify(header_digest, container.chunk_root, container.signature):
        raise IntegrityError()
    return Verified(container, header_digest)


def inspect_file(path: str | os.PathLike[str]) -> Container:
    """Parses the public header only; needs no key and proves nothing about authenticity.

    Raises:
        FormatError, UnsupportedVersionError: the header is malformed.
        IntegrityError: the file ends inside the signature block.
        OSError: the file cannot be read.
    """
    with open(path, "rb") as f:
        return read_container(f)


def verify_file(path: str | os.PathLike[str], trust: TrustStore, *, threads: int = 0, check_grant: bool = True) -> Verified:
    """Checks the publisher's signature and every chunk digest. Needs no decryption key.

    For a version 2 artifact that embeds a grant, also checks (unless `check_grant` is False) that
    the grant is well formed, signed by a trusted key and names this artifact.

    Raises:
        FormatError, UnsupportedVersionError: malformed header.
        UntrustedSignerError: the signer is not in `trust`.
        IntegrityError: bad signature, wrong size, or any chunk altered.
        OSError: the file cannot be read.
        ValueError: `threads` out of range.
    """
    check_threads(threads)
    with open(path, "rb") as f:
        verified = _authenticate_header(f, trust)
        header = verified.container.header
        root = _core.digest_chunks(header.chunk_size, header.payload_length, f.fileno(), verified.container.payload_offset, threads)
    if root is None or not hmac.compare_digest(root, verified.container.chunk_root):
        raise IntegrityError()
    if check_grant and verified.container.embedded_grant is not None:
        from .format_v2 import parse_grant
        from .grants import check_artifact, verify_grant

        grant = parse_grant(verified.container.embedded_grant)
        verify_grant(grant, trust)
        assert verified.artifact_id is not None
        check_artifact(grant, verified.artifact_id)
    return verified


@dataclass
class Opened:
    """A verified, decrypted payload in a caller-provided buffer, with its parsed inner layout."""

    container: Container
    buffer: Any = field(repr=False)  # plaintext: never in a repr, a log line or a traceback
    layout: Layout


def decrypt_file(
    path: str | os.PathLike[str],
    identities: Sequence[Identity],
    trust: TrustStore,
    *,
    allocate: Callable[[int], Any] = bytearray,
    threads: int = 0,
    progress: ProgressFn | None = None,
    admit: Callable[[Header], None] | None = None,
    grant: Any = None,
    admit_grant: Callable[[Any, str], None] | None = None,
) -> Opened:
    """Verifies and decrypts a sealed file into ``allocate(payload_length)``.

    The buffer is written by the native core straight from the file (pread), all or nothing, and
    zeroed again if the decrypted payload is not a well-formed inner layout. `admit`, if given, is
    called with the header right after its signature verifies, before any key is unwrapped or
    buffer allocated; whatever it raises refuses the file (the runtime checks the validity window
    and anti-rollback there).

    A version 2 artifact opens through `grant` (a grant file path or bytes, a folder of
    ``<key_id>.grant`` files, or a parsed grant) or else its embedded grant; `admit_grant`, if
    given, is called with the verified grant's body and the device key id before that key unwraps
    anything (the runtime checks the grant's window and revocation there). See
    :func:`edgeguard.grants.open_grant`.

    Raises:
        FormatError, UnsupportedVersionError: malformed header or inner payload.
        UntrustedSignerError: the signer is not in `trust`.
        NotARecipientError: no identity opens any stanza (wrong key or wrong passphrase); for
            version 2, no grant for these identities, or a grant for another artifact.
        IntegrityError: anything about the file (or its grant) is not as its signer signed it.
        OSError: the file cannot be read.
        ValueError: `threads` out of range.
        TypeError: `allocate` returned something that is not a writable buffer.
        and whatever `admit` and `admit_grant` raise.
    """
    container, buffer = _decrypt_payload(path, identities, trust, allocate, threads, progress, admit, grant, admit_grant)
    try:
        layout = parse_payload(buffer, container.header.payload_kind)
    except BaseException:
        _zero(buffer)
        raise
    return Opened(container, buffer, layout)


def _decrypt_payload(
    path: str | os.PathLike[str],
    identities: Sequence[Identity],
    trust: TrustStore,
    allocate: Callable[[int], Any],
    threads: int,
    progress: ProgressFn | None,
    admit: Callable[[Header], None] | None,
    grant: Any = None,
    admit_grant: Callable[[Any, str], None] | None = None,
) -> tuple[Container, Any]:
    """The authenticated plaintext payload, before its inner layout is parsed (see decrypt_file)."""
    check_threads(threads)
    with open(path, "rb") as f:
        verified = _authenticate_header(f, trust)
        container = verified.container
        header = container.header
        if admit is not None:
            admit(header)
        if container.version == VERSION_2:
            from .grants import open_grant

            assert verified.artifact_id is not None
            dek: bytes | None
            dek, _grant = open_grant(container, verified.artifact_id, identities, trust, grant, admit_grant)
        else:
            dek = next((k for k in (i.unwrap(header.recipients, header.salt) for i in identities) if k is not None), None)
        if dek is None:
            raise NotARecipientError(
                "none of the given identities is a recipient of this file (or the passphrase is wrong)"
            )
        key, nonce_prefix = derive_payload_key(dek, header.salt, header.cipher, container.version)
        buffer = allocate(header.payload_length)
        memoryview(buffer).release()  # not a buffer: fail here, as pybind11's TypeError would list the key
        ok = _core.open_chunks(
            header.cipher, key, nonce_prefix, verified.header_digest, header.chunk_size, header.payload_length,
            f.fileno(), container.payload_offset, buffer, container.chunk_root, threads, progress,
        )  # fmt: skip
    if not ok:
        raise IntegrityError()
    return container, buffer


_ZERO_BLOCK = bytes(1 << 20)


def _zero(buffer: Any) -> None:
    with memoryview(buffer) as view, view.cast("B") as raw:
        for start in range(0, len(raw), len(_ZERO_BLOCK)):
            end = min(start + len(_ZERO_BLOCK), len(raw))
            raw[start:end] = _ZERO_BLOCK[: end - start]


def unseal_file(
    path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    identities: Sequence[Identity],
    trust: TrustStore,
    *,
    threads: int = 0,
    progress: ProgressFn | None = None,
    admit: Callable[[Header], None] | None = None,
    grant: Any = None,
    admit_grant: Callable[[Any, str], None] | None = None,
) -> Opened:
    """Explicit recovery: writes the original model to `out_path` (never overwriting; atomic).
    `admit`, `grant` and `admit_grant` are as for :func:`decrypt_file`.

    Each payload kind writes its original file (:meth:`~edgeguard.kinds.base.PayloadKind.write_original`):
    an ONNX model comes back self-contained with its weights embedded again.

    Raises:
        FileExistsError: `out_path` exists.
        and everything :func:`decrypt_file` raises.
    """
    target = Path(out_path)
    if target.exists():
        raise FileExistsError(f"{target} already exists")
    opened = decrypt_file(path, identities, trust, threads=threads, progress=progress, admit=admit, grant=grant, admit_grant=admit_grant)
    kinds.get(opened.container.header.payload_kind).write_original(opened.layout, opened.buffer, target)
    return opened


def __getattr__(name: str) -> Any:
    """``open_sealed_file``, the old name of :func:`decrypt_file`, for one release: it read as the
    runtime's :func:`edgeguard.open_sealed`, which adds secure memory and load-time checks."""
    if name != "open_sealed_file":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import warnings

    warnings.warn("edgeguard.unseal.open_sealed_file is deprecated; use decrypt_file", DeprecationWarning, stacklevel=2)
    return decrypt_file
