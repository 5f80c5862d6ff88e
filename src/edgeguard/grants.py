"""Version 2 grants: wrapping one artifact's content key (DEK) for any number of devices, after the
artifact is made, without touching its payload (docs/FORMAT.md, "Version 2").

Security properties:

* A grant is signed (by the publisher or any key the device trusts) and names one artifact by its
  id; each stanza's HPKE info binds it to that artifact's salt and id, so neither a grant nor a
  stanza can be moved to another artifact.
* The device checks the DEK a grant yields against the artifact's signed key commitment, so every
  grantee decrypts the same plaintext, whoever signed the grant: a signer that wraps a different
  key for some devices gets an :class:`~edgeguard.errors.IntegrityError`, not a second plaintext.
* Issuing a grant needs the DEK: the issuer opens the artifact like a device, with an issuer key
  that the artifact (or an earlier grant) already addresses. The DEK never exists anywhere else.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import shutil
import struct
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from ._files import atomic_output, write_fd
from .errors import FormatError, IntegrityError, NotARecipientError
from .format import VERSION_2, Container, Stanza
from .format_v2 import (
    GRANT_STANZA_TYPES,
    GRANT_SUFFIX,
    MAX_GRANT_RECIPIENTS,
    MAX_GRANT_SIZE,
    SIGNED_FILE_OVERHEAD,
    GrantBody,
    GrantFile,
    parse_grant,
)
from .keys import SigningKey, TrustStore
from .recipients import wrap_context_v2

COMMITMENT_LABEL = b"edgeguard/v2 key commitment\x00"
ARTIFACT_ID_LABEL = b"edgeguard/v2 artifact id\x00"
ARTIFACT_SIGNATURE_LABEL = b"edgeguard/v2 artifact signature\x00"
GRANT_SIGNATURE_LABEL = b"edgeguard/v2 grant signature\x00"

_KEY_ID = re.compile(r"[0-9a-f]{16}\Z")
GrantSource = Any  # GrantFile | bytes | a grant file path | a folder of <key_id>.grant files
AdmitGrant = Callable[[GrantBody, str], None]


def key_commitment(salt: bytes, dek: bytes) -> bytes:
    """SHA-256("edgeguard/v2 key commitment" || 0x00 || salt || DEK)."""
    return hashlib.sha256(COMMITMENT_LABEL + salt + dek).digest()


def artifact_signature_message(header_digest: bytes, chunk_root: bytes) -> bytes:
    return ARTIFACT_SIGNATURE_LABEL + header_digest + chunk_root


def artifact_id(container: Container) -> bytes:
    """The 32-byte artifact id: SHA-256 over the label, every signed byte and the signature."""
    return hashlib.sha256(ARTIFACT_ID_LABEL + container.preamble_and_header + container.chunk_root + container.signature).digest()


def grant_message(signed: bytes) -> bytes:
    """What a grant signature covers: the label and SHA-256(grant preamble || body)."""
    return GRANT_SIGNATURE_LABEL + hashlib.sha256(signed).digest()


def verify_grant(grant: GrantFile, trust: TrustStore) -> None:
    """Checks the grant's signer is trusted and its signature valid.

    Raises:
        UntrustedSignerError: the grant's signer is not in `trust`.
        IntegrityError: the signature does not verify.
    """
    key = trust.find(grant.body.signer_alg, grant.body.signer_key_id)
    if not key.verify_message(grant_message(grant.signed), grant.signature):
        raise IntegrityError()


def check_artifact(grant: GrantFile, artifact: bytes) -> None:
    """Raises NotARecipientError unless the grant names `artifact` (the 32-byte id)."""
    if not hmac.compare_digest(grant.body.artifact, artifact.hex()):
        raise NotARecipientError(
            f"grant {grant.body.grant_id} is for artifact {grant.body.artifact[:16]}..., not this file ({artifact.hex()[:16]}...)"
        )


# --- issuing ------------------------------------------------------------------------------------


def _key_id(recipient: Any) -> str:
    kid = getattr(recipient, "key_id", None)
    if not isinstance(kid, str):
        raise ValueError("grant recipients are device public keys (X25519 or P-256); a passphrase has no place in a grant")
    return kid


def sorted_recipients(recipients: Iterable[Any]) -> list[Any]:
    """The recipients in ascending key id order. Raises ValueError for a duplicate or a passphrase."""
    out = sorted(recipients, key=_key_id)
    for a, b in pairwise(out):
        if a.key_id == b.key_id:
            raise ValueError(f"device key {a.key_id} is given twice")
    return out


def _wrap_all(recipients: Sequence[Any], dek: bytes, salt: bytes, artifact: bytes) -> tuple[Stanza, ...]:
    context = wrap_context_v2(salt, artifact)
    stanzas = tuple(r.wrap(dek, salt, context=context) for r in recipients)
    if any(s.type not in GRANT_STANZA_TYPES for s in stanzas):
        raise ValueError(f"grant stanzas are {' or '.join(GRANT_STANZA_TYPES)} only")
    return stanzas


def _sign(body: GrantBody, signer: SigningKey) -> GrantFile:
    signed = body.encode()
    return GrantFile(body, signed, signer.sign_message(grant_message(signed)))


def _body(artifact: bytes, stanzas: tuple[Stanza, ...], signer: SigningKey, not_before: int | None,
          not_after: int | None, now: Callable[[], float], grant_id: str | None) -> GrantBody:  # fmt: skip
    return GrantBody(
        artifact=artifact.hex(),
        grant_id=grant_id or secrets.token_hex(16),
        signer_alg=signer.alg,
        signer_key_id=signer.key_id,
        issued=int(now()),
        recipients=stanzas,
        not_before=not_before,
        not_after=not_after,
    )


@dataclass(frozen=True)
class Unlocked:
    """A verified version 2 artifact and its content key, for issuing grants. Never in a repr: the DEK."""

    container: Container
    artifact_id: bytes
    dek: bytes = field(repr=False)
    grant: GrantFile | None = None  # the grant that opened it

    @property
    def salt(self) -> bytes:
        return bytes(self.container.header.salt)

    def __reduce__(self) -> None:  # type: ignore[override]
        raise TypeError("Unlocked holds a content key and cannot be pickled")


def issue_grant(
    unlocked: Unlocked,
    recipients: Iterable[Any],
    signer: SigningKey,
    *,
    not_before: int | None = None,
    not_after: int | None = None,
    now: Callable[[], float] = time.time,
    grant_id: str | None = None,
) -> GrantFile:
    """One grant that opens `unlocked`'s artifact for every recipient (device public keys).

    Raises:
        ValueError: no recipients, more than MAX_GRANT_RECIPIENTS, a duplicate key, or a passphrase.
        FormatError: the grant breaks another limit (a window with not_before >= not_after, ...).
    """
    ordered = sorted_recipients(recipients)
    if not 1 <= len(ordered) <= MAX_GRANT_RECIPIENTS:
        raise ValueError(f"a grant addresses 1..{MAX_GRANT_RECIPIENTS} devices, got {len(ordered)}")
    stanzas = _wrap_all(ordered, unlocked.dek, unlocked.salt, unlocked.artifact_id)
    return _sign(_body(unlocked.artifact_id, stanzas, signer, not_before, not_after, now, grant_id), signer)


def issue_device_grants(
    unlocked: Unlocked,
    recipients: Iterable[Any],
    signer: SigningKey,
    *,
    not_before: int | None = None,
    not_after: int | None = None,
    now: Callable[[], float] = time.time,
) -> dict[str, GrantFile]:
    """One grant per device, keyed by its key id (what :func:`write_grant_folder` names the files by).

    Raises: as :func:`issue_grant`.
    """
    out: dict[str, GrantFile] = {}
    for r in sorted_recipients(recipients):
        (stanza,) = _wrap_all([r], unlocked.dek, unlocked.salt, unlocked.artifact_id)
        out[r.key_id] = _sign(_body(unlocked.artifact_id, (stanza,), signer, not_before, not_after, now, None), signer)
    return out


def write_grant_folder(grants: Mapping[str, GrantFile], folder: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Writes `<key_id>.grant` per device into a new folder, atomically: the files are written into
    a temporary folder beside `folder`, flushed to disk with one ``sync`` (not one fsync per file:
    10,000 of those cost tens of seconds), and the folder is renamed into place once complete.

    Raises:
        FileExistsError: `folder` exists and `overwrite` is False.
        OSError: the folder cannot be written (a failure leaves nothing behind).
    """
    import tempfile

    target = Path(folder)
    if os.path.lexists(target) and not overwrite:
        raise FileExistsError(f"{target} already exists")
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        for kid, grant in grants.items():
            fd = os.open(tmp / f"{kid}{GRANT_SUFFIX}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                write_fd(fd, grant.to_bytes())
            finally:
                os.close(fd)
        os.chmod(tmp, 0o755)
        os.sync()
        old = None
        if overwrite and os.path.lexists(target):
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, old / "x")
        os.rename(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.filename and str(tmp) in str(exc.filename):
            raise OSError(exc.errno, exc.strerror, os.fspath(target)) from None
        raise
    return target


# --- finding and opening a device's grant -------------------------------------------------------

MAX_GRANT_FILE = SIGNED_FILE_OVERHEAD + MAX_GRANT_SIZE


def _read_bounded(path: Path) -> bytes:
    with open(path, "rb") as f:
        data = f.read(MAX_GRANT_FILE + 1)
    if len(data) > MAX_GRANT_FILE:
        raise FormatError(f"{path} is larger than any grant (MAX_GRANT_SIZE)")
    return data


def load_grant(source: GrantSource, key_ids: Sequence[str]) -> GrantFile:
    """The grant `source` names for a device whose identities have `key_ids`.

    `source` is a parsed :class:`GrantFile`, grant file bytes, a grant file path, or a folder of
    ``<key_id>.grant`` files, of which only the device's own are opened (no listing, no scan).

    Raises:
        NotARecipientError: a folder holds no grant for any of `key_ids`.
        FormatError, UnsupportedVersionError, IntegrityError: a malformed grant (see parse_grant).
        OSError: a grant file cannot be read.
        TypeError: an unsupported `source`.
    """
    if isinstance(source, GrantFile):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        return parse_grant(bytes(source))
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"grant must be a path, bytes or a GrantFile, not {type(source).__name__}")
    path = Path(source)
    if not path.is_dir():
        return parse_grant(_read_bounded(path))
    for kid in key_ids:
        if not _KEY_ID.match(kid):  # an identity's key id names a file: never a path
            continue
        candidate = path / f"{kid}{GRANT_SUFFIX}"
        try:
            return parse_grant(_read_bounded(candidate))
        except FileNotFoundError:
            continue
    shown = ", ".join(key_ids) or "none (the identities have no key id)"
    raise NotARecipientError(f"the grant folder {path} has no grant for this device (key ids: {shown})")


def identity_key_ids(identities: Sequence[Any]) -> list[str]:
    return [kid for kid in (getattr(i, "key_id", None) for i in identities) if isinstance(kid, str)]


def open_grant(
    container: Container,
    artifact: bytes,
    identities: Sequence[Any],
    trust: TrustStore,
    grant: GrantSource = None,
    admit_grant: AdmitGrant | None = None,
) -> tuple[bytes, GrantFile]:
    """The DEK of a verified version 2 artifact, and the grant that gave it: `grant` or the
    embedded grant.

    Order (docs/FORMAT.md): parse the grant, its signer and signature, the artifact it names,
    then `admit_grant(body, key_id)` (validity window, revocation), the stanza by key id, HPKE,
    and the key commitment.

    Raises:
        NotARecipientError: no grant, none for these identities, for another artifact, or no stanza opens.
        FormatError, UnsupportedVersionError: a malformed grant.
        UntrustedSignerError: the grant's signer is not trusted.
        IntegrityError: a bad grant signature or size, or a DEK that does not match the commitment.
        whatever `admit_grant` raises.
    """
    key_ids = identity_key_ids(identities)
    if grant is None:
        if container.embedded_grant is None:
            raise NotARecipientError("this version 2 file embeds no grant: pass the device's grant (grant=, --grant)")
        parsed = parse_grant(container.embedded_grant)
    else:
        parsed = load_grant(grant, key_ids)
    verify_grant(parsed, trust)
    check_artifact(parsed, artifact)
    header = container.header
    context = wrap_context_v2(header.salt, artifact)
    candidates: list[tuple[Any, str, Stanza]] = []
    for identity in identities:  # by key id: no trial decryption, O(log n) in the grant
        kid = getattr(identity, "key_id", None)
        stanza = parsed.body.stanza_for(kid) if isinstance(kid, str) else None
        if stanza is not None and isinstance(kid, str):
            candidates.append((identity, kid, stanza))
    if admit_grant is not None and not candidates:
        admit_grant(parsed.body, "")  # the window and a revoked grant id come before "not a recipient"
    for identity, kid, stanza in candidates:
        if admit_grant is not None:
            admit_grant(parsed.body, kid)
        dek = identity.unwrap([stanza], header.salt, context=context)
        if dek is None:
            continue
        if not hmac.compare_digest(key_commitment(header.salt, dek), header.key_commitment):
            raise IntegrityError()
        return dek, parsed
    raise NotARecipientError(
        f"grant {parsed.body.grant_id} has no stanza that opens with the given identities (key ids: {', '.join(key_ids) or 'none'})"
    )


def unlock(
    path: str | os.PathLike[str],
    identity: Any,
    trust: Any,
    *,
    grant: GrantSource = None,
    threads: int = 0,
) -> Unlocked:
    """Verifies a version 2 artifact completely (signature and every chunk) and recovers its DEK
    with an issuer identity the artifact's embedded grant (or `grant`) addresses.

    Raises:
        FormatError: not a version 2 artifact, or malformed.
        and what :func:`edgeguard.unseal.verify_file` and :func:`open_grant` raise.
    """
    from .keys import resolve_trust
    from .recipients import resolve_identities
    from .unseal import verify_file

    store = resolve_trust(trust)
    identities = resolve_identities(identity)
    verified = verify_file(path, store, threads=threads, check_grant=False)
    container = verified.container
    if container.version != VERSION_2:
        raise FormatError(f"{os.fspath(path)} is a version 1 sealed file: grants open version 2 artifacts (seal with format_version=2)")
    assert verified.artifact_id is not None
    dek, used = open_grant(container, verified.artifact_id, identities, store, grant)
    return Unlocked(container, verified.artifact_id, dek, used)


# --- load-time rules on a verified grant ---------------------------------------------------------


def check_grant_validity(body: GrantBody, now: float) -> None:
    """Enforces the grant's own not_before <= now <= not_after (a per-device licence window).

    Raises:
        NotYetValidError: now is before the grant's not_before.
        ExpiredError: now is after the grant's not_after.
    """
    from .errors import ExpiredError, NotYetValidError
    from .freshness import _utc

    if body.not_before is not None and now < body.not_before:
        raise NotYetValidError(f"grant {body.grant_id} is not valid before {_utc(body.not_before)}")
    if body.not_after is not None and now > body.not_after:
        raise ExpiredError(f"grant {body.grant_id} expired at {_utc(body.not_after)}")


def device_admission(
    identities: Sequence[Any], trust: TrustStore, revocation: Any, revocation_store: Any, clock: Callable[[], float]
) -> tuple[AdmitGrant, Callable[[Any], None]]:
    """The device runtime's load-time rules for grants: (admit_grant, admit_v1).

    `admit_grant(body, key_id)` checks a verified grant's window, then the revocation list (its
    grant id and the device key id); `admit_v1(header)` refuses a version 1 file whose stanza for
    one of `identities` belongs to a revoked key. The revocation list is loaded, verified and
    rollback-checked here, before any file is opened.

    Raises: as :func:`edgeguard.revocation.resolve_revocation`.
    """
    from .format import Header
    from .revocation import resolve_revocation

    revoked = resolve_revocation(revocation, trust, revocation_store)

    def admit_grant(body: GrantBody, key_id: str) -> None:
        check_grant_validity(body, clock())
        if revoked is not None:
            revoked.check(body.grant_id, key_id)

    def admit_v1(header: Any) -> None:
        if revoked is None or not isinstance(header, Header):
            return
        addressed = {s.key_id for s in header.recipients}
        for kid in identity_key_ids(identities):
            if kid in addressed:
                revoked.check(None, kid)

    return admit_grant, admit_v1


# --- rewrap: a new embedded grant, the payload untouched -----------------------------------------


def write_with_grant(source: str | os.PathLike[str], container: Container, grant: GrantFile | None,
                     out_path: str | os.PathLike[str], *, overwrite: bool = False) -> int:  # fmt: skip
    """Writes `source`'s artifact (every byte up to the end of its chunks, copied as is) followed by
    `grant` as its embedded grant (or none), atomically. Returns the new file's size.

    The copy is plain I/O (``copy_file_range``, which a file system with reflinks makes O(1)): no
    chunk is read by any cryptography, re-encrypted or re-signed.

    Raises:
        FileExistsError: `out_path` exists and `overwrite` is False.
        OSError: a file cannot be read or written.
    """
    end: int = container.payload_offset + container.header.sealed_payload_len
    trailer = grant.to_bytes() if grant is not None else b""
    with open(source, "rb") as src, atomic_output(out_path, overwrite=overwrite) as (fd, _tmp):
        done = 0
        copy = getattr(os, "copy_file_range", None)
        while done < end:
            n = 0
            if copy is not None:
                try:
                    n = copy(src.fileno(), fd, end - done, done, done)
                except OSError:
                    copy = None
            if not n:
                os.lseek(fd, done, os.SEEK_SET)
                chunk = os.pread(src.fileno(), min(1 << 20, end - done), done)
                if not chunk:
                    raise IntegrityError()  # the source shrank under us
                write_fd(fd, chunk)
                n = len(chunk)
            done += n
        os.lseek(fd, end, os.SEEK_SET)
        write_fd(fd, struct.pack(">I", len(trailer)) + trailer)
    return end + 4 + len(trailer)


def rewrap(
    path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    identity: Any,
    trust: Any,
    signer: SigningKey,
    *,
    add: Iterable[Any] = (),
    remove: Iterable[str] = (),
    grant: GrantSource = None,
    not_before: int | None = None,
    not_after: int | None = None,
    now: Callable[[], float] = time.time,
    overwrite: bool = False,
) -> GrantFile:
    """A copy of a version 2 artifact whose embedded grant adds the `add` devices and drops the
    `remove` key ids: the surviving stanzas are kept as they are, the new grant gets a new grant id
    and the signer's signature; the payload, the artifact signature and the artifact id do not
    change. `identity` opens the current grant (the embedded one, or `grant`).

    Raises:
        ValueError: a removed key id the grant does not hold, an added key it already holds, or
            no device left.
        and what :func:`unlock` and :func:`issue_grant` raise.
    """
    unlocked = unlock(path, identity, trust, grant=grant)
    assert unlocked.grant is not None
    kept = {s.key_id: s for s in unlocked.grant.body.recipients}
    for kid in remove:
        if kid not in kept:
            raise ValueError(f"the grant has no device {kid} to remove")
        del kept[kid]
    added = sorted_recipients(add)
    for r in added:
        if r.key_id in kept:
            raise ValueError(f"device {r.key_id} is already in the grant")
    new = dict(zip((r.key_id for r in added), _wrap_all(added, unlocked.dek, unlocked.salt, unlocked.artifact_id), strict=True))
    stanzas = tuple(s for _, s in sorted({**kept, **new}.items()))
    if not stanzas:
        raise ValueError("the new grant would address no device; keep at least one (an issuer key)")
    result = _sign(_body(unlocked.artifact_id, stanzas, signer, not_before, not_after, now, None), signer)
    write_with_grant(path, unlocked.container, result, out_path, overwrite=overwrite)
    return result


__all__ = [
    "Unlocked", "artifact_id", "issue_device_grants", "issue_grant", "key_commitment", "load_grant", "open_grant",
    "rewrap", "unlock", "verify_grant", "write_grant_folder", "write_with_grant",
]  # fmt: skip
